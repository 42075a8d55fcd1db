//! How many connections this process can hold safely, worked out from its limits.
//!
//! Every connection costs a thread (two in the chat server) and an open file or
//! two. The operating system caps all of those, and the caps do not fail
//! politely:
//!
//! * **Open files** (`ulimit -n`, `RLIMIT_NOFILE`): past it `accept` fails with
//!   "too many open files". That one is harmless: the runner logs it and backs off.
//! * **Memory areas** (`vm.max_map_count`, 65,530 by default): every thread
//!   std starts maps about four areas (its stack and guard page, and a small
//!   *signal stack* and its guard page, which std sets up so that a stack
//!   overflow prints a message instead of a bare crash). When the new thread
//!   cannot map its signal stack, std **aborts the whole process**: nothing
//!   can catch it. With `ulimit -n` above about 17,000 that is where a flood
//!   of connections ends, at about 16,300 threads.
//! * **Threads** system-wide (`kernel.threads-max`, `kernel.pid_max`, a
//!   container's or login session's `pids.max`) and per user
//!   (`ulimit -u`, `RLIMIT_NPROC`): past them `pthread_create` fails, which
//!   std reports and the runner handles; but other programs on the machine
//!   cannot start either.
//!
//! So [`budget`] reads these limits once, at start, keeps a margin of each
//! in reserve, and says how many threads and files the process may spend on
//! connections. The [`crate::server`] runner turns that into the connection
//! cap (`at most N connections at once (limited by …)` on stderr), the default
//! for `--max-conns` and its ceiling.
//!
//! Everything is read with std alone from Linux's `/proc`: `/proc/self/limits`,
//! `/proc/sys/vm/max_map_count`, `/proc/sys/kernel/threads-max`, and what is
//! in use now (`/proc/self/fd`, `/proc/self/maps`, `/proc/loadavg`). Elsewhere
//! (macOS) the open-files limit comes from the shell's `ulimit -n` and the
//! thread limit is a fixed, modest default: weaker, and said so in the log
//! line. A real server does the same arithmetic, or sets the limits itself
//! (`systemd`'s `LimitNOFILE=`, `TasksMax=`) and stays well inside them.

use std::fmt;
use std::fs;
use std::sync::{Mutex, OnceLock};

/// What one connection costs the process, for the [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCost {
    /// Threads held for the connection's whole life (chat: 2, a reader and a writer).
    pub threads: usize,
    /// Open files at the busiest moment: the socket, plus a file being sent or
    /// received (file server, mail spool).
    pub files: usize,
}

impl Default for ConnectionCost {
    /// One thread, and two files (the socket and one file on disk).
    fn default() -> Self {
        ConnectionCost {
            threads: 1,
            files: 2,
        }
    }
}

/// Memory areas std maps for each thread: stack, its guard page, the signal
/// stack and its guard page.
pub const MAPS_PER_THREAD: usize = 4;

/// The limit that decides a budget, and how much of it is left for connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// How much of the resource connections may use (after the margin).
    pub usable: usize,
    /// The limit in words, for the log line: `open files (ulimit -n 1024)`.
    pub name: String,
}

/// What the whole process may spend on connections, shared by all its
/// listeners (the mail relay has two). Get it with [`budget`].
#[derive(Debug)]
pub struct Budget {
    /// Connection threads: the tightest of the thread limits.
    pub threads: Limit,
    /// Open files for connections.
    pub files: Limit,
    /// What connections hold now: (threads, files).
    held: Mutex<(usize, usize)>,
}

impl Budget {
    /// A budget of `threads` and `files` (for tests, or a program that knows
    /// its limits better). [`budget`] is the one read from the system.
    pub fn new(threads: Limit, files: Limit) -> Budget {
        Budget {
            threads,
            files,
            held: Mutex::new((0, 0)),
        }
    }

    /// How many connections of this cost fit, and the limit that decides it.
    pub fn connections(&self, cost: ConnectionCost) -> (usize, CapReason) {
        let by_threads = self.threads.usable / cost.threads.max(1);
        let by_files = self.files.usable / cost.files.max(1);
        if by_threads <= by_files {
            (
                by_threads,
                CapReason {
                    limit: self.threads.clone(),
                    per_conn: cost.threads,
                    unit: "thread",
                },
            )
        } else {
            (
                by_files,
                CapReason {
                    limit: self.files.clone(),
                    per_conn: cost.files,
                    unit: "file",
                },
            )
        }
    }

    /// Takes what one connection costs, if it is there. The runner calls this
    /// before it starts a thread, and [`Budget::give_back`] when it ends.
    pub fn try_take(&self, cost: ConnectionCost) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (threads, files) = (held.0 + cost.threads, held.1 + cost.files);
        if threads > self.threads.usable || files > self.files.usable {
            return false;
        }
        *held = (threads, files);
        true
    }

    /// Returns what [`Budget::try_take`] took.
    pub fn give_back(&self, cost: ConnectionCost) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.0 = held.0.saturating_sub(cost.threads);
        held.1 = held.1.saturating_sub(cost.files);
    }
}

/// Why the cap is what it is, for `(limited by …)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapReason {
    limit: Limit,
    per_conn: usize,
    unit: &'static str,
}

impl fmt::Display for CapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.per_conn == 1 { "" } else { "s" };
        write!(
            f,
            "{}, {} {}{plural} per connection",
            self.limit.name, self.per_conn, self.unit
        )
    }
}

/// The process's budget, read from the system the first time it is asked for
/// and the same ever after (limits are per process, and every listener in it
/// draws on the one budget).
pub fn budget() -> &'static Budget {
    static BUDGET: OnceLock<Budget> = OnceLock::new();
    BUDGET.get_or_init(|| {
        let (threads, files) = read_limits();
        Budget::new(threads, files)
    })
}

/// What to keep in reserve of a limit: a tenth of it, and at least `floor`.
/// The process needs some for itself (its own threads, log files, the users
/// file, a listener) and the counts we start from are only a snapshot.
fn usable(limit: usize, in_use: usize, floor: usize) -> usize {
    let reserve = (limit / 10).max(floor);
    limit.saturating_sub(in_use).saturating_sub(reserve)
}

#[cfg(target_os = "linux")]
fn read_limits() -> (Limit, Limit) {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    // Open files: `ulimit -n`, minus those already open.
    let files = match soft_limit(&limits, "Max open files") {
        Some(n) => Limit {
            usable: usable(n, count_entries("/proc/self/fd"), 16),
            name: format!("open files (ulimit -n {n})"),
        },
        None => unknown_files(),
    };
    // Threads: every limit that can stop a thread, the tightest one wins.
    let mut candidates = Vec::new();
    if let Some(max) = read_number("/proc/sys/vm/max_map_count") {
        let in_use = fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
        candidates.push(Limit {
            usable: usable(max, in_use, 1024) / MAPS_PER_THREAD,
            name: format!(
                "vm.max_map_count {max}: std maps about {MAPS_PER_THREAD} areas per thread"
            ),
        });
    }
    // Every thread on the machine takes a task and a process id.
    let tasks_now = system_tasks();
    for (path, name) in [
        ("/proc/sys/kernel/threads-max", "kernel.threads-max"),
        ("/proc/sys/kernel/pid_max", "kernel.pid_max"),
    ] {
        if let Some(max) = read_number(path) {
            candidates.push(Limit {
                usable: usable(max, tasks_now, 64),
                name: format!("{name} {max}, {tasks_now} threads running on this machine"),
            });
        }
    }
    if let Some((max, current)) = cgroup_pids() {
        candidates.push(Limit {
            usable: usable(max, current, 64),
            name: format!("this control group's pids.max {max}, {current} in use"),
        });
    }
    // `ulimit -u` counts every thread of this user. It does not apply to
    // root (uid 0), which is exempt.
    if let (Some(max), Some(uid)) = (soft_limit(&limits, "Max processes"), real_uid()) {
        if uid != 0 {
            let mine = user_threads(uid);
            candidates.push(Limit {
                usable: usable(max, mine, 64),
                name: format!("processes per user (ulimit -u {max}), {mine} threads of yours"),
            });
        }
    }
    let threads = candidates
        .into_iter()
        .min_by_key(|l| l.usable)
        .unwrap_or_else(unknown_threads);
    (threads, files)
}

#[cfg(not(target_os = "linux"))]
fn read_limits() -> (Limit, Limit) {
    // No /proc: ask a shell for `ulimit -n` (it inherits our limits).
    let files = std::process::Command::new("sh")
        .args(["-c", "ulimit -n"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<usize>().ok())
        .map_or_else(unknown_files, |n| Limit {
            usable: usable(n, 8, 16),
            name: format!("open files (ulimit -n {n})"),
        });
    (unknown_threads(), files)
}

/// When the thread limits cannot be read: a modest fixed figure, said so.
fn unknown_threads() -> Limit {
    Limit {
        usable: 2000,
        name: "a fixed default of 2000 threads (this system's limits could not be read)"
            .to_string(),
    }
}

/// When the open-files limit cannot be read: the common default of 1024.
fn unknown_files() -> Limit {
    Limit {
        usable: usable(1024, 8, 16),
        name: "open files (assumed 1024: the limit could not be read)".to_string(),
    }
}

/// The soft limit of one row of `/proc/self/limits`
/// (`Max open files            1024                 1048576              files`);
/// `None` for `unlimited` or a missing row.
#[cfg(target_os = "linux")]
fn soft_limit(limits: &str, row: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with(row))?;
    line[row.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(target_os = "linux")]
fn read_number(path: &str) -> Option<usize> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(target_os = "linux")]
fn count_entries(dir: &str) -> usize {
    fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// Threads on the whole machine: the number after the `/` in `/proc/loadavg`
/// (`0.50 0.40 0.30 2/345 12345`).
#[cfg(target_os = "linux")]
fn system_tasks() -> usize {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            let field = text.split_whitespace().nth(3)?;
            field.split_once('/')?.1.parse().ok()
        })
        .unwrap_or(0)
}

/// The tightest `pids.max` of this process's control group and its parents,
/// with what that group holds now. Containers and login sessions often have
/// one (systemd's `TasksMax=`).
#[cfg(target_os = "linux")]
fn cgroup_pids() -> Option<(usize, usize)> {
    let groups = fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2: `0::/path`; v1: `N:pids:/path`.
    let (root, path) = groups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        match controllers {
            "" => Some(("/sys/fs/cgroup", path)),
            c if c.split(',').any(|c| c == "pids") => Some(("/sys/fs/cgroup/pids", path)),
            _ => None,
        }
    })?;
    let mut best: Option<(usize, usize)> = None;
    let mut dir = std::path::PathBuf::from(format!("{root}{path}"));
    loop {
        let max = fs::read_to_string(dir.join("pids.max")).ok();
        let current = fs::read_to_string(dir.join("pids.current")).ok();
        if let (Some(max), Some(current)) = (max, current) {
            if let (Ok(max), Ok(current)) = (max.trim().parse(), current.trim().parse()) {
                let left = |(m, c): (usize, usize)| m.saturating_sub(c);
                if best.is_none_or(|b| left((max, current)) < left(b)) {
                    best = Some((max, current));
                }
            }
        }
        if dir.as_os_str().len() <= root.len() || !dir.pop() {
            break;
        }
    }
    best
}

/// The real user id, from `/proc/self/status` (`Uid: real effective saved fs`).
#[cfg(target_os = "linux")]
fn real_uid() -> Option<u32> {
    status_field(&fs::read_to_string("/proc/self/status").ok()?, "Uid:")
}

/// Threads that belong to user `uid`, across all processes (what
/// `RLIMIT_NPROC` counts).
#[cfg(target_os = "linux")]
fn user_threads(uid: u32) -> usize {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| status_field::<u32>(status, "Uid:") == Some(uid))
        .map(|status| status_field::<usize>(&status, "Threads:").unwrap_or(1))
        .sum()
}

/// The first number after `key` in a `/proc/…/status` text.
#[cfg(target_os = "linux")]
fn status_field<T: std::str::FromStr>(status: &str, key: &str) -> Option<T> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(usable: usize, name: &str) -> Limit {
        Limit {
            usable,
            name: name.to_string(),
        }
    }

    #[test]
    fn the_tighter_resource_decides() {
        let b = Budget::new(limit(1000, "maps"), limit(300, "files"));
        let (n, why) = b.connections(ConnectionCost::default());
        assert_eq!(n, 150);
        assert_eq!(why.to_string(), "files, 2 files per connection");
        let chat = ConnectionCost {
            threads: 2,
            files: 1,
        };
        let (n, why) = Budget::new(limit(1000, "maps"), limit(3000, "files")).connections(chat);
        assert_eq!(n, 500);
        assert_eq!(why.to_string(), "maps, 2 threads per connection");
    }

    #[test]
    fn taking_stops_at_the_budget_and_giving_back_frees_it() {
        let b = Budget::new(limit(3, "t"), limit(100, "f"));
        let cost = ConnectionCost::default();
        assert!(b.try_take(cost) && b.try_take(cost) && b.try_take(cost));
        assert!(!b.try_take(cost));
        b.give_back(cost);
        assert!(b.try_take(cost));
    }

    #[test]
    fn usable_keeps_a_margin() {
        assert_eq!(usable(1000, 100, 16), 800);
        assert_eq!(usable(64, 4, 16), 44);
        assert_eq!(usable(10, 20, 16), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_the_limits_table() {
        let table = "Limit                     Soft Limit           Hard Limit           Units\n\
                     Max processes             96364                96364                processes\n\
                     Max open files            1024                 1048576              files\n\
                     Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(soft_limit(table, "Max open files"), Some(1024));
        assert_eq!(soft_limit(table, "Max processes"), Some(96364));
        assert_eq!(soft_limit(table, "Max locked memory"), None);
        let (threads, files) = read_limits();
        assert!(threads.usable > 0 && files.usable > 0);
    }
}
