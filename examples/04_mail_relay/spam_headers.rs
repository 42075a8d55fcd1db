//! The header section of a stored message, read a line at a time: the
//! `X-Spam-*` fields a client wrote are removed ([`strip_spam_headers`]),
//! and the fields the rules look at are collected ([`HeaderSection`]).
//!
//! Trust nobody's verdict but your own: a spammer who writes
//! `X-Spam-Flag: NO` into its message hopes that a mail program further on
//! believes it. So every field whose name starts with `X-Spam-` (in any case,
//! with its folded continuation lines) goes, and our own verdict
//! (`Verdict::headers`, in `score.rs`) goes on top instead.
//!
//! Both readers take the message (`\n` line endings, as the spool stores it)
//! a line at a time, so neither needs more memory for a 10 MiB message than
//! for a short one.

use std::io::{self, BufRead};

/// Header bytes kept for scoring: past this, further header fields are
/// passed through but not scored (a message with megabytes of headers is
/// not going to be scored any better for reading them all).
const MAX_SCORED_HEADERS: usize = 64 * 1024;

/// The longest line we read in one piece. Stored lines are at most 998 bytes
/// (the SMTP session refuses longer ones), so this only guards the reader.
const MAX_LINE: usize = 64 * 1024;

/// Reads a stored message and hands every line (with its `\n`) to `keep`,
/// except the `X-Spam-*` fields the client sent (any case, with their
/// folded continuation lines): a spammer who writes `X-Spam-Flag: NO` into
/// its message must not be believed, and our own verdict
/// (`Verdict::headers`) goes on top instead. The body is passed on as it is.
///
/// Returns how many client `X-Spam-*` fields were left out.
pub fn strip_spam_headers<R: BufRead>(
    mut message: R,
    mut keep: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<usize> {
    let mut line = Vec::new();
    let mut in_headers = true;
    let mut first = true;
    let mut skipping = false;
    let mut removed = 0;
    loop {
        line.clear();
        if read_line(&mut message, &mut line)? == 0 {
            return Ok(removed);
        }
        if in_headers {
            match header_line(&line, first) {
                HeaderLine::Field(name, _) => {
                    first = false;
                    skipping = is_spam_field(&name);
                    if skipping {
                        removed += 1;
                        continue;
                    }
                }
                HeaderLine::Continuation(_) if skipping => continue,
                HeaderLine::Continuation(_) => {}
                HeaderLine::End | HeaderLine::NotHeader => in_headers = false,
            }
        }
        keep(&line)?;
    }
}

/// Is this (lower-case) field name one of the fields a filter writes?
fn is_spam_field(name: &str) -> bool {
    name.starts_with("x-spam-")
}

/// The header section of a message as `Scorer::scan` reads it.
#[derive(Debug, Default)]
pub struct HeaderSection {
    /// (name in lower case, unfolded value), up to [`MAX_SCORED_HEADERS`].
    pub fields: Vec<(String, Vec<u8>)>,
    /// Bytes of header section read so far.
    size: usize,
    /// `X-Spam-*` fields the client wrote.
    pub client_spam_fields: usize,
    /// The blank line (or a line that is not a header) has been seen.
    ended: bool,
}

impl HeaderSection {
    /// Takes `line` if it belongs to the header section (a field, a folded
    /// continuation, or the blank line that ends it); false for a body line.
    pub fn take(&mut self, line: &[u8]) -> bool {
        if self.ended {
            return false;
        }
        match header_line(line, self.fields.is_empty()) {
            HeaderLine::Field(name, value) => {
                self.size += line.len();
                self.client_spam_fields += usize::from(is_spam_field(&name));
                if self.size <= MAX_SCORED_HEADERS {
                    self.fields.push((name, value.to_vec()));
                }
            }
            HeaderLine::Continuation(more) => {
                self.size += line.len();
                if self.size <= MAX_SCORED_HEADERS
                    && let Some((_, value)) = self.fields.last_mut()
                {
                    value.push(b' ');
                    value.extend_from_slice(more);
                }
            }
            HeaderLine::End => self.ended = true,
            // Not a header line: the message has no (more) header section,
            // and this line is the first of the body.
            HeaderLine::NotHeader => {
                self.ended = true;
                return false;
            }
        }
        true
    }
}

/// How a line of the header section reads.
enum HeaderLine<'a> {
    /// `Name: value`: the name in lower case, the value trimmed.
    Field(String, &'a [u8]),
    /// A folded continuation of the field before (starts with a space or tab).
    Continuation(&'a [u8]),
    /// The empty line that ends the header section.
    End,
    /// Not a header line at all.
    NotHeader,
}

/// Classifies one line (with or without its `\n`) of the header section.
/// `first`: no field has been seen yet, so a leading space cannot continue one.
fn header_line(line: &[u8], first: bool) -> HeaderLine<'_> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return HeaderLine::End;
    }
    if matches!(line[0], b' ' | b'\t') {
        return if first {
            HeaderLine::NotHeader
        } else {
            HeaderLine::Continuation(line.trim_ascii())
        };
    }
    match line.iter().position(|&b| b == b':') {
        Some(colon) if is_field_name(&line[..colon]) => HeaderLine::Field(
            String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase(),
            line[colon + 1..].trim_ascii(),
        ),
        _ => HeaderLine::NotHeader,
    }
}

/// RFC 5322 §3.6.8: a field name is 1 or more printable ASCII characters
/// other than `:` (and no spaces).
pub fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b':')
}

/// Reads up to and including the next `\n` (or [`MAX_LINE`] bytes, or the
/// end), appending to `buf`. Returns the number of bytes read (0 at the end).
pub fn read_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    <&mut R as io::Read>::take(reader, MAX_LINE as u64).read_until(b'\n', buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::Verdict;
    use crate::spam_rules::Score;

    /// Client X-Spam-* fields go, folded lines included, in any case; nothing
    /// else changes, and the body is never touched.
    #[test]
    fn rewrite_removes_client_spam_headers() {
        let verdict = Verdict {
            score: Score(0),
            required: Score(5000),
            tests: Vec::new(),
            bayes: None,
            client_spam_fields: 0,
        };
        let message = "X-Spam-Flag: NO\nSubject: hi\nx-spam-status: No,\n  score=-100\n\
                       X-SPAM-LEVEL:\nX-Spammy: kept\n\nX-Spam-Flag: in the body stays\n";
        let mut out = verdict.headers().into_bytes();
        let removed = strip_spam_headers(message.as_bytes(), |line| {
            out.extend_from_slice(line);
            Ok(())
        })
        .unwrap();
        assert_eq!(removed, 3);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-Spam-Status: No, score=0.0 required=5.0 tests=none\nX-Spam-Level: \n\
             Subject: hi\nX-Spammy: kept\n\nX-Spam-Flag: in the body stays\n"
        );
    }
}
