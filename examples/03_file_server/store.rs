//! The files on disk, as the server serves them: only a regular file inside
//! the root ([`open_served`]), and each file's digest computed once
//! ([`DigestCache`]).

use crate::CHUNK;
use netlessons::framing;
use netlessons::sha256::Sha256;
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Seek};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

/// Opens `root/name` for reading if it is a regular file *inside* the root.
///
/// A symlink could point anywhere (`notes.txt -> /etc/shadow`), and `File::open`
/// would follow it. So we look at the name itself with `symlink_metadata`
/// (which does not follow links) and serve only a regular file; then, after
/// opening, we check that what we opened is that same file (same device and
/// inode), in case the name was swapped for a link between the two steps.
pub fn open_served(root: &Path, name: &str) -> io::Result<Option<(File, Metadata)>> {
    let path = root.join(name);
    let at_name = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !at_name.file_type().is_file() {
        return Ok(None); // a symlink, a folder, a device…: not ours to serve
    }
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let opened = file.metadata()?;
    if !same_file(&at_name, &opened) {
        return Ok(None);
    }
    Ok(Some((file, opened)))
}

/// Are two metadata of the same file? On Unix, the same device and inode.
#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Elsewhere std exposes no stable file identity: the weaker check is that
/// both are regular files of the same size and modification time.
#[cfg(not(unix))]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    b.is_file() && a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// Remembers each file's digest, so that a file is hashed once, not on every
/// `GET` and `LIST`.
///
/// An entry is trusted only while the file looks exactly as it did when it
/// was hashed: same size, modification time and (on Unix) inode and change
/// time. Git's index uses the same trick to avoid re-reading unchanged
/// files. Our own uploads never change a file in place (they rename a new
/// file over it, which makes a new inode), so only an edit by hand could
/// fool it, and that edit would also change the times.
#[derive(Default)]
pub struct DigestCache {
    entries: Mutex<HashMap<String, (Stamp, [u8; 32])>>,
}

/// What a file looks like from the outside: if any of this changed, the
/// content may have changed too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Inode and change time (`ctime`, which no program can set back).
    #[cfg(unix)]
    identity: (u64, u64, i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            identity: (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl DigestCache {
    /// The digest of `file` (open as `name`), from the cache or by reading it.
    pub fn digest(&self, name: &str, file: &File, meta: &Metadata) -> io::Result<[u8; 32]> {
        let stamp = Stamp::of(meta);
        if let Some((known, digest)) = self.lock().get(name) {
            if *known == stamp {
                return Ok(*digest);
            }
        }
        // Hash outside the lock: a large file takes seconds, and other
        // clients must not wait for it.
        let digest = hash_file(file, meta.len())?;
        self.lock().insert(name.to_string(), (stamp, digest));
        Ok(digest)
    }

    /// Records the digest of a file we just stored (we hashed it on arrival).
    pub fn remember(&self, name: &str, meta: &Metadata, digest: [u8; 32]) {
        self.lock()
            .insert(name.to_string(), (Stamp::of(meta), digest));
    }

    /// Drops the entry of a deleted file.
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Drops entries of files no longer in the folder, so the cache cannot grow without end.
    pub fn keep_only(&self, names: &[String]) {
        self.lock()
            .retain(|name, _| names.binary_search(name).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Stamp, [u8; 32])>> {
        // A panic while holding the lock cannot leave a half-written entry
        // (each change is one insert or remove), so a poisoned lock is fine.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hashes exactly `len` bytes of `file` through a fixed buffer, then rewinds
/// it so the caller can send it from the start.
fn hash_file(mut file: &File, len: u64) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    framing::copy_exact(&mut file, len, &mut buf, |chunk| {
        hasher.update(chunk);
        Ok(())
    })
    .map_err(|e| {
        if framing::is_short_source(&e) {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a file shrank while being hashed",
            )
        } else {
            e
        }
    })?;
    file.rewind()?;
    Ok(hasher.finish())
}
