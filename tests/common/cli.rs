//! The command-line checks every example shares: `--help`, an unknown
//! flag, a stray positional argument. The wording checked is the
//! reference's, so each is skipped under an override.

use super::{command, reference_only};
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
    use assert_cmd::Command as AssertCommand;
    use predicates::prelude::*;
    if !reference_only(example, "help_and_bad_flags") {
        return;
    }
    AssertCommand::from_std(command(example))
        .arg("--help")
        .timeout(timeout)
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage:").and(predicate::str::contains(usage_shows)));
    AssertCommand::from_std(command(example))
        .arg("--no-such-flag")
        .timeout(timeout)
        .assert()
        .code(2)
        .stderr(
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
    use assert_cmd::Command as AssertCommand;
    use predicates::prelude::*;
    if !reference_only(example, "a stray positional argument is refused") {
        return;
    }
    AssertCommand::from_std(command(example))
        .arg("7005")
        .timeout(timeout)
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with(format!(
            "error: unexpected argument '7005': did you mean --addr {default_host}:7005?"
        )));
}
