//! The spool: where mail is kept on disk, and the promise behind "250 OK".
//!
//! Each local mailbox is a **Maildir**, the format qmail introduced and
//! Postfix, Dovecot and mutt all read:
//!
//! ```text
//! mail-spool/bob/tmp/   a message being written (never read from here)
//! mail-spool/bob/new/   delivered, not yet seen by a mail reader
//! mail-spool/bob/cur/   seen (mail readers move messages here)
//! mail-spool/bob/.Junk/ a Maildir++ sub-folder with its own tmp/ new/ cur/:
//!                       mail the spam filter judged to be spam (chapter 11)
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

use crate::draft::Draft;
use netlessons::durable::{self, TempFile};
use netlessons::sha256::{sha256, to_hex};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
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
        // Messages that were arriving when we stopped: never acknowledged.
        let incoming = root.join(INCOMING);
        fs::create_dir_all(&incoming)
            .map_err(|e| annotate(e, "could not create the spool folder", &incoming))?;
        remove_files_in(&incoming)?;
        for entry in
            fs::read_dir(root).map_err(|e| annotate(e, "could not read the spool folder", root))?
        {
            let path = entry?.path();
            if path.is_dir() {
                remove_files_in(&path.join("tmp"))?;
                remove_files_in(&path.join(JUNK).join("tmp"))?;
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

    /// Writes one mailbox's copy of a message into `batch` (in the
    /// folder's `tmp/`, to appear in its `new/` when the batch is
    /// published). `fill` writes the message into the new file.
    pub fn add_to_mailbox(
        &self,
        batch: &mut Batch<'_>,
        mailbox: &str,
        folder: Folder,
        fill: impl FnOnce(&File) -> io::Result<()>,
    ) -> io::Result<()> {
        self.ensure_mailbox(mailbox)?;
        let mut dir = self.mailbox_dir(mailbox);
        if folder == Folder::Junk {
            self.ensure_junk(mailbox)?;
            dir = dir.join(JUNK);
        }
        batch.write(
            &dir.join("tmp"),
            &dir.join("new"),
            &self.unique_name(),
            fill,
        )
    }

    /// Starts receiving a message: an empty file in `.incoming/` that the
    /// SMTP server streams the message text into while it arrives (see
    /// [`Draft`]).
    pub fn new_draft(&self) -> io::Result<Draft> {
        Draft::create(self.root.join(INCOMING).join(self.unique_name()))
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
        let mut batch = Batch::new(self);
        batch.write(tmp_dir, final_dir, name, |mut file| file.write_all(bytes))?;
        batch.publish()
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

    /// Makes the Maildir++ folder `root/mailbox/.Junk/{tmp,new,cur}` if
    /// missing, with the empty `maildirfolder` file that marks a sub-folder
    /// for Dovecot and Courier, synced into its parent the first time.
    fn ensure_junk(&self, mailbox: &str) -> io::Result<()> {
        let key = format!("{mailbox}/{JUNK}");
        if lock(&self.created).contains(&key) {
            return Ok(());
        }
        let dir = self.mailbox_dir(mailbox).join(JUNK);
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| annotate(e, "could not create mail folder", &dir))?;
        }
        File::create(dir.join("maildirfolder"))
            .map_err(|e| annotate(e, "could not create", &dir.join("maildirfolder")))?;
        self.sync_dir(&dir)?;
        self.sync_dir(&self.mailbox_dir(mailbox))?;
        lock(&self.created).insert(key);
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
    ///
    /// Only the inbox: `.Junk` and any other sub-folder are not listed
    /// (POP3 has no folders; an IMAP server would show them).
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

/// Where messages are written while they arrive, under the spool folder.
const INCOMING: &str = ".incoming";

/// The Maildir++ sub-folder (a folder whose name starts with `.`, inside
/// the mailbox) where spam is delivered: chapter 11.
pub const JUNK: &str = ".Junk";

/// Which folder of a mailbox a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// `new/` of the mailbox itself: what POP3 serves.
    Inbox,
    /// `.Junk/new/`: mail the content filter judged to be spam.
    Junk,
}

/// Several files that must appear **together or not at all**: the copies
/// of one message for each local mailbox and for the relay queue.
///
/// If we delivered each copy in turn, a full disk at the third would leave
/// two delivered; we would answer `451` (try again), the client would send
/// the message again, and the first two recipients would get it twice. So
/// a batch writes and syncs every copy in its `tmp/` folder first
/// ([`Batch::write`]); only when all are safely written does
/// [`Batch::publish`] rename them into place and sync each folder once.
/// A failure at any step removes everything the batch wrote, and the
/// caller answers `451` with nothing delivered. (Each copy is a
/// `durable::TempFile`, which removes itself unless persisted.)
#[derive(Debug)]
pub struct Batch<'a> {
    spool: &'a Spool,
    /// Every copy written and synced so far, and where it goes.
    written: Vec<(TempFile, PathBuf)>,
    /// Copies already renamed into place, to take back on a failure.
    published: Vec<PathBuf>,
    done: bool,
}

impl<'a> Batch<'a> {
    /// An empty batch.
    pub fn new(spool: &'a Spool) -> Batch<'a> {
        Batch {
            spool,
            written: Vec::new(),
            published: Vec::new(),
            done: false,
        }
    }

    /// Writes one file in `tmp_dir` (its bytes written by `fill`) and syncs
    /// it; [`Batch::publish`] will move it to `final_dir/name`. A failure
    /// removes the partial file at once: left in `tmp/`, it would keep the
    /// disk full for every later message.
    pub fn write(
        &mut self,
        tmp_dir: &Path,
        final_dir: &Path,
        name: &str,
        fill: impl FnOnce(&File) -> io::Result<()>,
    ) -> io::Result<()> {
        let temp = TempFile::create_private_in(tmp_dir, &format!(".{name}.tmp-"))?;
        fill(temp.file()).map_err(|e| annotate(e, "could not write", temp.path()))?;
        // sync_all = fsync: returns once the disk has the bytes (and the
        // file's size). Done here, for every copy, before any is renamed:
        // the sync is where a full or failing disk shows, and then nothing
        // has been made visible yet.
        temp.file()
            .sync_all()
            .map_err(|e| annotate(e, "could not sync", temp.path()))?;
        self.written.push((temp, final_dir.join(name)));
        Ok(())
    }

    /// Renames every file into place, then syncs each folder that got one
    /// (once per folder, shared with other threads: see [`GroupSync`]).
    /// When this returns `Ok`, every file is durable.
    pub fn publish(mut self) -> io::Result<()> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (temp, dest) in std::mem::take(&mut self.written) {
            // Synced already, so the sync in here finds nothing left to write.
            temp.persist_unsynced_dir(&dest)?;
            if let Some(dir) = dest.parent() {
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_path_buf());
                }
            }
            self.published.push(dest);
        }
        for dir in dirs {
            self.spool.sync_dir(&dir)?;
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for Batch<'_> {
    /// Not published (an error): the copies still in `tmp/` remove
    /// themselves; the ones already renamed are removed here. Those were
    /// visible for a moment, and a mail reader that fetched one in that
    /// moment got a message we then answer `451` for: the client's retry
    /// brings it again. Rare (a rename needs no new space), and a
    /// duplicate is what mail prefers to a loss.
    fn drop(&mut self) {
        if !self.done {
            for dest in &self.published {
                let _ = fs::remove_file(dest);
            }
        }
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
                let result = durable::sync_dir(dir);
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
    let first = raw.split_whitespace().next().unwrap_or("");
    crate::message::keep_chars(
        first,
        |c| c.is_ascii_alphanumeric() || c == '-',
        20,
        "localhost",
    )
}

/// Adds what we were doing and the path to an I/O error.
pub fn annotate(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}
