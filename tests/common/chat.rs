//! The chat server's client as a test sees it: a raw socket, send a line,
//! expect a line. `tests/ex02_chat.rs` checks the contract with it, and
//! `tests/bad_input/chat.rs` checks the room still works after garbage.

use super::{IO_TIMEOUT, connect, halves};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// One chat client on its own connection.
pub struct Chatter {
    /// The reading half, buffered: the server's lines.
    pub reader: BufReader<TcpStream>,
    /// The writing half (also the socket, for timeouts and shutdown).
    pub writer: TcpStream,
    /// The name the server gave us (kept up to date by the helpers).
    pub name: String,
}

impl Chatter {
    /// Connects without reading anything yet.
    pub fn raw(addr: SocketAddr) -> Chatter {
        let (reader, writer) = halves(connect(addr));
        Chatter {
            reader,
            writer,
            name: String::new(),
        }
    }

    /// Connects and reads the welcome line; `name` is the guest name the
    /// contract says this client gets.
    pub fn join(addr: SocketAddr, name: &str) -> Chatter {
        let mut chatter = Chatter::raw(addr);
        chatter.welcome();
        chatter.name = name.to_string();
        chatter
    }

    /// Connects and reads the welcome line, taking the guest name from it
    /// (when other clients come and go, the number is not known ahead).
    pub fn join_guest(addr: SocketAddr) -> Chatter {
        let mut chatter = Chatter::raw(addr);
        let welcome = chatter.welcome();
        chatter.name = guest_name(&welcome);
        chatter
    }

    /// Reads the welcome line and checks that it is one.
    fn welcome(&mut self) -> String {
        let welcome = self.line();
        assert!(
            welcome.starts_with("* welcome"),
            "expected a welcome line, got {welcome:?}"
        );
        welcome
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .expect("sending to the chat server");
    }

    /// Sends one line (the `\n` is added).
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    /// The next line from the server, without its `\n`.
    pub fn line(&mut self) -> String {
        self.line_or(|e| format!("no line came from the server ({})", why_none(&e)))
    }

    /// Like [`line`](Chatter::line), with `why` explaining a read error.
    pub fn line_or(&mut self, why: impl Fn(io::Error) -> String) -> String {
        let mut bytes = Vec::new();
        match self.reader.read_until(b'\n', &mut bytes) {
            Ok(0) => panic!(
                "{}: the server closed the connection, a line was expected",
                self.name
            ),
            Ok(_) => {}
            Err(e) => panic!("{}: {}", self.name, why(e)),
        }
        assert_eq!(
            bytes.pop(),
            Some(b'\n'),
            "{}: a line must end with \\n",
            self.name
        );
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", self.name))
    }

    /// Asserts the next line is exactly `want`.
    pub fn expect(&mut self, want: &str) {
        let got = self.line_or(|e| {
            format!(
                "expected the line {want:?}, but no line came ({})",
                why_none(&e)
            )
        });
        assert!(
            got == want,
            "{}: wrong line from the server\n  expected: {want:?}\n  came:     {got:?}",
            self.name
        );
    }

    /// Asserts the next line is an error (`! …`) and returns it.
    pub fn expect_error(&mut self) -> String {
        let got = self.line();
        assert!(
            got.starts_with("! "),
            "{}: expected an error line (! …), got {got:?}",
            self.name
        );
        got
    }

    /// Reads one notice about another client, `* NAME<ending>`.
    pub fn expect_notice(&mut self, ending: &str) {
        let line = self.line();
        assert!(
            line.starts_with("* ") && line.ends_with(ending),
            "expected a notice ending in {ending:?}, got {line:?}"
        );
    }

    /// Asks `/who` and asserts the answer. Because the server answers in
    /// order, this also proves that nothing else was waiting for us first.
    pub fn expect_who(&mut self, names: &str) {
        self.send("/who");
        self.expect(&format!("* online: {names}"));
    }

    /// Asserts that the server closes the connection next (no more lines).
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "{}: expected a close, got {:?}",
                self.name,
                String::from_utf8_lossy(&rest)
            ),
            // A reset is a close too (the server may close with our bytes unread).
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!(
                "{}: expected the server to close the connection: {e}",
                self.name
            ),
        }
    }
}

/// The guest name in a welcome line (`* welcome, you are guestN …`).
pub fn guest_name(welcome: &str) -> String {
    welcome
        .strip_prefix("* welcome, you are ")
        .and_then(|rest| rest.split([' ', ',', ')']).next())
        .unwrap_or_else(|| panic!("no name in the welcome {welcome:?}"))
        .to_string()
}

/// Why a read found no line, in words: a timeout is the server staying silent.
pub fn why_none(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("the server sent nothing for {IO_TIMEOUT:?}")
        }
        _ => format!("reading failed: {e}"),
    }
}
