//! # netlessons: client/server programming with blocking `std::net`
//!
//! A teaching crate. You learn how networked programs work by reading a short
//! chapter, running a small server and its client, and talking to the server
//! with real tools (`nc`, `curl`, Python, a browser). The examples build on each other:
//!
//! | step | example | what it teaches |
//! |---|---|---|
//! | 1 | `01_echo_server` / `01_echo_client` | sockets, bind/listen/accept/connect, TCP as a byte stream |
//! | 2 | `02_chat_server` / `02_chat_client` | many clients, threads, shared state, backpressure |
//! | 3 | `03_file_server` / `03_file_client` | binary data, counted bodies, digests, atomic writes, authentication |
//! | 4 | `04_mail_relay` / `04_mail_client` | SMTP and POP3, store-and-forward, durable spooling, no open relay |
//! | 6 | `06_web_server` / `06_web_client` | HTTP/1.1, keep-alive, safe paths, caching and ranges; the course served to a browser |
//! | 7 | `07_camera_server` / `07_camera_client` | UDP datagrams, loss and recovery by hand, never answering a stranger |
//!
//! The chapters live in `docs/` and, compiled into these docs, under [`tutorial`].
//!
//! **This is a teaching crate.** There is no TLS and the servers are kept
//! simple on purpose: run them on your own machine or your own network, never
//! on the open internet. By default they only answer the local networks.
//!
//! # Layout
//!
//! * [`framing`]: where one message ends and the next begins (lines, length prefixes), with limits;
//!   `framing/body.rs` reads the bodies a header counts, whole or chunked.
//! * [`datagram`]: the speed camera's signed UDP datagrams (chapter 12): build, parse, verify.
//! * [`connection`]: one socket with its buffers, timeouts and trace; used by servers and clients.
//! * [`server`]: the thread-per-connection runner: allowlist, connection cap, idle timeout, shutdown.
//! * [`limits`]: how many connections the process can hold safely, from its limits.
//! * [`durable`]: write to a temporary file, sync, rename, sync the folder: a file whole or not at all.
//! * [`auth`]: the HMAC challenge-response handshake (both sides) and the users file.
//! * [`sha256`]: SHA-256, HMAC-SHA256 and a constant-time comparison (std has none).
//! * [`random`]: a seeded generator for test data and load (never for secrets).
//! * [`subnet`]: CIDR blocks and the [`Allowlist`](subnet::Allowlist) of who may connect.
//! * [`cli`]: the small flag parser the examples share.
//! * [`trace`]: `--trace`, printing every message that crosses the wire.
//! * [`tutorial`]: the course chapters, as documentation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::too_many_lines)]

pub mod auth;
pub mod cli;
pub mod connection;
pub mod datagram;
pub mod durable;
pub mod framing;
pub mod limits;
pub mod random;
pub mod server;
pub mod sha256;
pub mod subnet;
pub mod trace;
pub mod tutorial;
