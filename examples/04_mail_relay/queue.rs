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

use crate::forward::{self, Envelope, Outcome};
use crate::spool::{self, Batch, Draft, Spool, annotate};
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

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

/// The durable queue and its forwarder.
#[derive(Debug)]
pub struct Queue {
    spool: Arc<Spool>,
    dir: PathBuf,
    next_hop: String,
    host: String,
    backoff: Backoff,
    trace: bool,
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
    pub fn open(
        spool: Arc<Spool>,
        next_hop: &str,
        host: &str,
        backoff: Backoff,
        trace: bool,
    ) -> io::Result<Queue> {
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
            eprintln!(
                "queue: {} message(s) waiting from an earlier run",
                pending.len()
            );
        }
        Ok(Queue {
            spool,
            dir,
            next_hop: next_hop.to_string(),
            host: host.to_string(),
            backoff,
            trace,
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
    /// `None` when the message is done with (delivered, or failed for good).
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
        match forward::forward(&self.next_hop, &self.host, &envelope, message, self.trace) {
            Outcome::Sent { rejected, deferred } => {
                let sent = envelope.to.len() - rejected.len() - deferred.len();
                if sent > 0 {
                    eprintln!(
                        "queue: {name} delivered to {} for {sent} recipient(s)",
                        self.next_hop
                    );
                }
                for (rcpt, why) in &rejected {
                    // A real server now mails a bounce (a delivery status
                    // notification, RFC 3464) to the sender. We only log it.
                    eprintln!("queue: {name} refused for good for <{rcpt}>: {why}");
                }
                if deferred.is_empty() {
                    if sent == 0 {
                        self.give_up(&name, "every recipient was refused");
                    } else if let Err(e) = fs::remove_file(&path) {
                        // It will be sent again after a restart: a duplicate, not a loss.
                        eprintln!("queue: {name}: could not remove the queue file: {e}");
                    }
                    return None;
                }
                // Keep only the recipients still to do, written as durably as before.
                let remaining = Envelope {
                    from: envelope.from.clone(),
                    to: deferred.iter().map(|(r, _)| r.clone()).collect(),
                };
                let file = queue_file(&remaining.from, &remaining.to, message);
                if let Err(e) = self.spool.write_durably(
                    &self.dir.join("tmp"),
                    &self.dir.join("active"),
                    &name,
                    &file,
                ) {
                    eprintln!("queue: {name}: could not update the queue file: {e}");
                }
                let why = deferred
                    .iter()
                    .map(|(r, why)| format!("<{r}>: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                entry.failures += 1;
                self.retry(entry, &why)
            }
            Outcome::Later(why) => {
                entry.failures += 1;
                self.retry(entry, &why)
            }
            Outcome::Never(why) => {
                self.give_up(&name, &why);
                None
            }
        }
    }

    /// Logs a temporary failure and schedules the next try.
    fn retry(&self, mut entry: Entry, why: &str) -> Option<Entry> {
        let failures = entry.failures.max(1);
        let delay = self.backoff.delay(failures);
        eprintln!(
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
            Ok(()) => eprintln!("queue: {name} failed for good ({why}); kept in .queue/failed/"),
            Err(e) => eprintln!(
                "queue: {name} failed for good ({why}); could not move it to failed/: {e}"
            ),
        }
    }
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
