//! The challenge-response handshake: proving you know a secret without sending it.
//!
//! Sending a password over the wire lets anyone who can watch the wire (or
//! who runs a fake server) learn it. Instead, both sides prove that they know
//! the shared secret by computing an HMAC over fresh random numbers:
//!
//! ```text
//! S: AUTH HMAC-SHA256 <sn>                 the server's nonce: 32 random bytes, in hex
//! C: AUTH <user> <cn> <proof>              the client's nonce and its proof
//! S: OK <server_proof>                     or DENIED (and the server closes)
//!
//! proof        = hex(HMAC-SHA256(key = secret, msg = "client " + sn + " " + cn + " " + user))
//! server_proof = hex(HMAC-SHA256(key = secret, msg = "server " + sn + " " + cn + " " + user))
//! ```
//!
//! * The **server nonce** is new for every connection, so a proof recorded
//!   from one connection is worthless on the next: replay fails.
//! * The **client nonce** makes the server's proof fresh too, so a fake
//!   server cannot replay a real server's answer: the client checks
//!   `server_proof`, which is **mutual authentication**.
//! * "client" and "server" in the messages keep the two proofs different, so
//!   one side's proof can never be reflected back as the other's.
//! * Proofs are compared in **constant time** ([`constant_time_eq`]), and
//!   every failure gets the same `DENIED` after the same delay, so a guesser
//!   learns nothing from timing or wording, and guesses slowly.
//! * Failures are also counted **per client address** ([`LoginThrottle`]):
//!   past 5 in a minute, that address waits longer for every answer, doubling
//!   up to 30 s, and its answers come one after another, so opening 200
//!   connections at once does not give a guesser 200 times the speed.
//!
//! What this does **not** give you: secrecy. Everything after the handshake
//! travels in the clear and could be altered in flight. Real systems run the
//! whole conversation inside TLS (or SSH), which also authenticates the server.

use crate::connection::Connection;
use crate::sha256::{constant_time_eq, hmac_sha256, to_hex};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Longest handshake line we accept: `AUTH` + a 64-byte user + two 64-char hex strings.
pub const MAX_AUTH_LINE: usize = 512;

/// How long the server waits before saying `DENIED`, by default.
///
/// Every wrong guess costs the guesser this long on one connection; past
/// [`FREE_FAILURES`], [`LoginThrottle`] makes it longer.
pub const DEFAULT_DENY_DELAY: Duration = Duration::from_millis(500);

/// Failures an address may have in [`FAILURE_WINDOW`] before its answers slow down.
pub const FREE_FAILURES: usize = 5;

/// How far back failures are counted: a minute.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The longest an answer waits (the doubling stops here). A connection that
/// would have to wait longer, because others from its address are queued
/// before it, is closed without an answer.
pub const MAX_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// Login failures counted per client address, to slow down a guesser however
/// many connections it opens.
///
/// The delay before `DENIED` is per connection: on its own it lets a guesser
/// who opens 200 connections at once make 200 guesses per delay (we measured
/// about 380 a second). So every login answer, right or wrong, goes through
/// [`LoginThrottle::before_answer`], which counts failures per *client*: an
/// IPv4 address, or an IPv6 /64 (one household or machine usually gets a
/// whole /64, and could otherwise pick a fresh address for every guess).
///
/// * Up to [`FREE_FAILURES`] failures in [`FAILURE_WINDOW`]: a failure waits
///   the deny delay, a success nothing. Typing a password wrong costs a
///   person half a second.
/// * Past that, every answer to that client, success or failure, waits
///   longer (twice the delay for the 6th failure, four times for the 7th, …,
///   at most [`MAX_ANSWER_WAIT`]) and the answers are spaced out one after
///   another, however many connections are waiting. A connection that would
///   wait beyond [`MAX_ANSWER_WAIT`] is closed without an answer. Successes
///   wait too: if only failures were slow, a guesser could hang up after a
///   moment and know the guess was wrong.
/// * A success resets the count for that client.
///
/// What this costs: people who share an address (behind one NAT router) share
/// the count, so a guesser among them slows everyone there down. Real
/// servers add per-user counts, lock-outs and `fail2ban`-style firewall
/// rules; and a long random secret (as `new_secret` makes) is what really
/// defeats guessing.
///
/// ```
/// use netlessons::auth::LoginThrottle;
/// use std::time::Duration;
///
/// let throttle = LoginThrottle::new(Duration::from_millis(1));
/// let guesser = "192.0.2.7".parse()?;
/// for _ in 0..5 {
///     assert_eq!(throttle.wait_for(guesser, false), Some(Duration::from_millis(1)));
/// }
/// // The 6th failure in a minute waits twice the delay, the 7th four times.
/// assert_eq!(throttle.wait_for(guesser, false), Some(Duration::from_millis(2)));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug)]
pub struct LoginThrottle {
    deny_delay: Duration,
    free: usize,
    window: Duration,
    max_wait: Duration,
    clients: Mutex<HashMap<IpAddr, Client>>,
}

/// What the throttle remembers about one client.
#[derive(Debug)]
struct Client {
    /// When its recent failures happened, oldest first (at most `KEPT`).
    failures: VecDeque<Instant>,
    /// The earliest moment its next slowed-down answer may go out.
    next_answer: Instant,
}

/// Failures remembered per client: enough for the doubling to reach its cap.
const KEPT: usize = 64;

/// Past this many clients remembered, forget the ones with nothing recent.
const PRUNE_AT: usize = 4096;

impl LoginThrottle {
    /// A throttle with the course's limits: [`FREE_FAILURES`] in
    /// [`FAILURE_WINDOW`], waits up to [`MAX_ANSWER_WAIT`].
    pub fn new(deny_delay: Duration) -> LoginThrottle {
        LoginThrottle::with_limits(deny_delay, FREE_FAILURES, FAILURE_WINDOW, MAX_ANSWER_WAIT)
    }

    /// A throttle with other limits (tests use a short `max_wait`).
    pub fn with_limits(
        deny_delay: Duration,
        free: usize,
        window: Duration,
        max_wait: Duration,
    ) -> LoginThrottle {
        LoginThrottle {
            deny_delay,
            free,
            window,
            max_wait,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The delay before an ordinary `DENIED`.
    pub fn deny_delay(&self) -> Duration {
        self.deny_delay
    }

    /// The client an address belongs to: an IPv4 address (also when it
    /// arrives IPv4-mapped, `::ffff:a.b.c.d`), or an IPv6 address's /64.
    pub fn client_of(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !0u128 << 64).into()),
            },
        }
    }

    /// Call once the verdict for a login from `peer` is known, before telling
    /// the client: records it, waits as long as this client must, and says
    /// whether to answer at all (`false`: close without an answer).
    pub fn before_answer(&self, peer: IpAddr, success: bool) -> bool {
        match self.wait_for(peer, success) {
            Some(wait) => {
                thread::sleep(wait);
                if success {
                    self.locked().remove(&LoginThrottle::client_of(peer));
                }
                true
            }
            None => false,
        }
    }

    /// The bookkeeping of [`LoginThrottle::before_answer`] without the
    /// waiting: records the verdict and returns how long its answer must
    /// wait (`None`: longer than the maximum, so do not answer). A success
    /// only resets the count once its answer has waited, in `before_answer`.
    pub fn wait_for(&self, peer: IpAddr, success: bool) -> Option<Duration> {
        let now = Instant::now();
        let window = self.window;
        let mut clients = self.locked();
        if clients.len() >= PRUNE_AT {
            clients.retain(|_, c| {
                c.next_answer > now
                    || c.failures
                        .back()
                        .is_some_and(|&t| now.duration_since(t) < window)
            });
        }
        let client = clients
            .entry(LoginThrottle::client_of(peer))
            .or_insert_with(|| Client {
                failures: VecDeque::new(),
                next_answer: now,
            });
        while client
            .failures
            .front()
            .is_some_and(|&t| now.duration_since(t) >= window)
        {
            client.failures.pop_front();
        }
        if !success {
            if client.failures.len() == KEPT {
                client.failures.pop_front();
            }
            client.failures.push_back(now);
        }
        let failures = client.failures.len();
        if failures <= self.free {
            return Some(if success {
                Duration::ZERO
            } else {
                self.deny_delay
            });
        }
        // Slowed down: twice the delay per failure past the free ones, at
        // most max_wait, and after the answer queued before this one.
        let doublings = u32::try_from(failures - self.free)
            .unwrap_or(u32::MAX)
            .min(31);
        let step = self
            .deny_delay
            .saturating_mul(1 << doublings)
            .min(self.max_wait);
        let at = client.next_answer.max(now) + step;
        let wait = at.duration_since(now);
        if wait > self.max_wait {
            return None;
        }
        client.next_answer = at;
        Some(wait)
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Client>> {
        // Each change leaves the map consistent, so a poisoned lock is usable.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Users and their secrets, read from a `name:secret` file.
///
/// `Debug` shows the names only: secrets never end up in a log by accident.
#[derive(Clone, Default)]
pub struct Users {
    secrets: BTreeMap<String, String>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("names", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Users {
    /// An empty table.
    pub fn new() -> Users {
        Users::default()
    }

    /// Adds (or replaces) a user. Names must be 1–64 characters from
    /// `[A-Za-z0-9._-]`, since they travel inside space-separated lines.
    pub fn insert(&mut self, name: &str, secret: &str) -> Result<(), String> {
        if !valid_user_name(name) {
            return Err(format!(
                "invalid user name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"
            ));
        }
        if secret.is_empty() {
            return Err(format!("user {name} has an empty secret"));
        }
        self.secrets.insert(name.to_string(), secret.to_string());
        Ok(())
    }

    /// Parses the users file format: one `name:secret` per line, split at the
    /// first `:`, a trailing `\r` stripped, `#` comments and blank lines ignored.
    ///
    /// ```
    /// let users = netlessons::auth::Users::parse("# team\nada:s3cret:with:colons\r\n\nbob:pw\n")?;
    /// assert_eq!(users.secret("ada"), Some("s3cret:with:colons"));
    /// assert_eq!(users.secret("eve"), None);
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut users = Users::new();
        for (n, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (name, secret) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected name:secret", n + 1))?;
            users
                .insert(name, secret)
                .map_err(|e| format!("line {}: {e}", n + 1))?;
        }
        Ok(users)
    }

    /// Reads and parses a users file, with the path in any error.
    pub fn load(path: &Path) -> io::Result<Users> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not read users file {}: {e}", path.display()),
            )
        })?;
        Users::parse(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("users file {}: {e}", path.display()),
            )
        })
    }

    /// The users a server starts with: those in the users file at `path`,
    /// which must name at least one; or, without a file, the single user
    /// `demo_user` with a new random secret, returned too so that the server
    /// can print it (and `cargo run --example …` works with no set-up).
    ///
    /// ```
    /// let (users, secret) = netlessons::auth::Users::load_or_demo(None, "learner")?;
    /// let secret = secret.expect("a demo user gets a new secret");
    /// assert_eq!(users.secret("learner"), Some(secret.as_str()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn load_or_demo(
        path: Option<&str>,
        demo_user: &str,
    ) -> io::Result<(Users, Option<String>)> {
        if let Some(path) = path {
            let users = Users::load(Path::new(path))?;
            if users.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("users file {path} lists no users: add a line name:secret"),
                ));
            }
            return Ok((users, None));
        }
        let secret = new_secret()
            .map_err(|e| io::Error::new(e.kind(), format!("could not make a secret: {e}")))?;
        let mut users = Users::new();
        users
            .insert(demo_user, &secret)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok((users, Some(secret)))
    }

    /// The secret of `name`, if that user exists.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).map(String::as_str)
    }

    /// The user names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }

    /// Is the table empty?
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Fills `buf` with random bytes from the operating system.
///
/// On Unix this reads `/dev/urandom`, the kernel's cryptographic generator.
/// Elsewhere it falls back to mixing the clock with std's randomly seeded
/// hasher: unpredictable enough for a classroom, **not** for real secrets
/// (a real program would use the `getrandom` crate).
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open("/dev/urandom")?.read_exact(buf)
    }
    #[cfg(not(unix))]
    {
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut h = RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// A fresh nonce: 32 random bytes as 64 lowercase hex characters.
pub fn new_nonce() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes)?;
    Ok(to_hex(&bytes))
}

/// A random secret for demos: 16 random bytes as 32 hex characters (safe to
/// paste in a shell or a URL).
pub fn new_secret() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    Ok(to_hex(&bytes))
}

/// The client's proof: `hex(HMAC-SHA256(secret, "client <sn> <cn> <user>"))`.
///
/// ```
/// use netlessons::auth::client_proof;
/// let p = client_proof("pw", "00", "11", "ada");
/// assert_eq!(p.len(), 64);
/// assert_ne!(p, netlessons::auth::server_proof("pw", "00", "11", "ada"));
/// ```
pub fn client_proof(secret: &str, sn: &str, cn: &str, user: &str) -> String {
    proof("client", secret, sn, cn, user)
}

/// The server's proof: `hex(HMAC-SHA256(secret, "server <sn> <cn> <user>"))`.
pub fn server_proof(secret: &str, sn: &str, cn: &str, user: &str) -> String {
    proof("server", secret, sn, cn, user)
}

fn proof(role: &str, secret: &str, sn: &str, cn: &str, user: &str) -> String {
    let msg = format!("{role} {sn} {cn} {user}");
    to_hex(&hmac_sha256(secret.as_bytes(), msg.as_bytes()))
}

fn is_nonce(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The server's side of the handshake. Returns `Ok(Some(user))` once the
/// client proved itself (and was sent `OK <server_proof>`), or `Ok(None)`
/// after sending `DENIED`; the caller then closes the connection.
///
/// Every answer first goes through `throttle` (one for the whole server,
/// shared by all its connections): see [`LoginThrottle`]. When the client's
/// address has failed too often to be answered at all, the result is an
/// [`io::ErrorKind::PermissionDenied`] error and nothing is sent.
///
/// ```no_run
/// use netlessons::{auth, server::{Server, ServerConfig}};
/// let users = auth::Users::parse("ada:s3cret")?;
/// let throttle = auth::LoginThrottle::new(auth::DEFAULT_DENY_DELAY);
/// let server = Server::bind(ServerConfig::new("127.0.0.1:0")).unwrap();
/// server.serve(move |mut conn| {
///     let Some(user) = auth::serve_handshake(&mut conn, &users, &throttle)? else {
///         return Ok(()); // denied: just hang up
///     };
///     conn.send_line(format!("hello, {user}"))?;
///     conn.flush()
/// }).unwrap();
/// # Ok::<(), String>(())
/// ```
pub fn serve_handshake(
    conn: &mut Connection,
    users: &Users,
    throttle: &LoginThrottle,
) -> io::Result<Option<String>> {
    let sn = new_nonce()?;
    conn.send_line(format!("AUTH HMAC-SHA256 {sn}"))?;
    let line = match conn.read_line(MAX_AUTH_LINE) {
        Ok(Some(line)) => line,
        Ok(None) => return Ok(None), // the client left without answering
        // An over-long answer is just another malformed one: it gets the
        // same DENIED below (as an empty line, which matches no form).
        Err(e) if crate::framing::is_too_long(&e) => Vec::new(),
        Err(e) => return Err(e),
    };
    // Parse leniently into Option so that every kind of failure below ends
    // in the one and only DENIED path.
    let text = String::from_utf8_lossy(&line);
    let words: Vec<&str> = text.split(' ').collect();
    let verdict = match words.as_slice() {
        ["AUTH", user, cn, proof] if is_nonce(cn) => {
            // Compute an expected proof even for an unknown user (with a
            // dummy secret), so that both cases take the same time.
            let secret = users.secret(user);
            let expected = client_proof(secret.unwrap_or("\0no such user"), &sn, cn, user);
            let matches = constant_time_eq(expected.as_bytes(), proof.as_bytes());
            match secret {
                Some(secret) if matches => {
                    Some((user.to_string(), server_proof(secret, &sn, cn, user)))
                }
                _ => None,
            }
        }
        _ => None,
    };
    // The same delay and the same word for an unknown user, a wrong proof
    // and a malformed line: a guesser learns nothing, slowly; and more
    // slowly still once its address has failed often (the throttle waits).
    if !throttle.before_answer(conn.peer_addr().ip(), verdict.is_some()) {
        let text = "too many failed logins from this address in the last minute: \
                    closed without an answer";
        conn.trace().note(text);
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, text));
    }
    match verdict {
        Some((user, answer)) => {
            conn.send_line(format!("OK {answer}"))?;
            conn.flush()?;
            Ok(Some(user))
        }
        None => {
            conn.trace().note("authentication failed");
            conn.send_line("DENIED")?;
            conn.flush()?;
            Ok(None)
        }
    }
}

/// The client's side of the handshake: answers the challenge and checks the
/// server's proof.
///
/// Errors are [`io::ErrorKind::PermissionDenied`] when the server says
/// `DENIED` or when it cannot prove it knows the secret (an impostor), and
/// [`io::ErrorKind::InvalidData`] when the server does not speak this
/// handshake at all (for example `ERR server full`: the message says so).
pub fn client_handshake(conn: &mut Connection, user: &str, secret: &str) -> io::Result<()> {
    let challenge = read_reply(conn)?;
    let sn = match challenge.strip_prefix("AUTH HMAC-SHA256 ") {
        Some(sn) if is_nonce(sn) => sn.to_string(),
        _ => return Err(unexpected(&challenge)),
    };
    let cn = new_nonce()?;
    conn.send_line(format!(
        "AUTH {user} {cn} {}",
        client_proof(secret, &sn, &cn, user)
    ))?;
    let reply = read_reply(conn)?;
    if reply == "DENIED" {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("access denied: the server does not accept user '{user}' with that secret"),
        ));
    }
    let Some(their_proof) = reply.strip_prefix("OK ") else {
        return Err(unexpected(&reply));
    };
    let expected = server_proof(secret, &sn, &cn, user);
    if !constant_time_eq(expected.as_bytes(), their_proof.as_bytes()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the server could not prove that it knows your secret: it may be an impostor; not continuing",
        ));
    }
    Ok(())
}

fn read_reply(conn: &mut Connection) -> io::Result<String> {
    match conn.read_line(MAX_AUTH_LINE)? {
        Some(line) => Ok(String::from_utf8_lossy(&line).into_owned()),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection during the handshake",
        )),
    }
}

fn unexpected(line: &str) -> io::Error {
    if let Some(reason) = line.strip_prefix("ERR ") {
        return io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("the server refused the connection: {reason}"),
        );
    }
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected reply from the server during the handshake: {line:?}"),
    )
}
