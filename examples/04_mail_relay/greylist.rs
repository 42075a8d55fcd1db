//! The second filter: **greylisting** (RFC 6647).
//!
//! The idea rests on one difference between honest mail servers and most
//! spam software. SMTP has two kinds of refusal: `5xx` "never" and `4xx`
//! "not now, try again later". A real mail server keeps a message it could
//! not deliver in a queue and tries again (our own relay does: `queue.rs`).
//! A spam bot sending a million messages keeps no queue: it moves on.
//!
//! So the first time a client outside `--relay-allow` tries a new
//! *triplet* — its network, the envelope sender, the recipient — we answer
//!
//! ```text
//! RCPT TO:<bob@example.test>
//! 451 4.7.1 <bob@example.test>: greylisted, try again in 300 seconds
//! ```
//!
//! and write the triplet down. If the same triplet comes back after the
//! delay (`--greylist`, 300 s by default) and within 2 days, it passes, and
//! from then on it passes at once for 35 days (each pass renews that, at
//! most once a day). The cost to honest mail is one delay, the first time.
//!
//! The client's network, not its address: a big sender retries from another
//! machine of the same farm, so IPv4 addresses count by their /24 and IPv6
//! ones by their /64 (one home or office network).
//!
//! # On disk
//!
//! The table is kept in `SPOOL/.greylist`, one line per triplet event, so
//! that recording a new sighting is one short append and one sync, not a
//! rewrite of the whole table:
//!
//! ```text
//! 192.0.2.0/24 alice@far.test bob@example.test 1764620000000 0
//! 192.0.2.0/24 alice@far.test bob@example.test 1764620000000 1764620301000
//! ```
//!
//! (network, sender (`<>` for the null sender), recipient, first seen and
//! passed, in milliseconds since 1970, 0 for "not yet"); a later line for a
//! triplet replaces an earlier one. A new sighting is synced before its
//! `451` is sent, so a relay killed and restarted does not greylist the
//! same retry again. At start, and whenever the log has grown to twice the
//! table, it is *compacted*: the live entries are written to a new file
//! with the library's durable write (temp file, sync, rename, sync the
//! folder), so a crash in the middle leaves the old log or the new one,
//! never half of either.
//!
//! # Bounded
//!
//! A spammer can make up senders for free, and each new triplet would cost
//! us memory and disk. The table holds at most 100,000 triplets (about
//! 20 MB of memory); at the cap, the oldest *pending* triplet goes first
//! (one that never came back is most likely spam), and only when none is
//! pending the one that passed longest ago. Expired entries (pending past
//! the retry window, passed more than 35 days ago) are dropped as they are
//! met and at every compaction.
//!
//! A real server (postgrey, Postfix's `postscreen`) adds what we leave out:
//! an automatic pass for clients that retried correctly for a few different
//! recipients, and lists of big senders known to retry from many addresses.

use netlessons::durable::{self, TempFile};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file name of the table, in the spool folder. It starts with `.` so
/// that it can never be taken for a mailbox.
pub const FILE_NAME: &str = ".greylist";

/// A retry must come within this long of the first sighting (RFC 6647
/// §4.2 suggests a retry window of a day or more; 2 days is common).
pub const RETRY_WINDOW: Duration = Duration::from_secs(2 * 24 * 3600);
/// A triplet that passed keeps passing for this long (postgrey's default).
pub const PASS_LIFETIME: Duration = Duration::from_secs(35 * 24 * 3600);
/// A passing triplet's clock is renewed (one log line) at most this often.
const RENEW_EVERY: Duration = Duration::from_secs(24 * 3600);
/// At most this many triplets are kept.
pub const MAX_TRIPLETS: usize = 100_000;

/// How the greylist behaves.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How long a new triplet must wait before a retry passes (`--greylist`).
    pub delay: Duration,
    /// A retry later than this after the first sighting starts over.
    pub retry_window: Duration,
    /// How long a triplet that passed keeps passing.
    pub pass_lifetime: Duration,
    /// At most this many triplets.
    pub capacity: usize,
}

impl Config {
    /// The contract's settings with this `delay`.
    pub fn with_delay(delay: Duration) -> Config {
        Config {
            delay,
            retry_window: RETRY_WINDOW,
            pass_lifetime: PASS_LIFETIME,
            capacity: MAX_TRIPLETS,
        }
    }
}

/// What the greylist says about one `RCPT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// First sighting (or a retry too late): refuse for `wait`.
    New {
        /// How long the client must wait.
        wait: Duration,
    },
    /// Seen before, but the delay has not passed yet: refuse for `wait`.
    Early {
        /// How long the client must still wait.
        wait: Duration,
    },
    /// A retry after the delay: accepted, and from now on it passes.
    Passed {
        /// How long after the first sighting the retry came.
        after: Duration,
    },
    /// A triplet that passed before.
    Known,
}

/// The greylist table, shared by every SMTP session.
#[derive(Debug)]
pub struct Greylist {
    path: PathBuf,
    config: Config,
    state: Mutex<State>,
}

/// One triplet's times, in milliseconds since 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    first: u64,
    /// When it passed (or last renewed its pass); 0 while pending.
    passed: u64,
}

/// The table in memory, with an index by age for each kind of entry so that
/// finding the oldest is cheap at the cap.
#[derive(Debug)]
struct State {
    entries: HashMap<Arc<str>, Entry>,
    /// (first seen, key) of every pending entry.
    pending: BTreeSet<(u64, Arc<str>)>,
    /// (passed, key) of every passed entry.
    passed: BTreeSet<(u64, Arc<str>)>,
    /// The log, open for appending (once it exists).
    log: Option<File>,
    /// Lines in the log, to know when to compact it.
    log_lines: usize,
}

/// The key of a triplet: `NETWORK SENDER RECIPIENT`, all lower case.
/// Addresses have no spaces (the SMTP session accepts printable ASCII only),
/// so the key splits back into its three parts.
pub fn triplet(client: IpAddr, from: &str, rcpt: &str) -> String {
    let network = match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_network(v4),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
        IpAddr::V4(v4) => v4_network(v4),
    };
    let from = if from.is_empty() { "<>" } else { from };
    format!(
        "{network} {} {}",
        from.to_ascii_lowercase(),
        rcpt.to_ascii_lowercase()
    )
}

fn v4_network(v4: std::net::Ipv4Addr) -> String {
    let [a, b, c, _] = v4.octets();
    format!("{a}.{b}.{c}.0/24")
}

/// Milliseconds since 1970 (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Greylist {
    /// Opens the table in `spool` (creating it), replays its log, drops what
    /// has expired, and compacts it. Temporary files a crash left behind
    /// during a compaction are removed.
    pub fn open(spool: &Path, config: Config) -> io::Result<Greylist> {
        Greylist::open_at(spool, config, now_ms())
    }

    fn open_at(spool: &Path, config: Config, now: u64) -> io::Result<Greylist> {
        let path = spool.join(FILE_NAME);
        for entry in fs::read_dir(spool)? {
            let name = entry?.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.starts_with(&format!("{FILE_NAME}.tmp-")))
            {
                let _ = fs::remove_file(spool.join(name));
            }
        }
        let mut entries: Vec<(String, Entry)> = Vec::new();
        let mut damaged = 0;
        let mut exists = true;
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    match parse_line(&line) {
                        Some(parsed) => entries.push(parsed),
                        None if line.is_empty() => {}
                        // A line cut short by a crash mid-append, or damage:
                        // skipping it costs one extra greylisting at worst.
                        None => damaged += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => exists = false,
            Err(e) => return Err(e),
        }
        if damaged > 0 {
            netlessons::log!(
                "greylist: skipped {damaged} damaged line(s) in {}",
                path.display()
            );
        }
        let mut state = State {
            entries: HashMap::new(),
            pending: BTreeSet::new(),
            passed: BTreeSet::new(),
            log: None,
            log_lines: 0,
        };
        for (key, entry) in entries {
            state.put(Arc::from(key), entry, config.capacity);
        }
        state.expire_all(&config, now);
        let greylist = Greylist {
            path,
            config,
            state: Mutex::new(state),
        };
        // No file yet: it is made with the first sighting (a relay whose
        // clients are all inside never writes one).
        if exists {
            greylist.compact(&mut lock(&greylist.state))?;
        }
        Ok(greylist)
    }

    /// How many triplets the table holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// Decides about one recipient from one client. A new sighting is on
    /// disk when this returns.
    pub fn check(&self, client: IpAddr, from: &str, rcpt: &str) -> io::Result<Decision> {
        self.check_at(&triplet(client, from, rcpt), now_ms())
    }

    fn check_at(&self, key: &str, now: u64) -> io::Result<Decision> {
        let config = &self.config;
        let mut state = lock(&self.state);
        let known = state.entries.get(key).copied();
        let (decision, write) = match known {
            Some(e) if e.passed > 0 && now.saturating_sub(e.passed) <= ms(config.pass_lifetime) => {
                let renew = now.saturating_sub(e.passed) >= ms(RENEW_EVERY);
                let entry = Entry { passed: now, ..e };
                (Decision::Known, renew.then_some(entry))
            }
            Some(e) if e.passed == 0 => {
                let waited = now.saturating_sub(e.first);
                if waited < ms(config.delay) {
                    let wait = Duration::from_millis(ms(config.delay) - waited);
                    (Decision::Early { wait }, None)
                } else if waited <= ms(config.retry_window) {
                    let after = Duration::from_millis(waited);
                    (Decision::Passed { after }, Some(Entry { passed: now, ..e }))
                } else {
                    let fresh = Entry {
                        first: now,
                        passed: 0,
                    };
                    (Decision::New { wait: config.delay }, Some(fresh))
                }
            }
            // Unknown, or a pass that expired: start over.
            _ => {
                let fresh = Entry {
                    first: now,
                    passed: 0,
                };
                (Decision::New { wait: config.delay }, Some(fresh))
            }
        };
        if let Some(entry) = write {
            // Disk first: the decision is only given once it is recorded.
            state.append(&self.path, key, entry)?;
            state.put(Arc::from(key), entry, config.capacity);
            if state.log_lines > 2 * state.entries.len() + 1000 {
                state.expire_all(config, now);
                self.compact(&mut state)?;
            }
        }
        Ok(decision)
    }

    /// Rewrites the log as one line per live entry, durably, and reopens it
    /// for appending.
    fn compact(&self, state: &mut State) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temp = TempFile::create_private_in(dir, &format!("{FILE_NAME}.tmp-"))?;
        {
            let mut out = io::BufWriter::new(temp.file());
            writeln!(
                out,
                "# greylist: network sender recipient first-seen passed (ms since 1970, 0: pending)"
            )?;
            // Oldest first, so that a replay meets them in the order they came.
            let mut all: Vec<(&Arc<str>, &Entry)> = state.entries.iter().collect();
            all.sort_by_key(|(key, e)| (e.first, Arc::clone(key)));
            for (key, entry) in all {
                writeln!(out, "{key} {} {}", entry.first, entry.passed)?;
            }
            out.flush()?;
        }
        temp.persist(&self.path)?;
        state.log = Some(OpenOptions::new().append(true).open(&self.path)?);
        state.log_lines = state.entries.len();
        Ok(())
    }
}

impl State {
    /// Appends one entry's line and syncs it (creating the log, and syncing
    /// its folder so that its name is durable too, the first time).
    fn append(&mut self, path: &Path, key: &str, entry: Entry) -> io::Result<()> {
        if self.log.is_none() {
            let log = OpenOptions::new().create(true).append(true).open(path)?;
            durable::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
            self.log = Some(log);
        }
        let line = format!("{key} {} {}\n", entry.first, entry.passed);
        // One write call for the whole line: a crash can cut it short, never
        // interleave it with another (the mutex is held).
        let log = self
            .log
            .as_mut()
            .ok_or_else(|| io::Error::other("the greylist log is not open"))?;
        log.write_all(line.as_bytes())?;
        // sync_data: the bytes and the file's new length, not its times.
        log.sync_data()?;
        self.log_lines += 1;
        Ok(())
    }

    /// Inserts or replaces an entry, keeping the age indexes right, and
    /// evicts the oldest if that takes the table over `capacity`.
    fn put(&mut self, key: Arc<str>, entry: Entry, capacity: usize) {
        self.remove(&key);
        if entry.passed == 0 {
            self.pending.insert((entry.first, Arc::clone(&key)));
        } else {
            self.passed.insert((entry.passed, Arc::clone(&key)));
        }
        self.entries.insert(Arc::clone(&key), entry);
        while self.entries.len() > capacity.max(1) {
            // Oldest pending first; only when none is pending, the oldest pass.
            let victim = self
                .pending
                .iter()
                .find(|(_, k)| *k != key)
                .or_else(|| self.passed.iter().find(|(_, k)| *k != key))
                .map(|(_, k)| Arc::clone(k));
            match victim {
                Some(victim) => self.remove(&victim),
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            let key: Arc<str> = Arc::from(key);
            self.pending.remove(&(old.first, Arc::clone(&key)));
            self.passed.remove(&(old.passed, key));
        }
    }

    /// Drops pending entries past the retry window and passes past their
    /// lifetime.
    fn expire_all(&mut self, config: &Config, now: u64) {
        let stale_pending = now.saturating_sub(ms(config.retry_window));
        let stale_passed = now.saturating_sub(ms(config.pass_lifetime));
        let old: Vec<Arc<str>> = self
            .pending
            .iter()
            .take_while(|(first, _)| *first < stale_pending)
            .chain(
                self.passed
                    .iter()
                    .take_while(|(passed, _)| *passed < stale_passed),
            )
            .map(|(_, k)| Arc::clone(k))
            .collect();
        for key in old {
            self.remove(&key);
        }
    }
}

/// One log line: `NETWORK SENDER RECIPIENT FIRST PASSED`.
fn parse_line(line: &[u8]) -> Option<(String, Entry)> {
    let line = std::str::from_utf8(line).ok()?;
    if line.starts_with('#') {
        return None;
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let [network, from, rcpt, first, passed] = parts[..] else {
        return None;
    };
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !(printable(network) && printable(from) && printable(rcpt)) {
        return None;
    }
    let entry = Entry {
        first: first.parse().ok()?,
        passed: passed.parse().ok()?,
    };
    Some((format!("{network} {from} {rcpt}"), entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000; // one second in ms
    const DAY: u64 = 24 * 3600 * S;
    const T0: u64 = 1_800_000_000_000;

    fn spool(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("greylist-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config(capacity: usize) -> Config {
        Config {
            capacity,
            ..Config::with_delay(Duration::from_secs(300))
        }
    }

    /// Triplets use the /24 (IPv4, mapped IPv4 too) or /64 (IPv6) and lower-case addresses.
    #[test]
    fn triplet_keys() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            triplet(ip("192.0.2.77"), "Alice@Far.TEST", "Bob@example.test"),
            "192.0.2.0/24 alice@far.test bob@example.test"
        );
        assert_eq!(
            triplet(ip("::ffff:192.0.2.9"), "", "bob@example.test"),
            "192.0.2.0/24 <> bob@example.test"
        );
        assert_eq!(
            triplet(ip("2001:db8:1:2:3:4:5:6"), "a@b.test", "c@d.test"),
            "2001:db8:1:2::/64 a@b.test c@d.test"
        );
    }

    /// New → 451; early retry → 451 with the time left; retry after the
    /// delay → pass; then known; a retry past the window starts over.
    #[test]
    fn the_greylisting_sequence() {
        let dir = spool("sequence");
        let g = Greylist::open_at(&dir, config(10), T0).unwrap();
        let k = "192.0.2.0/24 a@far.test bob@example.test";
        assert_eq!(
            g.check_at(k, T0).unwrap(),
            Decision::New {
                wait: Duration::from_secs(300)
            }
        );
        assert_eq!(
            g.check_at(k, T0 + 100 * S).unwrap(),
            Decision::Early {
                wait: Duration::from_secs(200)
            }
        );
        assert_eq!(
            g.check_at(k, T0 + 301 * S).unwrap(),
            Decision::Passed {
                after: Duration::from_secs(301)
            }
        );
        assert_eq!(g.check_at(k, T0 + 30 * DAY).unwrap(), Decision::Known);
        // Renewed at day 30, so still known at day 64, gone after 35 idle days.
        assert_eq!(g.check_at(k, T0 + 64 * DAY).unwrap(), Decision::Known);
        assert!(matches!(
            g.check_at(k, T0 + 100 * DAY).unwrap(),
            Decision::New { .. }
        ));
        let late = "192.0.2.0/24 late@far.test bob@example.test";
        g.check_at(late, T0).unwrap();
        assert!(matches!(
            g.check_at(late, T0 + 3 * DAY).unwrap(),
            Decision::New { .. }
        ));
        let _ = fs::remove_dir_all(&dir);
    }

    /// What was decided survives a reopen (the log is replayed), including a
    /// first sighting; a torn last line is skipped, not fatal.
    #[test]
    fn state_survives_reopen() {
        let dir = spool("reopen");
        let (a, b) = (
            "10.0.0.0/24 a@x.test u@example.test",
            "10.0.0.0/24 b@x.test u@example.test",
        );
        {
            let g = Greylist::open_at(&dir, config(10), T0).unwrap();
            g.check_at(a, T0).unwrap();
            g.check_at(a, T0 + 400 * S).unwrap();
            g.check_at(b, T0 + 500 * S).unwrap();
        }
        // A crash in the middle of an append leaves a line without its end.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.join(FILE_NAME))
            .unwrap();
        log.write_all(b"10.0.0.0/24 c@x.test u@exa").unwrap();
        let g = Greylist::open_at(&dir, config(10), T0 + 600 * S).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g.check_at(a, T0 + 601 * S).unwrap(), Decision::Known);
        assert_eq!(
            g.check_at(b, T0 + 600 * S).unwrap(),
            Decision::Early {
                wait: Duration::from_secs(200)
            }
        );
        // The reopen compacted the log: one line per entry, no torn tail.
        let text = fs::read_to_string(dir.join(FILE_NAME)).unwrap();
        assert!(text.ends_with('\n') && !text.contains("u@exa\n"), "{text}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// At the cap the oldest pending entry goes first, passed ones are kept,
    /// and the log is compacted as it grows, so the disk stays bounded too.
    #[test]
    fn the_table_is_bounded() {
        let dir = spool("bounded");
        let g = Greylist::open_at(&dir, config(5), T0).unwrap();
        let good = "10.0.0.0/24 friend@x.test u@example.test";
        g.check_at(good, T0).unwrap();
        g.check_at(good, T0 + 301 * S).unwrap();
        for n in 0..1200 {
            let key = format!("10.9.9.0/24 spam{n}@x.test u@example.test");
            g.check_at(&key, T0 + 400 * S + n).unwrap();
        }
        assert_eq!(g.len(), 5);
        assert_eq!(g.check_at(good, T0 + DAY / 2).unwrap(), Decision::Known);
        let newest = "10.9.9.0/24 spam1199@x.test u@example.test";
        assert!(matches!(
            g.check_at(newest, T0 + 500 * S).unwrap(),
            Decision::Early { .. }
        ));
        let oldest = "10.9.9.0/24 spam0@x.test u@example.test";
        assert!(matches!(
            g.check_at(oldest, T0 + 900 * S).unwrap(),
            Decision::New { .. }
        ));
        let lines = fs::read_to_string(dir.join(FILE_NAME))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 2 * 5 + 1000 + 2, "the log has {lines} lines");
        drop(g);
        let again = Greylist::open_at(&dir, config(5), T0 + 1000 * S).unwrap();
        assert_eq!(again.len(), 5);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Expired entries are dropped at start; a leftover compaction temp file is removed.
    #[test]
    fn expiry_and_stale_temporaries() {
        let dir = spool("expiry");
        {
            let g = Greylist::open_at(&dir, config(10), T0).unwrap();
            g.check_at("10.0.0.0/24 a@x.test u@example.test", T0)
                .unwrap();
        }
        fs::write(dir.join(format!("{FILE_NAME}.tmp-0123")), "half").unwrap();
        let g = Greylist::open_at(&dir, config(10), T0 + 3 * DAY).unwrap();
        assert_eq!(g.len(), 0);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [FILE_NAME]);
        let _ = fs::remove_dir_all(&dir);
    }
}
