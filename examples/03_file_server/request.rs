//! A command line, checked and taken apart, and the rule for file names.
//!
//! The line is bytes, not text, and everything in it comes from the client:
//! a size is checked to be plain digits, a digest to be 64 hex characters,
//! and a name against one allowlist of characters ([`valid_name`]) before
//! anything touches the disk.

use netlessons::sha256::from_hex;

/// A command line, checked and taken apart.
#[derive(Debug)]
pub enum Request<'a> {
    List,
    Get(&'a str),
    Put {
        name: &'a str,
        size: u64,
        digest: [u8; 32],
    },
    /// Exercise 2 of chapter 5: `STAT <name>` → `OK <size> <sha256>`, no body.
    Stat(&'a str),
    /// Exercise 1 of chapter 5: `DELETE <name>` → `OK`.
    Delete(&'a str),
    Quit,
}

/// Parses one command line. The error is the reason for the `ERR` reply.
///
/// The line is bytes, not text: a client may send anything, and a name with
/// a NUL or invalid UTF-8 in it must meet the same `bad name` as `../x`.
pub fn parse_request(line: &[u8]) -> Result<Request<'_>, &'static str> {
    let (command, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    // Commands are upper case in the contract; accepting `get` too is kinder
    // to someone typing into `nc`.
    let command = command.to_ascii_uppercase();
    match (command.as_slice(), rest) {
        (b"LIST", None) => Ok(Request::List),
        (b"QUIT", None) => Ok(Request::Quit),
        (b"LIST" | b"QUIT", Some(_)) => Err("bad request"),
        // For a single-name command, everything after the first space is the
        // name, so `GET my file` is refused as a bad *name*, which it is.
        (b"GET", Some(name)) => Ok(Request::Get(checked_name(name)?)),
        (b"STAT", Some(name)) => Ok(Request::Stat(checked_name(name)?)),
        (b"DELETE", Some(name)) => Ok(Request::Delete(checked_name(name)?)),
        (b"PUT", Some(rest)) => {
            // PUT <name> <size> <sha256>: take the last two words from the
            // right; whatever is left is the name (and may be a bad one).
            let mut words = rest.rsplitn(3, |&b| b == b' ');
            let (Some(digest), Some(size), Some(name)) = (words.next(), words.next(), words.next())
            else {
                return Err("bad request");
            };
            let name = checked_name(name)?;
            let size = parse_size(size)?;
            let digest = std::str::from_utf8(digest)
                .ok()
                .and_then(from_hex)
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or("bad request")?;
            Ok(Request::Put { name, size, digest })
        }
        (b"GET" | b"STAT" | b"DELETE" | b"PUT", None) => Err("bad request"),
        _ => Err("unknown command"),
    }
}

/// A size is plain decimal digits: no sign, no spaces, no `0x`. (Rust's
/// `u64::from_str` would accept a leading `+`, so we check the digits first.)
fn parse_size(text: &[u8]) -> Result<u64, &'static str> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err("bad request");
    }
    // Only digits are left, so the one way to fail is a number too big for
    // u64, which is certainly more than we would store.
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or("too large")
}

/// The name rule: 1 to 255 bytes of `A-Z a-z 0-9 . _ -`, not starting with `.`.
///
/// This one check is the server's whole defence against path tricks. With no
/// `/` (nor `\`) allowed, a name can only ever mean a file directly inside the
/// root: `../x` and `/etc/passwd` are simply not names. Refusing a leading dot
/// rules out `.` and `..`, hidden files, and our own temporaries. 255 is the
/// longest file name Linux and macOS allow. An *allowlist* of characters is
/// much safer than a blocklist of dangerous ones: nobody has to think of NUL,
/// `\r`, Unicode look-alikes or Windows' `:`.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=255).contains(&name.len())
        && name[0] != b'.'
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// [`valid_name`], returning the name as text (it is ASCII once it passes).
fn checked_name(name: &[u8]) -> Result<&str, &'static str> {
    if !valid_name(name) {
        return Err("bad name");
    }
    std::str::from_utf8(name).map_err(|_| "bad name")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commands split at the first space; a PUT's size and digest are taken
    /// from the right, so whatever is left is judged as a name.
    #[test]
    fn parses_requests() {
        let digest = "ab".repeat(32);
        assert!(matches!(parse_request(b"LIST"), Ok(Request::List)));
        assert!(matches!(
            parse_request(b"get notes.txt"),
            Ok(Request::Get("notes.txt"))
        ));
        let put = format!("PUT notes.txt 12 {digest}");
        assert!(matches!(
            parse_request(put.as_bytes()),
            Ok(Request::Put {
                name: "notes.txt",
                size: 12,
                digest: [0xab, ..]
            })
        ));
        assert_eq!(parse_request(b"LIST now").err(), Some("bad request"));
        assert_eq!(parse_request(b"GET").err(), Some("bad request"));
        assert_eq!(parse_request(b"GET my file").err(), Some("bad name"));
        assert_eq!(parse_request(b"DANCE").err(), Some("unknown command"));
        let signed = format!("PUT notes.txt +12 {digest}");
        assert_eq!(parse_request(signed.as_bytes()).err(), Some("bad request"));
        let huge = format!("PUT notes.txt 99999999999999999999 {digest}");
        assert_eq!(parse_request(huge.as_bytes()).err(), Some("too large"));
    }

    /// Names: 1 to 255 of letters, digits, `.`, `_` and `-`, no leading dot.
    #[test]
    fn validates_names() {
        for good in ["a", "notes.txt", "x_y-z.tar.gz", &"n".repeat(255)] {
            assert!(valid_name(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "../x",
            "/etc/passwd",
            "a b",
            "é",
            &"n".repeat(256),
        ] {
            assert!(!valid_name(bad.as_bytes()), "{bad}");
        }
        assert!(!valid_name(b"a\0b"));
    }
}
