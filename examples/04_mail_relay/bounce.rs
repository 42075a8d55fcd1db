//! Bounces: telling a sender that their message could not be delivered.
//!
//! Once we have said `250` to a message, it is ours to deliver. When that
//! fails for good (the next hop answers `5xx`, or keeps answering `4xx`
//! until `--max-queue-age` has passed), dropping it silently would leave
//! the sender believing it arrived. So we write back: a *delivery status
//! notification* (RFC 3464), the "Undelivered Mail Returned to Sender"
//! every mail user has seen. It is a `multipart/report` message in three
//! parts: a note for people, a machine-readable status per recipient, and
//! the original message's headers so the sender can tell which one it was.
//!
//! A bounce is sent with the empty envelope sender `<>`, which means "do
//! not reply to this". A bounce that itself cannot be delivered is then
//! dropped (with a log line) instead of bouncing back and forth for ever
//! (RFC 5321 §6.1, §4.5.5).

use crate::message;
use std::time::SystemTime;

/// A recipient we gave up on, and why (the next hop's reply, or ours).
#[derive(Debug, Clone)]
pub struct Failure {
    /// The recipient's address.
    pub rcpt: String,
    /// Why, as one line of text.
    pub why: String,
}

/// The bounce for `failures` of `original` (the queued text with `\n`
/// endings), from `MAILER-DAEMON@host` to `sender`, with `\n` endings.
/// `id` makes the `Message-ID` and the MIME boundary unique.
pub fn bounce_message(
    host: &str,
    id: &str,
    sender: &str,
    failures: &[Failure],
    original: &[u8],
    now: SystemTime,
) -> Vec<u8> {
    let boundary = format!("{id}/{host}");
    let mut text = format!(
        "From: MAILER-DAEMON@{host} (Mail Delivery System)\n\
         To: <{sender}>\n\
         Subject: Undelivered Mail Returned to Sender\n\
         Date: {date}\n\
         Message-ID: <{id}@{host}>\n\
         Auto-Submitted: auto-replied\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\
         \tboundary=\"{boundary}\"\n\
         \n\
         This is a MIME-encapsulated message.\n\
         \n\
         --{boundary}\n\
         Content-Type: text/plain; charset=us-ascii\n\
         \n\
         This is the mail system at {host}.\n\
         \n\
         I'm sorry to have to inform you that your message could not\n\
         be delivered to one or more recipients. The reasons are below.\n\
         \n",
        date = message::rfc5322_date(now),
    );
    for failure in failures {
        text.push_str(&format!("<{}>: {}\n", failure.rcpt, one_line(&failure.why)));
    }
    text.push_str(&format!(
        "\n--{boundary}\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; {host}\n"
    ));
    for failure in failures {
        text.push_str(&format!(
            "\nFinal-Recipient: rfc822; {}\n\
             Action: failed\n\
             Status: {}\n\
             Diagnostic-Code: smtp; {}\n",
            failure.rcpt,
            status_code(&failure.why),
            one_line(&failure.why)
        ));
    }
    text.push_str(&format!(
        "\n--{boundary}\n\
         Content-Type: text/rfc822-headers\n\
         \n"
    ));
    let mut bytes = text.into_bytes();
    // The original's header section: its lines up to the first empty one.
    for line in message::lines(original).take_while(|line| !line.is_empty()) {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    bytes
}

/// A reason made safe for one line of a message: printable ASCII, at most
/// 500 characters (a next hop's reply can be anything).
fn one_line(why: &str) -> String {
    why.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .take(500)
        .collect()
}

/// The enhanced status code (RFC 3463) in a reply such as
/// `550 5.1.1 <x>: user unknown` (a `4.x.x` stays one, as Postfix reports
/// an expired message), or a general one: `4.4.7` (delivery time expired)
/// when we gave up without a code, `5.0.0` otherwise.
fn status_code(why: &str) -> String {
    let found = why.split_whitespace().find(|word| {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    });
    match found {
        Some(code) => code.to_string(),
        None if why.contains("gave up") => "4.4.7".to_string(),
        None => "5.0.0".to_string(),
    }
}
