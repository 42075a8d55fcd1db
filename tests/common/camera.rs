//! A small speed camera for tests: sends hand-made datagrams to a camera
//! server (ours or a learner's) and reads its signed replies.
//!
//! It speaks the format of [`netlessons::datagram`] but none of the
//! reference client's reliability, so a test decides exactly which datagram
//! leaves, and when: a HELLO alone, half a report, a duplicate, garbage.
#![allow(dead_code)] // each test file uses a different part of this module

use super::Server;
use netlessons::datagram::{self, Ack, Header, Hello, Kind};
use netlessons::sha256::sha256;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A reply from the server that verified with the camera's secret.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The reply's fixed fields.
    pub header: Header,
    /// Its payload (an ACK bitmap, an ERR reason).
    pub payload: Vec<u8>,
}

impl Reply {
    /// The reply as an ACK, if it is one.
    pub fn ack(&self) -> Option<Ack> {
        (self.header.kind == Kind::Ack)
            .then(|| Ack::decode(self.header.seq, &self.payload))
            .flatten()
    }
}

/// One test camera: a UDP socket, the server's address and a secret.
pub struct Camera {
    /// The socket, bound to a loopback address of the test's choice.
    pub socket: UdpSocket,
    server: SocketAddr,
    /// The camera's name, as the server's users file has it.
    pub name: String,
    secret: Vec<u8>,
}

impl Camera {
    /// A camera on `127.0.0.1`, any free port.
    pub fn new(server: SocketAddr, name: &str, secret: &str) -> Camera {
        Camera::bound("127.0.0.1:0", server, name, secret)
    }

    /// A camera bound to `local` (another loopback address, `127.0.0.2:0`,
    /// to look like another host).
    pub fn bound(local: &str, server: SocketAddr, name: &str, secret: &str) -> Camera {
        let socket =
            UdpSocket::bind(local).unwrap_or_else(|e| panic!("could not bind {local}: {e}"));
        Camera {
            socket,
            server,
            name: name.to_string(),
            secret: secret.as_bytes().to_vec(),
        }
    }

    /// Sends raw bytes to the server, exactly as given.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.socket
            .send_to(bytes, self.server)
            .unwrap_or_else(|e| panic!("could not send {} bytes: {e}", bytes.len()));
    }

    /// Sends one datagram signed with this camera's secret.
    pub fn send(&self, kind: Kind, report: u64, seq: u32, total: u32, payload: &[u8]) {
        let header = Header {
            kind,
            report,
            seq,
            total,
        };
        self.send_raw(&datagram::build(&header, payload, &self.secret));
    }

    /// Sends the HELLO announcing `photo` as report `report`.
    pub fn hello(&self, report: u64, photo: &[u8]) {
        let payload = hello_payload(&self.name, photo, "jpg");
        self.send(Kind::Hello, report, 0, total(photo), &payload);
    }

    /// Sends chunk `seq` of `photo`.
    pub fn chunk(&self, report: u64, photo: &[u8], seq: u32) {
        let start = seq as usize * datagram::MAX_PAYLOAD;
        let end = (start + datagram::MAX_PAYLOAD).min(photo.len());
        self.send(Kind::Data, report, seq, total(photo), &photo[start..end]);
    }

    /// The next reply that verifies, within `timeout`; datagrams that do
    /// not verify (or are not well formed) are skipped. `None` on timeout.
    pub fn reply(&self, timeout: Duration) -> Option<Reply> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket.set_read_timeout(Some(left)).unwrap();
            match self.socket.recv_from(&mut buf) {
                Ok((len, _)) => {
                    if let Ok(d) = datagram::parse(&buf[..len]) {
                        if d.verify(&self.secret) {
                            return Some(Reply {
                                header: d.header,
                                payload: d.payload.to_vec(),
                            });
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => {} // an ICMP error from an earlier send: keep listening
            }
        }
    }

    /// Does *anything* arrive within `timeout`, signed or not? For tests
    /// that the server stays silent.
    pub fn anything(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65_536];
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        match self.socket.recv_from(&mut buf) {
            Ok((len, _)) => Some(buf[..len].to_vec()),
            Err(_) => None,
        }
    }

    /// Sends a whole report, simply: HELLO until an answer, then every
    /// chunk, then the missing ones again, until DONE or ERR (returned), or
    /// `None` after `timeout`.
    pub fn send_report(&self, report: u64, photo: &[u8], timeout: Duration) -> Option<Reply> {
        let deadline = Instant::now() + timeout;
        let n = total(photo);
        let mut held = vec![false; n as usize];
        let mut answered = false;
        while Instant::now() < deadline {
            if !answered {
                self.hello(report, photo);
            } else {
                // Resend what the last ACK did not show, at most 32 at a time.
                for seq in (0..n).filter(|&s| !held[s as usize]).take(32) {
                    self.chunk(report, photo, seq);
                }
            }
            while let Some(reply) = self.reply(Duration::from_millis(300)) {
                if reply.header.report != report {
                    continue;
                }
                match reply.header.kind {
                    Kind::Done | Kind::Err => return Some(reply),
                    Kind::Ack => {
                        answered = true;
                        if let Some(ack) = reply.ack() {
                            for (seq, h) in held.iter_mut().enumerate() {
                                *h |= ack.holds(seq as u32);
                            }
                        }
                        if held.iter().all(|&h| h) {
                            // Everything is there: DONE is on its way.
                            continue;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        None
    }
}

/// The number of chunks `photo` takes.
pub fn total(photo: &[u8]) -> u32 {
    datagram::chunk_count(photo.len() as u64) as u32
}

/// A HELLO payload for `photo` from camera `name`.
pub fn hello_payload(name: &str, photo: &[u8], ext: &str) -> Vec<u8> {
    Hello {
        size: photo.len() as u64,
        sha256: sha256(photo),
        lines: format!(
            "camera={name}\nplate=TEST 1\nspeed=99\ntime=2026-12-01T19:00:00Z\next={ext}\n"
        ),
    }
    .encode()
}

/// Starts the camera server (`07_camera_server`, or the learner's program)
/// on the store `store` with the cameras of the users file `users`, plus
/// `extra` flags.
pub fn start_server(store: &Path, users: &Path, extra: &[&str]) -> Server {
    let (store, users) = (store.to_str().unwrap(), users.to_str().unwrap());
    let args = [&["--store", store, "--users", users][..], extra].concat();
    Server::start("07_camera_server", &args)
}

/// The resident memory of process `pid` in KiB (Linux), if readable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Writes a users file with `cameras` (name, secret) into `dir`.
pub fn users_file(dir: &Path, cameras: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("cameras.txt");
    let text: String = cameras
        .iter()
        .map(|(name, secret)| format!("{name}:{secret}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// How many datagrams the kernel dropped on the UDP socket bound to `port`
/// because its receive buffer was full (the last column of
/// `/proc/net/udp`). `None` where that file is not available (not Linux).
pub fn socket_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1)?.ends_with(&wanted) {
            fields.last()?.parse().ok()
        } else {
            None
        }
    })
}
