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
//! was skipped. CI runs as root; on your machine, build first and then
//! `sudo env "PATH=$PATH" "HOME=$HOME" cargo test --test two_hosts` (chapter
//! 9 explains). No packet leaves the lab: the client hosts have no route out.

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
    let words = first_words(&mut peer, hello).unwrap_or_else(|| {
        panic!("{from} should be served, but the server closed the connection without a word")
    });
    match hello {
        Hello::Echo => assert_eq!(words, "ping across the link", "echo from {from}"),
        Hello::Greeting(start) => assert!(
            words.starts_with(start),
            "{from} expected a greeting starting {start:?}, got {words:?}"
        ),
    }
}

/// `from` on `host` is turned away: the TCP connection opens (the kernel
/// accepts it), then the server closes it without sending a byte. Returns
/// the client's address as the server saw it.
fn assert_closed_without_a_byte(
    lab: &Lab,
    server: SocketAddr,
    host: &netns::Host,
    from: IpAddr,
    port: u16,
    hello: Hello,
) -> SocketAddr {
    let mut peer = dial(lab, host, from, port)
        .unwrap_or_else(|e| panic!("{from} could not connect to port {port}: {e}"));
    if let Some(words) = first_words(&mut peer, hello) {
        panic!("{from} should have been refused, but the server sent {words:?}");
    }
    peer.seen_by(server)
}

/// `from` on `host` is refused by the allowlist: closed without a byte, and
/// the refusal logged with the address the server saw.
fn assert_refused(
    lab: &Lab,
    server: &common::Server,
    host: &netns::Host,
    from: IpAddr,
    port: u16,
    hello: Hello,
) {
    let seen = assert_closed_without_a_byte(lab, server.addr(), host, from, port, hello);
    assert!(
        server.wait_for_stderr(&format!("{seen} refused"), Duration::from_secs(10)),
        "the server did not log `{seen} refused`; its stderr:\n{}",
        server.stderr()
    );
}

/// The host's (primary) IPv4 address.
fn v4(host: &netns::Host) -> IpAddr {
    IpAddr::V4(host.v4)
}

/// The host's (preferred) IPv6 address.
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

// ---------------------------------------------------------------------------
// Chapter 9's exercises: your own echo server, across hosts. Check yours with
// sudo env "PATH=$PATH" "HOME=$HOME" NETLESSONS_01_ECHO_SERVER="python3 my_echo.py" \
//     cargo test --test two_hosts exercise_
// ---------------------------------------------------------------------------

/// Exercise 1: one listener on `[::]` serves IPv6 clients and IPv4 clients
/// (as IPv4-mapped addresses) on other hosts.
#[test]
fn exercise_1_one_listener_for_ipv4_and_ipv6() {
    let Some(lab) = lab("exercise_1_one_listener_for_ipv4_and_ipv6") else {
        return;
    };
    let server = lab.start_server(SERVER_HOST, ECHO, &["--addr", "[::]:0"], 1);
    let port = server.addr().port();
    assert_admitted(&lab, &INSIDE, v6(&INSIDE), port, Hello::Echo);
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    assert_admitted(&lab, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
    assert_admitted(&lab, &INSIDE2, v6(&INSIDE2), port, Hello::Echo);
}

/// Exercise 2: by default, a server bound to every address still serves
/// only the local networks: 192.168.77.2, 10.77.0.2 and fd00:77::2 get their
/// echo, 203.0.113.2 and 2001:db8::2 are closed without a byte.
#[test]
fn exercise_2_refuse_the_world_by_default() {
    let Some(lab) = lab("exercise_2_refuse_the_world_by_default") else {
        return;
    };
    for any in ["0.0.0.0:0", "[::]:0"] {
        let server = lab.start_server(SERVER_HOST, ECHO, &["--addr", any], 1);
        let (addr, port) = (server.addr(), server.addr().port());
        assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
        assert_admitted(&lab, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
        assert_closed_without_a_byte(&lab, addr, &OUTSIDE, v4(&OUTSIDE), port, Hello::Echo);
        if addr.is_ipv6() {
            assert_admitted(&lab, &INSIDE, v6(&INSIDE), port, Hello::Echo);
            assert_closed_without_a_byte(&lab, addr, &OUTSIDE, v6(&OUTSIDE), port, Hello::Echo);
        }
    }
}

/// Exercise 3: `--allow 192.168.77.0/28,2001:db8::/64` on a `[::]` listener
/// serves exactly those: 192.168.77.2 (arriving as `::ffff:192.168.77.2`)
/// and 2001:db8::2, not 192.168.77.20, fd00:77::2 nor 10.77.0.2.
#[test]
fn exercise_3_allow_matches_ipv4_mapped_peers() {
    let Some(lab) = lab("exercise_3_allow_matches_ipv4_mapped_peers") else {
        return;
    };
    let args = [
        "--addr",
        "[::]:0",
        "--allow",
        "192.168.77.0/28,2001:db8::/64",
    ];
    let server = lab.start_server(SERVER_HOST, ECHO, &args, 1);
    let (addr, port) = (server.addr(), server.addr().port());
    let extra = IpAddr::V4(INSIDE.extra_v4.unwrap());
    assert_admitted(&lab, &INSIDE, v4(&INSIDE), port, Hello::Echo);
    assert_admitted(&lab, &OUTSIDE, v6(&OUTSIDE), port, Hello::Echo);
    assert_closed_without_a_byte(&lab, addr, &INSIDE, extra, port, Hello::Echo);
    assert_closed_without_a_byte(&lab, addr, &INSIDE, v6(&INSIDE), port, Hello::Echo);
    assert_closed_without_a_byte(&lab, addr, &INSIDE2, v4(&INSIDE2), port, Hello::Echo);
    assert_closed_without_a_byte(&lab, addr, &OUTSIDE, v4(&OUTSIDE), port, Hello::Echo);
}

// ---------------------------------------------------------------------------
// The chapter's lab script.
// ---------------------------------------------------------------------------

/// Runs `docs/two-host-lab.sh ARG` under the name prefix `prefix`.
fn lab_script(prefix: &str, arg: &str) -> netns::Ran {
    let mut sh = Command::new("sh");
    sh.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/two-host-lab.sh"))
        .arg(arg)
        .env("NETLESSONS_LAB_PREFIX", prefix);
    netns::run_bounded(sh, b"", netns::LAB_TIMEOUT)
}

/// Takes the script's lab down even when the test fails half way.
struct ScriptLab(String);

impl Drop for ScriptLab {
    fn drop(&mut self) {
        lab_script(&self.0, "down");
    }
}

/// `docs/two-host-lab.sh up` builds the chapter's lab (refusing to build it
/// twice), the chapter's first experiment works in it (an echo server bound
/// to 0.0.0.0 serves the laptop and turns the stranger away), `status` shows
/// the addresses and `down` removes every namespace it made.
#[test]
fn lab_script_builds_the_chapters_lab_and_removes_it() {
    let test = "lab_script_builds_the_chapters_lab_and_removes_it";
    if !netns::available(test) || !reference_only(ECHO, test) {
        return;
    }
    let prefix = netns::unique_prefix();
    let guard = ScriptLab(prefix.clone());
    let up = lab_script(&prefix, "up");
    up.expect_success("two-host-lab.sh up");
    for addr in [
        "192.168.77.1/24",
        "fd00:77::2/64",
        "203.0.113.2/24",
        "2001:db8::1/64",
    ] {
        assert!(up.stdout.contains(addr), "up shows {addr}:\n{}", up.stdout);
    }
    assert!(
        !up.stdout.contains("DOWN"),
        "every link is up:\n{}",
        up.stdout
    );
    let again = lab_script(&prefix, "up");
    assert!(
        !again.success() && again.stderr.contains("already up"),
        "{again:?}"
    );

    let mut echo = common::command(ECHO);
    echo.args(["--addr", "0.0.0.0:0"]);
    let ns = |host: &str| format!("{prefix}-{host}");
    let server = common::Server::start_command(ECHO, netns::exec_in(&ns("server"), &echo), 1);
    let port = server.addr().port();
    let client = |host: &str, ip: &str| {
        let mut client = common::command(ECHO_CLIENT);
        client.args(["--addr", &format!("{ip}:{port}")]);
        let client = netns::exec_in(&ns(host), &client);
        netns::run_bounded(client, b"hello\n", netns::LAB_TIMEOUT)
    };
    let laptop = client("laptop", "192.168.77.1");
    laptop.expect_success("01_echo_client on the laptop");
    assert_eq!(laptop.stdout, "hello\n");
    let stranger = client("stranger", "203.0.113.1");
    assert!(!stranger.success(), "the stranger was served: {stranger:?}");
    assert!(
        server.wait_for_stderr("203.0.113.2:", Duration::from_secs(10)),
        "the refusal is logged:\n{}",
        server.stderr()
    );
    drop(server);

    let status = lab_script(&prefix, "status");
    assert!(status.stdout.contains("192.168.77.2/24"), "{status:?}");
    let down = lab_script(&prefix, "down");
    down.expect_success("two-host-lab.sh down");
    assert_eq!(down.stdout.matches("removed ").count(), 3, "{down:?}");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.contains(&format!("{prefix}-")),
        "left behind:\n{list}"
    );
    drop(guard);
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

// ---------------------------------------------------------------------------
// 02 chat across hosts.
// ---------------------------------------------------------------------------

const CHAT: &str = "02_chat_server";
const CHAT_CLIENT: &str = "02_chat_client";

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

// ---------------------------------------------------------------------------
// 03 file transfer across hosts.
// ---------------------------------------------------------------------------

const FILES: &str = "03_file_server";
const FILES_CLIENT: &str = "03_file_client";
const SECRET: &str = "a-secret-for-the-lab";

/// Writes `text` to `dir/name` and returns the path as a string.
fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A served folder and a users file for the file server, under `dir`.
fn file_server_files(dir: &std::path::Path) -> (String, String) {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let users = write_file(dir, "users", &format!("learner:{SECRET}\n"));
    (root.display().to_string(), users)
}

/// Runs `03_file_client --addr ADDR --user learner ARGS…` on `host`.
fn file_client(lab: &Lab, host: &str, addr: SocketAddr, secret: &str, args: &[&str]) -> netns::Ran {
    let mut client = common::command(FILES_CLIENT);
    client
        .args(["--addr", &addr.to_string(), "--user", "learner"])
        .args(args)
        .env("NETLESSONS_SECRET", secret);
    lab.run(host, &client, b"")
}

/// The file server's handshake and transfers work across hosts: one host
/// uploads, another lists and downloads the same bytes (server on 0.0.0.0,
/// then on [::] with an IPv6 client), and a wrong secret is denied.
#[test]
fn file_transfer_across_hosts() {
    let test = "file_transfer_across_hosts";
    let Some(lab) = lab(test) else {
        return;
    };
    let dir = common::temp_dir(test);
    let (root, users) = file_server_files(&dir);
    let mut payload: Vec<u8> = (0..=255u8).collect();
    payload.extend(common::Rng::new(9).bytes(300_000));
    let upload = dir.join("upload.bin");
    std::fs::write(&upload, &payload).unwrap();
    let upload = upload.display().to_string();

    for (n, any) in ["0.0.0.0:0", "[::]:0"].into_iter().enumerate() {
        let args = ["--addr", any, "--root", &root, "--users", &users];
        let server = lab.start_server(SERVER_HOST, FILES, &args, 1);
        let port = server.addr().port();
        let ipv6 = server.addr().is_ipv6();
        let name = format!("across-{n}.bin");

        let to_inside = SocketAddr::new(IpAddr::V4(INSIDE.server_v4), port);
        file_client(
            &lab,
            INSIDE.name,
            to_inside,
            SECRET,
            &["put", &upload, "--as", &name],
        )
        .expect_success("put from the inside host");

        let from = if ipv6 {
            IpAddr::V6(INSIDE2.server_v6)
        } else {
            IpAddr::V4(INSIDE2.server_v4)
        };
        let to_inside2 = SocketAddr::new(from, port);
        let listed = file_client(&lab, INSIDE2.name, to_inside2, SECRET, &["list"]);
        listed.expect_success("list from the second host");
        assert!(listed.stdout.contains(&name), "list:\n{}", listed.stdout);
        let copy = dir.join(format!("copy-{n}.bin"));
        let copy_arg = copy.display().to_string();
        file_client(
            &lab,
            INSIDE2.name,
            to_inside2,
            SECRET,
            &["get", &name, "-o", &copy_arg],
        )
        .expect_success("get from the second host");
        assert!(
            std::fs::read(&copy).unwrap() == payload,
            "the download differs from the upload"
        );

        let denied = file_client(&lab, INSIDE2.name, to_inside2, "not-the-secret", &["list"]);
        assert!(
            !denied.success(),
            "a wrong secret was accepted:\n{}",
            denied.stdout
        );
        assert!(
            denied.stderr.to_lowercase().contains("denied"),
            "a wrong secret should say it was denied; stderr:\n{}",
            denied.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// 04 mail relay across hosts.
// ---------------------------------------------------------------------------

const MAIL: &str = "04_mail_relay";
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

/// The files in `spool/<user>/new/` (the Maildir of a delivered user).
fn delivered(spool: &std::path::Path, user: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(spool.join(user).join("new")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// The relay accepts local mail from a host outside `--relay-allow` but
/// refuses to relay for it (554 at RCPT), and relays for an inside host to
/// `--next-hop`, another relay on a third host, over IPv4 (and, with the
/// relay on [::], as an IPv4-mapped peer matched against IPv4 blocks).
/// The inside host then reads the local mail over POP3. The spam filters
/// (chapter 11) judge by the same line: the outside host is greeted with
/// the two-line wait and greylisted until it retries; the inside host gets
/// a one-line greeting at once, and its relayed mail is greylisted by the
/// far host (the relay is outside *its* --relay-allow) and retried by our queue.
#[test]
fn mail_relay_across_hosts() {
    let test = "mail_relay_across_hosts";
    let Some(lab) = lab(test) else {
        return;
    };
    if !reference_only(MAIL, test) {
        return;
    }
    let dir = common::temp_dir(test);
    // The far host: a second relay, the final destination of far.test.
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
    let next_hop = SocketAddr::new(IpAddr::V4(INSIDE2.v4), far.addr().port()).to_string();
    let users = write_file(&dir, "users", "alice:alice-pw\nbob:bob-pw\n");

    for (n, any) in ["0.0.0.0:0", "[::]:0"].into_iter().enumerate() {
        let spool = dir.join(format!("spool-{n}"));
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
            &users,
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
        let relay = lab.start_server(SERVER_HOST, MAIL, &args, 2);
        let smtp = relay.addr().port();
        let pop3 = relay.addr_of("pop3").port();

        // The outside host, over IPv4 and (on [::]) over IPv6.
        let mut outside = vec![IpAddr::V4(OUTSIDE.server_v4)];
        if relay.addr().is_ipv6() {
            outside.push(IpAddr::V6(OUTSIDE.server_v6));
        }
        for to in outside {
            let ran = lab.python(
                OUTSIDE.name,
                SMTP_OFFER,
                &[&to.to_string(), &smtp.to_string()],
            );
            ran.expect_success("smtplib from the outside host");
            let reply = |step: &str| {
                let prefix = format!("{step} ");
                let line = ran.stdout.lines().find(|l| l.starts_with(&prefix));
                line.unwrap_or_else(|| panic!("no {step} in:\n{}", ran.stdout))
                    .to_string()
            };
            let relay_reply = reply("RCPT-RELAY");
            assert!(
                relay_reply.starts_with("RCPT-RELAY 554 ")
                    && relay_reply.contains("Relay access denied"),
                "relaying for the outside host via {to}: {relay_reply}"
            );
            let greeting = reply("GREETING");
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
            assert!(
                reply("RCPT-LOCAL")
                    .starts_with("RCPT-LOCAL 451 4.7.1 <alice@example.test>: greylisted"),
                "{}",
                ran.stdout
            );
            assert!(
                reply("RCPT-RETRY").starts_with("RCPT-RETRY 250 "),
                "{}",
                ran.stdout
            );
            assert!(reply("DATA").starts_with("DATA 250 "), "{}", ran.stdout);
        }

        // The inside host is greeted at once, with one line.
        let ran = lab.python(
            INSIDE.name,
            SMTP_GREETING,
            &[&INSIDE.server_v4.to_string(), &smtp.to_string()],
        );
        ran.expect_success("smtplib greeting from the inside host");
        assert!(ran.stdout.starts_with("GREETING 220 1 "), "{}", ran.stdout);

        // The inside host relays through us to carol@far.test.
        let subject = format!("relayed across three hosts, round {n}");
        let mut send = common::command(MAIL_CLIENT);
        send.args(["send", "--addr", &format!("{}:{smtp}", INSIDE.server_v4)])
            .args(["--from", "alice@example.test", "--to", "carol@far.test"])
            .args(["--subject", &subject]);
        lab.run(INSIDE.name, &send, b"Carol, this went through the relay.\n")
            .expect_success("04_mail_client send from the inside host");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let letter = loop {
            let found = delivered(&far_spool, "carol")
                .into_iter()
                .find(|m| m.contains(&subject));
            if let Some(letter) = found {
                break letter;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the relayed mail did not reach the far host; relay stderr:\n{}\nfar stderr:\n{}",
                relay.stderr(),
                far.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            letter.contains("Carol, this went through the relay."),
            "{letter}"
        );
        assert!(
            letter.matches("Received:").count() >= 2,
            "one Received: per hop:\n{letter}"
        );

        // The inside host reads alice's mailbox over POP3, over IPv6 on [::].
        let pop3_ip = if relay.addr().is_ipv6() {
            IpAddr::V6(INSIDE.server_v6)
        } else {
            IpAddr::V4(INSIDE.server_v4)
        };
        let mut fetch = common::command(MAIL_CLIENT);
        fetch
            .args([
                "fetch",
                "--addr",
                &SocketAddr::new(pop3_ip, pop3).to_string(),
                "--user",
                "alice",
            ])
            .env("NETLESSONS_PASSWORD", "alice-pw");
        let fetched = lab.run(INSIDE.name, &fetch, b"");
        fetched.expect_success("04_mail_client fetch from the inside host");
        assert!(
            fetched.stdout.contains("A local letter from afar."),
            "alice's mailbox:\n{}",
            fetched.stdout
        );
        // Nothing for carol stayed here: refused relays were never queued.
        assert!(delivered(&spool, "carol").is_empty());
    }
}

// ---------------------------------------------------------------------------
// 07 speed camera (UDP) across hosts.
// ---------------------------------------------------------------------------

const CAMERA: &str = "07_camera_server";
const CAMERA_CLIENT: &str = "07_camera_client";
const CAMERA_SECRET: &str = "camera-across-the-lab";

/// Runs `07_camera_client` on `host` sending `photo` to `addr` as camera
/// `gate` with `secret`, plus `extra` flags.
fn camera_client(
    lab: &Lab,
    host: &str,
    addr: SocketAddr,
    secret: &str,
    photo: &str,
    extra: &[&str],
) -> netns::Ran {
    let mut client = common::command(CAMERA_CLIENT);
    client
        .args(["--addr", &addr.to_string(), "--camera", "gate"])
        .args(["--plate", "LAB 9", "--speed", "70"])
        .args(extra)
        .arg(photo)
        .env("NETLESSONS_SECRET", secret);
    lab.run(host, &client, b"")
}

/// The camera over UDP between hosts: a photo from one host and one from
/// another (over IPv6 when the server is on [::], IPv4-mapped over IPv4)
/// arrive intact through a client dropping 20 % of what it sends; a host
/// outside the default allowlist, and a wrong secret, get no reply at all,
/// so their client gives up and exits 1.
#[test]
fn camera_across_hosts() {
    let test = "camera_across_hosts";
    let Some(lab) = lab(test) else {
        return;
    };
    let dir = common::temp_dir(test);
    let users = dir.join("cameras.txt");
    std::fs::write(&users, format!("gate:{CAMERA_SECRET}\n")).unwrap();
    let photo_bytes = common::Rng::new(21).bytes(150_000);
    let photo = dir.join("photo.jpg");
    std::fs::write(&photo, &photo_bytes).unwrap();
    let photo = photo.display().to_string();
    let users = users.display().to_string();
    let reference = common::override_command(CAMERA_CLIENT).is_none();
    // Short give-up timers for the runs that must fail (reference only:
    // a learner's client takes its own, and the lab allows 15 s a run).
    let quick: &[&str] = if reference {
        &["--retry-base-ms", "50", "--retry-max-ms", "200"]
    } else {
        &[]
    };

    for (n, any) in ["0.0.0.0:0", "[::]:0"].into_iter().enumerate() {
        let store = dir.join(format!("store-{n}"));
        let store_arg = store.display().to_string();
        let args = ["--addr", any, "--store", &store_arg, "--users", &users];
        let server = lab.start_server(SERVER_HOST, CAMERA, &args, 1);
        let port = server.addr().port();
        let ipv6 = server.addr().is_ipv6();

        let mut hosts = vec![(
            INSIDE.name,
            SocketAddr::new(IpAddr::V4(INSIDE.server_v4), port),
        )];
        hosts.push(if ipv6 {
            (
                INSIDE2.name,
                SocketAddr::new(IpAddr::V6(INSIDE2.server_v6), port),
            )
        } else {
            (
                INSIDE2.name,
                SocketAddr::new(IpAddr::V4(INSIDE2.server_v4), port),
            )
        });
        for (host, to) in &hosts {
            let ran = camera_client(&lab, host, *to, CAMERA_SECRET, &photo, &["--drop", "20"]);
            ran.expect_success(&format!("the camera on {host} sending to {to}"));
            let id = ran
                .stdout
                .split(|c: char| !c.is_ascii_hexdigit())
                .find(|w| w.len() == 16)
                .unwrap_or_else(|| panic!("no report id in {:?}", ran.stdout))
                .to_string();
            let stored = store.join("gate").join(format!("{id}.jpg"));
            assert!(
                std::fs::read(&stored).unwrap() == photo_bytes,
                "the photo from {host} arrived damaged"
            );
        }

        // The failing runs need the reference client's short timers (a
        // learner's client would take its full 20 s to give up).
        if !reference {
            common::say(
                "camera_across_hosts: the refusals were not checked (they need the reference client's timers)",
            );
            continue;
        }
        if reference_only(CAMERA, "the camera server's default allowlist") {
            let to = SocketAddr::new(IpAddr::V4(OUTSIDE.server_v4), port);
            let ran = camera_client(&lab, OUTSIDE.name, to, CAMERA_SECRET, &photo, quick);
            assert!(
                !ran.success(),
                "a host outside the allowlist got its photo in"
            );
            assert!(ran.stderr.contains("no answer"), "stderr:\n{}", ran.stderr);
            // All 8 of its HELLOs were counted, and none answered.
            server.expect_stderr("8 not allowed", Duration::from_secs(10));
        }
        let (host, to) = hosts[0];
        let ran = camera_client(&lab, host, to, "not-the-secret", &photo, quick);
        assert!(!ran.success(), "a wrong secret got its photo in");
        assert!(ran.stderr.contains("no answer"), "stderr:\n{}", ran.stderr);
    }
}
