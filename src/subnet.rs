//! CIDR blocks and the [`Allowlist`] that decides who may connect to a server.
//!
//! A CIDR block such as `192.168.0.0/16` names a range of addresses: the ones whose first
//! 16 bits equal those of `192.168.0.0`. The number after the slash is the *prefix length*;
//! the remaining bits (the *host bits*) may be anything. `/32` (IPv4) or `/128` (IPv6) is a
//! single address, and `/0` is every address.
//!
//! Every server example takes `--allow CIDR[,CIDR…]` and closes connections from peers
//! outside the list before reading or writing a byte. By default only local networks may
//! connect ([`Allowlist::local_networks`]), so a learner's server, even one bound to
//! `0.0.0.0`, is not open to the whole internet.
//!
//! ```
//! use netlessons::subnet::Allowlist;
//! use std::net::IpAddr;
//!
//! let allow: Allowlist = "10.0.0.0/8, ::1".parse()?;
//! assert!(allow.contains("10.20.30.40".parse::<IpAddr>()?));
//! assert!(allow.contains("::1".parse::<IpAddr>()?));
//! assert!(!allow.contains("192.168.1.1".parse::<IpAddr>()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Filtering by address is a convenience, not authentication: on a shared network
//! addresses can be spoofed or shared. A real deployment would use a firewall as well, and
//! authenticate users (as the file server does with its handshake).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A block of IP addresses written as `ADDRESS/PREFIX`, such as `10.0.0.0/8` or `fc00::/7`.
///
/// A `Cidr` is always valid: its prefix fits its address family (at most 32 for IPv4,
/// 128 for IPv6) and its host bits are zero. [`Cidr::new`] and parsing both check this.
///
/// ```
/// use netlessons::subnet::Cidr;
/// use std::net::IpAddr;
///
/// let net: Cidr = "172.16.0.0/12".parse()?;
/// assert_eq!(net.prefix(), 12);
/// assert!(net.contains("172.31.255.255".parse::<IpAddr>()?));
/// assert!(!net.contains("172.32.0.0".parse::<IpAddr>()?));
/// assert_eq!(net.to_string(), "172.16.0.0/12");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The first address of the block (host bits zero).
    addr: IpAddr,
    /// How many leading bits of an address must match `addr`.
    prefix: u8,
}

/// The longest prefix an address family allows: its size in bits.
fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The IPv4 netmask for a prefix length: `prefix` one bits followed by zeros.
///
/// The obvious `u32::MAX << (32 - prefix)` breaks for `/0`: shifting a 32-bit number by 32
/// is an overflow (a panic in debug builds, and on x86 the hardware would shift by 0 and
/// give all ones, the opposite of the right answer). `checked_shl` returns `None` for that
/// case, and an all-zero mask is exactly what `/0` means.
fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The IPv6 netmask for a prefix length; see [`mask_v4`] for why `checked_shl`.
fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// `addr` with every bit after the first `prefix` bits cleared.
fn apply_mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
    }
}

impl Cidr {
    /// Makes the block of addresses whose first `prefix` bits equal those of `addr`.
    ///
    /// Fails if `prefix` is longer than the address (over 32 for IPv4, over 128 for IPv6),
    /// or if `addr` has host bits set (`10.1.2.3/8`): such input is usually a typo, so
    /// instead of silently masking it, the error names the form that was probably meant.
    ///
    /// ```
    /// use netlessons::subnet::Cidr;
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// let net = Cidr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8)?;
    /// assert_eq!(net.to_string(), "10.0.0.0/8");
    ///
    /// let typo = Cidr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 8).unwrap_err();
    /// assert!(typo.to_string().contains("did you mean 10.0.0.0/8?"));
    /// # Ok::<(), netlessons::subnet::CidrError>(())
    /// ```
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(CidrError::new(format!(
                "prefix /{prefix} is too long for an {} address (max /{max})",
                family_name(addr)
            )));
        }
        let masked = apply_mask(addr, prefix);
        if masked != addr {
            return Err(CidrError::new(format!(
                "host bits are set in {addr}/{prefix}; did you mean {masked}/{prefix}?"
            )));
        }
        Ok(Cidr { addr, prefix })
    }

    /// The first address of the block, for example `10.0.0.0` in `10.0.0.0/8`.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length, for example `8` in `10.0.0.0/8`.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this block.
    ///
    /// The address is taken exactly as given: an IPv4 block never contains an IPv6 address,
    /// not even an IPv4-mapped one like `::ffff:10.0.0.1`, and an IPv6 block never contains
    /// an IPv4 address. [`Allowlist::contains`] is the one that also treats mapped
    /// addresses as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            // An address is in the block when masking off its host bits leaves exactly
            // the block's address.
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// "IPv4" or "IPv6", for error messages.
fn family_name(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

impl fmt::Display for Cidr {
    /// Writes `ADDRESS/PREFIX`, always with the prefix (`127.0.0.1/32`), in the form
    /// [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `ADDRESS/PREFIX` (`10.0.0.0/8`, `fc00::/7`), or a bare address, which means
    /// that single address (`/32` or `/128`).
    ///
    /// The prefix must be plain decimal digits: no sign, no spaces. Surrounding spaces are
    /// not skipped here; [`Allowlist`] trims each entry of a list before parsing it.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        if text.is_empty() {
            return Err(CidrError::new(
                "empty CIDR: write an address block like 10.0.0.0/8 or ::1/128".to_string(),
            ));
        }

        // Split at the last '/'. IPv6 addresses contain ':' but never '/', so there is no
        // ambiguity; a second '/' ends up in the address part and fails to parse there.
        let (addr_text, prefix_text) = match text.rsplit_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };

        let addr: IpAddr = addr_text.parse().map_err(|_| {
            CidrError::new(format!(
                "{addr_text:?} in {text:?} is not an IP address; write an IPv4 block like \
                 192.168.0.0/16 or an IPv6 block like fc00::/7 (no brackets, no zone like %eth0)"
            ))
        })?;
        let max = max_prefix(addr);

        let prefix = match prefix_text {
            None => max,
            Some(digits) => parse_prefix(digits, addr, text)?,
        };
        Cidr::new(addr, prefix)
    }
}

/// Parses the part after the '/': one or more ASCII digits, at most the address size.
fn parse_prefix(digits: &str, addr: IpAddr, whole: &str) -> Result<u8, CidrError> {
    let max = max_prefix(addr);
    if digits.is_empty() {
        return Err(CidrError::new(format!(
            "missing prefix length after '/' in {whole:?}; write e.g. {addr}/{max}, \
             or leave out the '/' for a single address"
        )));
    }
    // `u8::from_str` would accept a leading '+', so check for plain digits ourselves.
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CidrError::new(format!(
            "prefix {digits:?} in {whole:?} must be plain decimal digits from 0 to {max} \
             (no sign, no spaces)"
        )));
    }
    // All digits, so the only way to fail is a number too big even for a u8. It is
    // certainly too long then; report it as such rather than as "not a number".
    match digits.parse::<u8>() {
        Ok(prefix) if prefix <= max => Ok(prefix),
        _ => Err(CidrError::new(format!(
            "prefix /{digits} is too long for an {} address (max /{max})",
            family_name(addr)
        ))),
    }
}

/// Why a CIDR or an allowlist could not be parsed or built. Its message says what is wrong
/// and what to write instead, so a command-line tool can show it as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError {
    /// The full, human-readable explanation.
    message: String,
}

impl CidrError {
    /// Wraps a finished message.
    fn new(message: String) -> CidrError {
        CidrError { message }
    }
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CidrError {}

/// A list of CIDR blocks; an address is allowed when any block contains it.
///
/// This is what `--allow` parses into. The default is [`Allowlist::local_networks`].
///
/// ```
/// use netlessons::subnet::Allowlist;
/// use std::net::IpAddr;
///
/// let local = Allowlist::default();
/// assert!(local.contains("192.168.1.20".parse::<IpAddr>()?));
/// assert!(!local.contains("8.8.8.8".parse::<IpAddr>()?));
/// // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; those match as IPv4.
/// assert!(local.contains("::ffff:127.0.0.1".parse::<IpAddr>()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    /// The blocks, in the order given.
    cidrs: Vec<Cidr>,
}

/// Builds an IPv4 block from a literal known to be valid (used for the built-in lists,
/// which the tests check with [`Cidr::new`]).
const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix,
    }
}

/// Builds an IPv6 block whose address has `first` as its leading 16 bits and zeros after,
/// except for `last`, the final 16 bits (enough for `::1`, `fc00::` and `fe80::`).
const fn v6(first: u16, last: u16, prefix: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V6(Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, last)),
        prefix,
    }
}

impl Allowlist {
    /// Makes a list from `cidrs`. An empty list allows nobody.
    ///
    /// A block written in IPv4-mapped form (`::ffff:192.0.2.0/120`, `::ffff:0:0/96`) is
    /// stored as the IPv4 block it names (`192.0.2.0/24`, `0.0.0.0/0`). Peers are matched
    /// as IPv4 whichever way they arrive (see [`Allowlist::contains`]), so kept as IPv6 such
    /// an entry would never match a client of an IPv4 listener, and the person who wrote
    /// it would be locked out without a word.
    ///
    /// ```
    /// use netlessons::subnet::Allowlist;
    /// use std::net::IpAddr;
    ///
    /// let allow: Allowlist = "::ffff:192.0.2.0/120".parse()?;
    /// assert_eq!(allow.to_string(), "192.0.2.0/24");
    /// assert!(allow.contains("192.0.2.7".parse::<IpAddr>()?));
    /// assert!(allow.contains("::ffff:192.0.2.7".parse::<IpAddr>()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(cidrs: Vec<Cidr>) -> Self {
        let cidrs = cidrs.into_iter().map(unmapped).collect();
        Allowlist { cidrs }
    }

    /// Loopback and private networks: the default for every server example.
    ///
    /// `127.0.0.0/8, ::1/128` (this machine), `10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16`
    /// (private IPv4, RFC 1918), `169.254.0.0/16` (IPv4 link-local), `fc00::/7` (IPv6
    /// unique local) and `fe80::/10` (IPv6 link-local). So a classroom LAN works out of the
    /// box, while the open internet does not reach a learner's half-finished server.
    pub fn local_networks() -> Self {
        Allowlist::new(vec![
            v4(127, 0, 0, 0, 8),
            v6(0, 1, 128),
            v4(10, 0, 0, 0, 8),
            v4(172, 16, 0, 0, 12),
            v4(192, 168, 0, 0, 16),
            v4(169, 254, 0, 0, 16),
            v6(0xfc00, 0, 7),
            v6(0xfe80, 0, 10),
        ])
    }

    /// This machine only: `127.0.0.0/8, ::1/128`. The mail relay's default for who may
    /// relay mail to other domains (`--relay-allow`).
    pub fn loopback() -> Self {
        Allowlist::new(vec![v4(127, 0, 0, 0, 8), v6(0, 1, 128)])
    }

    /// Everyone: `0.0.0.0/0, ::/0`. Only for a server you mean to expose.
    pub fn any() -> Self {
        Allowlist::new(vec![v4(0, 0, 0, 0, 0), v6(0, 0, 0)])
    }

    /// Whether `ip` is allowed: some block contains it as given, or `ip` is an
    /// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) and some block contains `a.b.c.d`.
    ///
    /// Mapped addresses matter because a server listening on `[::]` also accepts IPv4
    /// clients on most systems, and then reports `127.0.0.1` as `::ffff:127.0.0.1`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.cidrs.iter().any(|cidr| cidr.contains(ip)) {
            return true;
        }
        // Careful: `to_ipv4_mapped` converts only `::ffff:a.b.c.d`. The similar-looking
        // `Ipv6Addr::to_ipv4` also converts the old "IPv4-compatible" form `::a.b.c.d`, so
        // it turns `::1` into `0.0.0.1` and `::` into `0.0.0.0`. With it, a list holding
        // `0.0.0.0/8` would let in the IPv6 loopback, and a list holding only `::1/128`
        // would be checked against an IPv4 address nobody wrote down.
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.cidrs.iter().any(|cidr| cidr.contains(IpAddr::V4(v4))),
                None => false,
            },
            IpAddr::V4(_) => false,
        }
    }

    /// The blocks in the list, in the order given.
    pub fn cidrs(&self) -> &[Cidr] {
        &self.cidrs
    }
}

/// The IPv4 block a mapped block (`::ffff:a.b.c.d/96+n`) names (`a.b.c.d/n`); any other
/// block as it is. A valid block with a mapped address always has a prefix of at least 96:
/// its bits 80–95 are ones, so a shorter prefix would leave host bits set.
fn unmapped(cidr: Cidr) -> Cidr {
    match cidr.addr {
        IpAddr::V6(v6) if cidr.prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => Cidr {
                addr: IpAddr::V4(v4),
                prefix: cidr.prefix - 96,
            },
            None => cidr,
        },
        _ => cidr,
    }
}

impl Default for Allowlist {
    /// [`Allowlist::local_networks`].
    fn default() -> Self {
        Allowlist::local_networks()
    }
}

impl fmt::Display for Allowlist {
    /// Writes the blocks joined by commas (`127.0.0.0/8,::1/128`), the form `--allow`
    /// takes. An empty list writes nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cidr) in self.cidrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{cidr}")?;
        }
        Ok(())
    }
}

impl FromStr for Allowlist {
    type Err = CidrError;

    /// Parses `CIDR[,CIDR…]`, as given to `--allow`. Spaces around the commas are fine
    /// (`10.0.0.0/8, ::1`); an empty entry (`10.0.0.0/8,,::1`, a trailing comma, or an
    /// empty string) is an error, since it is more likely a mistake than a wish.
    fn from_str(text: &str) -> Result<Allowlist, CidrError> {
        let mut cidrs = Vec::new();
        for entry in text.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(CidrError::new(format!(
                    "empty entry in the address list {text:?}; separate blocks with single \
                     commas, for example 127.0.0.0/8,::1/128"
                )));
            }
            cidrs.push(entry.parse()?);
        }
        Ok(Allowlist::new(cidrs))
    }
}
