//! The data directory's permissions. Witness keeps tokens, keys and recordings there, and only its
//! own user may read or write them: the directory and every directory in it are 0700, every file
//! 0600. [`prepare`] makes a missing data dir that way, refuses one that other users can write
//! (they could have added a token or replaced a key), and makes one that other users can read
//! private, saying so in the log. Files made later stay private because the binary sets its umask
//! to 077 before anything else, and because keys, segments and databases are created 0600 by the
//! crates that own them (SQLite gives a database's `-wal` and `-shm` files the database's mode).
//!
//! What this does not do: follow symbolic links inside the data dir (where they point is the
//! administrator's choice), look at who owns it, or watch permissions while witness runs.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The permission bits of the group and of everyone else.
const OTHERS: u32 = 0o077;
/// The write bits of the group and of everyone else.
const OTHERS_WRITE: u32 = 0o022;

/// Why witness does not use a data directory.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the data directory {path}: {source}; check that witness's user may create it")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot read {path} in the data directory: {source}; check its permissions")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot make {path} private: {source}; run `chmod -R go-rwx {data_dir}` as its owner")]
    Tighten { data_dir: PathBuf, path: PathBuf, source: io::Error },
    #[error(
        "the data directory {data_dir} is open to other users: {path} can be written by its group or by anyone (mode {mode:04o}), \
         so they could add a token or replace a key; run `chmod -R go-rwx {data_dir}` and start witness again"
    )]
    WritableByOthers { data_dir: PathBuf, path: PathBuf, mode: u32 },
}

/// Who besides witness's user may use an entry of the data dir, by its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only the owner.
    Private,
    /// The group or everyone may read (or list, or run) it, but not write it.
    ReadableByOthers,
    /// The group or everyone may write it.
    WritableByOthers,
}

/// What [`prepare`] did.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The data dir did not exist and was made.
    pub created: bool,
    /// Entries other users could read, now private.
    pub tightened: Vec<PathBuf>,
}

/// Makes the data dir (0700) if it is missing; otherwise checks it and everything in it: refuses
/// it if other users can write any of it, and takes their access away where they can only read.
/// Runs before anything in it is opened.
pub fn prepare(data_dir: &Path) -> Result<Prepared, DataDirError> {
    if !data_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| DataDirError::Create { path: data_dir.to_path_buf(), source })?;
        return Ok(Prepared { created: true, tightened: Vec::new() });
    }
    let entries = entries(data_dir)?;
    if let Some((path, mode)) = entries.iter().find(|(_, mode)| access(*mode) == Access::WritableByOthers) {
        return Err(DataDirError::WritableByOthers { data_dir: data_dir.to_path_buf(), path: path.clone(), mode: mode & 0o7777 });
    }
    let mut tightened = Vec::new();
    for (path, mode) in entries.into_iter().filter(|(_, mode)| access(*mode) == Access::ReadableByOthers) {
        fs::set_permissions(&path, fs::Permissions::from_mode(private_mode(mode))).map_err(|source| DataDirError::Tighten {
            data_dir: data_dir.to_path_buf(),
            path: path.clone(),
            source,
        })?;
        tightened.push(path);
    }
    if let Some(first) = tightened.first() {
        tracing::warn!(
            data_dir = %data_dir.display(),
            entries = tightened.len(),
            first = %first.display(),
            "other users could read the data directory (an older witness, or a loose umask, made it so); witness made it private: directories 0700, files 0600"
        );
    }
    Ok(Prepared { created: false, tightened })
}

/// Who besides the owner may use an entry with this mode.
pub fn access(mode: u32) -> Access {
    if mode & OTHERS_WRITE != 0 {
        Access::WritableByOthers
    } else if mode & OTHERS != 0 {
        Access::ReadableByOthers
    } else {
        Access::Private
    }
}

/// The mode that keeps the owner's permissions and gives nobody else any.
pub fn private_mode(mode: u32) -> u32 {
    mode & 0o7777 & !OTHERS
}

/// The data dir itself (its link followed), then every directory and file below it with its
/// mode; symbolic links inside are left alone.
fn entries(data_dir: &Path) -> Result<Vec<(PathBuf, u32)>, DataDirError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataDirError::Read { path, source }
    };
    let root = fs::metadata(data_dir).map_err(read(data_dir))?;
    let mut found = vec![(data_dir.to_path_buf(), root.permissions().mode())];
    let mut dirs = vec![data_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(read(&dir))? {
            let entry = entry.map_err(read(&dir))?;
            let path = entry.path();
            let metadata = fs::symlink_metadata(&path).map_err(read(&path))?;
            if metadata.file_type().is_symlink() {
                continue;
            }
            if metadata.is_dir() {
                dirs.push(path.clone());
            }
            found.push((path, metadata.permissions().mode()));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_say_who_else_may_use_an_entry() {
        let check = |mode: u32, expect: Access, private: u32| {
            assert_eq!(access(mode), expect, "{mode:o}");
            assert_eq!(private_mode(mode), private, "{mode:o}");
        };
        check(0o700, Access::Private, 0o700);
        check(0o600, Access::Private, 0o600);
        check(0o400, Access::Private, 0o400);
        check(0o40700, Access::Private, 0o700);
        check(0o755, Access::ReadableByOthers, 0o700);
        check(0o644, Access::ReadableByOthers, 0o600);
        check(0o640, Access::ReadableByOthers, 0o600);
        check(0o701, Access::ReadableByOthers, 0o700);
        check(0o770, Access::WritableByOthers, 0o700);
        check(0o602, Access::WritableByOthers, 0o600);
        check(0o1777, Access::WritableByOthers, 0o1700);
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_missing_data_dir_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("a/b/data");
        let prepared = prepare(&data_dir).unwrap();
        assert!(prepared.created);
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
    }

    #[test]
    fn a_data_dir_others_can_read_is_made_private_and_links_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        fs::create_dir_all(data_dir.join("ledger/segments")).unwrap();
        fs::write(data_dir.join("ledger/segments/000000000000.seg"), b"").unwrap();
        fs::write(data_dir.join("mask.key"), b"").unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"").unwrap();
        std::os::unix::fs::symlink(&outside, data_dir.join("link")).unwrap();
        for (path, m) in [("", 0o755), ("ledger", 0o750), ("ledger/segments", 0o711), ("mask.key", 0o600)] {
            set(&data_dir.join(path), m);
        }
        set(&data_dir.join("ledger/segments/000000000000.seg"), 0o644);
        set(&outside, 0o644);

        let prepared = prepare(&data_dir).unwrap();
        assert!(!prepared.created);
        assert_eq!(prepared.tightened.len(), 4, "{:?}", prepared.tightened);
        for (path, m) in
            [("", 0o700), ("ledger", 0o700), ("ledger/segments", 0o700), ("ledger/segments/000000000000.seg", 0o600), ("mask.key", 0o600)]
        {
            assert_eq!(mode(&data_dir.join(path)), m, "{path}");
        }
        assert_eq!(mode(&outside), 0o644, "what a link points to is not changed");
        assert!(prepare(&data_dir).unwrap().tightened.is_empty(), "a private data dir is left as it is");
    }

    #[test]
    fn a_data_dir_others_can_write_anywhere_is_refused_untouched() {
        for (path, m) in [("", 0o770), ("identity", 0o777), ("identity/tokens.sqlite", 0o666)] {
            let dir = tempfile::tempdir().unwrap();
            let data_dir = dir.path().join("data");
            fs::create_dir_all(data_dir.join("identity")).unwrap();
            fs::write(data_dir.join("identity/tokens.sqlite"), b"").unwrap();
            set(&data_dir.join("identity"), 0o755);
            set(&data_dir, 0o700);
            set(&data_dir.join(path), m);

            let error = prepare(&data_dir).unwrap_err();
            let text = error.to_string();
            let named = if path.is_empty() { data_dir.clone() } else { data_dir.join(path) };
            assert!(text.contains(&format!("{} can be written", named.display())), "{text}");
            assert!(text.contains(&format!("chmod -R go-rwx {}", data_dir.display())), "{text}");
            assert_eq!(mode(&data_dir.join("identity")), if path == "identity" { m } else { 0o755 }, "nothing is changed: {path}");
        }
    }
}
