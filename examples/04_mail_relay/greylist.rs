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
//! The table is kept in `SPOOL/.greylist`, and a new sighting is on the
//! disk (appended and synced) before its `451` is sent, so a relay killed
//! and restarted does not greylist the same retry again. The log and its
//! compaction are in `greylist_log.rs`.
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

use crate::greylist_log::Log;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    config: Config,
    state: Mutex<State>,
}

/// One triplet's times, in milliseconds since 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When it was first seen.
    pub first: u64,
    /// When it passed (or last renewed its pass); 0 while pending.
    pub passed: u64,
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
    /// The table on disk.
    log: Log,
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
        let (log, replayed) = Log::replay(spool)?;
        let exists = replayed.is_some();
        let mut state = State {
            entries: HashMap::new(),
            pending: BTreeSet::new(),
            passed: BTreeSet::new(),
            log,
        };
        for (key, entry) in replayed.unwrap_or_default() {
            state.put(Arc::from(key), entry, config.capacity);
        }
        state.expire_all(&config, now);
        // No file yet: it is made with the first sighting.
        if exists {
            state.log.compact(&state.entries)?;
        }
        Ok(Greylist {
            config,
            state: Mutex::new(state),
        })
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
        let mut guard = lock(&self.state);
        // Through the guard once, so that the log and the entries can be
        // borrowed apart below.
        let state = &mut *guard;
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
            state.log.append(key, entry)?;
            state.put(Arc::from(key), entry, config.capacity);
            if state.log.lines() > 2 * state.entries.len() + 1000 {
                state.expire_all(config, now);
                state.log.compact(&state.entries)?;
            }
        }
        Ok(decision)
    }
}

impl State {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greylist_log::FILE_NAME;
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::PathBuf;

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
