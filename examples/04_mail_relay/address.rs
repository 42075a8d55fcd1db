//! Mail addresses as SMTP carries them: `MAIL FROM:<alice@example.test> SIZE=120`.
//!
//! Pure parsing, no sockets: the SMTP session (`smtp.rs`) hands us the text
//! after the command word and gets back the address and its parameters, or a
//! reason to refuse. Real addresses can be far stranger than what we accept
//! (quoted local parts such as `"john smith"@example.com`, international
//! addresses with SMTPUTF8); a real server parses RFC 5321's full grammar.

/// An envelope address split at its last `@`. The domain is in lower case
/// (domains are case-insensitive); the local part is kept as written, since
/// only the receiving domain may decide what its case means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Before the `@`.
    pub local: String,
    /// After the `@`, lower case. Empty for the bare `<postmaster>`.
    pub domain: String,
}

impl Address {
    /// The address as written in the envelope, `local@domain`.
    pub fn text(&self) -> String {
        if self.domain.is_empty() {
            self.local.clone()
        } else {
            format!("{}@{}", self.local, self.domain)
        }
    }
}

/// One `KEY=VALUE` (or bare `KEY`) parameter after the address, key in upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The keyword, upper case (`SIZE`, `BODY`).
    pub key: String,
    /// The value, if there was an `=`.
    pub value: Option<String>,
}

/// Parses `FROM:<path> PARAMS` (for `prefix` = `FROM:`) or `TO:<path> PARAMS`.
///
/// Returns the path (the text between `<` and `>`, possibly empty) and the
/// parameters. The prefix is case-insensitive (`from:` works, as RFC 5321
/// says), and a space after the colon is tolerated, as most servers do.
/// A path without angle brackets is accepted too (Postfix does the same);
/// it then ends at the first space.
pub fn split_path<'a>(args: &'a str, prefix: &str) -> Result<(&'a str, Vec<Param>), String> {
    let head = args.get(..prefix.len()).unwrap_or("");
    if !head.eq_ignore_ascii_case(prefix) {
        return Err(format!("expected {prefix}<address>"));
    }
    let rest = args[prefix.len()..].trim_start();
    let (path, params) = if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>').ok_or("missing '>' after the address")?;
        (&inner[..end], &inner[end + 1..])
    } else {
        match rest.split_once(' ') {
            Some((path, params)) => (path, params),
            None => (rest, ""),
        }
    };
    // An angle bracket inside the path (`<<x@y>`, `postmaster>@remote.test`)
    // is no address at all. Taken as text, it would go out to the next hop
    // as `RCPT TO:<postmaster>@remote.test>`, which that server may read as
    // `<postmaster>` with a parameter: a different recipient from the one
    // we checked.
    if path.contains(['<', '>']) {
        return Err("stray '<' or '>' in the address".to_string());
    }
    if !params.is_empty() && !params.starts_with(' ') {
        return Err("expected a space between the address and its parameters".to_string());
    }
    let params = params
        .split_whitespace()
        .map(|word| match word.split_once('=') {
            Some((k, v)) => Param {
                key: k.to_ascii_uppercase(),
                value: Some(v.to_string()),
            },
            None => Param {
                key: word.to_ascii_uppercase(),
                value: None,
            },
        })
        .collect();
    Ok((path, params))
}

/// Parses the path of an envelope address. An old source route
/// (`@relay1,@relay2:user@domain`) is dropped, as RFC 5321 tells servers to.
/// `postmaster` alone is allowed without a domain (RFC 5321 §4.5.1).
pub fn parse_address(path: &str) -> Result<Address, String> {
    let path = match path.strip_prefix('@') {
        Some(routed) => routed.split_once(':').map_or("", |(_, addr)| addr),
        None => path,
    };
    if path.eq_ignore_ascii_case("postmaster") {
        return Ok(Address {
            local: "postmaster".to_string(),
            domain: String::new(),
        });
    }
    let (local, domain) = path
        .rsplit_once('@')
        .ok_or("an address needs a domain: user@domain")?;
    if local.is_empty() || local.len() > 64 {
        return Err("the part before '@' must be 1 to 64 characters".to_string());
    }
    // Printable ASCII only: these strings end up in headers, file names and
    // the queue file, where a control character could do damage.
    if !local.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the part before '@' has characters we do not accept".to_string());
    }
    if !valid_domain(domain) {
        return Err(format!("{domain:?} is not a valid domain"));
    }
    Ok(Address {
        local: local.to_string(),
        domain: domain.to_ascii_lowercase(),
    })
}

/// A domain name (`mail.example.test`) or an address literal (`[192.0.2.1]`).
fn valid_domain(domain: &str) -> bool {
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return literal.parse::<std::net::Ipv4Addr>().is_ok()
            || literal
                .strip_prefix("IPv6:")
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    (1..=253).contains(&domain.len())
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The mailbox folder for a local part, or `None` if it cannot be one.
///
/// Mailbox names are folder names, so we allow only `[a-z0-9._-]`, not
/// starting with `.` (that would be a hidden folder, such as our `.queue`),
/// compared in lower case: `Bob` and `bob` are the same mailbox. Without this
/// rule a recipient such as `../../etc` would be a path out of the spool.
pub fn mailbox_name(local: &str) -> Option<String> {
    let name = local.to_ascii_lowercase();
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    ok.then_some(name)
}
