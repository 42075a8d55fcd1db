//! Test support: start an example (or a learner's program), find its address,
//! keep its output drained, and kill and reap it when the test ends.
//!
//! This file holds the override and skip basics; the rest is one module per
//! job, all re-exported here so a test says `common::connect` whatever file
//! it lives in: [`process`] (starting, draining and reaping programs),
//! [`wire`] (sockets, slow clients and test folders), [`cli`] (the
//! command-line checks every example shares), and one small client per
//! protocol ([`files`], [`mail`], beside [`http`] and [`camera`]).
//!
//! # Pointing the tests at your own program
//!
//! Every example can be replaced by any program, in any language, through an
//! environment variable named after the example in upper case:
//!
//! ```text
//! NETLESSONS_01_ECHO_SERVER="python3 my_echo.py" cargo test --test ex01_echo
//! ```
//!
//! The program is run from the crate's folder (where `Cargo.toml` is, so a
//! relative path such as `python3 my_echo.py` works) as
//! `sh -c 'exec <your command> "$@"' sh --addr 127.0.0.1:0 …`, must honour
//! `--addr`, and must print `listening on ADDR` as its first line on stdout.
//! A test that wants a client to work in a folder of its own passes that
//! folder in full paths on the command line, and in `NETLESSONS_WORKDIR`.
//!
//! Tests of the reference's extra flags (`--allow`, `--max-conns`, …) are
//! skipped under an override, and each prints a `skipped …` line with a
//! running count: cargo's summary counts a skipped test as passed. A test
//! that checks your program but cannot run here (no root, a missing tool)
//! fails under an override instead of skipping, so it never passes unchecked.
//!
//! No wait is unbounded: a program that exits before printing its address
//! is reported at once with its last stderr lines, a client that never
//! connects to a fake server is reported within seconds ([`fake`]), and
//! failures follow one house style ([`report`]).
#![allow(dead_code)] // each test file uses a different part of this module

pub mod camera;
pub mod chat;
pub mod cli;
pub mod fake;
pub mod files;
pub mod http;
pub mod mail;
pub mod process;
pub mod report;
pub mod wire;

// Every test file reaches these as `common::name`, whichever file holds them.
#[allow(unused_imports, reason = "each test file uses a different part")]
pub use cli::{check_help_and_unknown_flag, check_stray_argument};
#[allow(unused_imports, reason = "each test file uses a different part")]
pub use files::{FileLogin, file_login_lines};
#[allow(unused_imports, reason = "each test file uses a different part")]
pub use mail::{read_crlf_line, read_smtp_reply};
#[allow(unused_imports, reason = "each test file uses a different part")]
pub use process::{
    STARTUP_TIMEOUT, Server, command, command_in, crate_dir, describe, example_path, lines_of,
    python,
};
#[allow(unused_imports, reason = "each test file uses a different part")]
pub use wire::{
    IO_TIMEOUT, answers_at_once, assert_dropped_after_a_second, assert_outsider_gets_nothing,
    connect, dir_entries, files_under, free_port, halves, read_to_end, temp_dir, trickle,
};

/// The seeded generator tests make their data with (the library's), so a
/// failure prints its seed and can be repeated.
#[allow(unused_imports, reason = "not every test file makes random data")]
pub use netlessons::random::Rng;

use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable that overrides `example`, e.g.
/// `NETLESSONS_01_ECHO_SERVER`.
pub fn override_var(example: &str) -> String {
    format!("NETLESSONS_{}", example.to_uppercase())
}

/// The learner's command replacing `example`, if the instructor set one.
pub fn override_command(example: &str) -> Option<String> {
    std::env::var(override_var(example))
        .ok()
        .filter(|c| !c.trim().is_empty())
}

/// Is any example overridden in this run? Then the run checks a learner's
/// program, and a test that cannot check it must fail rather than skip.
pub fn any_override() -> bool {
    std::env::vars().any(|(k, v)| k.starts_with("NETLESSONS_0") && !v.trim().is_empty())
}

/// True if `example` runs the reference implementation. Otherwise prints
/// that the test `what` was skipped (it checks a reference-only feature).
pub fn reference_only(example: &str, what: &str) -> bool {
    if override_command(example).is_some() {
        skipped(&format!(
            "{what} under {} (it checks a feature of the reference example, not of the exercise)",
            override_var(example)
        ));
        return false;
    }
    true
}

/// Says on the real stderr that a test was skipped, and why, with a running
/// count: libtest has no "skipped" result, so its summary counts the test
/// as passed, and these lines are the honest count.
pub fn skipped(why: &str) {
    static SKIPPED: AtomicUsize = AtomicUsize::new(0);
    let n = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
    say(&format!(
        "skipped {why} [{n} skipped so far in this run; cargo's summary counts them as passed]"
    ));
}

/// Writes a note on the real stderr (libtest captures `eprintln!`).
pub fn say(text: &str) {
    let _ = writeln!(io::stderr(), "{text}");
}

/// Is a command-line tool installed? If not, say the test is skipped.
///
/// Under an override the test is checking a learner's program, so a
/// missing tool fails it instead: a check that did not run must not pass.
#[track_caller]
pub fn have(tool: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !any_override(),
            "{test} cannot check your program: `{tool}` is not installed (install it and run again)"
        );
        skipped(&format!("{test}: `{tool}` is not installed"));
    }
    found
}
