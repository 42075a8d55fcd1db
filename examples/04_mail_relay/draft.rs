//! The draft: a message while it arrives, streamed to a file.
//!
//! `data.rs` reads the text after `DATA` line by line, and each line goes
//! here at once, never into one big buffer, so a message costs a
//! connection a few KiB of memory whatever its size. After the final `.`,
//! `deliver.rs` reads the draft (to score it) and copies it into every
//! final copy, behind the headers we add (`spool.rs` makes those durable).

use crate::spool::annotate;
use netlessons::sha256::Sha256;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The write buffer of a [`Draft`]: with the connection's 8 KiB read
/// buffer, this is most of what a message costs in memory while it arrives.
const DRAFT_BUFFER: usize = 4 * 1024;

/// A message while it arrives, streamed to a file in `SPOOL/.incoming/`.
///
/// A message may be `--max-size` bytes (10 MiB by default), and a hundred
/// clients may be sending one at once: held in memory that would be a GiB.
/// So each line goes to this file as soon as it has arrived (through a
/// small buffer), and memory per connection stays a few KiB whatever the
/// size. The file server does the same with uploads.
///
/// Why a draft file, and not the mailbox file itself? The final copies are
/// not just the text the client sent: each starts with headers we add
/// *after* the text is complete (`Return-Path:`, `Received:`, and a spam
/// filter's verdict, which needs the whole message first), and there may be
/// several (one per local mailbox, one in the relay queue). Reserving room
/// at the top of a file for headers of unknown length would be fragile; so
/// once the final `.` has arrived, each copy is written as *our headers,
/// then the draft's bytes* ([`Draft::copy_to`], which on Linux the kernel
/// copies file to file without passing the bytes through our memory), and
/// the draft is removed. The draft itself is never synced: it is not what
/// we acknowledge, the copies are. (Postfix works alike: `smtpd` writes the
/// message into a queue file as it arrives, and delivery agents copy it
/// into mailboxes, adding their headers at the top.)
///
/// Dropping a draft removes its file, so a message that is refused, cut
/// off or delivered leaves nothing in `.incoming/`.
#[derive(Debug)]
pub struct Draft {
    path: PathBuf,
    /// `None` once a write failed or the text was discarded.
    file: Option<BufWriter<File>>,
    /// The first write error, reported after the final `.`.
    error: Option<io::Error>,
    size: u64,
    in_header: bool,
    received: usize,
    /// The `Message-ID:` field's value, once seen (unfolded, trimmed).
    message_id: Option<String>,
    /// The last header line was the `Message-ID:` field (for folding).
    in_message_id: bool,
    /// The SHA-256 of the stored text, while it is computed (see
    /// [`Draft::hash_text`]), then its value.
    hasher: Option<Sha256>,
    digest: Option<[u8; 32]>,
}

impl Draft {
    /// Starts a draft in a new, private file at `path` (see
    /// `Spool::new_draft`, which picks the name).
    pub fn create(path: PathBuf) -> io::Result<Draft> {
        let file = create_private(&path)?;
        Ok(Draft {
            path,
            file: Some(BufWriter::with_capacity(DRAFT_BUFFER, file)),
            error: None,
            size: 0,
            in_header: true,
            received: 0,
            message_id: None,
            in_message_id: false,
            hasher: None,
            digest: None,
        })
    }

    /// Appends one line of message text (without its line ending; stored
    /// with `\n`). A write that fails (a full disk) removes the file at
    /// once, so the space is free again for the next message, and the error
    /// is kept for [`Draft::finish`]: the client is still sending, and we
    /// must read on to the final `.` before we can answer.
    pub fn push_line(&mut self, text: &[u8]) {
        if self.in_header {
            if text.is_empty() {
                self.in_header = false; // the blank line after the headers
            } else if text.len() >= 9 && text[..9].eq_ignore_ascii_case(b"received:") {
                self.received += 1;
            }
            self.note_message_id(text);
        }
        self.size += text.len() as u64 + 1;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(text);
            hasher.update(b"\n");
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if let Err(e) = file.write_all(text).and_then(|()| file.write_all(b"\n")) {
            self.error = Some(annotate(e, "could not write", &self.path));
            self.discard();
        }
    }

    /// Keeps the `Message-ID:` field's value (the first one), following
    /// its folded continuation lines (which start with a space or a tab).
    fn note_message_id(&mut self, line: &[u8]) {
        const FIELD: &[u8] = b"message-id:";
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        let value = if folded && self.in_message_id {
            line
        } else {
            self.in_message_id = self.message_id.is_none()
                && line.len() >= FIELD.len()
                && line[..FIELD.len()].eq_ignore_ascii_case(FIELD);
            if !self.in_message_id {
                return;
            }
            &line[FIELD.len()..]
        };
        let id = self.message_id.get_or_insert_with(String::new);
        if id.len() < 1000 {
            id.push_str(String::from_utf8_lossy(value).trim());
        }
    }

    /// The message's `Message-ID` (as written, `<…>` included), if it has one.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref().filter(|id| !id.is_empty())
    }

    /// Stops storing the text (it will be refused) and gives its disk space back.
    pub fn discard(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }

    /// The whole text has arrived: flushes it to the file. An error here
    /// (or an earlier failed write) means the message could not be kept.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the message was discarded"));
        };
        if let Err(e) = file.flush() {
            self.discard();
            return Err(annotate(e, "could not write", &self.path));
        }
        self.digest = self.hasher.take().map(Sha256::finish);
        Ok(())
    }

    /// Computes the SHA-256 of the text as it arrives, for
    /// [`Draft::digest`]. Call it before the first line.
    pub fn hash_text(&mut self) {
        self.hasher = Some(Sha256::new());
    }

    /// The SHA-256 of the stored text, once [`Draft::finish`] has run, if
    /// [`Draft::hash_text`] asked for it.
    pub fn digest(&self) -> Option<[u8; 32]> {
        self.digest
    }

    /// How many `Received:` headers the message arrived with.
    pub fn received_count(&self) -> usize {
        self.received
    }

    /// The stored text from its start, to read it (a filter scoring the
    /// message, say). Call [`Draft::finish`] first.
    pub fn reader(&mut self) -> io::Result<&mut File> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the message was discarded"))?
            .get_mut();
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Appends the stored text to `out`.
    pub fn copy_to(&mut self, mut out: &File) -> io::Result<()> {
        let copied = io::copy(self.reader()?, &mut out)?;
        if copied != self.size {
            return Err(io::Error::other(format!(
                "{}: {copied} of {} bytes read back",
                self.path.display(),
                self.size
            )));
        }
        Ok(())
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Creates a new file that only its owner may read (mail is private), for
/// reading and writing.
fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|e| annotate(e, "could not create", path))
}
