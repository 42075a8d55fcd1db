//! The lab itself, and the errors chapter 9 teaches to tell apart:
//! loopback is not the LAN, a LAN address is one address, nothing routes
//! out, and a dropped packet hangs where a closed port is refused. Last,
//! the chapter's lab script builds the same lab and removes it.

use super::*;

/// A server bound to 127.0.0.1 answers on its own host but refuses (RST,
/// "connection refused") a client on another host: loopback is not the LAN.
#[test]
fn loopback_server_is_unreachable_from_another_host() {
    let Some(lab) = lab("loopback_server_is_unreachable_from_another_host") else {
        return;
    };
    let server = echo_on(&lab, "127.0.0.1:0");
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
