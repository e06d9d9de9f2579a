//! The id this installation presents to the cloud.

use std::path::Path;

use crate::error::{Error, Result};

/// Where the id is kept in the data dir.
const ID_FILE: &str = "agent-id";

/// The agent's id: made once (`<host name>-<8 hex digits>`), then kept in the data dir, so the
/// cloud's status page shows the same agent across restarts.
pub fn persistent_agent_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(ID_FILE);
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_owned());
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "agent".into());
    let id = format!("{host}-{:08x}", fastrand::u32(..));
    std::fs::create_dir_all(data_dir).map_err(Error::io(data_dir))?;
    std::fs::write(&path, &id).map_err(Error::io(&path))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = persistent_agent_id(dir.path()).unwrap();
        assert_eq!(persistent_agent_id(dir.path()).unwrap(), first);
        assert!(first.rsplit_once('-').is_some_and(|(_, suffix)| suffix.len() == 8), "{first}");
    }
}
