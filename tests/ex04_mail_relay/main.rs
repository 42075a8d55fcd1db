//! Example 04, the mail relay and its client: the SMTP and POP3 contract,
//! interop with real mail clients (Python's `smtplib` and `poplib`, `curl`),
//! durable delivery and relaying, and the chapter's exercises.
//!
//! The tests are grouped by topic, in the chapter's order: `smtp.rs` (the
//! receiving side), `pop3.rs` (the reading side), `relaying.rs` (the queue
//! and the next hop), `next_hop.rs` (a next hop written in the test),
//! `client.rs` (the client example), `reference.rs` (the reference relay's
//! extra features) and `exercises.rs` (chapter 7's exercises). The SMTP and
//! POP3 client they all use is `tests/common/mail.rs`.
//!
//! Check your own relay with:
//! `NETLESSONS_04_MAIL_RELAY="python3 my_relay.py" cargo test --test ex04_mail_relay`
//! (it must take `--smtp-addr`, `--pop3-addr`, `--spool`, `--users`, `--domain`,
//! `--relay-allow`, `--next-hop` and `--max-size`, and print both `listening on` lines).

#[path = "../common/mod.rs"]
mod common;

mod client;
mod exercises;
mod next_hop;
mod pop3;
mod reference;
mod relaying;
mod smtp;

use assert_cmd::Command as AssertCommand;
use common::mail::{
    LINE_CLOCK_ONLY, MailWire, Relay, USERS, alice_to_bob, expect, from_alice, mail_bob, python,
    send_message, start_relay, transaction,
};
use common::{Server, files_under, free_port, have, override_command, reference_only, temp_dir};
use predicates::prelude::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const RELAY: &str = "04_mail_relay";
const CLIENT: &str = "04_mail_client";

/// How long to wait for mail to arrive somewhere.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A relay from [`Relay::start`] and an SMTP session with it, past `EHLO`.
fn smtp_session(name: &str, extra: &[&str]) -> (Relay, MailWire) {
    let r = Relay::start(name, extra);
    let wire = MailWire::ehlo(r.smtp(), "test.client");
    (r, wire)
}

/// Faster retries, when the reference relay runs (a hidden knob a learner's
/// program need not have).
fn fast_retries() -> Vec<&'static str> {
    if override_command(RELAY).is_none() {
        vec![
            "--retry-base-ms",
            "100",
            "--retry-max-ms",
            "1000",
            "--auth-delay-ms",
            "10",
        ]
    } else {
        Vec::new()
    }
}

/// The messages in a Maildir (`new/` and `cur/`), oldest first.
fn maildir(spool: &Path, user: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|sub| fs::read_dir(spool.join(user).join(sub)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().map(|p| fs::read(p).unwrap()).collect()
}

/// Polls `check` until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A relay forwarding to `hop`, with fast retries and `extra` flags.
fn relay_to(name: &str, hop: SocketAddr, extra: &[&str]) -> Relay {
    let hop = hop.to_string();
    let mut args = vec!["--next-hop", hop.as_str()];
    args.extend(fast_retries());
    args.extend_from_slice(extra);
    Relay::start(name, &args)
}
