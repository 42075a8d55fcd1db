//! 02 chat across hosts: two people on two hosts, the server on a third.

use super::*;

/// Two people on two hosts chat through a server on a third, with the server
/// bound to 0.0.0.0 and to [::]; `02_chat_client` joins from a host too.
#[test]
fn chat_across_hosts() {
    let Some(lab) = lab("chat_across_hosts") else {
        return;
    };
    for any in ["0.0.0.0:0", "[::]:0"] {
        let server = lab.start_server(SERVER_HOST, CHAT, &["--addr", any], 1);
        let port = server.addr().port();
        // Over IPv6 when the server listens on [::], else IPv4.
        let from_a = if server.addr().is_ipv6() {
            v6(&INSIDE)
        } else {
            v4(&INSIDE)
        };
        let mut a = dial(&lab, &INSIDE, from_a, port).expect("inside connects");
        a.line_where("a welcome", |l| l.starts_with("* welcome"));
        a.send("/nick alice");
        a.line_where("the new name", |l| l == "* you are now alice");

        // IPv4 from the second host (on [::], an IPv4-mapped peer).
        let mut b = dial(&lab, &INSIDE2, v4(&INSIDE2), port).expect("inside2 connects");
        b.line_where("a welcome", |l| l.starts_with("* welcome"));
        let joined = a.line_where("a join notice", |l| l.ends_with(" joined"));
        let b_name = joined
            .strip_prefix("* ")
            .and_then(|l| l.strip_suffix(" joined"))
            .unwrap()
            .to_string();
        b.send("hello from the other host");
        let heard = a.line_where("b's message", |l| l.contains("hello from"));
        assert_eq!(heard, format!("{b_name}: hello from the other host"));
        a.send("hi back, across the wire");
        let heard = b.line_where("a's message", |l| l.contains("hi back"));
        assert_eq!(heard, "alice: hi back, across the wire");

        // The example client, from the second host, over the same listener.
        let addr = SocketAddr::new(IpAddr::V4(INSIDE2.server_v4), port);
        let mut client = common::command(CHAT_CLIENT);
        client.args(["--addr", &addr.to_string()]);
        let ran = lab.run(INSIDE2.name, &client, b"/who\nsent by 02_chat_client\n");
        ran.expect_success("02_chat_client");
        assert!(
            ran.stdout.contains("* online: ") && ran.stdout.contains("alice"),
            "02_chat_client printed:\n{}",
            ran.stdout
        );
        let heard = a.line_where("the client's message", |l| l.contains("sent by"));
        assert!(heard.ends_with(": sent by 02_chat_client"), "got {heard:?}");

        b.send("/quit");
        b.line_where("bye", |l| l == "* bye");
        assert_eq!(b.line(), None, "the server closes after /quit");
        a.line_where("a leave notice", |l| l == format!("* {b_name} left"));
    }
}

const CHAT_CLIENT: &str = "02_chat_client";
