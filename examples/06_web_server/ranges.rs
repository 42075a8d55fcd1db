//! Conditional and range requests: "only if it changed" and "only this part".
//!
//! A browser that has a file in its cache asks again with the validators it
//! was given: `If-None-Match: "<etag>"` and `If-Modified-Since: <date>`. If
//! the file is unchanged we answer `304 Not Modified` with no body, and the
//! page loads from the cache: a few hundred bytes instead of the file.
//!
//! A video player that seeks to minute 40 does not download the first 39:
//! it asks for `Range: bytes=52428800-` and we answer `206 Partial Content`
//! with just that part. `If-Range` makes the range conditional: "give me the
//! rest, but only if it is still the file I have the start of; otherwise the
//! whole new file".

use crate::request::Request;
use crate::response;
use std::fs::Metadata;
use std::time::{SystemTime, UNIX_EPOCH};

/// A file's validators: the strong `ETag` and the `Last-Modified` date.
#[derive(Debug, Clone)]
pub struct Validators {
    /// `"<mtime seconds>.<nanoseconds>-<size>"` in hex, quotes included. It
    /// changes whenever the size or the modification time does; "strong",
    /// since two different contents would need the same size and the same
    /// nanosecond of modification.
    pub etag: String,
    /// Seconds since 1970 of the last modification.
    pub modified: u64,
}

impl Validators {
    /// The validators of a file.
    pub fn of(meta: &Metadata) -> Validators {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        Validators {
            etag: format!(
                "\"{:x}.{:x}-{:x}\"",
                mtime.as_secs(),
                mtime.subsec_nanos(),
                meta.len()
            ),
            modified: mtime.as_secs(),
        }
    }

    /// `Last-Modified` as an HTTP date.
    pub fn last_modified(&self) -> String {
        response::http_date(UNIX_EPOCH + std::time::Duration::from_secs(self.modified))
    }
}

/// Is the client's cached copy still good? (RFC 9110 §13.2.2: `If-None-Match`
/// first; only without it does `If-Modified-Since` count.)
pub fn not_modified(request: &Request, v: &Validators) -> bool {
    let mut tags = request.all("if-none-match").peekable();
    if tags.peek().is_some() {
        // A list of tags, or `*` (any version at all). Weak comparison:
        // `W/"x"` matches `"x"`, since for "do you have it" either will do.
        return tags
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .any(|tag| tag == b"*" || weak(tag) == weak(v.etag.as_bytes()));
    }
    match request
        .header("if-modified-since")
        .and_then(response::parse_http_date)
    {
        // "Not older than the file": the copy was taken at or after the
        // last change. A date in the future is nonsense and ignored.
        Some(since) => since >= v.modified && since <= now_secs(),
        None => false,
    }
}

fn weak(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No range (or one we ignore): the whole file, `200`.
    Whole,
    /// Bytes `first..=last`, `206`.
    Part {
        /// The first byte sent.
        first: u64,
        /// The last byte sent (inclusive, as `Content-Range` writes it).
        last: u64,
    },
    /// A range that starts past the end: `416`.
    Unsatisfiable,
}

/// Answers the `Range` (and `If-Range`) of a GET (RFC 9110 §14).
///
/// One range is served; several (`bytes=0-9,20-29`) would need a
/// `multipart/byteranges` body, which a server may decline by sending the
/// whole file, and so do we. So does a range we cannot parse.
pub fn range(request: &Request, v: &Validators, size: u64) -> RangeAnswer {
    let Some(spec) = request.header("range") else {
        return RangeAnswer::Whole;
    };
    if let Some(condition) = request.header("if-range") {
        // Strong comparison for a tag (a weak one never matches), exact
        // equality for a date: only then is it the same file.
        let same = if condition.starts_with(b"\"") {
            condition == v.etag.as_bytes()
        } else {
            response::parse_http_date(condition) == Some(v.modified)
        };
        if !same {
            return RangeAnswer::Whole;
        }
    }
    parse_range(spec, size)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `size` bytes.
fn parse_range(spec: &[u8], size: u64) -> RangeAnswer {
    let Ok(spec) = std::str::from_utf8(spec) else {
        return RangeAnswer::Whole;
    };
    let Some((unit, set)) = spec.split_once('=') else {
        return RangeAnswer::Whole;
    };
    let set = set.trim();
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((a, b)) = set.split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Too many digits for a u64: larger than any file, so "the end".
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (a.is_empty(), number(a), number(b)) {
        // -n: the last n bytes (all of them if the file is shorter).
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    first: size - n.min(size),
                    last: size - 1,
                }
            }
        }
        // a- and a-b: from a, to b or the end, clipped to the end.
        (false, Some(first), last) if b.is_empty() || last.is_some() => {
            let last = last.unwrap_or(u64::MAX);
            if last < first {
                RangeAnswer::Whole // invalid: ignored, as RFC 9110 says
            } else if first >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    first,
                    last: last.min(size - 1),
                }
            }
        }
        _ => RangeAnswer::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each form of a single range, clipping, and the unsatisfiable cases.
    #[test]
    fn single_ranges() {
        let part = |first, last| RangeAnswer::Part { first, last };
        assert_eq!(parse_range(b"bytes=0-9", 1000), part(0, 9));
        assert_eq!(parse_range(b"bytes=990-5000", 1000), part(990, 999));
        assert_eq!(parse_range(b"bytes=500-", 1000), part(500, 999));
        assert_eq!(parse_range(b"bytes=-100", 1000), part(900, 999));
        assert_eq!(parse_range(b"bytes=-5000", 1000), part(0, 999));
        assert_eq!(
            parse_range(b"bytes=1000-", 1000),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(parse_range(b"bytes=-0", 1000), RangeAnswer::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=0-", 0), RangeAnswer::Unsatisfiable);
    }

    /// Several ranges and nonsense get the whole file.
    #[test]
    fn whole_file_otherwise() {
        for spec in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "items=0-1",
            "bytes=x-y",
            "bytes=-",
            "bytes",
        ] {
            assert_eq!(
                parse_range(spec.as_bytes(), 100),
                RangeAnswer::Whole,
                "{spec}"
            );
        }
    }
}
