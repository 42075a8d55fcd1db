//! The file server's client side: the login as lines on the wire.

use std::io;

/// The client's half of the file server's login, as the lines on the wire.
///
/// Built by [`file_login_lines`] from the server's nonce; tests that speak the
/// protocol over a raw socket send [`line`](FileLogin::line) and compare the
/// reply with [`ok`](FileLogin::ok).
#[derive(Debug, Clone)]
pub struct FileLogin {
    /// `AUTH <user> <cn> <client proof>`, without a line ending.
    pub line: String,
    /// `OK <server proof>`: the one reply that shows the server knows the
    /// secret too. A client must check it, not just the `OK`.
    pub ok: String,
}

/// Answers the file server's challenge `AUTH HMAC-SHA256 <sn>` as `user`
/// with `secret`, using a fresh client nonce (so a wrong `secret` gives a
/// well-formed but wrong answer, for tests of refusals).
pub fn file_login_lines(sn: &str, user: &str, secret: &str) -> io::Result<FileLogin> {
    use netlessons::auth::{client_proof, new_nonce, server_proof};
    let cn = new_nonce()?;
    Ok(FileLogin {
        line: format!("AUTH {user} {cn} {}", client_proof(secret, sn, &cn, user)),
        ok: format!("OK {}", server_proof(secret, sn, &cn, user)),
    })
}
