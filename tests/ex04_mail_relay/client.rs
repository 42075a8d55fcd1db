//! The client example (`04_mail_client`): `send` and `fetch` against the
//! relay, its error reports, and its `--trace`.

use super::*;

/// `04_mail_client send` delivers stdin as the body; `fetch` prints it back;
/// `fetch --delete` empties the mailbox.
#[test]
fn client_example_sends_and_fetches() {
    let r = Relay::start("client_example", &[]);
    send(
        &r,
        &["--from", "alice@example.test", "--to", "bob@example.test"],
    )
    .args(["--subject", "from the client"])
    .write_stdin(".starts with a dot\nsecond line\n")
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
        let mut cmd = fetch_bob(&r);
        cmd.env("NETLESSONS_PASSWORD", "bob-pw");
        if delete {
            cmd.arg("--delete");
        }
        cmd.assert()
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
    send(
        &r,
        &["--from", "a@example.test", "--to", "nobody@example.test"],
    )
    .write_stdin("hi\n")
    .assert()
    .failure()
    .stderr(predicate::str::contains("550"));
    fetch_bob(&r)
        .env_remove("NETLESSONS_PASSWORD")
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
    send(
        &r,
        &["--from", "a@example.test", "--to", "bob@example.test"],
    )
    .arg("--trace")
    .write_stdin("traced\n")
    .assert()
    .success()
    .stderr(
        predicate::str::contains("-> MAIL FROM:<a@example.test>")
            .and(predicate::str::contains("<- 250")),
    );
}

/// `04_mail_client send --addr SMTP ARGS…` to relay `r`, given 30 s.
fn send(r: &Relay, args: &[&str]) -> AssertCommand {
    let mut cmd = AssertCommand::from_std(common::command(CLIENT));
    cmd.args(["send", "--addr", &r.smtp().to_string()])
        .args(args)
        .timeout(Duration::from_secs(30));
    cmd
}

/// `04_mail_client fetch --addr POP3 --user bob` from relay `r`, given 30 s.
fn fetch_bob(r: &Relay) -> AssertCommand {
    let mut cmd = AssertCommand::from_std(common::command(CLIENT));
    cmd.args(["fetch", "--addr", &r.pop3().to_string(), "--user", "bob"])
        .timeout(Duration::from_secs(30));
    cmd
}
