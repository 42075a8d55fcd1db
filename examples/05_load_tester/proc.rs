//! What the server costs: its memory and CPU time, read from `/proc`
//! (Linux), for `--server-pid`; and this process's own open-file limit.
//!
//! `/proc/PID/status` and `/proc/PID/stat` are text files the kernel makes
//! up on each read; `ps` and `top` read the same ones. On other systems
//! these figures are simply left out of the report.
//!
//! A server is not always one process: nginx's first process only starts
//! the workers that serve, as child processes. So every figure here covers
//! the process *and its descendants* ([`server_processes`]): what the
//! server costs is the sum of them all.

use netlessons::cli::Matches;
use std::sync::OnceLock;
use std::time::Duration;

/// A server's memory, from `/proc/PID/status` (Linux), summed over the
/// process and its descendants.
pub struct Memory {
    /// Resident set: the memory it occupies now.
    pub rss_mib: f64,
    /// High-water mark: the most it ever occupied.
    pub hwm_mib: f64,
    pub threads: u64,
}

/// Reads the `--server-pid` process's memory, if that option was given.
///
/// With child processes (nginx's workers) the figures are sums: the high-
/// water marks of each process added up, which is at least the most they
/// ever held together.
pub fn server_memory(args: &Matches) -> Option<Memory> {
    let pid: u32 = args.parse_value("--server-pid")?;
    if let Err(e) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        netlessons::log!("warning: cannot read /proc/{pid}/status ({e}); memory not reported");
        return None;
    }
    let mut total = Memory {
        rss_mib: 0.0,
        hwm_mib: 0.0,
        threads: 0,
    };
    for pid in server_processes(pid) {
        // A child that ended while we looked adds nothing.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        // Lines look like "VmRSS:     12345 kB".
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        total.rss_mib += field("VmRSS:") as f64 / 1024.0;
        total.hwm_mib += field("VmHWM:") as f64 / 1024.0;
        total.threads += field("Threads:");
    }
    Some(total)
}

/// `pid` and every process descended from it, from the parent ids in
/// `/proc/*/stat` (Linux). (`/proc/PID/task/TID/children` would be quicker,
/// but not every kernel has it.)
pub fn server_processes(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue; // not a process: /proc/meminfo and the like
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue; // it ended while we looked
        };
        // "PID (NAME) STATE PPID …", NAME possibly holding spaces and ')'.
        let ppid = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((child, ppid));
        }
    }
    // Breadth first from `pid`: its children, then theirs.
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|&&(_, p)| p == parent)
                .map(|&(c, _)| c),
        );
        i += 1;
    }
    tree
}

/// The CPU time (user + system, all threads) the `--server-pid` process and
/// its descendants have used so far, if that option was given.
///
/// `/proc/PID/stat` counts it in clock ticks of 1/100 s (Linux's `USER_HZ`,
/// which is 100 whatever the kernel's own tick rate), so a measurement
/// should last many ticks: half a second is 50, good to about 2 %.
pub fn server_cpu(args: &Matches) -> Option<Duration> {
    let pid: u32 = args.parse_value("--server-pid")?;
    let ticks = |pid: u32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "PID (NAME) STATE …": NAME may contain spaces and parentheses, so
        // count the fields after the *last* ')'. utime and stime are fields
        // 14 and 15 of the line, so the 12th and 13th after the name.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let mut fields = after_name.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some(utime + stime)
    };
    let mut total = ticks(pid)?;
    for child in server_processes(pid).into_iter().skip(1) {
        total += ticks(child).unwrap_or(0); // a child that just ended
    }
    Some(Duration::from_millis(total * 10))
}

/// ` server_rss_mib=… server_hwm_mib=…` if `--server-pid` was given.
pub fn memory_fields(args: &Matches) -> String {
    server_memory(args).map_or_else(String::new, |m| {
        format!(
            " server_rss_mib={:.1} server_hwm_mib={:.1}",
            m.rss_mib, m.hwm_mib
        )
    })
}

/// The soft limit on open files, from `/proc/self/limits` (Linux only).
///
/// Read once and kept: by the time we need it for an error message, we are
/// out of file descriptors and could not open that file any more.
pub fn open_file_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    })
}
