//! Durable writes: a file appears whole or not at all, and stays after a crash.
//!
//! A server that says "stored" (`OK`, `250`) promises that the bytes survive
//! a `kill -9` or a power cut the moment after. Writing straight into the
//! real name cannot keep that promise: a reader could see half a file, a
//! dropped client would leave half a file, and the old, good file would be
//! gone before the new one is complete. The recipe every careful program
//! uses (databases, mail servers, package managers) is four steps:
//!
//! 1. **write** to a temporary file in the same folder ([`TempFile::create_in`]);
//! 2. **sync** it (`sync_all`, the `fsync` system call): a `write` only
//!    copies bytes into the operating system's cache, and the OS puts them on
//!    the disk when it likes, seconds later;
//! 3. **rename** it over the real name: within one file system a rename is
//!    atomic, so anyone opening the name sees the old file or the new one,
//!    complete, and there is no moment when the name does not exist;
//! 4. **sync the folder** ([`sync_dir`]): a name is an entry in its folder,
//!    so the rename changed the folder, and that change sits in the cache
//!    until the folder is synced too.
//!
//! [`TempFile::persist`] does steps 2 to 4; only after it returns may a
//! server acknowledge. Until then the temporary file deletes itself when
//! dropped, so every way out of a half-done write (an early `return`, a `?`
//! on a network error, a panic) cleans up. Only a killed process skips
//! `Drop`; a server sweeps stale temporaries (they start with `.`) at start.
//!
//! ```
//! use netlessons::durable::TempFile;
//! use std::io::Write;
//!
//! let dir = std::env::temp_dir().join(format!("netlessons-durable-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let mut temp = TempFile::create_in(&dir, ".notes.txt.tmp-")?;
//! temp.file().write_all(b"hello")?;
//! temp.persist(&dir.join("notes.txt"))?; // sync, rename, sync the folder
//! assert_eq!(std::fs::read(dir.join("notes.txt"))?, b"hello");
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! **Unix and elsewhere.** On Unix a folder can be opened and synced like a
//! file, and [`sync_dir`] does that. Windows offers no way to sync a folder
//! with std, so there [`sync_dir`] does nothing and we rely on the file
//! system's own journal: a weaker promise (a power cut just after the rename
//! could bring the old name back), which a real server closes with platform
//! calls. Likewise a private file ([`TempFile::create_private_in`]) is
//! readable by its owner only on Unix; elsewhere it has the default access.
//!
//! Syncing costs time, from well under a millisecond on a good SSD to tens
//! of milliseconds on a spinning disk. A server that stores many files a
//! second shares one folder sync between them ([`TempFile::persist_unsynced_dir`]
//! then one [`sync_dir`]), as the mail spool does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A temporary file that deletes itself when dropped, unless persisted.
///
/// Create it in the folder of the file it will become (`rename` is only
/// atomic within one file system), write through [`file`](TempFile::file),
/// then [`persist`](TempFile::persist) it under its real name.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempFile {
    /// Creates `dir/<prefix><16 random hex digits>`, open for writing.
    ///
    /// The file is created with `create_new`, which fails rather than reuse
    /// an existing file, so two writers never share a temporary. Start the
    /// prefix with `.`, so that listings which hide dot-files never show a
    /// half-written file.
    pub fn create_in(dir: &Path, prefix: &str) -> io::Result<TempFile> {
        TempFile::create(dir, prefix, false)
    }

    /// As [`create_in`](TempFile::create_in), readable and writable by its
    /// owner only (mode `0600` on Unix; elsewhere the default access). For
    /// private data such as mail.
    pub fn create_private_in(dir: &Path, prefix: &str) -> io::Result<TempFile> {
        TempFile::create(dir, prefix, true)
    }

    fn create(dir: &Path, prefix: &str, private: bool) -> io::Result<TempFile> {
        loop {
            let mut bytes = [0u8; 8];
            crate::auth::fill_random(&mut bytes)?;
            let path = dir.join(format!("{prefix}{}", crate::sha256::to_hex(&bytes)));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            if private {
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            }
            #[cfg(not(unix))]
            let _ = private;
            match options.open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        keep: false,
                    });
                }
                // Sixteen random hex digits collide about never; if they do,
                // draw again rather than touch someone else's file.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(annotate(e, "could not create a file in", dir)),
            }
        }
    }

    /// The open file, to write the content through.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the temporary file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the file, renames it to `target` (replacing what was there in
    /// one step) and syncs `target`'s folder. When this returns `Ok`, the
    /// content is on the disk under its real name; the file stays open for
    /// reading its metadata.
    pub fn persist(self, target: &Path) -> io::Result<File> {
        let file = self.persist_unsynced_dir(target)?;
        sync_dir(parent(target))?;
        Ok(file)
    }

    /// Steps 2 and 3 only: syncs the file and renames it to `target`, but
    /// leaves the folder sync to the caller, who may share one [`sync_dir`]
    /// between many files. Nothing is durable until that sync returns.
    pub fn persist_unsynced_dir(mut self, target: &Path) -> io::Result<File> {
        // The bytes must be on the disk *before* the name points at them, or
        // a crash could leave the real name on a file full of zeros.
        self.file
            .sync_all()
            .map_err(|e| annotate(e, "could not sync", &self.path))?;
        fs::rename(&self.path, target).map_err(|e| annotate(e, "could not save", target))?;
        self.keep = true;
        // The file has its new name now: drop must not delete anything.
        let file = self.file.try_clone()?;
        Ok(file)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Nothing useful to do if this fails (the folder is gone, say):
            // the temporary has a dot-name and is swept at the next start.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Replaces `target` with `bytes` durably: a temporary file beside it
/// (`.NAME.tmp-<random>`), written, synced, renamed, the folder synced.
pub fn replace(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    let temp = TempFile::create_in(parent(target), &format!(".{name}.tmp-"))?;
    (&temp.file)
        .write_all(bytes)
        .map_err(|e| annotate(e, "could not write", &temp.path))?;
    temp.persist(target)?;
    Ok(())
}

/// Makes the names created, renamed or removed in `dir` durable.
///
/// On Unix a folder is opened and synced like a file. Elsewhere std offers
/// no way to do it and this does nothing: we rely on the file system's
/// journal, a weaker promise (see the [module docs](self)).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| annotate(e, "could not sync the folder", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The folder a path lives in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Adds what we were doing and where to an I/O error, keeping its kind.
fn annotate(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("netlessons-durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A dropped, unpersisted temporary file leaves nothing behind.
    #[test]
    fn drop_without_persist_removes_the_temporary() {
        let dir = scratch("drop");
        let temp = TempFile::create_in(&dir, ".x-").unwrap();
        (&temp.file).write_all(b"half").unwrap();
        assert_eq!(names(&dir).len(), 1);
        drop(temp);
        assert!(names(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Persisting replaces the target whole and leaves no temporary.
    #[test]
    fn persist_replaces_the_target_and_leaves_no_temporary() {
        let dir = scratch("persist");
        let target = dir.join("notes.txt");
        fs::write(&target, b"old").unwrap();
        let temp = TempFile::create_in(&dir, ".notes.txt.tmp-").unwrap();
        assert!(temp.path().starts_with(&dir));
        (&temp.file).write_all(b"new content").unwrap();
        let file = temp.persist(&target).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 11);
        assert_eq!(fs::read(&target).unwrap(), b"new content");
        assert_eq!(names(&dir), ["notes.txt"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// `replace` writes a new file and overwrites an old one, nothing else.
    #[test]
    fn replace_writes_and_overwrites() {
        let dir = scratch("replace");
        let target = dir.join("state");
        replace(&target, b"one").unwrap();
        replace(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(names(&dir), ["state"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A private temporary file is readable by its owner only (Unix).
    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("private");
        let temp = TempFile::create_private_in(&dir, ".m-").unwrap();
        let mode = temp.file().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(temp);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Two temporaries with one prefix get different names.
    #[test]
    fn temporaries_never_share_a_name() {
        let dir = scratch("unique");
        let a = TempFile::create_in(&dir, ".u-").unwrap();
        let b = TempFile::create_in(&dir, ".u-").unwrap();
        assert_ne!(a.path(), b.path());
        drop((a, b));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Creating in a missing folder is an error naming the folder.
    #[test]
    fn a_missing_folder_is_a_clear_error() {
        let dir = std::env::temp_dir().join("netlessons-durable-no-such-folder");
        let err = TempFile::create_in(&dir, ".x-").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("no-such-folder"), "{err}");
    }
}
