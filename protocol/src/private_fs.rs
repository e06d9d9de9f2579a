//! Folders and files both programs keep private: the agent's data dir holds an index of the
//! user's notes, the cloud's embedded store holds the webhook's signing key. Folders are made
//! (or tightened to) 0700 and files 0600, so other users on the machine cannot read them.
//! Elsewhere than Unix these only create the folder.

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) and makes it accessible to its owner only; an existing
/// folder is tightened.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    restrict(dir, 0o700)
}

/// Makes the file at `path` readable and writable by its owner only.
pub fn make_private(path: &Path) -> io::Result<()> {
    restrict(path, 0o600)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn folders_and_files_become_owner_only() {
        let root = std::env::temp_dir().join(format!("private-fs-{}", std::process::id()));
        let dir = root.join("data");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "an existing folder is tightened");
        let file = dir.join("store");
        std::fs::write(&file, b"secret").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        make_private(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
