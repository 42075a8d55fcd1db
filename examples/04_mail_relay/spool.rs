//! The spool: where mail is kept on disk, and the promise behind "250 OK".
//!
//! Each local mailbox is a **Maildir**, the format qmail introduced and
//! Postfix, Dovecot and mutt all read:
//!
//! ```text
//! mail-spool/bob/tmp/   a message being written (never read from here)
//! mail-spool/bob/new/   delivered, not yet seen by a mail reader
//! mail-spool/bob/cur/   seen (mail readers move messages here)
//! ```
//!
//! One file per message, so delivering never rewrites anything that is
//! already there, and no lock is needed between the server writing and a
//! reader reading. A delivery is four steps (see [`Spool::write_durably`]):
//!
//! 1. write the message to a new file in `tmp/`;
//! 2. **sync** it: ask the kernel to put the bytes on the disk *now*
//!    (`fsync`), not in its own good time;
//! 3. **rename** it into `new/`: a rename is atomic, so a reader sees either
//!    no message or the whole message, never half of one;
//! 4. **sync the folder**, so that the rename itself is on the disk too.
//!
//! Only after step 4 may the SMTP server say `250`: from then on a crash, a
//! `kill -9` or a power cut loses nothing. Syncing is the slow part (a few
//! milliseconds, the time for the disk to confirm), so the folder sync is
//! shared between connections: see [`GroupSync`].
//!
//! Mail waiting to be relayed lives beside the mailboxes, in `.queue/`
//! (see `queue.rs`). Mailbox names never start with `.`, so they cannot clash.

use netlessons::sha256::{sha256, to_hex};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The mail store under one folder (`--spool`).
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    /// This machine's name, part of every file name (the Maildir convention,
    /// so that several machines can deliver into one shared folder).
    host: String,
    /// Counts deliveries, to make file names unique within one process.
    counter: AtomicU64,
    /// One [`GroupSync`] per folder we sync.
    syncs: Mutex<HashMap<PathBuf, Arc<GroupSync>>>,
    /// Mailboxes whose folders are known to exist on disk (durably).
    created: Mutex<HashSet<String>>,
}

/// A message in a mailbox, as the POP3 server sees it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The file holding it.
    pub path: PathBuf,
    /// A name that never changes and is never reused, for POP3's `UIDL`.
    pub uid: String,
    /// Its size on the wire (see `message::wire_size`).
    pub size: u64,
}

/// Locks a mutex even if a thread panicked while holding it: every critical
/// section here leaves the data consistent at each step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Spool {
    /// Opens (creating if need be) the spool at `root`, and removes what a
    /// crash may have left in the `tmp/` folders: files that were never
    /// acknowledged, so nobody is waiting for them.
    ///
    /// (This assumes we are the only program writing to this spool. A real
    /// server sharing a Maildir with other delivery agents only removes
    /// `tmp/` files older than 36 hours, as the Maildir specification says.)
    pub fn open(root: &Path) -> io::Result<Spool> {
        fs::create_dir_all(root)
            .map_err(|e| annotate(e, "could not create the spool folder", root))?;
        let spool = Spool {
            root: root.to_path_buf(),
            host: host_name(),
            counter: AtomicU64::new(0),
            syncs: Mutex::default(),
            created: Mutex::default(),
        };
        for entry in
            fs::read_dir(root).map_err(|e| annotate(e, "could not read the spool folder", root))?
        {
            let path = entry?.path();
            if path.is_dir() {
                remove_files_in(&path.join("tmp"))?;
            }
        }
        Ok(spool)
    }

    /// The spool folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file name no other delivery uses, in the Maildir style
    /// `SECONDS.MmicrosPpidQcount.HOST`: the time, our process id and a
    /// counter make it unique on this machine, the host name across machines.
    /// The microseconds always have six digits, so that sorting names as
    /// text sorts them by time (`M98` would sort after `M123`).
    pub fn unique_name(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{:06}P{}Q{n}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.host
        )
    }

    /// The folder of a mailbox.
    pub fn mailbox_dir(&self, mailbox: &str) -> PathBuf {
        self.root.join(mailbox)
    }

    /// Delivers `message` into each mailbox. Returns once every copy is
    /// durable, so the caller may then say `250`.
    ///
    /// All copies are written and synced first, then renamed, then each
    /// `new/` folder is synced once: two syncs per message at most, whatever
    /// the number of recipients in one mailbox folder.
    pub fn deliver(&self, mailboxes: &[String], message: &[u8]) -> io::Result<()> {
        let mut renamed = Vec::with_capacity(mailboxes.len());
        for mailbox in mailboxes {
            self.ensure_mailbox(mailbox)?;
            let dir = self.mailbox_dir(mailbox);
            let name = self.unique_name();
            let tmp = dir.join("tmp").join(&name);
            write_synced(&tmp, message)?;
            let new_dir = dir.join("new");
            fs::rename(&tmp, new_dir.join(&name))
                .map_err(|e| annotate(e, "could not move the message into", &new_dir))?;
            renamed.push(new_dir);
        }
        renamed.dedup();
        for dir in renamed {
            self.sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Writes `bytes` as `final_dir/name` so that it appears whole or not at
    /// all, and is on the disk when this returns: write to `tmp_dir`, sync,
    /// rename into `final_dir`, sync `final_dir`. (The relay queue uses this.)
    pub fn write_durably(
        &self,
        tmp_dir: &Path,
        final_dir: &Path,
        name: &str,
        bytes: &[u8],
    ) -> io::Result<()> {
        let tmp = tmp_dir.join(name);
        write_synced(&tmp, bytes)?;
        fs::rename(&tmp, final_dir.join(name))
            .map_err(|e| annotate(e, "could not move a file into", final_dir))?;
        self.sync_dir(final_dir)
    }

    /// Makes `root/mailbox/{tmp,new,cur}` if missing. The first time, the
    /// new folders are synced into their parents too: a message synced into
    /// a folder that itself vanished in a crash would be lost all the same.
    fn ensure_mailbox(&self, mailbox: &str) -> io::Result<()> {
        if lock(&self.created).contains(mailbox) {
            return Ok(());
        }
        let dir = self.mailbox_dir(mailbox);
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| annotate(e, "could not create mailbox folder", &dir))?;
        }
        self.sync_dir(&dir)?;
        self.sync_dir(&self.root)?;
        lock(&self.created).insert(mailbox.to_string());
        Ok(())
    }

    /// Syncs a folder, sharing the work with every other thread that wants
    /// the same folder synced at the same time (see [`GroupSync`]).
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let group = Arc::clone(lock(&self.syncs).entry(dir.to_path_buf()).or_default());
        group.sync(dir)
    }

    /// The messages in a mailbox (`new/` and `cur/`), oldest first. File
    /// names start with the delivery time, so sorting by name sorts by age.
    pub fn list(&self, mailbox: &str) -> io::Result<Vec<Stored>> {
        let dir = self.mailbox_dir(mailbox);
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            let entries = match fs::read_dir(dir.join(sub)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // no mail yet
                Err(e) => return Err(annotate(e, "could not read mailbox", &dir)),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // Hidden files are not messages; symlinks could point
                // anywhere on the disk, so only plain files count.
                if name.starts_with('.') || !entry.file_type()?.is_file() {
                    continue;
                }
                let message = fs::read(entry.path())?;
                found.push(Stored {
                    path: entry.path(),
                    uid: unique_id(&name),
                    size: crate::message::wire_size(&message),
                });
            }
        }
        found.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
        Ok(found)
    }
}

/// Writes a new file and syncs it. Mail is private, so on Unix the file is
/// readable by its owner only.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| annotate(e, "could not create", path))?;
    file.write_all(bytes)
        .map_err(|e| annotate(e, "could not write", path))?;
    // sync_all = fsync: returns once the disk has the bytes (and the file's
    // size). Without it they may sit in the kernel's cache for seconds.
    file.sync_all()
        .map_err(|e| annotate(e, "could not sync", path))
}

/// Syncs a folder, which makes the names created or renamed in it durable.
///
/// On Unix a folder can be opened and synced like a file. Elsewhere std
/// offers no way to do it, and we rely on the file system instead: weaker,
/// since a power cut just after a rename could then lose the rename.
fn sync_dir_now(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| annotate(e, "could not sync folder", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// **Group commit** for one folder's sync.
///
/// Eight connections each finish a message at about the same moment. Each
/// renamed its file into `new/`, and each needs `new/` synced before it may
/// say `250`. One sync of the folder makes *every* rename done before it
/// started durable, so eight syncs in a row would waste seven.
///
/// So: the first thread to arrive becomes the *leader* and syncs; threads
/// arriving while it works wait, and the next leader's single sync covers
/// all of them. Databases do the same with their logs. Each caller gets a
/// ticket after its rename; a sync that *starts* after the ticket was taken
/// covers it.
#[derive(Debug, Default)]
pub struct GroupSync {
    state: Mutex<SyncState>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// The last ticket handed out.
    issued: u64,
    /// Every ticket up to this one is covered by a completed sync.
    covered: u64,
    /// A leader is syncing right now.
    running: bool,
}

impl GroupSync {
    /// Returns once a sync of `dir` that started after this call began has
    /// completed (by this thread or another).
    pub fn sync(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if state.covered >= ticket {
                return Ok(()); // someone else's sync covered us
            }
            if !state.running {
                // Become the leader: sync on behalf of every ticket issued so far.
                state.running = true;
                let upto = state.issued;
                drop(state);
                let result = sync_dir_now(dir);
                state = lock(&self.state);
                state.running = false;
                if result.is_ok() {
                    state.covered = state.covered.max(upto);
                }
                self.finished.notify_all();
                // On failure the waiters wake and try again themselves.
                result?;
                continue;
            }
            state = self
                .finished
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// Removes the plain files in `dir` (missing folder: nothing to do).
pub fn remove_files_in(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(annotate(e, "could not read", dir)),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::remove_file(entry.path())
                .map_err(|e| annotate(e, "could not remove", &entry.path()))?;
        }
    }
    Ok(())
}

/// POP3's `UIDL` wants 1–70 printable characters that never change: the file
/// name without Maildir's `:2,FLAGS` suffix (which changes when a reader
/// marks the message), or its SHA-256 if someone else's file has a name that
/// does not fit.
fn unique_id(file_name: &str) -> String {
    let base = file_name.split(':').next().unwrap_or(file_name);
    if (1..=70).contains(&base.len()) && base.bytes().all(|b| b.is_ascii_graphic()) {
        base.to_string()
    } else {
        to_hex(&sha256(base.as_bytes()))
    }
}

/// This machine's name for Maildir file names, read from
/// `/proc/sys/kernel/hostname` or `/etc/hostname` (std has no call for it),
/// limited to safe characters, or `localhost`.
fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(20)
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// Adds what we were doing and the path to an I/O error.
pub fn annotate(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}
