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
//!
//! What this does **not** give you: secrecy. Everything after the handshake
//! travels in the clear and could be altered in flight. Real systems run the
//! whole conversation inside TLS (or SSH), which also authenticates the server.

use crate::connection::Connection;
use crate::sha256::{constant_time_eq, hmac_sha256, to_hex};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::thread;
use std::time::Duration;

/// Longest handshake line we accept: `AUTH` + a 64-byte user + two 64-char hex strings.
pub const MAX_AUTH_LINE: usize = 512;

/// How long the server waits before saying `DENIED`, by default.
///
/// Every wrong guess costs the guesser this long on one connection. (A real
/// server would also count failures per address and slow those down more.)
pub const DEFAULT_DENY_DELAY: Duration = Duration::from_millis(500);

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
/// ```no_run
/// use netlessons::{auth, server::{Server, ServerConfig}};
/// let users = auth::Users::parse("ada:s3cret")?;
/// let server = Server::bind(ServerConfig::new("127.0.0.1:0")).unwrap();
/// server.serve(move |mut conn| {
///     let Some(user) = auth::serve_handshake(&mut conn, &users, auth::DEFAULT_DENY_DELAY)? else {
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
    deny_delay: Duration,
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
    match verdict {
        Some((user, answer)) => {
            conn.send_line(format!("OK {answer}"))?;
            conn.flush()?;
            Ok(Some(user))
        }
        None => {
            // The same delay and the same word for an unknown user, a wrong
            // proof and a malformed line: a guesser learns nothing, slowly.
            thread::sleep(deny_delay);
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
