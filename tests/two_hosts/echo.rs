//! 01 echo across hosts: bound to 0.0.0.0 (IPv4 only) and to [::] (IPv6,
//! and IPv4 as mapped addresses).

use super::*;

/// The echo server bound to 0.0.0.0 serves clients on other hosts over IPv4
/// (a raw Python socket and `01_echo_client`); an IPv6 client is refused,
/// since 0.0.0.0 is IPv4 only.
#[test]
fn echo_across_hosts_on_ipv4_any() {
    let Some(lab) = lab("echo_across_hosts_on_ipv4_any") else {
        return;
    };
    let server = echo_on(&lab, "0.0.0.0:0");
    let port = server.addr().port();
    assert_eq!(server.addr().ip().to_string(), "0.0.0.0");
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    assert_admitted(&lab, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
    let client = echo_client(&lab, &INSIDE2, &format!("{}:{port}", INSIDE2.server_v4));
    assert_eq!(client, "one\ntwo\n");
    let err = dial(&lab, &INSIDE, v6(&INSIDE), port).err();
    let err = err.expect("an IPv6 client reached a server bound to 0.0.0.0");
    assert!(err.contains("Connection refused"), "got {err}");
}

/// The echo server bound to [::] serves IPv6 clients and, through
/// IPv4-mapped addresses, IPv4 clients too (Linux's default
/// `net.ipv6.bindv6only=0`).
#[test]
fn echo_across_hosts_on_ipv6_any() {
    let Some(lab) = lab("echo_across_hosts_on_ipv6_any") else {
        return;
    };
    let server = echo_on(&lab, "[::]:0");
    let port = server.addr().port();
    assert_eq!(server.addr().ip().to_string(), "::");
    for host in [&INSIDE, &INSIDE2] {
        assert_admitted(&lab, host, v6(host), port, Hello::Echo);
        assert_admitted(&lab, host, v4(host), port, Hello::Echo);
    }
    let client = echo_client(&lab, &INSIDE, &format!("[{}]:{port}", INSIDE.server_v6));
    assert_eq!(client, "one\ntwo\n");
}

/// Runs `01_echo_client --addr ADDR` on `host` with two lines of input.
fn echo_client(lab: &Lab, host: &netns::Host, addr: &str) -> String {
    let mut client = common::command(ECHO_CLIENT);
    client.args(["--addr", addr]);
    let ran = lab.run(host.name, &client, b"one\ntwo\n");
    ran.expect_success("01_echo_client");
    ran.stdout
}
