//! `local-agent service install|uninstall|start|stop|restart|status`: keeping `serve` running
//! in the background.
//!
//! - On Linux with a reachable user manager, a systemd **user** unit (no root needed; with
//!   `loginctl enable-linger` it runs without a login session);
//! - on macOS, a launchd agent in `~/Library/LaunchAgents`;
//! - anywhere else, or with `--no-service-manager`, [`background`]: `serve` started detached
//!   with a pid file, as the original system's manager did.
//!
//! [`unit`] writes the unit and plist text. Either way `serve` runs with `--log-dir
//! <data dir>/logs`, where it writes daily-rotated logs.

pub mod background;
pub mod unit;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use background::{PidFile, PidState, Stopped};
use unit::{LAUNCHD_LABEL, SECRET_VARIABLES, SYSTEMD_UNIT, ServiceSpec};

/// What can go wrong managing the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `systemctl`, `launchctl` or `kill` failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed, or why it could not run.
        message: String,
    },
    /// `install` needs a service manager and there is none.
    #[error(
        "no service manager to install into ({0}); `local-agent service start` runs the agent in \
         the background without one (it is not restarted after a crash or a reboot)"
    )]
    NoServiceManager(String),
    /// `start` found the agent already running.
    #[error("the agent is already running (pid {pid}); `local-agent service restart` restarts it")]
    AlreadyRunning {
        /// Its process.
        pid: u32,
    },
    /// `serve` exited before it was listening.
    #[error("`local-agent serve` exited at once ({status}); its last output:\n{output}")]
    ExitedEarly {
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        output: String,
    },
    /// `stop` sent SIGTERM and the process did not exit.
    #[error("pid {pid} did not exit within {waited:?} of SIGTERM; end it with `kill -KILL {pid}`")]
    StillRunning {
        /// The process.
        pid: u32,
        /// How long we waited.
        waited: Duration,
    },
    /// No home directory to put the unit in.
    #[error("cannot find your home directory; set HOME")]
    NoHome,
}

/// The operating system, as far as service management cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// systemd, when its user manager is reachable.
    Linux,
    /// launchd.
    MacOs,
    /// Neither: background only.
    Other,
}

impl Platform {
    /// The platform this binary was built for.
    pub fn current() -> Self {
        if cfg!(target_os = "linux") {
            Platform::Linux
        } else if cfg!(target_os = "macos") {
            Platform::MacOs
        } else {
            Platform::Other
        }
    }
}

/// What keeps the agent running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A systemd user unit.
    Systemd,
    /// A launchd agent.
    Launchd,
    /// A detached process and a pid file.
    Background,
}

/// What was found on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// The operating system.
    pub platform: Platform,
    /// `--no-service-manager` was given.
    pub no_service_manager: bool,
    /// `systemctl --user` answers (a user manager is running and reachable).
    pub systemd_user: bool,
}

/// The service manager `install` writes into, or why there is none.
pub fn install_backend(host: &Host) -> Result<Backend, ServiceError> {
    match host.platform {
        _ if host.no_service_manager => Err(ServiceError::NoServiceManager("--no-service-manager was given".into())),
        Platform::Linux if host.systemd_user => Ok(Backend::Systemd),
        Platform::Linux => Err(ServiceError::NoServiceManager(
            "`systemctl --user` is not reachable: no systemd user manager in this session".into(),
        )),
        Platform::MacOs => Ok(Backend::Launchd),
        Platform::Other => Err(ServiceError::NoServiceManager("only systemd and launchd are supported".into())),
    }
}

/// What `start`, `stop`, `restart` and `status` act on: the service manager when the agent is
/// installed there, else a background process (so `start` works everywhere).
pub fn control_backend(host: &Host, installed: bool) -> Backend {
    match install_backend(host) {
        Ok(backend) if installed => backend,
        _ => Backend::Background,
    }
}

/// Whether the agent is running, as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Running (with its process id when known).
    Running(Option<u32>),
    /// Not running; the detail says what the service manager reports.
    Stopped(String),
}

/// The service of one data directory on this machine.
#[derive(Debug, Clone)]
pub struct Service {
    /// What it runs.
    pub spec: ServiceSpec,
    /// The machine.
    pub host: Host,
    /// Where the unit (systemd) or plist (launchd) goes; `None` on other platforms.
    pub unit_path: Option<PathBuf>,
}

impl Service {
    /// The service for `spec` on this machine: probes for `systemctl --user`, finds the unit's
    /// place from `HOME` and `XDG_CONFIG_HOME`.
    pub fn detect(spec: ServiceSpec, no_service_manager: bool) -> Result<Self, ServiceError> {
        let platform = Platform::current();
        let systemd_user = platform == Platform::Linux && !no_service_manager && systemd_user_reachable();
        let home = || std::env::var_os("HOME").map(PathBuf::from).or_else(dirs::home_dir).ok_or(ServiceError::NoHome);
        let unit_path = match platform {
            Platform::Linux => {
                let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
                Some(unit::systemd_unit_path(xdg.as_deref(), &home()?))
            }
            Platform::MacOs => Some(unit::launchd_plist_path(&home()?)),
            Platform::Other => None,
        };
        Ok(Self { spec, host: Host { platform, no_service_manager, systemd_user }, unit_path })
    }

    /// Whether a unit or plist is installed.
    pub fn installed(&self) -> bool {
        self.unit_path.as_deref().is_some_and(Path::is_file)
    }

    /// What start/stop/status act on.
    pub fn backend(&self) -> Backend {
        control_backend(&self.host, self.installed())
    }

    fn pid_file(&self) -> PidFile {
        PidFile::new(&self.spec.data_dir)
    }

    /// Writes the unit or plist and starts it; returns what to tell the user.
    pub fn install(&self) -> Result<Vec<String>, ServiceError> {
        let backend = install_backend(&self.host)?;
        let path = self.unit_path.clone().ok_or(ServiceError::NoHome)?;
        let mut notes = Vec::new();
        // Two agents on one data dir would fight over the port: the background one goes.
        if let Stopped::Stopped(pid) = background::stop(&self.spec.data_dir)? {
            notes.push(format!("stopped the agent running in the background (pid {pid})"));
        }
        let text = match backend {
            Backend::Systemd => unit::systemd_unit(&self.spec),
            _ => unit::launchd_plist(&self.spec),
        };
        write_file(&path, &text)?;
        let logs = self.spec.log_dir();
        std::fs::create_dir_all(&logs).map_err(|source| ServiceError::Io { path: logs.clone(), source })?;
        notes.push(format!("wrote {}", path.display()));
        match backend {
            Backend::Systemd => {
                systemctl(&["daemon-reload"])?;
                systemctl(&["enable", SYSTEMD_UNIT])?;
                // `restart` also starts it, and picks up a rewritten unit when reinstalling.
                systemctl(&["restart", SYSTEMD_UNIT])?;
                notes.push(format!("enabled and started {SYSTEMD_UNIT} (systemd user unit)"));
                notes.push(format!("logs: {} (rotated daily), or `journalctl --user -u local-agent`", logs.display()));
                if !lingering() {
                    notes.push(
                        "to keep it running when you are logged out (and start it at boot): \
                         `loginctl enable-linger $USER`"
                            .into(),
                    );
                }
            }
            _ => {
                let domain = launchd_domain()?;
                // Reinstalling: unload the old definition first (an error just means none).
                let _ = launchctl(&["bootout", &format!("{domain}/{LAUNCHD_LABEL}")]);
                launchctl(&["bootstrap", &domain, &path.to_string_lossy()])?;
                notes.push(format!("loaded {LAUNCHD_LABEL} (launchd agent, starts at login)"));
                notes.push(format!("logs: {} (rotated daily)", logs.display()));
            }
        }
        notes.extend(secret_notes(|name| std::env::var(name).ok()));
        Ok(notes)
    }

    /// Stops and removes the unit or plist (and any background agent).
    pub fn uninstall(&self) -> Result<Vec<String>, ServiceError> {
        let mut notes = Vec::new();
        if let Some(path) = self.unit_path.as_deref().filter(|path| path.is_file()) {
            match install_backend(&self.host) {
                Ok(Backend::Systemd) => {
                    systemctl(&["disable", "--now", SYSTEMD_UNIT])?;
                    remove_file(path)?;
                    systemctl(&["daemon-reload"])?;
                }
                Ok(Backend::Launchd) => {
                    let _ = launchctl(&["bootout", &format!("{}/{LAUNCHD_LABEL}", launchd_domain()?)]);
                    remove_file(path)?;
                }
                // The manager is out of reach: the file can still go.
                _ => remove_file(path)?,
            }
            notes.push(format!("stopped and removed {}", path.display()));
        } else {
            notes.push("no service was installed".into());
        }
        notes.extend(describe_stop(background::stop(&self.spec.data_dir)?));
        Ok(notes)
    }

    /// Starts the agent.
    pub fn start(&self) -> Result<Vec<String>, ServiceError> {
        match self.backend() {
            Backend::Systemd => systemctl(&["start", SYSTEMD_UNIT]).map(|_| vec![format!("started {SYSTEMD_UNIT}")]),
            Backend::Launchd => {
                launchctl(&["kickstart", &self.launchd_target()?]).map(|_| vec![format!("started {LAUNCHD_LABEL}")])
            }
            Backend::Background => {
                let started = background::start(&self.spec)?;
                let mut notes = vec![format!(
                    "started in the background (pid {}, pid file {}); without a service manager it \
                     is not restarted after a crash or a reboot",
                    started.pid,
                    self.pid_file().path().display()
                )];
                notes.push(match started.url {
                    Some(url) => format!("listening on {url}"),
                    None => {
                        "still starting (loading the model); `local-agent service status` shows when it is up".into()
                    }
                });
                notes.push(format!("logs: {}", self.spec.log_dir().display()));
                Ok(notes)
            }
        }
    }

    /// Stops the agent.
    pub fn stop(&self) -> Result<Vec<String>, ServiceError> {
        match self.backend() {
            Backend::Systemd => systemctl(&["stop", SYSTEMD_UNIT]).map(|_| vec![format!("stopped {SYSTEMD_UNIT}")]),
            Backend::Launchd => launchctl(&["kill", "SIGTERM", &self.launchd_target()?])
                .map(|_| vec![format!("stopped {LAUNCHD_LABEL}")]),
            Backend::Background => Ok(describe_stop(background::stop(&self.spec.data_dir)?)),
        }
    }

    /// Restarts the agent (starts it if it was not running).
    pub fn restart(&self) -> Result<Vec<String>, ServiceError> {
        match self.backend() {
            Backend::Systemd => {
                systemctl(&["restart", SYSTEMD_UNIT]).map(|_| vec![format!("restarted {SYSTEMD_UNIT}")])
            }
            Backend::Launchd => launchctl(&["kickstart", "-k", &self.launchd_target()?])
                .map(|_| vec![format!("restarted {LAUNCHD_LABEL}")]),
            Backend::Background => {
                let mut notes = describe_stop(background::stop(&self.spec.data_dir)?);
                notes.extend(self.start()?);
                Ok(notes)
            }
        }
    }

    /// Whether the agent is running, and a note when a stale pid file was cleaned up.
    pub fn state(&self) -> Result<(RunState, Option<String>), ServiceError> {
        match self.backend() {
            Backend::Systemd => {
                let shown = systemctl(&["show", SYSTEMD_UNIT, "-p", "ActiveState", "-p", "SubState", "-p", "MainPID"])?;
                Ok((systemd_state(&shown), None))
            }
            Backend::Launchd => {
                let state = match launchctl(&["print", &self.launchd_target()?]) {
                    Ok(printed) => launchd_state(&printed),
                    Err(_) => RunState::Stopped("not loaded".into()),
                };
                Ok((state, None))
            }
            Backend::Background => Ok(match self.pid_file().state()? {
                PidState::Running(pid) => (RunState::Running(Some(pid)), None),
                PidState::NotRunning => (RunState::Stopped("no pid file".into()), None),
                PidState::Stale(pid) => (
                    RunState::Stopped("its process is gone".into()),
                    Some(format!("removed a stale pid file (process {pid} is gone)")),
                ),
            }),
        }
    }

    /// A name for where the agent runs, for `status`.
    pub fn describe_backend(&self) -> String {
        match (self.backend(), &self.unit_path) {
            (Backend::Systemd, Some(path)) => format!("systemd user unit ({})", path.display()),
            (Backend::Launchd, Some(path)) => format!("launchd agent ({})", path.display()),
            _ => format!("background process (pid file {})", self.pid_file().path().display()),
        }
    }

    fn launchd_target(&self) -> Result<String, ServiceError> {
        Ok(format!("{}/{LAUNCHD_LABEL}", launchd_domain()?))
    }
}

fn describe_stop(stopped: Stopped) -> Vec<String> {
    match stopped {
        Stopped::Stopped(pid) => vec![format!("stopped the background agent (pid {pid})")],
        Stopped::NotRunning => Vec::new(),
        Stopped::Stale(pid) => vec![format!("removed a stale pid file (process {pid} is gone)")],
    }
}

/// What to tell the user about secrets set in this shell: services never get them from the
/// unit, so they must be in `config.toml`.
pub fn secret_notes(lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut notes = vec![
        "secrets are never written into the unit: keep AGENT_TOKEN, LOCAL_RAG_API_KEY and NOTION_API_KEY in \
         config.toml ([cloud] token, [server] api_key, [notion] token)"
            .to_owned(),
    ];
    for (name, key) in SECRET_VARIABLES {
        if lookup(name).is_some_and(|value| !value.trim().is_empty()) {
            notes.push(format!(
                "{name} is set in this shell but the service will not see it: put it in config.toml as {key}"
            ));
        }
    }
    notes
}

/// Parses `systemctl show -p ActiveState -p SubState -p MainPID`.
fn systemd_state(shown: &str) -> RunState {
    let value = |key: &str| {
        shown.lines().find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('='))).unwrap_or("")
    };
    let pid = value("MainPID").parse::<u32>().ok().filter(|pid| *pid > 0);
    match value("ActiveState") {
        "active" | "reloading" => RunState::Running(pid),
        state => RunState::Stopped(format!("{state} ({})", value("SubState"))),
    }
}

/// Parses `launchctl print gui/<uid>/<label>`.
fn launchd_state(printed: &str) -> RunState {
    let value = |key: &str| {
        printed.lines().find_map(|line| line.trim().strip_prefix(key).and_then(|rest| rest.trim().strip_prefix("= ")))
    };
    match value("state") {
        Some("running") => RunState::Running(value("pid").and_then(|pid| pid.trim().parse().ok())),
        Some(state) => RunState::Stopped(state.to_owned()),
        None => RunState::Stopped("unknown".into()),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), ServiceError> {
    let io = |source| ServiceError::Io { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

fn remove_file(path: &Path) -> Result<(), ServiceError> {
    std::fs::remove_file(path).map_err(|source| ServiceError::Io { path: path.to_owned(), source })
}

/// Runs a command to completion; its stdout on success, else what it said on stderr.
pub(crate) fn run_command(command: &mut Command) -> Result<String, ServiceError> {
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| ServiceError::Command { command: line.clone(), message: format!("cannot run it: {error}") })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let message = if said.is_empty() { output.status.to_string() } else { said };
    Err(ServiceError::Command { command: line, message })
}

fn systemctl(args: &[&str]) -> Result<String, ServiceError> {
    run_command(Command::new("systemctl").arg("--user").args(args))
}

fn launchctl(args: &[&str]) -> Result<String, ServiceError> {
    run_command(Command::new("launchctl").args(args))
}

/// Whether a systemd user manager answers (it does not in containers, over some `su`/`sudo`
/// sessions, or on systems without systemd).
fn systemd_user_reachable() -> bool {
    Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether the user's manager outlives their sessions (`loginctl enable-linger`).
fn lingering() -> bool {
    let Ok(user) = std::env::var("USER") else { return false };
    run_command(Command::new("loginctl").args(["show-user", &user, "--property=Linger", "--value"]))
        .is_ok_and(|value| value.trim() == "yes")
}

/// `gui/<uid>`: the launchd domain of the logged-in user.
fn launchd_domain() -> Result<String, ServiceError> {
    let uid = run_command(Command::new("id").arg("-u"))?;
    Ok(format!("gui/{}", uid.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(platform: Platform, no_service_manager: bool, systemd_user: bool) -> Host {
        Host { platform, no_service_manager, systemd_user }
    }

    #[test]
    fn the_service_manager_is_used_only_when_reachable_and_not_refused() {
        use Backend::*;
        use Platform::*;
        // (platform, --no-service-manager, systemctl --user reachable, installed) → control backend
        let table = [
            (Linux, false, true, true, Systemd),
            (Linux, false, true, false, Background),
            (Linux, false, false, true, Background),
            (Linux, true, true, true, Background),
            (MacOs, false, false, true, Launchd),
            (MacOs, false, false, false, Background),
            (MacOs, true, false, true, Background),
            (Other, false, true, true, Background),
        ];
        for (platform, refused, reachable, installed, expected) in table {
            let host = host(platform, refused, reachable);
            assert_eq!(control_backend(&host, installed), expected, "{host:?}, installed: {installed}");
        }
        assert_eq!(install_backend(&host(Linux, false, true)).unwrap(), Systemd);
        assert_eq!(install_backend(&host(MacOs, false, false)).unwrap(), Launchd);
        for refused in [host(Linux, false, false), host(Linux, true, true), host(Other, false, false)] {
            let error = install_backend(&refused).unwrap_err().to_string();
            assert!(error.contains("`local-agent service start` runs the agent in the background"), "{error}");
        }
    }

    #[test]
    fn service_manager_states_are_parsed() {
        assert_eq!(
            systemd_state("MainPID=4321\nActiveState=active\nSubState=running\n"),
            RunState::Running(Some(4321))
        );
        assert_eq!(
            systemd_state("MainPID=0\nActiveState=failed\nSubState=failed\n"),
            RunState::Stopped("failed (failed)".into())
        );
        let printed = "gui/501/com.notion-llm.local-agent = {\n\tactive count = 1\n\tstate = running\n\tpid = 987\n}";
        assert_eq!(launchd_state(printed), RunState::Running(Some(987)));
        assert_eq!(launchd_state("\tstate = not running\n"), RunState::Stopped("not running".into()));
    }

    #[test]
    fn secrets_in_the_shell_are_named_with_where_they_belong() {
        let notes = secret_notes(|name| (name == "AGENT_TOKEN").then(|| "t0ken-value".to_owned()));
        assert_eq!(notes.len(), 2);
        assert!(notes[1].starts_with("AGENT_TOKEN is set in this shell") && notes[1].ends_with("[cloud] token"));
        assert!(!notes.concat().contains("t0ken-value"), "the value itself is never printed");
    }
}
