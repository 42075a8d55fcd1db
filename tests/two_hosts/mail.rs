//! 04 mail relay across hosts, one test per claim (`cargo test --test
//! two_hosts mail_relay_across_hosts` runs them all). Each builds the same
//! three-host setup ([`MailLab`]): our relay on the server host, bound to
//! 0.0.0.0 and then to [::], with everyone in the lab allowed to connect and
//! only the inside network allowed to relay; its `--next-hop` is a second
//! relay on the second inside host, the final destination of `far.test`.
//! The spam filters (chapter 11) judge by the same line as the relay rule:
//! the outside host is greeted with the wait and greylisted, the inside
//! host is not. And our relay is outside the far host's `--relay-allow`, so
//! the far host greylists it in turn, and our queue retries.

use super::*;
use std::path::{Path, PathBuf};

/// The relay accepts local mail from a host outside `--relay-allow`, over
/// IPv4 (and, with the relay on [::], over IPv6), but refuses to relay for
/// it (554 at RCPT); nothing it was refused stays queued here.
#[test]
fn mail_relay_across_hosts_outside_host_delivers_locally_but_may_not_relay() {
    each_round(
        "mail_relay_across_hosts_outside_host_delivers_locally_but_may_not_relay",
        |mail, round| {
            for to in outside_addrs(&round.relay) {
                let ran = mail.offer_from_outside(&round.relay, to);
                let relay_reply = step(&ran, "RCPT-RELAY");
                assert!(
                    relay_reply.starts_with("RCPT-RELAY 554 ")
                        && relay_reply.contains("Relay access denied"),
                    "relaying for the outside host via {to}: {relay_reply}"
                );
                assert!(
                    step(&ran, "DATA").starts_with("DATA 250 "),
                    "{}",
                    ran.stdout
                );
            }
            // Nothing for carol stayed here: refused relays were never queued.
            assert!(delivered(&round.spool, "carol").is_empty());
        },
    );
}

/// The outside host is greeted with the greeting wait: a two-line `220`
/// that takes at least the relay's 300 ms `--greet-wait-ms`, over IPv4 and
/// (on [::]) IPv6.
#[test]
fn mail_relay_across_hosts_outside_host_waits_for_a_two_line_greeting() {
    each_round(
        "mail_relay_across_hosts_outside_host_waits_for_a_two_line_greeting",
        |mail, round| {
            for to in outside_addrs(&round.relay) {
                let ran = mail.greeting(&OUTSIDE, to, &round.relay);
                ran.expect_success("smtplib greeting from the outside host");
                let greeting = step(&ran, "GREETING");
                let fields: Vec<&str> = greeting.split(' ').collect();
                assert_eq!(
                    fields[1..3],
                    ["220", "2"],
                    "a two-line greeting: {greeting}"
                );
                let waited: f64 = fields[3].parse().unwrap();
                assert!(
                    waited >= 0.29,
                    "the greeting came after {waited} s: {greeting}"
                );
            }
        },
    );
}

/// The outside host's local recipient is greylisted (`451 4.7.1`) until it
/// retries as a real mail server would; then it is accepted.
#[test]
fn mail_relay_across_hosts_outside_host_is_greylisted_until_it_retries() {
    each_round(
        "mail_relay_across_hosts_outside_host_is_greylisted_until_it_retries",
        |mail, round| {
            for to in outside_addrs(&round.relay) {
                let ran = mail.offer_from_outside(&round.relay, to);
                assert!(
                    step(&ran, "RCPT-LOCAL")
                        .starts_with("RCPT-LOCAL 451 4.7.1 <alice@example.test>: greylisted"),
                    "{}",
                    ran.stdout
                );
                assert!(
                    step(&ran, "RCPT-RETRY").starts_with("RCPT-RETRY 250 "),
                    "{}",
                    ran.stdout
                );
            }
        },
    );
}

/// The inside host is greeted at once, with one line.
#[test]
fn mail_relay_across_hosts_inside_host_is_greeted_at_once() {
    each_round(
        "mail_relay_across_hosts_inside_host_is_greeted_at_once",
        |mail, round| {
            let ran = mail.greeting(&INSIDE, IpAddr::V4(INSIDE.server_v4), &round.relay);
            ran.expect_success("smtplib greeting from the inside host");
            assert!(ran.stdout.starts_with("GREETING 220 1 "), "{}", ran.stdout);
        },
    );
}

/// The inside host relays through us to `carol@far.test` with
/// `04_mail_client`: the relay hands it to `--next-hop`, the relay on a
/// third host, which greylists us (we are outside *its* `--relay-allow`)
/// until our queue retries; the letter arrives whole, with one
/// `Received:` per hop.
#[test]
fn mail_relay_across_hosts_inside_host_relays_through_the_next_hop() {
    each_round(
        "mail_relay_across_hosts_inside_host_relays_through_the_next_hop",
        |mail, round| {
            let subject = format!("relayed across three hosts, round {}", round.n);
            let mut send = common::command(MAIL_CLIENT);
            send.args([
                "send",
                "--addr",
                &format!("{}:{}", INSIDE.server_v4, round.relay.addr().port()),
            ])
            .args(["--from", "alice@example.test", "--to", "carol@far.test"])
            .args(["--subject", &subject]);
            mail.lab
                .run(
                    INSIDE.name,
                    &send,
                    b"Carol, this went through the round.relay.\n",
                )
                .expect_success("04_mail_client send from the inside host");
            let letter = mail.letter_for_carol(&round.relay, &subject);
            assert!(
                letter.contains("Carol, this went through the round.relay."),
                "{letter}"
            );
            assert!(
                letter.matches("Received:").count() >= 2,
                "one Received: per hop:\n{letter}"
            );
        },
    );
}

/// The inside host reads, over POP3 (over IPv6 when the relay is on [::]),
/// the local letter the outside host delivered.
#[test]
fn mail_relay_across_hosts_inside_host_reads_local_mail_over_pop3() {
    each_round(
        "mail_relay_across_hosts_inside_host_reads_local_mail_over_pop3",
        |mail, round| {
            mail.offer_from_outside(&round.relay, IpAddr::V4(OUTSIDE.server_v4));
            let pop3_ip = if round.relay.addr().is_ipv6() {
                IpAddr::V6(INSIDE.server_v6)
            } else {
                IpAddr::V4(INSIDE.server_v4)
            };
            let pop3 = SocketAddr::new(pop3_ip, round.relay.addr_of("pop3").port());
            let mut fetch = common::command(MAIL_CLIENT);
            fetch
                .args(["fetch", "--addr", &pop3.to_string(), "--user", "alice"])
                .env("NETLESSONS_PASSWORD", "alice-pw");
            let fetched = mail.lab.run(INSIDE.name, &fetch, b"");
            fetched.expect_success("04_mail_client fetch from the inside host");
            assert!(
                fetched.stdout.contains("A local letter from afar."),
                "alice's mailbox:\n{}",
                fetched.stdout
            );
        },
    );
}

/// Where our relay listens, one round each.
const ANY: [&str; 2] = ["0.0.0.0:0", "[::]:0"];

/// One round of a mail test: our relay on one of [`ANY`], and its spool.
struct Round {
    n: usize,
    relay: common::Server,
    spool: PathBuf,
}

/// Builds the setup of `test` (or returns, after saying why it cannot) and
/// runs `check` with our relay bound to 0.0.0.0, then to [::].
fn each_round(test: &str, check: impl Fn(&MailLab, &Round)) {
    let Some(mail) = MailLab::new(test) else {
        return;
    };
    for (n, any) in ANY.into_iter().enumerate() {
        let (relay, spool) = mail.relay(n, any);
        check(&mail, &Round { n, relay, spool });
    }
}

const MAIL_CLIENT: &str = "04_mail_client";

/// smtplib from a host: one message from `stranger@outside.test` offered to
/// `carol@far.test` (a relay) and `alice@example.test` (local), retrying the
/// local one while it is greylisted. Prints each reply as `STEP CODE TEXT`.
const SMTP_OFFER: &str = r#"
import smtplib, sys, time
host, port = sys.argv[1], int(sys.argv[2])
s = smtplib.SMTP(timeout=10)
started = time.monotonic()
code, greeting = s.connect(host, port)
print("GREETING", code, len(greeting.splitlines()), "%.3f" % (time.monotonic() - started))
print("EHLO", *s.ehlo("client.test"))
print("MAIL", *s.mail("stranger@outside.test"))
print("RCPT-RELAY", *s.rcpt("carol@far.test"))
code, text = s.rcpt("alice@example.test")
print("RCPT-LOCAL", code, text.decode())
# Greylisted: retry as a real mail server would (bounded), a transaction at a time.
tries = 0
while code == 451 and tries < 150:
    tries += 1
    time.sleep(0.2)
    s.rset()
    s.mail("stranger@outside.test")
    code, text = s.rcpt("alice@example.test")
print("RCPT-RETRY", code, text.decode())
print("DATA", *s.data(b"Subject: hello from outside\r\n\r\nA local letter from afar.\r\n"))
s.quit()
"#;

/// Connects and prints `GREETING CODE LINES SECONDS`: how the greeting came.
const SMTP_GREETING: &str = r#"
import smtplib, sys, time
s = smtplib.SMTP(timeout=10)
started = time.monotonic()
code, greeting = s.connect(sys.argv[1], int(sys.argv[2]))
print("GREETING", code, len(greeting.splitlines()), "%.3f" % (time.monotonic() - started))
s.quit()
"#;

/// The lab of a mail test: the far host's relay (the final destination of
/// `far.test`, with carol's mailbox) running on the second inside host, and
/// our relay's users file; [`MailLab::relay`] starts our relay.
struct MailLab {
    lab: Lab,
    dir: PathBuf,
    far: common::Server,
    far_spool: PathBuf,
    users: String,
}

impl MailLab {
    /// The setup for `test`, or `None` (after saying why) when the lab
    /// cannot be built here or the relay is a learner's.
    fn new(test: &str) -> Option<MailLab> {
        let lab = lab(test)?;
        if !reference_only(MAIL, test) {
            return None;
        }
        let dir = common::temp_dir(test);
        let far_spool = dir.join("far-spool");
        let far_users = write_file(&dir, "far-users", "carol:carol-pw\n");
        let far_args = [
            "--smtp-addr",
            "0.0.0.0:0",
            "--pop3-addr",
            "0.0.0.0:0",
            "--domain",
            "far.test",
            "--spool",
            &far_spool.display().to_string(),
            "--users",
            &far_users,
            // The relay is outside the far host's --relay-allow: it is greeted
            // with the wait and greylisted, and its queue retries.
            "--greet-wait-ms",
            "200",
            "--greylist-ms",
            "500",
        ];
        let far = lab.start_server(INSIDE2.name, MAIL, &far_args, 2);
        let users = write_file(&dir, "users", "alice:alice-pw\nbob:bob-pw\n");
        Some(MailLab {
            lab,
            dir,
            far,
            far_spool,
            users,
        })
    }

    /// Our relay on the server host, both listeners on `any`, with the
    /// spool `spool-<n>`; returns it and its spool.
    fn relay(&self, n: usize, any: &str) -> (common::Server, PathBuf) {
        let next_hop = SocketAddr::new(IpAddr::V4(INSIDE2.v4), self.far.addr().port()).to_string();
        let spool = self.dir.join(format!("spool-{n}"));
        let args = [
            "--smtp-addr",
            any,
            "--pop3-addr",
            any,
            "--domain",
            "example.test",
            "--spool",
            &spool.display().to_string(),
            "--users",
            &self.users,
            // Everyone in the lab may connect; only the inside network may relay.
            "--allow",
            "192.168.77.0/24,fd00:77::/64,203.0.113.0/24,2001:db8::/64",
            "--relay-allow",
            "192.168.77.0/24,fd00:77::/64",
            "--next-hop",
            &next_hop,
            "--retry-base-ms",
            "100",
            "--retry-max-ms",
            "400",
            "--greet-wait-ms",
            "300",
            "--greylist-ms",
            "500",
        ];
        (self.lab.start_server(SERVER_HOST, MAIL, &args, 2), spool)
    }

    /// [`SMTP_OFFER`] from the outside host to our relay's SMTP port at `to`.
    fn offer_from_outside(&self, relay: &common::Server, to: IpAddr) -> netns::Ran {
        let port = relay.addr().port().to_string();
        let ran = self
            .lab
            .python(OUTSIDE.name, SMTP_OFFER, &[&to.to_string(), &port]);
        ran.expect_success("smtplib from the outside host");
        ran
    }

    /// [`SMTP_GREETING`] from `host` to our relay's SMTP port at `to`.
    fn greeting(&self, host: &netns::Host, to: IpAddr, relay: &common::Server) -> netns::Ran {
        let port = relay.addr().port().to_string();
        self.lab
            .python(host.name, SMTP_GREETING, &[&to.to_string(), &port])
    }

    /// Waits (up to 30 s) for the letter `subject` in carol's mailbox on
    /// the far host, and returns it.
    fn letter_for_carol(&self, relay: &common::Server, subject: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = delivered(&self.far_spool, "carol")
                .into_iter()
                .find(|m| m.contains(subject));
            if let Some(letter) = found {
                return letter;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the relayed mail did not reach the far host; relay stderr:\n{}\nfar stderr:\n{}",
                relay.stderr(),
                self.far.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Where the outside host reaches our relay: over IPv4, and over IPv6 too
/// when the relay is on [::].
fn outside_addrs(relay: &common::Server) -> Vec<IpAddr> {
    let mut outside = vec![IpAddr::V4(OUTSIDE.server_v4)];
    if relay.addr().is_ipv6() {
        outside.push(IpAddr::V6(OUTSIDE.server_v6));
    }
    outside
}

/// The line of a script's output for `step` (`STEP CODE TEXT`).
#[track_caller]
fn step(ran: &netns::Ran, step: &str) -> String {
    let prefix = format!("{step} ");
    let line = ran.stdout.lines().find(|l| l.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no {step} in:\n{}", ran.stdout))
        .to_string()
}

/// The files in `spool/<user>/new/` (the Maildir of a delivered user).
fn delivered(spool: &Path, user: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(spool.join(user).join("new")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}
