//! Running the agent without a service manager: `serve` started in the background with a pid
//! file, as the original system's manager did. Nothing restarts it; it runs until it is stopped
//! or the machine restarts.
//!
//! A pid file can outlive its process (a crash, a reboot) and the number can be reused by
//! another program, so every use checks that the process is alive *and* is a `local-agent`
//! before trusting it; a pid file that fails either check is stale and is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ServiceError;
use super::unit::ServiceSpec;

/// Name of the pid file in the data directory.
pub const PID_FILE: &str = "local-agent.pid";
/// File in the log directory that receives the background process's stdout and stderr.
pub const OUTPUT_FILE: &str = "local-agent.out";
/// How long `stop` waits for the process to finish its in-flight requests and exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `start` waits for `serve` to say it is listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the pid file says, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidState {
    /// No pid file.
    NotRunning,
    /// The process is alive and is ours.
    Running(u32),
    /// The pid file named a process that is gone (or is another program now); it was removed.
    Stale(u32),
}

/// How a background start went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The process.
    pub pid: u32,
    /// The address `serve` printed (`http://…`), or `None` if it was still loading when
    /// [`START_TIMEOUT`] ran out.
    pub url: Option<String>,
}

/// The pid file of a data directory.
#[derive(Debug, Clone)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// `<data_dir>/local-agent.pid`.
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join(PID_FILE) }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid written in it, if the file exists and holds a number.
    pub fn read(&self) -> Result<Option<u32>, ServiceError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ServiceError::Io { path: self.path.clone(), source }),
        }
    }

    /// Records `pid` (written whole, then renamed, so a reader never sees half a number).
    pub fn write(&self, pid: u32) -> Result<(), ServiceError> {
        let io = |source| ServiceError::Io { path: self.path.clone(), source };
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let partial = self.path.with_extension("pid.partial");
        fs::write(&partial, format!("{pid}\n")).map_err(io)?;
        fs::rename(&partial, &self.path).map_err(io)
    }

    /// Removes it; a missing file is fine.
    pub fn remove(&self) -> Result<(), ServiceError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ServiceError::Io { path: self.path.clone(), source }),
        }
    }

    /// Checks the recorded process; a stale pid file is removed.
    pub fn state(&self) -> Result<PidState, ServiceError> {
        let Some(pid) = self.read()? else {
            // An unreadable number is as good as none; clear it so `start` can proceed.
            if self.path.exists() {
                self.remove()?;
            }
            return Ok(PidState::NotRunning);
        };
        if is_alive(pid) && is_ours(pid) {
            Ok(PidState::Running(pid))
        } else {
            self.remove()?;
            Ok(PidState::Stale(pid))
        }
    }
}

/// Starts `serve` in the background: stdin closed, output appended to
/// `<log dir>/local-agent.out`, its own process group (so Ctrl-C in the terminal that started
/// it does not reach it), then waits until it says it is listening. The environment is
/// inherited: secrets set in this shell reach this process and are never written to disk.
pub fn start(spec: &ServiceSpec) -> Result<Started, ServiceError> {
    let pid_file = PidFile::new(&spec.data_dir);
    if let PidState::Running(pid) = pid_file.state()? {
        return Err(ServiceError::AlreadyRunning { pid });
    }
    let log_dir = spec.log_dir();
    fs::create_dir_all(&log_dir).map_err(|source| ServiceError::Io { path: log_dir.clone(), source })?;
    let output_path = log_dir.join(OUTPUT_FILE);
    let io = |source| ServiceError::Io { path: output_path.clone(), source };
    let output = OpenOptions::new().create(true).append(true).open(&output_path).map_err(io)?;
    let offset = output.metadata().map_err(io)?.len();
    let mut command = Command::new(&spec.exe);
    command
        .args(spec.args())
        .envs(spec.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(output.try_clone().map_err(io)?)
        .stderr(output);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|source| ServiceError::Io { path: spec.exe.clone(), source })?;
    let pid = child.id();
    pid_file.write(pid)?;

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let printed = read_from(&output_path, offset);
        if let Some(url) = printed.lines().find_map(|line| line.trim().strip_prefix("listening on ")) {
            return Ok(Started { pid, url: Some(url.to_owned()) });
        }
        if let Ok(Some(status)) = child.try_wait() {
            pid_file.remove()?;
            return Err(ServiceError::ExitedEarly { status: status.to_string(), output: tail(&printed, 20) });
        }
        if Instant::now() >= deadline {
            return Ok(Started { pid, url: None });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How `stop` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The process exited; the pid file is gone.
    Stopped(u32),
    /// Nothing was running.
    NotRunning,
    /// Only a stale pid file was found (and removed).
    Stale(u32),
}

/// Stops the background agent: SIGTERM (it finishes in-flight requests and exits), then waits
/// up to [`STOP_TIMEOUT`].
pub fn stop(data_dir: &Path) -> Result<Stopped, ServiceError> {
    let pid_file = PidFile::new(data_dir);
    let pid = match pid_file.state()? {
        PidState::NotRunning => return Ok(Stopped::NotRunning),
        PidState::Stale(pid) => return Ok(Stopped::Stale(pid)),
        PidState::Running(pid) => pid,
    };
    terminate(pid)?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while is_alive(pid) {
        if Instant::now() >= deadline {
            return Err(ServiceError::StillRunning { pid, waited: STOP_TIMEOUT });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pid_file.remove()?;
    Ok(Stopped::Stopped(pid))
}

/// Reads what was appended to `path` after `offset` (lossily: it is only scanned for a line).
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether process `pid` exists and has not exited (a zombie awaiting its parent has).
pub fn is_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // `/proc/<pid>/stat` is "pid (comm) state …"; comm may contain spaces and parentheses.
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
            Err(_) => false,
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
    #[cfg(not(unix))]
    {
        Command::new("tasklist")
            .args(["/FI", &format!("PID eq {pid}"), "/NH"])
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains(&pid.to_string()))
    }
}

/// Whether process `pid` is a `local-agent` (and not another program that got the number):
/// its executable's file name says so.
pub fn is_ours(pid: u32) -> bool {
    executable(pid).is_some_and(|program| {
        Path::new(program.trim()).file_name().is_some_and(|name| name.to_string_lossy().contains("local-agent"))
    })
}

/// The program `pid` runs, as it was started (`argv[0]`, or the image name on Windows).
fn executable(pid: u32) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let first = raw.split(|byte| *byte == 0).next()?;
        Some(String::from_utf8_lossy(first).into_owned())
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let output = Command::new("ps").args(["-p", &pid.to_string(), "-o", "comm="]).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
    #[cfg(not(unix))]
    {
        let output =
            Command::new("tasklist").args(["/FI", &format!("PID eq {pid}"), "/NH", "/FO", "CSV"]).output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.split(',').next().map(|name| name.trim_matches('"').to_owned())
    }
}

/// Asks `pid` to exit: SIGTERM on Unix (through `kill(1)`: this crate has no unsafe code and
/// no libc binding), `taskkill` elsewhere.
fn terminate(pid: u32) -> Result<(), ServiceError> {
    #[cfg(unix)]
    let mut command = {
        let mut command = Command::new("kill");
        command.args(["-TERM", &pid.to_string()]);
        command
    };
    #[cfg(not(unix))]
    let mut command = {
        let mut command = Command::new("taskkill");
        command.args(["/PID", &pid.to_string()]);
        command
    };
    super::run_command(&mut command).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_round_trips_and_garbage_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = PidFile::new(dir.path());
        assert_eq!(pid_file.read().unwrap(), None);
        pid_file.write(4242).unwrap();
        assert_eq!(pid_file.read().unwrap(), Some(4242));
        fs::write(pid_file.path(), "not a number").unwrap();
        assert_eq!(pid_file.read().unwrap(), None);
        assert_eq!(pid_file.state().unwrap(), PidState::NotRunning);
        assert!(!pid_file.path().exists(), "an unreadable pid file is cleared");
        pid_file.remove().unwrap();
    }

    #[test]
    fn this_process_is_alive_and_a_finished_one_is_not() {
        assert!(is_alive(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }

    #[test]
    fn the_last_lines_of_output_are_kept() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
