//! The greylist on disk: an append-only log, compacted now and then.
//!
//! The table (`greylist.rs`) is kept in `SPOOL/.greylist`, one line per
//! triplet event, so that recording a new sighting is one short append and
//! one sync, not a rewrite of the whole table:
//!
//! ```text
//! 192.0.2.0/24 alice@far.test bob@example.test 1764620000000 0
//! 192.0.2.0/24 alice@far.test bob@example.test 1764620000000 1764620301000
//! ```
//!
//! (network, sender (`<>` for the null sender), recipient, first seen and
//! passed, in milliseconds since 1970, 0 for "not yet"); a later line for a
//! triplet replaces an earlier one. [`Log::append`] syncs a new sighting
//! before the table answers `451`, so a relay killed and restarted does not
//! greylist the same retry again.
//!
//! At start, and whenever the log has grown to twice the table, it is
//! *compacted* ([`Log::compact`]): the live entries are written to a new
//! file with the library's durable write (temp file, sync, rename, sync the
//! folder), so a crash in the middle leaves the old log or the new one,
//! never half of either.

use crate::greylist::Entry;
use netlessons::durable::{self, TempFile};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file name of the table, in the spool folder. It starts with `.` so
/// that it can never be taken for a mailbox.
pub const FILE_NAME: &str = ".greylist";

/// The first line of a compacted log, for a person who opens the file.
const HEADER: &str =
    "# greylist: network sender recipient first-seen passed (ms since 1970, 0: pending)";

/// The entries read back from a log, in the order they were written:
/// (triplet key, its times).
pub type Replayed = Vec<(String, Entry)>;

/// The log file of one greylist.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    /// Open for appending (once the file exists).
    file: Option<File>,
    /// Lines in the log, to know when to compact it.
    lines: usize,
}

impl Log {
    /// Opens the log in `spool` and reads back every entry in it, in the
    /// order they were written (a later one replaces an earlier one); `None`
    /// when there is no log yet. Temporary files a crash left behind during
    /// a compaction are removed first.
    pub fn replay(spool: &Path) -> io::Result<(Log, Option<Replayed>)> {
        remove_stale_temporaries(spool)?;
        let log = Log {
            path: spool.join(FILE_NAME),
            file: None,
            lines: 0,
        };
        let file = match File::open(&log.path) {
            Ok(file) => file,
            // No file yet: it is made with the first sighting (a relay whose
            // clients are all inside never writes one).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((log, None)),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        let mut damaged = 0;
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            match parse_line(&line) {
                Some(parsed) => entries.push(parsed),
                // A line cut short by a crash mid-append, or damage:
                // skipping it costs one extra greylisting at worst.
                None => damaged += 1,
            }
        }
        if damaged > 0 {
            netlessons::log!(
                "greylist: skipped {damaged} damaged line(s) in {}",
                log.path.display()
            );
        }
        Ok((log, Some(entries)))
    }

    /// Lines in the log since it was last compacted.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Appends one entry's line and syncs it (creating the log, and syncing
    /// its folder so that its name is durable too, the first time).
    pub fn append(&mut self, key: &str, entry: Entry) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                durable::sync_dir(self.folder())?;
                self.file.insert(file)
            }
        };
        let line = format!("{key} {} {}\n", entry.first, entry.passed);
        // One write call for the whole line: a crash can cut it short, never
        // interleave it with another (the table's mutex is held).
        file.write_all(line.as_bytes())?;
        // sync_data: the bytes and the file's new length, not its times.
        file.sync_data()?;
        self.lines += 1;
        Ok(())
    }

    /// Rewrites the log as one line per live entry, durably, and reopens it
    /// for appending.
    pub fn compact(&mut self, entries: &HashMap<Arc<str>, Entry>) -> io::Result<()> {
        let temp = TempFile::create_private_in(self.folder(), &format!("{FILE_NAME}.tmp-"))?;
        {
            let mut out = io::BufWriter::new(temp.file());
            writeln!(out, "{HEADER}")?;
            // Oldest first, so that a replay meets them in the order they came.
            let mut all: Vec<(&Arc<str>, &Entry)> = entries.iter().collect();
            all.sort_by_key(|(key, e)| (e.first, Arc::clone(key)));
            for (key, entry) in all {
                writeln!(out, "{key} {} {}", entry.first, entry.passed)?;
            }
            out.flush()?;
        }
        temp.persist(&self.path)?;
        self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        self.lines = entries.len();
        Ok(())
    }

    fn folder(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// Removes what a compaction cut short by a crash left in `spool`.
fn remove_stale_temporaries(spool: &Path) -> io::Result<()> {
    let prefix = format!("{FILE_NAME}.tmp-");
    for entry in fs::read_dir(spool)? {
        let name = entry?.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(&prefix)) {
            let _ = fs::remove_file(spool.join(name));
        }
    }
    Ok(())
}

/// One log line: `NETWORK SENDER RECIPIENT FIRST PASSED`.
fn parse_line(line: &[u8]) -> Option<(String, Entry)> {
    let line = std::str::from_utf8(line).ok()?;
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

    /// A log line reads back as its key and times; a torn or odd line does not.
    #[test]
    fn log_lines() {
        assert_eq!(
            parse_line(b"192.0.2.0/24 <> bob@example.test 17 0"),
            Some((
                "192.0.2.0/24 <> bob@example.test".to_string(),
                Entry {
                    first: 17,
                    passed: 0
                }
            ))
        );
        for bad in [
            &b"192.0.2.0/24 a@x.test u@exa"[..],
            b"192.0.2.0/24 a@x.test u@x.test 1 2 3",
            b"192.0.2.0/24  u@x.test 1 2",
            b"192.0.2.0/24 a@x.test u@x.test one 0",
        ] {
            assert_eq!(parse_line(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
