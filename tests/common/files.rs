//! The file server's client as a test sees it: our own bytes on the wire,
//! so a test sees exactly what the server sends. [`FileClient`] logs in
//! (checking the server's proof, as a client must) and speaks the transfer
//! commands; [`file_login_lines`] is the login alone, for tests that send
//! it their own way.

use super::{connect, halves};
use netlessons::sha256::{sha256, to_hex};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The client's half of the file server's login, as the lines on the wire.
///
/// Built by [`file_login_lines`] from the server's nonce; tests that speak the
/// protocol over a raw socket send [`line`](FileLogin::line) and compare the
/// reply with [`ok`](FileLogin::ok).
#[derive(Debug, Clone)]
pub struct FileLogin {
    /// `AUTH <user> <cn> <client proof>`, without a line ending.
    pub line: String,
    /// `OK <server proof>`: the one reply that shows the server knows the
    /// secret too. A client must check it, not just the `OK`.
    pub ok: String,
}

/// Answers the file server's challenge `AUTH HMAC-SHA256 <sn>` as `user`
/// with `secret`, using a fresh client nonce (so a wrong `secret` gives a
/// well-formed but wrong answer, for tests of refusals).
pub fn file_login_lines(sn: &str, user: &str, secret: &str) -> io::Result<FileLogin> {
    use netlessons::auth::{client_proof, new_nonce, server_proof};
    let cn = new_nonce()?;
    Ok(FileLogin {
        line: format!("AUTH {user} {cn} {}", client_proof(secret, sn, &cn, user)),
        ok: format!("OK {}", server_proof(secret, sn, &cn, user)),
    })
}

/// The SHA-256 of `data` in lowercase hex, as the protocol writes digests.
pub fn hex_digest(data: &[u8]) -> String {
    to_hex(&sha256(data))
}

/// A raw file-protocol client on its own connection.
pub struct FileClient {
    /// The reading half, buffered: the server's lines and bodies.
    pub reader: BufReader<TcpStream>,
    /// The writing half (also the socket, for timeouts and shutdown).
    pub writer: TcpStream,
}

impl FileClient {
    /// Connects without reading anything yet (the challenge is waiting).
    pub fn connect(addr: SocketAddr) -> FileClient {
        let (reader, writer) = halves(connect(addr));
        FileClient { reader, writer }
    }

    /// Connects and logs in, checking the server's proof as a client must.
    pub fn login(addr: SocketAddr, user: &str, secret: &str) -> FileClient {
        let mut client = FileClient::connect(addr);
        let sn = client.challenge();
        let login = file_login_lines(&sn, user, secret).unwrap();
        let ok = client.ask(&login.line);
        assert_eq!(ok, login.ok, "login as {user}");
        client
    }

    /// The server nonce from `AUTH HMAC-SHA256 <sn>`.
    pub fn challenge(&mut self) -> String {
        let line = self.line();
        line.strip_prefix("AUTH HMAC-SHA256 ")
            .unwrap_or_else(|| panic!("expected the AUTH challenge, got {line:?}"))
            .to_string()
    }

    /// Sends raw bytes, as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Sends one line (a `\n` is added).
    pub fn send(&mut self, line: impl AsRef<[u8]>) {
        let mut bytes = line.as_ref().to_vec();
        bytes.push(b'\n');
        self.send_bytes(&bytes);
    }

    /// Reads one line, without its `\n`; panics if the server closed instead.
    pub fn line(&mut self) -> String {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).unwrap();
        assert!(
            line.ends_with(b"\n"),
            "expected a line, got {:?}",
            String::from_utf8_lossy(&line)
        );
        line.pop();
        String::from_utf8(line).expect("a UTF-8 reply line")
    }

    /// Sends a line and returns the reply line.
    pub fn ask(&mut self, line: impl AsRef<[u8]>) -> String {
        self.send(line);
        self.line()
    }

    /// Uploads `data` as `name`, expecting `READY`; returns the final reply.
    pub fn put(&mut self, name: &str, data: &[u8]) -> String {
        let ready = self.ask(format!("PUT {name} {} {}", data.len(), hex_digest(data)));
        assert_eq!(ready, "READY", "PUT {name}");
        self.send_bytes(data);
        self.line()
    }

    /// Uploads and asserts the server confirmed size and digest.
    pub fn put_ok(&mut self, name: &str, data: &[u8]) {
        assert_eq!(
            self.put(name, data),
            format!("OK {} {}", data.len(), hex_digest(data)),
            "PUT {name}"
        );
    }

    /// Downloads `name`: `Ok(bytes)` after checking size and digest, or `Err(reply)`.
    pub fn get(&mut self, name: &str) -> Result<Vec<u8>, String> {
        let header = self.ask(format!("GET {name}"));
        let Some(rest) = header.strip_prefix("OK ") else {
            return Err(header);
        };
        let (size, digest) = rest.split_once(' ').expect("OK <size> <sha256>");
        let mut body = vec![0u8; size.parse().unwrap()];
        self.reader.read_exact(&mut body).unwrap();
        assert_eq!(
            hex_digest(&body),
            digest,
            "GET {name}: body and digest disagree"
        );
        Ok(body)
    }

    /// `LIST` as (size, digest, name) triples.
    pub fn list(&mut self) -> Vec<(u64, String, String)> {
        let header = self.ask("LIST");
        let n: usize = header
            .strip_prefix("OK ")
            .and_then(|n| n.parse().ok())
            .expect("OK <n>");
        (0..n)
            .map(|_| {
                let line = self.line();
                let mut words = line.splitn(3, ' ');
                let size = words.next().unwrap().parse().expect("a size");
                (
                    size,
                    words.next().unwrap().to_string(),
                    words.next().expect("a name").to_string(),
                )
            })
            .collect()
    }

    /// Everything the server sends until it closes (a reset ends it too).
    pub fn rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        rest
    }

    /// Like [`rest`](FileClient::rest), but a read error (a reset, a
    /// timeout) fails the test: the server must close cleanly.
    pub fn rest_clean(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .expect("reading until the server closes");
        rest
    }
}

/// A fake file server's side of the handshake's start: sends a fresh
/// challenge on `stream` and reads the client's answer line. Returns the
/// buffered reading half, the writing half, the nonce sent, and the answer
/// (with its line ending).
pub fn fake_challenge(stream: TcpStream) -> (BufReader<TcpStream>, TcpStream, String, String) {
    let (mut reader, mut writer) = halves(stream);
    let sn = netlessons::auth::new_nonce().unwrap();
    writeln!(writer, "AUTH HMAC-SHA256 {sn}").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    (reader, writer, sn, line)
}
