//! What the server costs: its memory and CPU time, read from `/proc`
//! (Linux), for `--server-pid`; and this process's own open-file limit.
//!
//! `/proc/PID/status` and `/proc/PID/stat` are text files the kernel makes
//! up on each read; `ps` and `top` read the same ones. On other systems
//! these figures are simply left out of the report.

use netlessons::cli::Matches;
use std::sync::OnceLock;
use std::time::Duration;

/// A server's memory, from `/proc/PID/status` (Linux).
pub struct Memory {
    /// Resident set: the memory it occupies now.
    pub rss_mib: f64,
    /// High-water mark: the most it ever occupied.
    pub hwm_mib: f64,
    pub threads: u64,
}

/// Reads the `--server-pid` process's memory, if that option was given.
pub fn server_memory(args: &Matches) -> Option<Memory> {
    let pid: u32 = args.parse_value("--server-pid")?;
    let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("warning: cannot read /proc/{pid}/status ({e}); memory not reported");
            return None;
        }
    };
    // Lines look like "VmRSS:     12345 kB".
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Some(Memory {
        rss_mib: field("VmRSS:") as f64 / 1024.0,
        hwm_mib: field("VmHWM:") as f64 / 1024.0,
        threads: field("Threads:"),
    })
}

/// The CPU time (user + system, all threads) the `--server-pid` process has
/// used so far, if that option was given.
///
/// `/proc/PID/stat` counts it in clock ticks of 1/100 s (Linux's `USER_HZ`,
/// which is 100 whatever the kernel's own tick rate), so a measurement
/// should last many ticks: half a second is 50, good to about 2 %.
pub fn server_cpu(args: &Matches) -> Option<Duration> {
    let pid: u32 = args.parse_value("--server-pid")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (NAME) STATE …": NAME may contain spaces and parentheses, so
    // count the fields after the *last* ')'. utime and stime are fields 14
    // and 15 of the line, so the 12th and 13th after the name.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
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
