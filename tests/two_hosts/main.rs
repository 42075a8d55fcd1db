//! The examples across separate computers: a server on one host, clients on
//! others, each host a Linux network namespace the test builds and removes
//! (see `tests/common/netns.rs` for the lab and its addresses).
//!
//! Chapter 9 (`docs/09-two-computers.md`) explains what these tests prove:
//! `127.0.0.1` versus `0.0.0.0` versus a LAN address, the default allowlist
//! (private networks yes, the internet no), `--allow`, IPv4-mapped clients of
//! an IPv6 listener, and the mail relay's relay rules.
//!
//! The lab needs root and the `ip` tool; elsewhere every test here says it
//! was skipped. CI runs as root; on your machine, build first and then
//! `sudo env "PATH=$PATH" "HOME=$HOME" cargo test --test two_hosts` (chapter
//! 9 explains). No packet leaves the lab: the client hosts have no route out.
//!
//! The tests are grouped in the chapter's order: `lab.rs` (the lab itself
//! and the errors it teaches), `echo.rs`, `allow.rs` (who may connect),
//! `exercises.rs` (chapter 9's), then each example across hosts: `chat.rs`,
//! `files.rs`, `mail.rs` and `camera.rs`. This file holds what they share:
//! a lab for a test, and the checks that a host is admitted or refused.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/netns.rs"]
mod netns;

mod allow;
mod camera;
mod chat;
mod echo;
mod exercises;
mod files;
mod lab;
mod mail;

use common::{have, reference_only};
use netns::{INSIDE, INSIDE2, Lab, OUTSIDE, Peer, SERVER_HOST};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

const ECHO: &str = "01_echo_server";

const ECHO_CLIENT: &str = "01_echo_client";

const CHAT: &str = "02_chat_server";

const FILES: &str = "03_file_server";

const MAIL: &str = "04_mail_relay";

const SECRET: &str = "a-secret-for-the-lab";

/// A lab for `test`, or `None` (after saying why) if this machine cannot
/// build one or `python3` (the lab's raw client) is missing.
fn lab(test: &str) -> Option<Lab> {
    if !have("python3", test) {
        return None;
    }
    Lab::new(test)
}

/// [`lab`], for a test of the reference echo server's own flags: `None`
/// (after saying why) under an override too.
fn echo_lab(test: &str) -> Option<Lab> {
    let lab = lab(test)?;
    reference_only(ECHO, test).then_some(lab)
}

/// The echo server on the server host, listening on `addr`.
fn echo_on(lab: &Lab, addr: &str) -> common::Server {
    lab.start_server(SERVER_HOST, ECHO, &["--addr", addr], 1)
}

/// The echo server on the server host, listening on `addr`, admitting
/// only `--allow allow`.
fn echo_allowing(lab: &Lab, addr: &str, allow: &str) -> common::Server {
    lab.start_server(SERVER_HOST, ECHO, &["--addr", addr, "--allow", allow], 1)
}

/// How to see that a server let a client in: what it says first.
#[derive(Clone, Copy, Debug)]
enum Hello {
    /// The echo server says nothing first; we send a line and expect it back.
    Echo,
    /// The server greets with a line starting with this.
    Greeting(&'static str),
}

/// Connects from `from` on `host` to `server`'s `port` across the link.
fn dial(lab: &Lab, host: &netns::Host, from: IpAddr, port: u16) -> Result<Peer, String> {
    let to = SocketAddr::new(host.server_ip_for(from), port);
    lab.connect(host, from, to)
}

/// The server's first words to a client it admitted; `None` if it closed first.
fn first_words(peer: &mut Peer, hello: Hello) -> Option<String> {
    if let Hello::Echo = hello {
        peer.send("ping across the link");
    }
    peer.line()
}

/// `from` on `host` gets in: the server answers as `hello` says.
fn assert_admitted(lab: &Lab, host: &netns::Host, from: IpAddr, port: u16, hello: Hello) {
    let mut peer = dial(lab, host, from, port)
        .unwrap_or_else(|e| panic!("{from} could not connect to port {port}: {e}"));
    let words = first_words(&mut peer, hello).unwrap_or_else(|| {
        panic!("{from} should be served, but the server closed the connection without a word")
    });
    match hello {
        Hello::Echo => assert_eq!(words, "ping across the link", "echo from {from}"),
        Hello::Greeting(start) => assert!(
            words.starts_with(start),
            "{from} expected a greeting starting {start:?}, got {words:?}"
        ),
    }
}

/// `from` on `host` is turned away: the TCP connection opens (the kernel
/// accepts it), then the server closes it without sending a byte. Returns
/// the client's address as the server saw it.
fn assert_closed_without_a_byte(
    lab: &Lab,
    server: SocketAddr,
    host: &netns::Host,
    from: IpAddr,
    port: u16,
    hello: Hello,
) -> SocketAddr {
    let mut peer = dial(lab, host, from, port)
        .unwrap_or_else(|e| panic!("{from} could not connect to port {port}: {e}"));
    if let Some(words) = first_words(&mut peer, hello) {
        panic!("{from} should have been refused, but the server sent {words:?}");
    }
    peer.seen_by(server)
}

/// `from` on `host` is refused by the allowlist: closed without a byte, and
/// the refusal logged with the address the server saw.
fn assert_refused(
    lab: &Lab,
    server: &common::Server,
    host: &netns::Host,
    from: IpAddr,
    port: u16,
    hello: Hello,
) {
    let seen = assert_closed_without_a_byte(lab, server.addr(), host, from, port, hello);
    assert!(
        server.wait_for_stderr(&format!("{seen} refused"), Duration::from_secs(10)),
        "the server did not log `{seen} refused`; its stderr:\n{}",
        server.stderr()
    );
}

/// The host's (primary) IPv4 address.
fn v4(host: &netns::Host) -> IpAddr {
    IpAddr::V4(host.v4)
}

/// The host's (preferred) IPv6 address.
fn v6(host: &netns::Host) -> IpAddr {
    IpAddr::V6(host.v6)
}

/// Writes `text` to `dir/name` and returns the path as a string.
fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A served folder and a users file for the file server, under `dir`.
fn file_server_files(dir: &std::path::Path) -> (String, String) {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let users = write_file(dir, "users", &format!("learner:{SECRET}\n"));
    (root.display().to_string(), users)
}
