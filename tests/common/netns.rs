//! A lab of separate computers built from Linux network namespaces, for tests
//! that need a client on one host and a server on another.
//!
//! A network namespace is a private copy of the network stack: its own
//! interfaces, addresses, routes and ports. A *veth pair* is a virtual cable:
//! two interfaces, whatever goes in one comes out of the other. Put each end
//! in a different namespace and you have two computers on a wire. The kernel
//! treats them exactly as it would two machines: a server bound to
//! `127.0.0.1` in one cannot be reached from the other, and a client's address
//! is whatever the test gave its interface.
//!
//! [`Lab::new`] builds this topology, under names unique to the test process
//! and the lab, and [`Drop`] removes it again:
//!
//! ```text
//!                  eth0 192.168.77.1/24  ────  inside   192.168.77.2 (and .20)
//!                       fd00:77::1/64                   fd00:77::2   (and ::20)
//!   server         eth1 10.77.0.1/24     ────  inside2  10.77.0.2
//!                       fd00:78::1/64                   fd00:78::2
//!                  eth2 203.0.113.1/24   ────  outside  203.0.113.2
//!                       2001:db8::1/64                  2001:db8::2
//! ```
//!
//! `inside` and `inside2` have private addresses, as computers on a home or
//! office network do. `outside` has addresses from the ranges reserved for
//! documentation (RFC 5737, RFC 3849): they look like public internet
//! addresses but belong to nobody. The client namespaces have no default
//! route, so no packet can leave the lab, whatever a test does.
//!
//! std cannot enter a namespace, so every program is started through
//! `ip netns exec NS program …` ([`Lab::command`]); the `ip` tool does the
//! entering and then runs the program, which keeps its process id.
//!
//! Creating namespaces needs root and the `ip` tool (package `iproute2`).
//! Elsewhere [`Lab::new`] says why the test is skipped and returns `None`.
#![allow(dead_code)] // a test file may use only part of this module

use crate::common::{Server, any_override, say, skipped};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a lab client may wait for one line, or a lab program may run.
pub const LAB_TIMEOUT: Duration = Duration::from_secs(15);

/// One client computer of the lab and the link that joins it to the server.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// The short name; the namespace is called `nl<pid>-<lab>-<name>`.
    pub name: &'static str,
    /// The server's interface on this link.
    pub link: &'static str,
    /// The client's IPv4 address (its primary one: the source it uses by default).
    pub v4: Ipv4Addr,
    /// The client's IPv6 address (the source it uses by default).
    pub v6: Ipv6Addr,
    /// A second IPv4 address, used only when a test binds it as the source.
    pub extra_v4: Option<Ipv4Addr>,
    /// A second IPv6 address, used only when a test binds it as the source.
    pub extra_v6: Option<Ipv6Addr>,
    /// The server's IPv4 address on this link.
    pub server_v4: Ipv4Addr,
    /// The server's IPv6 address on this link.
    pub server_v6: Ipv6Addr,
    /// The prefix length of the IPv4 link network.
    pub v4_prefix: u8,
}

/// A client on a private network (192.168.77.0/24, fd00:77::/64).
pub const INSIDE: Host = Host {
    name: "inside",
    link: "eth0",
    v4: Ipv4Addr::new(192, 168, 77, 2),
    v6: Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2),
    extra_v4: Some(Ipv4Addr::new(192, 168, 77, 20)),
    extra_v6: Some(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x20)),
    server_v4: Ipv4Addr::new(192, 168, 77, 1),
    server_v6: Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1),
    v4_prefix: 24,
};

/// A second client on another private network (10.77.0.0/24, fd00:78::/64).
pub const INSIDE2: Host = Host {
    name: "inside2",
    link: "eth1",
    v4: Ipv4Addr::new(10, 77, 0, 2),
    v6: Ipv6Addr::new(0xfd00, 0x78, 0, 0, 0, 0, 0, 2),
    extra_v4: None,
    extra_v6: None,
    server_v4: Ipv4Addr::new(10, 77, 0, 1),
    server_v6: Ipv6Addr::new(0xfd00, 0x78, 0, 0, 0, 0, 0, 1),
    v4_prefix: 24,
};

/// A client with public-looking addresses (documentation ranges 203.0.113.0/24
/// and 2001:db8::/32), standing in for "anyone on the internet".
pub const OUTSIDE: Host = Host {
    name: "outside",
    link: "eth2",
    v4: Ipv4Addr::new(203, 0, 113, 2),
    v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    extra_v4: None,
    extra_v6: None,
    server_v4: Ipv4Addr::new(203, 0, 113, 1),
    server_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    v4_prefix: 24,
};

/// Every client host of the lab.
pub const CLIENTS: [Host; 3] = [INSIDE, INSIDE2, OUTSIDE];

/// The name of the server host.
pub const SERVER_HOST: &str = "server";

impl Host {
    /// The server's address on this link, in the family of `client`.
    pub fn server_ip_for(&self, client: IpAddr) -> IpAddr {
        match client {
            IpAddr::V4(_) => IpAddr::V4(self.server_v4),
            IpAddr::V6(_) => IpAddr::V6(self.server_v6),
        }
    }
}

/// Every namespace name this module makes starts with `nl<pid>-`, so leftovers
/// of a killed test run can be recognised (and removed) by a later run.
fn prefix_of_process() -> String {
    format!("nl{}-", std::process::id())
}

/// Namespace work is serialised: `ip netns add` sets up `/run/netns` on first
/// use, and two first uses racing each other can fail.
fn setup_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `ip` with the words of `args` (names here never contain spaces);
/// Err(what failed, with `ip`'s message) if it fails.
fn ip(args: &str) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {args}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Can this process build a lab? Checked once; the answer is `Err(why not)`.
fn lab_support() -> Result<(), String> {
    static SUPPORT: OnceLock<Result<(), String>> = OnceLock::new();
    SUPPORT
        .get_or_init(|| {
            // Who owns /proc/self is who we run as: a std-only getuid().
            let uid = std::fs::metadata("/proc/self").map(|m| m.uid());
            if !matches!(uid, Ok(0)) {
                return Err("network namespaces need root: run as root (CI does), \
                     see chapter 9 for the sudo command"
                    .into());
            }
            let found = Command::new("ip")
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                return Err("the `ip` tool is not installed (package iproute2)".into());
            }
            let _guard = setup_lock();
            remove_stale_namespaces();
            let probe = format!("{}probe", prefix_of_process());
            ip(&format!("netns add {probe}"))
                .map_err(|e| format!("cannot create a network namespace here ({e})"))?;
            ip(&format!("netns del {probe}"))
        })
        .clone()
}

/// Removes namespaces left by test processes that no longer exist (a run that
/// was killed before its `Drop`s ran). Only names of our own form are touched.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("nl") else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&format!("netns del {name}"));
        }
    }
}

/// True if this machine can build a lab; otherwise says why `test` is skipped.
///
/// Under an override the run is checking a learner's program, and a check
/// that cannot run must not pass: the test fails, saying what it needs.
#[track_caller]
pub fn available(test: &str) -> bool {
    match lab_support() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                !any_override(),
                "{test} cannot check your program here: {why} (see chapter 9 for the \
                 command that runs these tests as root)"
            );
            skipped(&format!("{test}: {why}"));
            false
        }
    }
}

/// `inner` (a program with its arguments, environment and folder) run in
/// namespace `ns`: `ip netns exec NS program args…`. std cannot enter a
/// namespace itself; `ip` enters it and then execs the program, which so
/// keeps the process id (killing the child kills the program).
pub fn exec_in(ns: &str, inner: &Command) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    cmd
}

/// A unique name prefix for a new lab (or the lab script) in this process.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}{}",
        prefix_of_process(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// The lab: a server namespace joined by veth pairs to [`CLIENTS`].
/// Dropping it deletes the namespaces, and with them their interfaces.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

impl Lab {
    /// Builds the lab, or says why `test` is skipped and returns `None`
    /// (not root, no `ip`, namespaces not permitted in this container).
    pub fn new(test: &str) -> Option<Lab> {
        if !available(test) {
            return None;
        }
        let mut lab = Lab {
            prefix: unique_prefix(),
            namespaces: Vec::new(),
        };
        // The lock is released before a failure panics: unwinding drops
        // `lab`, and its Drop takes the lock again to remove what was built.
        let built = {
            let _guard = setup_lock();
            lab.build()
        };
        if let Err(e) = built {
            panic!("{test}: could not build the network lab: {e}");
        }
        Some(lab)
    }

    /// The namespace name of host `name` (`server`, `inside`, …).
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn add_namespace(&mut self, name: &str) -> Result<String, String> {
        let ns = self.ns(name);
        ip(&format!("netns add {ns}"))?;
        self.namespaces.push(ns.clone());
        // A new namespace has only `lo`, and it is down: even 127.0.0.1
        // does not work until it is up.
        ip(&format!("-n {ns} link set lo up"))?;
        Ok(ns)
    }

    fn build(&mut self) -> Result<(), String> {
        let server = self.add_namespace(SERVER_HOST)?;
        for host in CLIENTS {
            let client = self.add_namespace(host.name)?;
            let link = host.link;
            let len = host.v4_prefix;
            // The cable: one end is created directly in each namespace, so
            // the names (eth0, eth1, …) never meet in the host's own
            // namespace, where they could clash with real interfaces.
            ip(&format!(
                "link add {link} netns {server} type veth peer name eth0 netns {client}"
            ))?;
            // `nodad`: skip IPv6 duplicate address detection, which would
            // otherwise keep a new address unusable for a second or two.
            let (s4, s6) = (host.server_v4, host.server_v6);
            ip(&format!("-n {server} addr add {s4}/{len} dev {link}"))?;
            ip(&format!("-n {server} addr add {s6}/64 dev {link} nodad"))?;
            ip(&format!("-n {client} addr add {}/{len} dev eth0", host.v4))?;
            ip(&format!(
                "-n {client} addr add {}/64 dev eth0 nodad",
                host.v6
            ))?;
            if let Some(extra) = host.extra_v4 {
                // Added second, so it is a secondary address: never the
                // default source, only used when a test binds it.
                ip(&format!("-n {client} addr add {extra}/{len} dev eth0"))?;
            }
            if let Some(extra) = host.extra_v6 {
                // `preferred_lft 0` marks it deprecated: still usable when a
                // test binds it, but never picked as the default source.
                ip(&format!(
                    "-n {client} addr add {extra}/64 dev eth0 nodad preferred_lft 0"
                ))?;
            }
            ip(&format!("-n {server} link set {link} up"))?;
            ip(&format!("-n {client} link set eth0 up"))?;
        }
        Ok(())
    }

    /// `inner` (a program with its arguments, environment and folder) run in
    /// host `name`'s namespace: `ip netns exec NS program args…`.
    pub fn command(&self, name: &str, inner: &Command) -> Command {
        exec_in(&self.ns(name), inner)
    }

    /// Starts `example` on host `name` with `args` (which must include its
    /// address flags), waiting for `listeners` `listening on` lines.
    pub fn start_server(
        &self,
        name: &str,
        example: &str,
        args: &[&str],
        listeners: usize,
    ) -> Server {
        let mut inner = crate::common::command(example);
        inner.args(args);
        Server::start_command(example, self.command(name, &inner), listeners)
    }

    /// Runs `inner` on host `name`, feeding it `stdin`, for at most
    /// [`LAB_TIMEOUT`]; returns its exit status, stdout and stderr.
    pub fn run(&self, name: &str, inner: &Command, stdin: &[u8]) -> Ran {
        run_bounded(self.command(name, inner), stdin, LAB_TIMEOUT)
    }

    /// Runs a Python script on host `name` (`python3 -c script args…`).
    pub fn python(&self, name: &str, script: &str, args: &[&str]) -> Ran {
        let mut inner = Command::new(python());
        inner.arg("-c").arg(script).args(args);
        self.run(name, &inner, b"")
    }

    /// Opens a TCP connection from host `host`, source address `from`, to
    /// `to`, through a small Python relay ([`Peer`]). Err is how the connect
    /// failed, e.g. `ConnectionRefusedError: [Errno 111] Connection refused`.
    pub fn connect(&self, host: &Host, from: IpAddr, to: SocketAddr) -> Result<Peer, String> {
        Peer::connect(self, host.name, from, to, Duration::from_secs(5))
    }

    /// Like [`Lab::connect`], from any host (the server's too, by name),
    /// giving up on the connect after `timeout`.
    pub fn connect_on(
        &self,
        name: &str,
        from: IpAddr,
        to: SocketAddr,
        timeout: Duration,
    ) -> Result<Peer, String> {
        Peer::connect(self, name, from, to, timeout)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _guard = setup_lock();
        // Deleting a namespace destroys its interfaces, and a veth pair goes
        // when either end goes. Servers and clients were already killed by
        // their own Drop (they are declared after the lab in every test).
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&format!("netns del {ns}")) {
                say(&format!("could not remove namespace {ns}: {e}"));
            }
        }
    }
}

/// The Python interpreter itself. `python3` may be a launcher script (pyenv's
/// shims, for one) that costs a quarter of a second per start; the lab starts
/// Python often, so it asks once where the real one is.
pub fn python() -> std::path::PathBuf {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|path| !path.is_empty())
            .map_or_else(|| "python3".into(), Into::into)
    })
    .clone()
}

/// What a bounded run produced.
#[derive(Debug)]
pub struct Ran {
    /// The exit status; `None` if it was killed at the time limit.
    pub status: Option<ExitStatus>,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl Ran {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the output if it did not exit 0.
    pub fn expect_success(&self, what: &str) -> &Ran {
        assert!(
            self.success(),
            "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` with `stdin`, kills it after `timeout`, and collects its output.
pub fn run_bounded(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
    // Feed stdin, and read stdout and stderr, on their own threads: a child
    // that fills one pipe while we wait on another would otherwise deadlock.
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Ran {
        status,
        stdout: stdout.recv_timeout(timeout).unwrap_or_default(),
        stderr: stderr.recv_timeout(timeout).unwrap_or_default(),
    }
}

fn collect(mut from: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// The relay a [`Peer`] runs: a line-oriented netcat with a connect timeout,
/// that reports on stdout what happens to the connection:
/// `= connected IP PORT`, `= failed ERROR`, `> LINE` per line received,
/// `= closed` (or `= closed ERROR`, e.g. a reset). Stdin is sent verbatim.
const RELAY: &str = r#"
import socket, sys, threading
host, port, source, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
try:
    s = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
except OSError as e:
    print("= failed", type(e).__name__ + ":", e, flush=True)
    sys.exit(0)
s.settimeout(None)
local = s.getsockname()
print("= connected", local[0], local[1], flush=True)
def pump():
    try:
        while True:
            data = sys.stdin.buffer.read1(65536)
            if not data:
                break
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=pump, daemon=True).start()
try:
    for line in s.makefile("rb"):
        text = line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "backslashreplace")
        print(">", text, flush=True)
    print("= closed", flush=True)
except OSError as e:
    print("= closed", type(e).__name__, flush=True)
"#;

/// One TCP client in the lab, driven line by line. Killed and reaped on drop.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<String>,
    /// The client's own address (what the server sees, unless the server
    /// listens on IPv6 and this is IPv4: then it sees `::ffff:a.b.c.d`).
    pub local: SocketAddr,
    /// Where it connected to.
    pub remote: SocketAddr,
    closed: bool,
}

impl Peer {
    fn connect(
        lab: &Lab,
        host: &str,
        from: IpAddr,
        to: SocketAddr,
        timeout: Duration,
    ) -> Result<Peer, String> {
        let mut inner = Command::new(python());
        inner.args([
            "-u",
            "-c",
            RELAY,
            &to.ip().to_string(),
            &to.port().to_string(),
            &from.to_string(),
            &timeout.as_secs_f64().to_string(),
        ]);
        let mut child = lab
            .command(host, &inner)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start the python3 relay: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let events = crate::common::lines_of(out);
        let mut peer = Peer {
            child,
            stdin,
            events,
            local: SocketAddr::new(from, 0),
            remote: to,
            closed: false,
        };
        let first = peer.event(timeout + LAB_TIMEOUT);
        if let Some(reason) = first.strip_prefix("= failed ") {
            return Err(reason.to_string());
        }
        let rest = first
            .strip_prefix("= connected ")
            .unwrap_or_else(|| panic!("relay: unexpected first line {first:?}"));
        let (ip, port) = rest.split_once(' ').expect("relay: `= connected IP PORT`");
        peer.local = SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap());
        Ok(peer)
    }

    fn event(&mut self, timeout: Duration) -> String {
        match self.events.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{} -> {}: nothing happened within {timeout:?}",
                self.local, self.remote
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{} -> {}: the relay exited", self.local, self.remote)
            }
        }
    }

    /// The next line from the server, or `None` once it has closed.
    /// Panics if neither happens within [`LAB_TIMEOUT`].
    pub fn line(&mut self) -> Option<String> {
        if self.closed {
            return None;
        }
        let event = self.event(LAB_TIMEOUT);
        if let Some(text) = event.strip_prefix("> ") {
            Some(text.to_string())
        } else if event.starts_with("= closed") {
            self.closed = true;
            None
        } else {
            panic!("relay: unexpected line {event:?}")
        }
    }

    /// The next line, which must exist.
    pub fn expect_line(&mut self, what: &str) -> String {
        self.line().unwrap_or_else(|| {
            panic!(
                "{} -> {}: closed while waiting for {what}",
                self.local, self.remote
            )
        })
    }

    /// Reads lines until one satisfies `wanted`; panics if the server closes first.
    pub fn line_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.expect_line(what);
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Sends `text` followed by `\n`.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("input already closed");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("writing to the relay");
    }

    /// Closes our sending side (the relay then half-closes the socket).
    pub fn finish(&mut self) {
        self.stdin = None;
    }

    /// How the server at `server` sees this client's address: a server
    /// listening on IPv6 sees an IPv4 client as `::ffff:a.b.c.d`.
    pub fn seen_by(&self, server: SocketAddr) -> SocketAddr {
        match (server, self.local) {
            (SocketAddr::V6(_), SocketAddr::V4(local)) => {
                SocketAddr::new(IpAddr::V6(local.ip().to_ipv6_mapped()), local.port())
            }
            _ => self.local,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
