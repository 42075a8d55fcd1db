//! The client example (`04_mail_client`): `send` and `fetch` against the
//! relay, its error reports, and its `--trace`.

use super::*;

/// `04_mail_client send` delivers stdin as the body; `fetch` prints it back;
/// `fetch --delete` empties the mailbox.
#[test]
fn client_example_sends_and_fetches() {
    let r = Relay::start("client_example", &[]);
    AssertCommand::from_std(common::command(CLIENT))
        .args([
            "send",
            "--addr",
            &r.smtp().to_string(),
            "--from",
            "alice@example.test",
        ])
        .args(["--to", "bob@example.test", "--subject", "from the client"])
        .write_stdin(".starts with a dot\nsecond line\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("sent: 250"));
    let mail = text(&maildir(&r.spool, "bob")[0]);
    assert!(mail.contains("Subject: from the client\n"), "{mail}");
    assert!(
        mail.ends_with("\n\n.starts with a dot\nsecond line\n"),
        "{mail:?}"
    );
    for delete in [false, true] {
        let mut cmd = AssertCommand::from_std(common::command(CLIENT));
        cmd.args(["fetch", "--addr", &r.pop3().to_string(), "--user", "bob"])
            .env("NETLESSONS_PASSWORD", "bob-pw");
        if delete {
            cmd.arg("--delete");
        }
        cmd.timeout(Duration::from_secs(30))
            .assert()
            .success()
            .stdout(predicate::str::contains("1 message(s) for bob").and(
                predicate::str::contains("\n.starts with a dot\nsecond line\n"),
            ));
    }
    assert!(maildir(&r.spool, "bob").is_empty(), "--delete removed it");
}

/// The client reports the server's refusal and exits non-zero; fetch
/// without a password says where it comes from.
#[test]
fn client_example_reports_errors() {
    let r = Relay::start("client_errors", &[]);
    AssertCommand::from_std(common::command(CLIENT))
        .args([
            "send",
            "--addr",
            &r.smtp().to_string(),
            "--from",
            "a@example.test",
            "--to",
            "nobody@example.test",
        ])
        .write_stdin("hi\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("550"));
    AssertCommand::from_std(common::command(CLIENT))
        .args(["fetch", "--addr", &r.pop3().to_string(), "--user", "bob"])
        .env_remove("NETLESSONS_PASSWORD")
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("NETLESSONS_PASSWORD"));
}

/// The client's --trace shows both directions of the SMTP conversation.
#[test]
fn client_trace_shows_the_conversation() {
    if !reference_only(CLIENT, "client_trace_shows_the_conversation") {
        return;
    }
    let r = Relay::start("client_trace", &[]);
    AssertCommand::from_std(common::command(CLIENT))
        .args([
            "send",
            "--trace",
            "--addr",
            &r.smtp().to_string(),
            "--from",
            "a@example.test",
            "--to",
            "bob@example.test",
        ])
        .write_stdin("traced\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("-> MAIL FROM:<a@example.test>")
                .and(predicate::str::contains("<- 250")),
        );
}
