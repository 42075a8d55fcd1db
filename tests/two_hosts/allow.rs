//! Who may connect: the default allowlist of every server (private hosts
//! served, public-looking ones closed before a byte, on every listener),
//! `--allow` blocks, and IPv4-mapped peers matched as IPv4.

use super::*;

/// Echo: the default allowlist serves 192.168.77.2, 10.77.0.2 and fd00:77::2,
/// and closes 203.0.113.2 and 2001:db8::2 without a byte.
#[test]
fn default_allowlist_echo() {
    default_allowlist("default_allowlist_echo", ECHO, &[], Hello::Echo, false);
}

/// Chat: the default allowlist greets 192.168.77.2 and fd00:77::2, and closes
/// 203.0.113.2 and 2001:db8::2 before the welcome line.
#[test]
fn default_allowlist_chat() {
    let hello = Hello::Greeting("* welcome");
    default_allowlist("default_allowlist_chat", CHAT, &[], hello, false);
}

/// File server: private hosts get the handshake's `AUTH HMAC-SHA256` line,
/// public-looking ones are closed before it.
#[test]
fn default_allowlist_files() {
    let test = "default_allowlist_files";
    if !netns::available(test) {
        return;
    }
    let dir = common::temp_dir(test);
    let (root, users) = file_server_files(&dir);
    let args = ["--root", &root, "--users", &users];
    let hello = Hello::Greeting("AUTH HMAC-SHA256 ");
    default_allowlist(test, FILES, &args, hello, false);
}

/// Mail relay: both listeners (SMTP `220`, POP3 `+OK`) greet private hosts
/// and close public-looking ones before the greeting.
#[test]
fn default_allowlist_mail() {
    let test = "default_allowlist_mail";
    if !netns::available(test) {
        return;
    }
    let dir = common::temp_dir(test);
    let spool = dir.join("spool").display().to_string();
    let users = write_file(&dir, "users", "alice:alice-pw\n");
    let args = ["--spool", &spool, "--users", &users];
    default_allowlist(test, MAIL, &args, Hello::Greeting("220"), true);
}

/// `--allow` with IPv4 blocks admits exactly the hosts inside them: a /28
/// takes 192.168.77.2 but not .20 nor the (otherwise default-allowed)
/// 10.77.0.2; a block of documentation addresses takes the outside host.
#[test]
fn allow_cidr_admits_exactly_the_hosts_inside_ipv4() {
    let test = "allow_cidr_admits_exactly_the_hosts_inside_ipv4";
    let Some(lab) = echo_lab(test) else {
        return;
    };
    let server = echo_allowing(&lab, "0.0.0.0:0", "192.168.77.0/28");
    let port = server.addr().port();
    let extra = IpAddr::V4(INSIDE.extra_v4.unwrap());
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE, extra, port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
    assert_refused(&lab, &server, &OUTSIDE, v4(&OUTSIDE), port, Hello::Echo);

    let server = echo_allowing(&lab, "0.0.0.0:0", "203.0.113.0/24");
    let port = server.addr().port();
    assert_admitted(&lab, &OUTSIDE, v4(&OUTSIDE), port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE, v4(&INSIDE), port, Hello::Echo);
}

/// `--allow` with IPv6 blocks admits exactly the hosts inside them:
/// fd00:77::/124 takes fd00:77::2 but not fd00:77::20 nor fd00:78::2;
/// 2001:db8::/64 takes the outside host and nobody else.
#[test]
fn allow_cidr_admits_exactly_the_hosts_inside_ipv6() {
    let test = "allow_cidr_admits_exactly_the_hosts_inside_ipv6";
    let Some(lab) = echo_lab(test) else {
        return;
    };
    let server = echo_allowing(&lab, "[::]:0", "fd00:77::/124");
    let port = server.addr().port();
    let extra = IpAddr::V6(INSIDE.extra_v6.unwrap());
    assert_admitted(&lab, &INSIDE, v6(&INSIDE), port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE, extra, port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE2, v6(&INSIDE2), port, Hello::Echo);
    assert_refused(&lab, &server, &OUTSIDE, v6(&OUTSIDE), port, Hello::Echo);
    // An IPv6-only list admits no IPv4 client, not even a private one.
    assert_refused(&lab, &server, &INSIDE, v4(&INSIDE), port, Hello::Echo);

    let server = echo_allowing(&lab, "[::]:0", "2001:db8::/64");
    let port = server.addr().port();
    assert_admitted(&lab, &OUTSIDE, v6(&OUTSIDE), port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE, v6(&INSIDE), port, Hello::Echo);
}

/// An IPv4 client of a server listening on [::] arrives as `::ffff:a.b.c.d`
/// and is matched against the IPv4 blocks of `--allow`: 192.168.77.2 is in
/// 192.168.77.0/28, 192.168.77.20 (logged as `::ffff:192.168.77.20`) is not.
#[test]
fn ipv4_mapped_client_is_matched_as_ipv4() {
    let test = "ipv4_mapped_client_is_matched_as_ipv4";
    let Some(lab) = echo_lab(test) else {
        return;
    };
    let server = echo_allowing(&lab, "[::]:0", "192.168.77.0/28,203.0.113.2/32");
    let port = server.addr().port();
    let extra = IpAddr::V4(INSIDE.extra_v4.unwrap());
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    assert_admitted(&lab, &OUTSIDE, v4(&OUTSIDE), port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE, extra, port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
    let log = server.stderr();
    assert!(
        log.contains("[::ffff:192.168.77.20]:"),
        "the refusal should name the mapped address; stderr:\n{log}"
    );
    // The same hosts over IPv6 are outside the IPv4 blocks.
    assert_refused(&lab, &server, &INSIDE, v6(&INSIDE), port, Hello::Echo);
}

/// Checks the default allowlist of a server example listening on 0.0.0.0
/// and on [::]: clients from private ranges are served, clients from
/// public-looking addresses are closed before a byte.
fn default_allowlist(test: &str, example: &str, extra: &[&str], hello: Hello, pop3: bool) {
    let Some(lab) = lab(test) else {
        return;
    };
    if !reference_only(example, test) {
        return;
    }
    let listeners = if pop3 { 2 } else { 1 };
    for any in ["0.0.0.0:0", "[::]:0"] {
        let mut args = vec!["--addr", any];
        if pop3 {
            args.extend(["--pop3-addr", any]);
        }
        args.extend(extra);
        let server = lab.start_server(SERVER_HOST, example, &args, listeners);
        let port = server.addr().port();
        let ipv6 = server.addr().is_ipv6();
        assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, hello);
        assert_admitted(&lab, &INSIDE2, v4(&INSIDE2), port, hello);
        assert_refused(&lab, &server, &OUTSIDE, v4(&OUTSIDE), port, hello);
        if ipv6 {
            assert_admitted(&lab, &INSIDE, v6(&INSIDE), port, hello);
            assert_refused(&lab, &server, &OUTSIDE, v6(&OUTSIDE), port, hello);
        }
        if pop3 {
            let pop3 = server.addr_of("pop3").port();
            let hello = Hello::Greeting("+OK");
            assert_admitted(&lab, &INSIDE, v4(&INSIDE), pop3, hello);
            assert_refused(&lab, &server, &OUTSIDE, v4(&OUTSIDE), pop3, hello);
            if ipv6 {
                assert_admitted(&lab, &INSIDE2, v6(&INSIDE2), pop3, hello);
                assert_refused(&lab, &server, &OUTSIDE, v6(&OUTSIDE), pop3, hello);
            }
        }
    }
}
