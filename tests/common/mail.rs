//! The mail client's readers: one CRLF line, and a whole SMTP reply.

use std::io::BufRead;

/// One line of a CRLF protocol (SMTP, POP3) without its `\r\n`; panics if
/// the line does not end in `\r\n` (a bare `\n`, or the server closing).
pub fn read_crlf_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.ends_with("\r\n"), "expected a CRLF line, got {line:?}");
    line.truncate(line.len() - 2);
    line
}

/// A whole SMTP reply, its lines joined by `\n`. A reply goes on while its
/// lines read `250-…` (a `-` after the code) and ends with `250 …`.
pub fn read_smtp_reply(reader: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let line = read_crlf_line(reader);
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
        all.push('\n');
    }
}
