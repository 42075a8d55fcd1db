//! The instructor override itself (`tests/common`): a learner's program is
//! run from the crate's folder, a program that exits at once or cannot
//! start fails fast and says why, and skipped tests say they were skipped.
//!
//! Each test runs `cargo test` on another test file with an override set,
//! as an instructor would, and reads what it printed.

mod common;

use common::report::run_to_end;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// How long one nested `cargo test` run may take once everything is built.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// A client given as a path relative to the crate's folder (as README's
/// `python3 my_client.py` is) passes the file-client exercises.
#[test]
fn a_client_given_as_a_relative_path_passes() {
    let client = relative_to_crate(&common::example_path("03_file_client"));
    let (ok, out) = nested(
        "ex03_file_transfer",
        &["exercise_3", "exercise_4"],
        ("NETLESSONS_03_FILE_CLIENT", &client),
    );
    assert!(ok && out.contains("2 passed"), "{out}");
}

/// A client that exits at once fails the exercise within seconds, saying
/// it never connected, instead of leaving the test waiting for ever.
#[test]
fn a_client_that_exits_at_once_fails_fast() {
    let (ok, out) = nested(
        "ex03_file_transfer",
        &["exercise_4"],
        ("NETLESSONS_03_FILE_CLIENT", "false"),
    );
    assert!(!ok, "a client that does nothing passed:\n{out}");
    assert!(out.contains("the client never connected"), "{out}");
}

/// A server that cannot start is reported as such, with its own stderr,
/// not as a wait for its `listening on` line.
#[test]
fn a_server_that_cannot_start_is_reported_with_its_stderr() {
    let (ok, out) = nested(
        "ex01_echo",
        &["an_idle_client_does_not_block_others"],
        ("NETLESSONS_01_ECHO_SERVER", "sh no-such-server.sh"),
    );
    assert!(!ok, "a server that never started passed:\n{out}");
    assert!(
        out.contains("before printing 'listening on ADDR'") && out.contains("no-such-server.sh"),
        "{out}"
    );
    assert!(!out.contains("within 60s"), "{out}");
}

/// Under an override, a test of a reference-only flag says it was skipped
/// and that cargo counts it as passed.
#[test]
fn skipped_tests_say_so_with_a_count() {
    let server = relative_to_crate(&common::example_path("01_echo_server"));
    let (ok, out) = nested(
        "ex01_echo",
        &["max_conns_refuses_the_extra_client"],
        ("NETLESSONS_01_ECHO_SERVER", &server),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("skipped max_conns_refuses_the_extra_client under NETLESSONS_01_ECHO_SERVER")
            && out.contains("1 skipped so far in this run; cargo's summary counts them as passed"),
        "{out}"
    );
}

/// Runs `cargo test --test FILE -- FILTERS` from the crate's folder with
/// one override set (and every other one removed); returns whether it
/// passed, and stdout and stderr together.
fn nested(file: &str, filters: &[&str], var: (&str, &str)) -> (bool, String) {
    built();
    let mut cmd = cargo();
    cmd.args(["test", "--quiet", "--test", file, "--"])
        .args(filters)
        .env(var.0, var.1);
    let done = run_to_end(
        &format!("cargo test --test {file} with {}={:?}", var.0, var.1),
        cmd,
        b"",
        RUN_LIMIT,
    );
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    (done.status.success(), out)
}

/// Builds the test files the nested runs use, once (this may take a while
/// when this file runs alone), so that [`RUN_LIMIT`] bounds only the runs.
fn built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cmd = cargo();
        cmd.args([
            "test",
            "--quiet",
            "--no-run",
            "--test",
            "ex01_echo",
            "--test",
            "ex03_file_transfer",
        ]);
        let done = run_to_end("cargo test --no-run", cmd, b"", Duration::from_secs(1200));
        assert!(done.status.success(), "{}", done.stderr_tail());
    });
}

/// The `cargo` that built this test, run from the crate's folder with no
/// override of its own.
fn cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(common::crate_dir());
    for (key, _) in std::env::vars() {
        if key.starts_with("NETLESSONS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `path` written relative to the crate's folder (with `..` where needed).
fn relative_to_crate(path: &Path) -> String {
    let base: Vec<Component> = common::crate_dir().components().collect();
    let target: Vec<Component> = path.components().collect();
    let same = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in same..base.len() {
        rel.push("..");
    }
    for part in &target[same..] {
        rel.push(part);
    }
    rel.display().to_string()
}
