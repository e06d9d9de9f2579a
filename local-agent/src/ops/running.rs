//! The server of a data dir. `serve` holds a lock in the data dir while it runs and records
//! itself beside it (pid and the address it really listens on), so that a second `serve` on
//! the same data dir is refused with the first one's whereabouts, and `status` and `doctor` ask
//! the running server where it is, not where the configuration says it would be (`--listen`
//! and port 0 make those differ).

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Held by the running server.
const LOCK_FILE: &str = "serve.lock";
/// Where the running server says where it is.
const RECORD_FILE: &str = "server.json";

/// What a running server records about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// Its process id.
    pub pid: u32,
    /// The address its HTTP API listens on.
    pub address: SocketAddr,
}

/// This process's claim on the data dir, released (and its record removed) when dropped.
pub struct ServerClaim {
    _lock: File,
    record: PathBuf,
}

/// Claims `data_dir` for this process's server, or says which server already has it.
pub fn claim(data_dir: &Path) -> Result<ServerClaim> {
    fs::create_dir_all(data_dir).map_err(Error::io(data_dir))?;
    let path = data_dir.join(LOCK_FILE);
    let lock = File::options().create(true).truncate(false).write(true).open(&path).map_err(Error::io(&path))?;
    match lock.try_lock() {
        Ok(()) => Ok(ServerClaim { _lock: lock, record: data_dir.join(RECORD_FILE) }),
        Err(fs::TryLockError::WouldBlock) => {
            let running = find(data_dir);
            Err(Error::AlreadyServing { data_dir: data_dir.to_owned(), running })
        }
        Err(fs::TryLockError::Error(error)) => Err(Error::io(&path)(error)),
    }
}

impl ServerClaim {
    /// Records the address the server listens on (written whole: a reader never sees half).
    pub fn publish(&self, address: SocketAddr) -> Result<()> {
        let record = ServerRecord { pid: std::process::id(), address };
        let text = serde_json::json!({ "pid": record.pid, "address": record.address.to_string() }).to_string();
        let partial = self.record.with_extension("json.tmp");
        fs::write(&partial, text).map_err(Error::io(&partial))?;
        fs::rename(&partial, &self.record).map_err(Error::io(&self.record))
    }
}

impl Drop for ServerClaim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.record);
    }
}

/// The server recorded in `data_dir`, if any. A server that crashed leaves its record behind:
/// callers try the address and report what they find.
pub fn find(data_dir: &Path) -> Option<ServerRecord> {
    let text = fs::read_to_string(data_dir.join(RECORD_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_per_data_dir_and_its_record_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path()).unwrap();
        let address: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        first.publish(address).unwrap();
        assert_eq!(find(dir.path()), Some(ServerRecord { pid: std::process::id(), address }));
        match claim(dir.path()) {
            Err(Error::AlreadyServing { running: Some(record), .. }) => assert_eq!(record.address, address),
            Err(other) => panic!("refused for the wrong reason: {other}"),
            Ok(_) => panic!("a second server was let in"),
        }
        drop(first);
        assert_eq!(find(dir.path()), None, "the record leaves with the server");
        claim(dir.path()).expect("free again");
    }
}
