//! The command-line checks every example shares: `--help`, an unknown
//! flag, a stray positional argument. The wording checked is the
//! reference's, so each is skipped under an override.

use super::{command, reference_only};
use assert_cmd::assert::Assert;
use predicates::prelude::*;
use std::net::SocketAddr;
use std::time::Duration;

/// Checks the command-line basics every example shares: `--help` prints a
/// usage containing `usage_shows` and exits 0; an unknown flag is a usage
/// error, `error: unknown option '--no-such-flag'` on stderr and exit status 2.
/// Each run may take up to `timeout`. A failure is reported at the caller's line.
///
/// The wording checked is the reference's, so an example replaced by a
/// learner's program (its own override variable) is skipped, and says so:
/// each example of a pair is judged by its own variable.
#[track_caller]
pub fn check_help_and_unknown_flag(example: &str, usage_shows: &str, timeout: Duration) {
    if !reference_only(example, "help_and_bad_flags") {
        return;
    }
    run_with(example, "--help", timeout)
        .success()
        .stdout(predicate::str::contains("Usage:").and(predicate::str::contains(usage_shows)));
    run_with(example, "--no-such-flag", timeout).code(2).stderr(
        predicate::str::starts_with("error: unknown option '--no-such-flag'")
            // The usage line and a pointer to --help, not the whole
            // help, which would bury the one line that matters.
            .and(predicate::str::contains("Usage: "))
            .and(predicate::str::contains("try '--help'"))
            .and(predicate::str::contains("Options:").not()),
    );
}

/// Checks that the server `example` refuses a stray positional argument (a
/// port typed without `--addr`) with a usage error, exit status 2 and a
/// guess: `did you mean --addr 127.0.0.1:7005?` (the host is the default
/// `--addr`'s). Skipped under an override: the wording is the reference's.
#[track_caller]
pub fn check_stray_argument(example: &str, default_host: &str, timeout: Duration) {
    if !reference_only(example, "a stray positional argument is refused") {
        return;
    }
    run_with(example, "7005", timeout)
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with(format!(
            "error: unexpected argument '7005': did you mean --addr {default_host}:7005?"
        )));
}

/// Runs `example` with the one argument `arg`, for at most `timeout`.
fn run_with(example: &str, arg: &str, timeout: Duration) -> Assert {
    assert_cmd::Command::from_std(command(example))
        .arg(arg)
        .timeout(timeout)
        .assert()
}

/// The two command-line tests a server and its client share, written once:
/// `help_and_bad_flags` (both programs' `--help` shows `usage_shows`; an
/// unknown flag is a usage error) and `stray_argument_is_refused` (the
/// server refuses a port typed without `--addr`). The tests keep these names
/// in every file, so `cargo test --test ex01_echo help_and_bad_flags` works.
#[allow(
    unused_macros,
    reason = "only the files of a server and client pair use it"
)]
macro_rules! server_and_client_flag_tests {
    ($server:expr, $client:expr, usage_shows = $usage:expr) => {
        /// --help prints usage and exits 0; an unknown flag prints one error
        /// line plus usage and exits 2 (for the server and the client).
        #[test]
        fn help_and_bad_flags() {
            for example in [$server, $client] {
                common::check_help_and_unknown_flag(
                    example,
                    $usage,
                    std::time::Duration::from_secs(30),
                );
            }
        }

        /// `SERVER 7005` (a port without `--addr`) is refused: exit 2 and
        /// "did you mean --addr 127.0.0.1:7005?", not a server listening elsewhere.
        #[test]
        fn stray_argument_is_refused() {
            common::check_stray_argument($server, "127.0.0.1", std::time::Duration::from_secs(30));
        }
    };
}
#[allow(
    unused_imports,
    reason = "only the files of a server and client pair use it"
)]
pub(crate) use server_and_client_flag_tests;

/// Runs the client `example` against `addr` with `--trace`, `stdin` as its
/// input, and asserts that it succeeded within 30 s; the caller then checks
/// what it printed (the trace is on stderr).
#[track_caller]
pub fn traced_client_run(example: &str, addr: SocketAddr, stdin: &str) -> Assert {
    assert_cmd::Command::from_std(command(example))
        .args(["--addr", &addr.to_string(), "--trace"])
        .write_stdin(stdin)
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
}
