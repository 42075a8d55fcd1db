//! The examples across separate computers: a server on one host, clients on
//! others, each host a Linux network namespace the test builds and removes
//! (see `tests/common/netns.rs` for the lab and its addresses).
//!
//! Chapter 9 (`docs/09-two-computers.md`) explains what these tests prove:
//! `127.0.0.1` versus `0.0.0.0` versus a LAN address, the default allowlist
//! (private networks yes, the internet no), `--allow`, IPv4-mapped clients of
//! an IPv6 listener, and the mail relay's relay rules.
//!
//! The lab needs root and the `ip` tool; elsewhere every test here says it
//! was skipped. Run them with `sudo -E cargo test --test two_hosts` (CI runs
//! as root). No packet leaves the lab: the client hosts have no route out.

mod common;
#[path = "common/netns.rs"]
mod netns;

use common::{have, reference_only};
use netns::{INSIDE, INSIDE2, Lab, OUTSIDE, Peer, SERVER_HOST};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

const ECHO: &str = "01_echo_server";
const ECHO_CLIENT: &str = "01_echo_client";

/// A lab for `test`, or `None` (after saying why) if this machine cannot
/// build one or `python3` (the lab's raw client) is missing.
fn lab(test: &str) -> Option<Lab> {
    if !have("python3", test) {
        return None;
    }
    Lab::new(test)
}

/// How to see that a server let a client in: what it says first.
#[derive(Clone, Copy, Debug)]
enum Hello {
    /// The echo server says nothing first; we send a line and expect it back.
    Echo,
    /// The server greets with a line starting with this.
    Greeting(&'static str),
}

/// Connects from `from` on `host` to `server`'s `port` across the link.
fn dial(lab: &Lab, host: &netns::Host, from: IpAddr, port: u16) -> Result<Peer, String> {
    let to = SocketAddr::new(host.server_ip_for(from), port);
    lab.connect(host, from, to)
}

/// The server's first words to a client it admitted; `None` if it closed first.
fn first_words(peer: &mut Peer, hello: Hello) -> Option<String> {
    if let Hello::Echo = hello {
        peer.send("ping across the link");
    }
    peer.line()
}

/// `from` on `host` gets in: the server answers as `hello` says.
fn assert_admitted(lab: &Lab, host: &netns::Host, from: IpAddr, port: u16, hello: Hello) {
    let mut peer = dial(lab, host, from, port)
        .unwrap_or_else(|e| panic!("{from} could not connect to port {port}: {e}"));
    let words = first_words(&mut peer, hello)
        .unwrap_or_else(|| panic!("{from} was let in, expected it to be served; it was closed"));
    match hello {
        Hello::Echo => assert_eq!(words, "ping across the link", "echo from {from}"),
        Hello::Greeting(start) => assert!(
            words.starts_with(start),
            "{from} expected a greeting starting {start:?}, got {words:?}"
        ),
    }
}

/// `from` on `host` is refused by the allowlist: the TCP connection opens
/// (the kernel accepts it), then the server closes it without sending a byte,
/// and logs the refusal with the address it saw.
fn assert_refused(
    lab: &Lab,
    server: &common::Server,
    host: &netns::Host,
    from: IpAddr,
    port: u16,
    hello: Hello,
) {
    let mut peer = dial(lab, host, from, port)
        .unwrap_or_else(|e| panic!("{from} could not connect to port {port}: {e}"));
    if let Some(words) = first_words(&mut peer, hello) {
        panic!("{from} should have been refused, but the server sent {words:?}");
    }
    let seen = peer.seen_by(server.addr());
    assert!(
        server.wait_for_stderr(&format!("{seen} refused"), Duration::from_secs(10)),
        "the server did not log `{seen} refused`; its stderr:\n{}",
        server.stderr()
    );
}

fn v4(host: &netns::Host) -> IpAddr {
    IpAddr::V4(host.v4)
}

fn v6(host: &netns::Host) -> IpAddr {
    IpAddr::V6(host.v6)
}

// ---------------------------------------------------------------------------
// The lab itself, and the errors chapter 9 teaches to tell apart.
// ---------------------------------------------------------------------------

/// A server bound to 127.0.0.1 answers on its own host but refuses (RST,
/// "connection refused") a client on another host: loopback is not the LAN.
#[test]
fn loopback_server_is_unreachable_from_another_host() {
    let Some(lab) = lab("loopback_server_is_unreachable_from_another_host") else {
        return;
    };
    let server = lab.start_server(SERVER_HOST, ECHO, &["--addr", "127.0.0.1:0"], 1);
    let port = server.addr().port();
    // On the server's own host, through its own loopback: fine.
    let loopback = server.addr().ip();
    let mut local = lab
        .connect_on(SERVER_HOST, loopback, server.addr(), Duration::from_secs(5))
        .expect("local connect");
    local.send("hello self");
    assert_eq!(local.line().as_deref(), Some("hello self"));
    // From the inside host: nothing listens on 192.168.77.1:port.
    let err = dial(&lab, &INSIDE, v4(&INSIDE), port)
        .err()
        .expect("should be refused");
    assert!(err.contains("Connection refused"), "got {err}");
}

/// A server bound to one LAN address answers there, and refuses connections
/// to the host's other addresses, even when `--allow` would admit them.
#[test]
fn lan_address_server_answers_only_on_that_address() {
    let Some(lab) = lab("lan_address_server_answers_only_on_that_address") else {
        return;
    };
    if !reference_only(ECHO, "lan_address_server_answers_only_on_that_address") {
        return;
    }
    let addr = format!("{}:0", INSIDE.server_v4);
    let server = lab.start_server(
        SERVER_HOST,
        ECHO,
        &["--addr", &addr, "--allow", "0.0.0.0/0,::/0"],
        1,
    );
    let port = server.addr().port();
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    for (host, from) in [(&OUTSIDE, v4(&OUTSIDE)), (&INSIDE, v6(&INSIDE))] {
        let err = dial(&lab, host, from, port).err();
        let err = err.unwrap_or_else(|| panic!("{from} reached a port bound elsewhere"));
        assert!(err.contains("Connection refused"), "{from}: got {err}");
    }
}

/// The client hosts have no route out of the lab: a connection to anywhere
/// else fails at once with "network is unreachable" (nothing is sent).
#[test]
fn no_route_out_of_the_lab() {
    let Some(lab) = lab("no_route_out_of_the_lab") else {
        return;
    };
    for host in [INSIDE, INSIDE2, OUTSIDE] {
        for to in ["198.51.100.7:7001", "[2001:db8:ffff::7]:7001"] {
            let to: SocketAddr = to.parse().unwrap();
            let from = if to.is_ipv4() { v4(&host) } else { v6(&host) };
            let err = lab.connect(&host, from, to).err();
            let err = err.unwrap_or_else(|| panic!("{} reached {to}", host.name));
            assert!(err.contains("unreachable"), "{} -> {to}: {err}", host.name);
        }
    }
}

/// What a firewall's DROP looks like from the client: when the server's
/// replies are silently discarded (here by a blackhole route on the server
/// host), connecting hangs until the client gives up, while a closed port
/// without that route answers "connection refused" at once.
#[test]
fn dropped_packets_hang_while_a_closed_port_is_refused() {
    let Some(lab) = lab("dropped_packets_hang_while_a_closed_port_is_refused") else {
        return;
    };
    let to = SocketAddr::new(IpAddr::V4(INSIDE.server_v4), 9);
    let from = v4(&INSIDE);
    let short = Duration::from_millis(1500);
    let err = lab.connect_on(INSIDE.name, from, to, short).err().unwrap();
    assert!(err.contains("Connection refused"), "closed port: {err}");

    let route = ["route", "add", "blackhole", "192.168.77.2/32"];
    let mut add = Command::new("ip");
    add.args(route);
    lab.run(SERVER_HOST, &add, b"")
        .expect_success("ip route add blackhole");
    let started = std::time::Instant::now();
    let err = lab.connect_on(INSIDE.name, from, to, short).err().unwrap();
    assert!(err.contains("timed out"), "dropped: {err}");
    assert!(started.elapsed() >= short, "gave up too early");
}

// ---------------------------------------------------------------------------
// 01 echo across hosts.
// ---------------------------------------------------------------------------

/// The echo server bound to 0.0.0.0 serves clients on other hosts over IPv4
/// (a raw Python socket and `01_echo_client`); an IPv6 client is refused,
/// since 0.0.0.0 is IPv4 only.
#[test]
fn echo_across_hosts_on_ipv4_any() {
    let Some(lab) = lab("echo_across_hosts_on_ipv4_any") else {
        return;
    };
    let server = lab.start_server(SERVER_HOST, ECHO, &["--addr", "0.0.0.0:0"], 1);
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
    let server = lab.start_server(SERVER_HOST, ECHO, &["--addr", "[::]:0"], 1);
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

// ---------------------------------------------------------------------------
// Who may connect: the default allowlist, --allow, IPv4-mapped peers.
// ---------------------------------------------------------------------------

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

/// Echo: the default allowlist serves 192.168.77.2, 10.77.0.2 and fd00:77::2,
/// and closes 203.0.113.2 and 2001:db8::2 without a byte.
#[test]
fn default_allowlist_echo() {
    default_allowlist("default_allowlist_echo", ECHO, &[], Hello::Echo, false);
}

/// `--allow` with IPv4 blocks admits exactly the hosts inside them: a /28
/// takes 192.168.77.2 but not .20 nor the (otherwise default-allowed)
/// 10.77.0.2; a block of documentation addresses takes the outside host.
#[test]
fn allow_cidr_admits_exactly_the_hosts_inside_ipv4() {
    let test = "allow_cidr_admits_exactly_the_hosts_inside_ipv4";
    let Some(lab) = lab(test) else {
        return;
    };
    if !reference_only(ECHO, test) {
        return;
    }
    let args = ["--addr", "0.0.0.0:0", "--allow", "192.168.77.0/28"];
    let server = lab.start_server(SERVER_HOST, ECHO, &args, 1);
    let port = server.addr().port();
    let extra = IpAddr::V4(INSIDE.extra_v4.unwrap());
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE, extra, port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
    assert_refused(&lab, &server, &OUTSIDE, v4(&OUTSIDE), port, Hello::Echo);

    let args = ["--addr", "0.0.0.0:0", "--allow", "203.0.113.0/24"];
    let server = lab.start_server(SERVER_HOST, ECHO, &args, 1);
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
    let Some(lab) = lab(test) else {
        return;
    };
    if !reference_only(ECHO, test) {
        return;
    }
    let args = ["--addr", "[::]:0", "--allow", "fd00:77::/124"];
    let server = lab.start_server(SERVER_HOST, ECHO, &args, 1);
    let port = server.addr().port();
    let extra = IpAddr::V6(INSIDE.extra_v6.unwrap());
    assert_admitted(&lab, &INSIDE, v6(&INSIDE), port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE, extra, port, Hello::Echo);
    assert_refused(&lab, &server, &INSIDE2, v6(&INSIDE2), port, Hello::Echo);
    assert_refused(&lab, &server, &OUTSIDE, v6(&OUTSIDE), port, Hello::Echo);
    // An IPv6-only list admits no IPv4 client, not even a private one.
    assert_refused(&lab, &server, &INSIDE, v4(&INSIDE), port, Hello::Echo);

    let args = ["--addr", "[::]:0", "--allow", "2001:db8::/64"];
    let server = lab.start_server(SERVER_HOST, ECHO, &args, 1);
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
    let Some(lab) = lab(test) else {
        return;
    };
    if !reference_only(ECHO, test) {
        return;
    }
    let args = [
        "--addr",
        "[::]:0",
        "--allow",
        "192.168.77.0/28,203.0.113.2/32",
    ];
    let server = lab.start_server(SERVER_HOST, ECHO, &args, 1);
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
