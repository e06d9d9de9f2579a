//! The text of the service definitions — a systemd user unit and a launchd agent plist — as
//! pure functions of a [`ServiceSpec`], so tests can read them without systemd or launchd.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Name of the systemd user unit.
pub const SYSTEMD_UNIT: &str = "local-agent.service";
/// Label of the launchd agent.
pub const LAUNCHD_LABEL: &str = "com.notion-llm.local-agent";

/// Environment variables a service inherits from the installing shell when set there: where
/// the runtime and model are, and non-secret settings the config file may not repeat.
pub const PASSED_VARIABLES: &[&str] = &[
    "ORT_DYLIB_PATH",
    "MODEL_DIR",
    "NOTION_LLM_RUNTIME",
    "LOCAL_AGENT_LISTEN",
    "CLOUD_URL",
    "CLOUD_CA_FILE",
    "AGENT_ID",
    "NOTION_KNOWLEDGE_DATABASE_ID",
    "NOTION_API_BASE_URL",
    "RUST_LOG",
];

/// Secrets: never written into a unit or plist (those files are readable, and end up in
/// backups and `systemctl show`); the service reads them from `config.toml`.
pub const SECRET_VARIABLES: &[(&str, &str)] = &[
    ("AGENT_TOKEN", "[cloud] token"),
    ("LOCAL_RAG_API_KEY", "[server] api_key"),
    ("NOTION_API_KEY", "[notion] token"),
];

/// What the service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Absolute path of the `local-agent` executable.
    pub exe: PathBuf,
    /// Absolute data directory.
    pub data_dir: PathBuf,
    /// The config file, when one was named explicitly (`<data dir>/config.toml` is found
    /// without it).
    pub config: Option<PathBuf>,
    /// `serve --listen`, when not left to the configuration.
    pub listen: Option<SocketAddr>,
    /// Variables to set (never secrets: see [`service_environment`]).
    pub env: Vec<(String, String)>,
}

impl ServiceSpec {
    /// Where `serve` writes its rotated logs: `<data dir>/logs`.
    pub fn log_dir(&self) -> PathBuf {
        log_dir(&self.data_dir)
    }

    /// The arguments after the executable: `--data-dir D [--config F] serve --log-dir L`.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--data-dir".into(), self.data_dir.clone().into()];
        if let Some(config) = &self.config {
            args.push("--config".into());
            args.push(config.clone().into());
        }
        args.push("serve".into());
        if let Some(listen) = self.listen {
            args.push("--listen".into());
            args.push(listen.to_string().into());
        }
        args.push("--log-dir".into());
        args.push(self.log_dir().into());
        args
    }
}

/// `<data dir>/logs`.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// The variables of [`PASSED_VARIABLES`] that `lookup` finds set (and not empty).
pub fn service_environment(lookup: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    PASSED_VARIABLES
        .iter()
        .filter_map(|name| lookup(name).filter(|value| !value.trim().is_empty()).map(|value| (name.to_string(), value)))
        .collect()
}

/// Where the systemd user unit goes: `$XDG_CONFIG_HOME/systemd/user`, else
/// `~/.config/systemd/user`.
pub fn systemd_unit_path(xdg_config_home: Option<&Path>, home: &Path) -> PathBuf {
    let config = match xdg_config_home {
        Some(dir) if dir.is_absolute() => dir.to_owned(),
        _ => home.join(".config"),
    };
    config.join("systemd").join("user").join(SYSTEMD_UNIT)
}

/// Where the launchd agent goes: `~/Library/LaunchAgents/<label>.plist`.
pub fn launchd_plist_path(home: &Path) -> PathBuf {
    home.join("Library").join("LaunchAgents").join(format!("{LAUNCHD_LABEL}.plist"))
}

/// The systemd user unit.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    let mut command = vec![systemd_quote(&spec.exe.to_string_lossy())];
    command.extend(spec.args().iter().map(|arg| systemd_quote(&arg.to_string_lossy())));
    let mut text = String::new();
    text.push_str("# Written by `local-agent service install`; `local-agent service uninstall` removes it.\n");
    text.push_str("[Unit]\n");
    text.push_str("Description=notion-llm local agent (indexes your notes, answers the cloud)\n");
    // A refused token or a broken config fails the same way every time: after five failures
    // in five minutes systemd stops retrying instead of restarting forever.
    text.push_str("StartLimitIntervalSec=300\nStartLimitBurst=5\n\n");
    text.push_str("[Service]\nType=simple\n");
    text.push_str(&format!("ExecStart={}\n", command.join(" ")));
    for (name, value) in &spec.env {
        text.push_str(&format!("Environment={}\n", systemd_quote(&format!("{name}={value}"))));
    }
    text.push_str("Restart=on-failure\nRestartSec=5\n");
    // `serve` exits 0 on SIGTERM after finishing in-flight requests.
    text.push_str("KillSignal=SIGTERM\nTimeoutStopSec=30\n\n");
    text.push_str("[Install]\nWantedBy=default.target\n");
    text
}

/// Quotes one word for systemd's command lines and assignments: double quotes, `\` and `"`
/// escaped, `%` doubled (systemd expands `%` specifiers), `$` doubled (variable expansion).
fn systemd_quote(word: &str) -> String {
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('"');
    for character in word.chars() {
        match character {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(character);
            }
            '%' => quoted.push_str("%%"),
            '$' => quoted.push_str("$$"),
            '\n' => quoted.push_str("\\n"),
            _ => quoted.push(character),
        }
    }
    quoted.push('"');
    quoted
}

/// The launchd agent: started at login, restarted when it exits with an error (not when it
/// was stopped), output in the log directory.
pub fn launchd_plist(spec: &ServiceSpec) -> String {
    let mut text = String::from(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n",
        "<plist version=\"1.0\">\n<dict>\n",
    ));
    text.push_str(&format!("  <key>Label</key>\n  <string>{LAUNCHD_LABEL}</string>\n"));
    text.push_str("  <key>ProgramArguments</key>\n  <array>\n");
    text.push_str(&format!("    <string>{}</string>\n", xml_escape(&spec.exe.to_string_lossy())));
    for arg in spec.args() {
        text.push_str(&format!("    <string>{}</string>\n", xml_escape(&arg.to_string_lossy())));
    }
    text.push_str("  </array>\n");
    if !spec.env.is_empty() {
        text.push_str("  <key>EnvironmentVariables</key>\n  <dict>\n");
        for (name, value) in &spec.env {
            text.push_str(&format!(
                "    <key>{}</key>\n    <string>{}</string>\n",
                xml_escape(name),
                xml_escape(value)
            ));
        }
        text.push_str("  </dict>\n");
    }
    text.push_str("  <key>RunAtLoad</key>\n  <true/>\n");
    text.push_str("  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n");
    text.push_str("  <key>ThrottleInterval</key>\n  <integer>5</integer>\n");
    text.push_str("  <key>ProcessType</key>\n  <string>Background</string>\n");
    let logs = spec.log_dir();
    for (key, file) in [("StandardOutPath", "stdout.log"), ("StandardErrorPath", "stderr.log")] {
        text.push_str(&format!(
            "  <key>{key}</key>\n  <string>{}</string>\n",
            xml_escape(&logs.join(file).to_string_lossy())
        ));
    }
    text.push_str("</dict>\n</plist>\n");
    text
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            exe: "/opt/notion llm/bin/local-agent".into(),
            data_dir: "/home/ana/.local/share/notion-llm".into(),
            config: Some("/home/ana/agent 100%.toml".into()),
            listen: None,
            env: service_environment(|name| match name {
                "ORT_DYLIB_PATH" => Some("/opt/ort/libonnxruntime.so".into()),
                "MODEL_DIR" => Some("/opt/models/bge".into()),
                "AGENT_TOKEN" | "LOCAL_RAG_API_KEY" | "NOTION_API_KEY" => Some("hunter2-secret".into()),
                "CLOUD_URL" => Some("   ".into()),
                _ => None,
            }),
        }
    }

    #[test]
    fn only_non_secret_variables_that_are_set_are_passed() {
        let env = spec().env;
        assert_eq!(
            env,
            [
                ("ORT_DYLIB_PATH".to_owned(), "/opt/ort/libonnxruntime.so".to_owned()),
                ("MODEL_DIR".to_owned(), "/opt/models/bge".to_owned()),
            ]
        );
        for (secret, _) in SECRET_VARIABLES {
            assert!(!PASSED_VARIABLES.contains(secret), "{secret} must never be passed");
        }
    }

    #[test]
    fn the_systemd_unit_runs_serve_from_this_executable_and_restarts_on_failure() {
        let unit = systemd_unit(&spec());
        let exec = unit.lines().find(|line| line.starts_with("ExecStart=")).expect("an ExecStart line");
        assert_eq!(
            exec,
            "ExecStart=\"/opt/notion llm/bin/local-agent\" \"--data-dir\" \"/home/ana/.local/share/notion-llm\" \
             \"--config\" \"/home/ana/agent 100%%.toml\" \"serve\" \"--log-dir\" \
             \"/home/ana/.local/share/notion-llm/logs\""
        );
        for line in [
            "Restart=on-failure",
            "RestartSec=5",
            "WantedBy=default.target",
            "Environment=\"ORT_DYLIB_PATH=/opt/ort/libonnxruntime.so\"",
            "Environment=\"MODEL_DIR=/opt/models/bge\"",
        ] {
            assert!(unit.lines().any(|l| l == line), "missing {line:?} in\n{unit}");
        }
        assert!(!unit.contains("hunter2"), "a secret leaked into the unit:\n{unit}");
        assert!(!unit.contains("AGENT_TOKEN") && !unit.contains("API_KEY"), "{unit}");
    }

    #[test]
    fn the_launchd_plist_keeps_the_agent_alive_only_after_failures() {
        let plist = launchd_plist(&spec());
        assert!(plist.contains("<string>com.notion-llm.local-agent</string>"), "{plist}");
        assert!(plist.contains("<string>/opt/notion llm/bin/local-agent</string>\n    <string>--data-dir</string>"));
        assert!(plist.contains("<string>serve</string>"));
        assert!(plist.contains("<key>RunAtLoad</key>\n  <true/>"));
        assert!(plist.contains("<key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>"));
        assert!(plist.contains(
            "<key>StandardErrorPath</key>\n  <string>/home/ana/.local/share/notion-llm/logs/stderr.log</string>"
        ));
        assert!(plist.contains("<key>MODEL_DIR</key>\n    <string>/opt/models/bge</string>"));
        assert!(!plist.contains("hunter2"), "a secret leaked into the plist");
    }

    #[test]
    fn unit_paths_honour_xdg_config_home() {
        let home = Path::new("/home/ana");
        assert_eq!(systemd_unit_path(None, home), Path::new("/home/ana/.config/systemd/user/local-agent.service"));
        assert_eq!(
            systemd_unit_path(Some(Path::new("/xdg")), home),
            Path::new("/xdg/systemd/user/local-agent.service")
        );
        // The spec says relative values are invalid and must be ignored.
        assert_eq!(
            systemd_unit_path(Some(Path::new("rel")), home),
            Path::new("/home/ana/.config/systemd/user/local-agent.service")
        );
        assert_eq!(
            launchd_plist_path(home),
            Path::new("/home/ana/Library/LaunchAgents/com.notion-llm.local-agent.plist")
        );
    }
}
