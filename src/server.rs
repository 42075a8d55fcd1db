//! The thread-per-connection server runner every example uses.
//!
//! A server's life is a loop: **accept** a connection, hand it to someone who
//! will talk to that client, and go straight back to accepting. Here "someone"
//! is a new thread per connection, the simplest design there is: each thread
//! runs plain blocking code, and while one waits for its client the others
//! carry on. (What it costs, and what replaces it at scale, is chapter 8.)
//!
//! Before a connection gets its thread, the runner plays gatekeeper, because
//! *the server decides who it serves*:
//!
//! 1. **Who may connect.** A peer outside the [`Allowlist`] is closed before a
//!    single byte is read or written.
//! 2. **How many at once.** Past `max_conns`, a client gets the example's
//!    refusal (`busy_reply`) and is closed; threads are not free. Even
//!    without `--max-conns` there is a cap: what the process's limits allow
//!    safely ([`crate::limits`]), printed at start as `at most N connections
//!    at once (limited by …)`. Spawning past those limits does not fail
//!    politely: std aborts the whole process when a new thread cannot map its
//!    signal stack, so without the cap one flood of connections would end
//!    the server for everyone.
//! 3. **How long.** Each [`Connection`] gets the idle timeout, so a silent
//!    client cannot hold a thread forever.
//!
//! ```no_run
//! use netlessons::server::{Server, ServerConfig};
//!
//! let server = Server::bind(ServerConfig::new("127.0.0.1:0"))?;
//! println!("listening on {}", server.local_addr());
//! server.serve(|mut conn| {
//!     while let Some(line) = conn.read_line(1024)? {
//!         conn.send_line(line)?; // a line-echo server
//!     }
//!     Ok(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::connection::{Connection, LINE_TIMEOUT, SharedStream};
use crate::limits::{self, Budget, ConnectionCost};
use crate::subnet::Allowlist;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How the runner treats connections. Build one with [`ServerConfig::new`]
/// and change the fields you need (the examples fill it from their flags with
/// [`crate::cli::Matches::server_config`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on, such as `127.0.0.1:7001` (port 0: any free port).
    pub addr: String,
    /// Who may connect. Default: [`Allowlist::local_networks`].
    pub allow: Allowlist,
    /// At most this many clients at once (`None`: as many as the process can
    /// hold safely, see [`crate::limits`]). A larger figure is lowered to that,
    /// with a warning, when the server is bound.
    pub max_conns: Option<usize>,
    /// What one connection costs in threads and open files, from which the
    /// safe cap is worked out (the chat server's clients take two threads).
    pub cost: ConnectionCost,
    /// Drop a client that completes no message for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Drop a client whose line, once started, is not finished within this
    /// long (`None`: never). Default [`LINE_TIMEOUT`] (30 s).
    pub line_timeout: Option<Duration>,
    /// Show every message on stderr (`--trace`).
    pub trace: bool,
    /// What a client over `max_conns` is sent before it is closed (`None`: nothing).
    pub busy_reply: Option<Vec<u8>>,
    /// Name prefix for connection threads, shown by debuggers and `top -H`.
    pub name: String,
    /// Stack size of each connection thread, in bytes.
    pub stack_size: usize,
}

/// Default stack per connection thread: 256 KiB (Rust's default is 2 MiB).
///
/// A stack is reserved address space; only the pages a thread actually
/// touches cost memory. Our handlers keep big buffers on the heap, so a small
/// stack is plenty and lets one process hold ten thousand threads.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

impl ServerConfig {
    /// A configuration with the course defaults: local networks only, as many
    /// connections as the process can hold safely, no idle timeout, no trace.
    pub fn new(addr: impl Into<String>) -> ServerConfig {
        ServerConfig {
            addr: addr.into(),
            allow: Allowlist::local_networks(),
            max_conns: None,
            cost: ConnectionCost::default(),
            idle_timeout: None,
            line_timeout: Some(LINE_TIMEOUT),
            trace: false,
            busy_reply: None,
            name: "conn".to_string(),
            stack_size: DEFAULT_STACK_SIZE,
        }
    }
}

/// A bound listener, ready to [`serve`](Server::serve).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: ServerConfig,
    shared: Arc<Shared>,
}

/// What the accept loop and the connection threads share.
#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    live: Mutex<Live>,
    /// Signalled whenever a connection ends, for a shutdown waiting on them.
    ended: Condvar,
}

/// The connections being served, by id. The runner keeps a handle on each
/// socket so that [`ShutdownHandle::shutdown`] can wake threads blocked in a read.
#[derive(Debug, Default)]
struct Live {
    next_id: u64,
    conns: HashMap<u64, SharedStream>,
}

impl Shared {
    fn live(&self) -> MutexGuard<'_, Live> {
        // A panicking connection thread cannot leave `Live` half-changed (each
        // change is one insert or remove), so a poisoned lock is safe to use.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes a connection from [`Live`] when its thread ends, even by a panic,
/// and gives its threads and files back to the process's [`Budget`].
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    budget: &'static Budget,
    cost: ConnectionCost,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.live().conns.remove(&self.id);
        self.budget.give_back(self.cost);
        self.shared.ended.notify_all();
    }
}

impl Server {
    /// Binds the listening socket.
    ///
    /// The error for a port already in use says so in plain words, since it
    /// is the first problem everyone meets (often an earlier run still alive).
    ///
    /// This is also where the connection cap is settled: what the process's
    /// limits allow (printed once per process on stderr), or `max_conns` if
    /// that is lower.
    pub fn bind(mut config: ServerConfig) -> io::Result<Server> {
        config.max_conns = Some(safe_cap(config.max_conns, config.cost));
        let listener = TcpListener::bind(&config.addr).map_err(|e| bind_error(&config.addr, e))?;
        let local_addr = listener.local_addr()?;
        Ok(Server {
            listener,
            local_addr,
            config,
            shared: Arc::default(),
        })
    }

    /// The address actually bound: with port 0 the OS picks a free port, and
    /// this is where to find out which.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
            wake_addr: reachable(self.local_addr),
        }
    }

    /// Accepts connections until shut down, running `handler` on its own
    /// thread for each client that passes the gate. An error the handler
    /// returns is logged on stderr with the peer's address.
    ///
    /// Returns once [`ShutdownHandle::shutdown`] was called and every
    /// connection thread has finished.
    pub fn serve<H>(self, handler: H) -> io::Result<()>
    where
        H: Fn(Connection) -> io::Result<()> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let (stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) => {
                    if self.shared.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    // Usually "too many open files". Retrying at once would
                    // spin at 100% CPU; a short pause lets connections close.
                    crate::log!("accept failed: {e}; retrying shortly");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if self.shared.stopping.load(Ordering::SeqCst) {
                break; // the wake-up connection from shutdown()
            }
            self.admit(stream, peer, &handler);
        }
        self.finish();
        Ok(())
    }

    /// The gate: allowlist, then the connection cap, then a thread. Kept light,
    /// because while this runs nobody else is being accepted.
    fn admit<H>(&self, stream: TcpStream, peer: SocketAddr, handler: &Arc<H>)
    where
        H: Fn(Connection) -> io::Result<()> + Send + Sync + 'static,
    {
        if !self.config.allow.contains(peer.ip()) {
            // Dropping the stream closes it: the peer sees end-of-stream
            // without a byte. Not counted against max_conns.
            crate::log!(
                "{peer} refused: not in the allowlist ({})",
                self.config.allow
            );
            return;
        }
        let shared_stream = SharedStream::new(stream);
        let budget = limits::budget();
        let cost = self.config.cost;
        let id = {
            let mut live = self.shared.live();
            // Two caps: this server's own, and what the whole process can
            // still spend (the mail relay's two listeners share it).
            let full = self
                .config
                .max_conns
                .is_some_and(|max| live.conns.len() >= max);
            if full || !budget.try_take(cost) {
                drop(live);
                crate::log!("{peer} refused: server full");
                refuse(shared_stream.socket(), self.config.busy_reply.as_deref());
                return;
            }
            let id = live.next_id;
            live.next_id += 1;
            live.conns.insert(id, shared_stream.clone());
            id
        };
        let registration = Registration {
            shared: Arc::clone(&self.shared),
            id,
            budget,
            cost,
        };
        let handler = Arc::clone(handler);
        let trace = self.config.trace;
        let idle = self.config.idle_timeout;
        let line_timeout = self.config.line_timeout;
        let spawned = thread::Builder::new()
            .name(format!("{}-{id}", self.config.name))
            .stack_size(self.config.stack_size)
            .spawn(move || {
                let _registration = registration;
                let result =
                    Connection::with_peer(shared_stream, peer, trace).and_then(|mut conn| {
                        conn.set_idle_timeout(idle)?;
                        conn.set_line_timeout(line_timeout);
                        handler(conn)
                    });
                if let Err(e) = result {
                    crate::log!("{peer} {e}");
                }
            });
        if let Err(e) = spawned {
            // Out of threads or memory: this client is dropped (the
            // registration was moved into the failed closure and is dropped
            // with it), everyone else carries on.
            crate::log!("{peer} dropped: could not start a thread: {e}");
        }
    }

    /// After the accept loop: wake every connection blocked in a read, then
    /// wait for all of them to finish.
    fn finish(&self) {
        let mut live = self.shared.live();
        for stream in live.conns.values() {
            let _ = stream.socket().shutdown(Shutdown::Both);
        }
        while !live.conns.is_empty() {
            live = self
                .shared
                .ended
                .wait(live)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// Stops a running [`Server`] from another thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    wake_addr: SocketAddr,
}

impl ShutdownHandle {
    /// Asks the server to stop. A thread blocked in `accept()` cannot be
    /// interrupted in std, so we set the flag and then connect to the server
    /// ourselves: `accept` returns, the loop sees the flag, and it ends.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.wake_addr, Duration::from_secs(1));
    }
}

/// An address a client on this machine can connect to, for a listener
/// bound to `local`: its own address, except that a wildcard (`0.0.0.0`,
/// `::`) is not something one can connect to, so it becomes loopback of the
/// same family (`127.0.0.1`, `::1`). The runner uses it to wake its own
/// accept loop; the examples, to print a command that reaches them.
///
/// ```
/// use netlessons::server::reachable;
///
/// assert_eq!(reachable("0.0.0.0:25".parse().unwrap()).to_string(), "127.0.0.1:25");
/// assert_eq!(reachable("[::]:25".parse().unwrap()).to_string(), "[::1]:25");
/// assert_eq!(reachable("10.0.0.7:25".parse().unwrap()).to_string(), "10.0.0.7:25");
/// ```
pub fn reachable(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// Closes a connection after a last reply without letting a reset destroy
/// it: a *lingering close*, as web and mail servers call it.
///
/// Closing a socket that still holds bytes the client sent and we never read
/// (a request we refused, a burst a bot sent early) makes the kernel answer
/// with a reset (RST) instead of an orderly end, and a reset can reach the
/// client before it has read our reply: it would never learn why it was
/// turned away. So we flush what is queued and close our sending side first
/// (the client reads end-of-stream after the reply), then read and drop what
/// it still sends, for at most 2 seconds and `max_bytes`, before the socket
/// is closed. Errors end it early: the client is gone, which is what we wanted.
///
/// ```
/// use netlessons::connection::Connection;
/// use netlessons::server::lingering_close;
/// use std::io::{Read, Write};
/// use std::net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let mut client = TcpStream::connect(listener.local_addr()?)?;
/// client.write_all(b"EHLO bot\r\n")?; // talks first, and is never read
/// let server = std::thread::spawn(move || -> std::io::Result<()> {
///     let mut conn = Connection::new(listener.accept()?.0, false)?;
///     conn.send_line("521 go away")?;
///     lingering_close(&mut conn, 64 * 1024);
///     Ok(())
/// });
/// let mut reply = String::new();
/// client.read_to_string(&mut reply)?; // the whole reply, then end-of-stream
/// assert_eq!(reply, "521 go away\n");
/// drop(client); // the server stops lingering as soon as we hang up
/// server.join().expect("the server thread")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn lingering_close(conn: &mut Connection, max_bytes: u64) {
    if conn.shutdown_write().is_err() {
        return;
    }
    let mut socket = conn.socket();
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < max_bytes {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n as u64,
        }
    }
}

/// How long [`lingering_close`] reads what a client still sends.
const LINGER: Duration = Duration::from_secs(2);

/// The connection cap for a server whose connections cost `cost`: what the
/// process can hold safely, or `asked` if that is lower. The first server of
/// the process says what the cap is and why; asking for more gets a warning.
fn safe_cap(asked: Option<usize>, cost: ConnectionCost) -> usize {
    static TOLD: AtomicBool = AtomicBool::new(false);
    let (safe, why) = limits::budget().connections(cost);
    if !TOLD.swap(true, Ordering::SeqCst) {
        crate::log!("at most {safe} connections at once (limited by {why})");
    }
    match asked {
        Some(n) if n > safe => {
            crate::log!(
                "warning: --max-conns {n} is more than this process can hold safely \
                 ({why}); using {safe}"
            );
            safe
        }
        Some(n) => n,
        None => safe,
    }
}

/// Sends the refusal (if any) and closes. The write cannot block for long:
/// the socket is fresh, so its send buffer is empty.
fn refuse(socket: &TcpStream, reply: Option<&[u8]>) {
    if let Some(reply) = reply {
        let _ = socket.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = (&*socket).write_all(reply);
    }
    let _ = socket.shutdown(Shutdown::Write);
}

/// Turns a bind failure into advice.
fn bind_error(addr: &str, e: io::Error) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => {
            " (another program, maybe an earlier run of this server, holds that port: \
             stop it, or choose another port with --addr)"
        }
        io::ErrorKind::AddrNotAvailable => {
            " (that IP address does not belong to this machine: use 127.0.0.1, \
             0.0.0.0, or one of this machine's addresses)"
        }
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need administrator rights: pick a port above 1024)"
        }
        _ => "",
    };
    io::Error::new(e.kind(), format!("could not listen on {addr}: {e}{hint}"))
}
