//! The relay queue: mail for other domains waits here, on disk, until the
//! next hop takes it. This is *store-and-forward*, the idea all of email is
//! built on: each server takes responsibility for a message (its `250`),
//! keeps it safe, and passes it on when it can, however long that takes.
//!
//! ```text
//! mail-spool/.queue/tmp/      a queue file being written
//! mail-spool/.queue/active/   waiting to be forwarded (one file per message)
//! mail-spool/.queue/failed/   refused for good by the next hop, kept for a human
//! ```
//!
//! A queue file is the envelope written like the SMTP commands that carried
//! it, a blank line, then the message, so you can read one with `cat`:
//!
//! ```text
//! MAIL FROM:<alice@example.test>
//! RCPT TO:<carol@remote.test>
//!
//! Received: from laptop ([127.0.0.1])
//! ...
//! ```
//!
//! One background thread forwards: it sleeps until the earliest message is
//! due, tries it (`forward.rs`), and on a temporary failure schedules the
//! next try further away each time (*exponential backoff*: 1 s, 2 s, 4 s, …
//! up to a cap), so a next hop that is down is not hammered. The files are
//! the truth: at start the queue is rebuilt from `active/`, so a crash or a
//! restart loses nothing that was acknowledged.

use crate::Mailboxes;
use crate::address;
use crate::bounce::{self, Failure};
use crate::draft::Draft;
use crate::forward::{self, Envelope, Outcome};
use crate::spool::{self, Batch, Folder, Spool, annotate};
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the queue retries.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Wait after the first failure; doubled after each further one.
    pub base: Duration,
    /// Never wait longer than this between tries.
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` failed tries (1 or more).
    fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// One queued message, as the forwarder thread schedules it.
#[derive(Debug)]
struct Entry {
    /// Its file name in `active/`.
    name: String,
    /// When to try next.
    due: Instant,
    /// Failed tries so far.
    failures: u32,
}

/// How the queue forwards, and where bounces go.
#[derive(Debug, Clone)]
pub struct Config {
    /// The SMTP server that takes our mail for other domains.
    pub next_hop: String,
    /// Our name, for `EHLO` and in bounces.
    pub host: String,
    /// The domains we deliver locally (a bounce to one of them is
    /// delivered into the sender's mailbox).
    pub domains: Vec<String>,
    /// Which local mailboxes exist.
    pub mailboxes: Arc<Mailboxes>,
    /// How the queue retries.
    pub backoff: Backoff,
    /// Give up on a message still refused for now this long after it was
    /// queued (`--max-queue-age`).
    pub max_age: Duration,
    /// `--trace` the forwarder's SMTP sessions.
    pub trace: bool,
}

/// The durable queue and its forwarder.
#[derive(Debug)]
pub struct Queue {
    spool: Arc<Spool>,
    dir: PathBuf,
    config: Config,
    pending: Mutex<Vec<Entry>>,
    /// Signalled when a message is queued, to wake the forwarder early.
    wake: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queue {
    /// Opens the queue in `spool`'s `.queue/` folder and loads what is waiting
    /// there from an earlier run (due at once). Call [`Queue::start`] next.
    pub fn open(spool: Arc<Spool>, config: Config) -> io::Result<Queue> {
        let dir = spool.root().join(".queue");
        for sub in ["tmp", "active", "failed"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| annotate(e, "could not create", &dir.join(sub)))?;
        }
        spool::remove_files_in(&dir.join("tmp"))?;
        let now = Instant::now();
        let mut pending = Vec::new();
        for entry in fs::read_dir(dir.join("active"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_file() && !name.starts_with('.') {
                pending.push(Entry {
                    name,
                    due: now,
                    failures: 0,
                });
            }
        }
        if !pending.is_empty() {
            netlessons::log!(
                "queue: {} message(s) waiting from an earlier run",
                pending.len()
            );
        }
        Ok(Queue {
            spool,
            dir,
            config,
            pending: Mutex::new(pending),
            wake: Condvar::new(),
        })
    }

    /// Writes the queue file of a message for `to` into `batch`: the
    /// envelope, then `headers`, then the text from `draft`. It becomes
    /// visible when the batch is published; then call [`Queue::schedule`].
    pub fn add_copy(
        &self,
        batch: &mut Batch<'_>,
        id: &str,
        from: &str,
        to: &[String],
        headers: &[u8],
        draft: &mut Draft,
    ) -> io::Result<()> {
        let envelope = queue_file(from, to, headers);
        batch.write(
            &self.dir.join("tmp"),
            &self.dir.join("active"),
            id,
            |mut file| {
                file.write_all(&envelope)?;
                draft.copy_to(file)
            },
        )
    }

    /// Schedules a message whose queue file is durably in `active/`.
    pub fn schedule(&self, id: &str) {
        lock(&self.pending).push(Entry {
            name: id.to_string(),
            due: Instant::now(),
            failures: 0,
        });
        self.wake.notify_one();
    }

    /// Starts the forwarder thread.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        let queue = Arc::clone(self);
        thread::Builder::new()
            .name("forwarder".to_string())
            .spawn(move || queue.run())
            .map(drop)
    }

    /// The forwarder: forever, wait for the next due message and try it.
    fn run(&self) {
        loop {
            let entry = self.next_due();
            if let Some(retry) = self.attempt(entry) {
                lock(&self.pending).push(retry);
            }
        }
    }

    /// Sleeps until some message is due, and takes it out of the schedule.
    fn next_due(&self) -> Entry {
        let mut pending = lock(&self.pending);
        loop {
            let now = Instant::now();
            let earliest = pending
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.due)
                .map(|(i, e)| (i, e.due));
            pending = match earliest {
                Some((i, due)) if due <= now => return pending.swap_remove(i),
                Some((_, due)) => self
                    .wake
                    .wait_timeout(pending, due - now)
                    .map_or_else(|p| p.into_inner().0, |r| r.0),
                None => self.wake.wait(pending).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }

    /// One try for one message. Returns the entry to schedule again, or
    /// `None` when the message is done with (delivered, or given up).
    fn attempt(&self, mut entry: Entry) -> Option<Entry> {
        let path = self.dir.join("active").join(&entry.name);
        let name = entry.name.clone();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None, // removed by hand
            Err(e) => return self.retry(entry, &format!("could not read {}: {e}", path.display())),
        };
        let Some((envelope, message)) = parse_queue_file(&bytes) else {
            self.give_up(&name, "the queue file is damaged (no envelope)");
            return None;
        };
        let config = &self.config;
        let (outcome, open) = forward::forward(
            &config.next_hop,
            &config.host,
            &envelope,
            message,
            config.trace,
        );
        // Record the outcome first (the queue file removed and synced), and
        // only then say QUIT: the next hop's 250 was the handover. Waiting
        // for the reply to QUIT before removing the file would stall the
        // whole queue behind a slow server, and a crash in that wait would
        // send the message again.
        let next = match outcome {
            Outcome::Sent { rejected, deferred } => {
                self.sent(entry, &envelope, message, &rejected, &deferred)
            }
            Outcome::Later(why) if self.too_old(&name) => {
                let why = gave_up(&why, config.max_age);
                self.give_up(&name, &why);
                self.bounce_all(&name, &envelope, &why, message);
                None
            }
            Outcome::Later(why) => {
                entry.failures += 1;
                self.retry(entry, &why)
            }
            Outcome::Never(why) => {
                self.give_up(&name, &why);
                self.bounce_all(&name, &envelope, &why, message);
                None
            }
        };
        if let Some(conn) = open {
            forward::quit(conn);
        }
        next
    }

    /// The next hop took the message for some recipients (perhaps none):
    /// bounce the ones `rejected` (and `deferred` too, once the message is
    /// too old), and keep the rest in the queue to try again.
    fn sent(
        &self,
        mut entry: Entry,
        envelope: &Envelope,
        message: &[u8],
        rejected: &[(String, String)],
        deferred: &[(String, String)],
    ) -> Option<Entry> {
        let name = entry.name.clone();
        let sent = envelope.to.len() - rejected.len() - deferred.len();
        if sent > 0 {
            netlessons::log!(
                "queue: {name} delivered to {} for {sent} recipient(s)",
                self.config.next_hop
            );
        }
        let mut failed: Vec<Failure> = rejected
            .iter()
            .map(|(rcpt, why)| Failure {
                rcpt: rcpt.clone(),
                why: why.clone(),
            })
            .collect();
        let expired = !deferred.is_empty() && self.too_old(&name);
        if expired {
            failed.extend(deferred.iter().map(|(rcpt, why)| Failure {
                rcpt: rcpt.clone(),
                why: gave_up(why, self.config.max_age),
            }));
        }
        for failure in &failed {
            netlessons::log!(
                "queue: {name} refused for good for <{}>: {}",
                failure.rcpt,
                failure.why
            );
        }
        // The queue file is dealt with first, the bounce sent
        // after: a crash in between loses a bounce, never sends
        // the message again.
        if deferred.is_empty() || expired {
            if sent == 0 {
                self.give_up(&name, "no recipient took it");
            } else {
                self.remove(&name);
            }
            self.bounce(&name, &envelope.from, &failed, message);
            None
        } else {
            // Keep only the recipients still to do, written as durably as before.
            let file = queue_file(&envelope.from, &deferred_rcpts(deferred), message);
            if let Err(e) = self.spool.write_durably(
                &self.dir.join("tmp"),
                &self.dir.join("active"),
                &name,
                &file,
            ) {
                netlessons::log!("queue: {name}: could not update the queue file: {e}");
            }
            let why = deferred
                .iter()
                .map(|(r, why)| format!("<{r}>: {why}"))
                .collect::<Vec<_>>()
                .join("; ");
            self.bounce(&name, &envelope.from, &failed, message);
            entry.failures += 1;
            self.retry(entry, &why)
        }
    }

    /// Removes a delivered message's queue file, durably: a crash after
    /// this must not bring it back to be sent again.
    fn remove(&self, name: &str) {
        let active = self.dir.join("active");
        let removed =
            fs::remove_file(active.join(name)).and_then(|()| self.spool.sync_dir(&active));
        if let Err(e) = removed {
            // It will be sent again after a restart: a duplicate, not a loss.
            netlessons::log!("queue: {name}: could not remove the queue file: {e}");
        }
    }

    /// Has the message waited longer than `--max-queue-age`? Its age is in
    /// its name, which starts with the time it was queued (`SECONDS.Mmicros…`,
    /// see `Spool::unique_name`).
    fn too_old(&self, name: &str) -> bool {
        queued_at(name)
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .is_some_and(|age| age >= self.config.max_age)
    }

    /// Bounces the message for every recipient in `envelope`.
    fn bounce_all(&self, name: &str, envelope: &Envelope, why: &str, message: &[u8]) {
        let failed: Vec<Failure> = envelope
            .to
            .iter()
            .map(|rcpt| Failure {
                rcpt: rcpt.clone(),
                why: why.to_string(),
            })
            .collect();
        self.bounce(name, &envelope.from, &failed, message);
    }

    /// Sends `sender` a bounce for `failed` (nothing to do if it is empty):
    /// into the sender's mailbox for a local sender, through this queue for
    /// a remote one, nowhere (logged) when the sender was `<>`, since that
    /// message was itself a bounce.
    fn bounce(&self, name: &str, sender: &str, failed: &[Failure], message: &[u8]) {
        if failed.is_empty() {
            return;
        }
        if sender.is_empty() {
            netlessons::log!(
                "queue: {name}: not returned (its sender was <>, it was itself a bounce)"
            );
            return;
        }
        let id = self.spool.unique_name();
        let config = &self.config;
        let text = bounce::bounce_message(
            &config.host,
            &id,
            sender,
            failed,
            message,
            SystemTime::now(),
        );
        let result = match address::parse_address(sender) {
            Ok(addr) if addr.domain.is_empty() || config.domains.contains(&addr.domain) => {
                match address::mailbox_name(&addr.local).filter(|m| config.mailboxes.exists(m)) {
                    Some(mailbox) => self.deliver_bounce(&mailbox, &text),
                    None => {
                        netlessons::log!(
                            "queue: {name}: not returned (no local mailbox for <{sender}>)"
                        );
                        return;
                    }
                }
            }
            Ok(_) => self.queue_bounce(&id, sender, &text),
            Err(why) => {
                netlessons::log!("queue: {name}: not returned (bad sender <{sender}>: {why})");
                return;
            }
        };
        match result {
            Ok(()) => netlessons::log!("queue: {name}: returned to <{sender}> as {id}"),
            Err(e) => netlessons::log!("queue: {name}: could not return it to <{sender}>: {e}"),
        }
    }

    /// Delivers a bounce into a local mailbox.
    fn deliver_bounce(&self, mailbox: &str, text: &[u8]) -> io::Result<()> {
        let mut batch = Batch::new(&self.spool);
        self.spool
            .add_to_mailbox(&mut batch, mailbox, Folder::Inbox, |mut file| {
                file.write_all(b"Return-Path: <>\n")?;
                file.write_all(text)
            })?;
        batch.publish()
    }

    /// Queues a bounce for a remote sender, from `<>`.
    fn queue_bounce(&self, id: &str, sender: &str, text: &[u8]) -> io::Result<()> {
        let file = queue_file("", &[sender.to_string()], text);
        self.spool
            .write_durably(&self.dir.join("tmp"), &self.dir.join("active"), id, &file)?;
        self.schedule(id);
        Ok(())
    }

    /// Logs a temporary failure and schedules the next try.
    fn retry(&self, mut entry: Entry, why: &str) -> Option<Entry> {
        let failures = entry.failures.max(1);
        let delay = self.config.backoff.delay(failures);
        netlessons::log!(
            "queue: {} try {failures} failed ({why}); next try in {:.1} s",
            entry.name,
            delay.as_secs_f64()
        );
        entry.due = Instant::now() + delay;
        Some(entry)
    }

    /// Moves a message to `failed/`, where a person can look at it.
    /// Moved first, logged after, so the log never claims what is not
    /// (yet) true.
    fn give_up(&self, name: &str, why: &str) {
        let from = self.dir.join("active").join(name);
        match fs::rename(&from, self.dir.join("failed").join(name)) {
            Ok(()) => {
                netlessons::log!("queue: {name} failed for good ({why}); kept in .queue/failed/")
            }
            Err(e) => netlessons::log!(
                "queue: {name} failed for good ({why}); could not move it to failed/: {e}"
            ),
        }
    }
}

/// The recipients of `deferred`.
fn deferred_rcpts(deferred: &[(String, String)]) -> Vec<String> {
    deferred.iter().map(|(r, _)| r.clone()).collect()
}

/// The reason given when a message ages out.
fn gave_up(last: &str, max_age: Duration) -> String {
    format!(
        "gave up after {} s in the queue (--max-queue-age); last try: {last}",
        max_age.as_secs()
    )
}

/// When a queue file's message was queued, from its name (`SECONDS.Mmicros…`).
fn queued_at(name: &str) -> Option<SystemTime> {
    let (secs, rest) = name.split_once('.')?;
    let micros = rest.strip_prefix('M')?.get(..6)?;
    let since =
        Duration::from_secs(secs.parse().ok()?) + Duration::from_micros(micros.parse().ok()?);
    UNIX_EPOCH.checked_add(since)
}

/// The bytes of a queue file: envelope, blank line, message.
fn queue_file(from: &str, to: &[String], message: &[u8]) -> Vec<u8> {
    let mut file = format!("MAIL FROM:<{from}>\n").into_bytes();
    for rcpt in to {
        file.extend_from_slice(format!("RCPT TO:<{rcpt}>\n").as_bytes());
    }
    file.push(b'\n');
    file.extend_from_slice(message);
    file
}

/// Splits a queue file into its envelope and its message.
fn parse_queue_file(bytes: &[u8]) -> Option<(Envelope, &[u8])> {
    let split = bytes.windows(2).position(|w| w == b"\n\n")?;
    let head = std::str::from_utf8(&bytes[..split]).ok()?;
    let mut lines = head.lines();
    let from = lines
        .next()?
        .strip_prefix("MAIL FROM:<")?
        .strip_suffix('>')?
        .to_string();
    let to = lines
        .map(|l| {
            l.strip_prefix("RCPT TO:<")
                .and_then(|l| l.strip_suffix('>'))
                .map(str::to_string)
        })
        .collect::<Option<Vec<_>>>()?;
    if to.is_empty() {
        return None;
    }
    Some((Envelope { from, to }, &bytes[split + 2..]))
}
