//! Datagrams: whole messages over UDP, each one signed.
//!
//! TCP gives you a byte stream and you must find the message boundaries
//! yourself ([`crate::framing`]). UDP gives you the opposite: every `send_to`
//! arrives as one whole datagram or not at all, boundaries kept. What UDP
//! does *not* give you is everything else TCP did: a datagram may be lost,
//! arrive twice, or arrive after one sent later, and nobody tells the sender.
//! The speed camera of chapter 12 (`07_camera_server`, `07_camera_client`)
//! builds the missing reliability by hand on top of the format here.
//!
//! One datagram, all numbers big-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  magic "NLCM"
//!      4     1  version, 1
//!      5     1  kind: HELLO 1, DATA 2, ACK 3, DONE 4, ERR 5
//!      6     8  report id (random per report)
//!     14     4  seq
//!     18     4  total (number of DATA chunks in the report)
//!     22     2  payload length (at most 1,200)
//!     24     n  payload
//!   24+n    16  tag: the first 16 bytes of HMAC-SHA256(secret, bytes 0..24+n)
//! ```
//!
//! Parsing is in two steps, because the receiver must read a datagram before
//! it knows which secret checks it (a HELLO names its camera inside the
//! payload). [`parse`] checks only the shape: the length adds up, the magic,
//! version and kind are right. [`Unverified::verify`] then checks the tag
//! with the secret the caller picked. Nothing in an unverified datagram may
//! be trusted or answered: a reply to a forged source address would turn the
//! server into a weapon against that address (see chapter 12).
//!
//! ```
//! use netlessons::datagram::{self, Header, Kind};
//!
//! let header = Header { kind: Kind::Data, report: 0x1f3a, seq: 17, total: 170 };
//! let bytes = datagram::build(&header, b"photo bytes", b"s3cret");
//! assert_eq!(&bytes[..4], b"NLCM");
//!
//! let got = datagram::parse(&bytes).expect("well formed");
//! assert_eq!(got.header, header);
//! assert_eq!(got.payload, b"photo bytes");
//! assert!(got.verify(b"s3cret"));
//! assert!(!got.verify(b"wrong")); // a wrong secret: drop it, say nothing
//! ```
//!
//! The payloads of HELLO ([`Hello`]) and ACK ([`Ack`]) have their own small
//! encodings (in `datagram/payload.rs`, re-exported here), so that the client
//! and the server share one definition of the format.

use crate::sha256::{HmacSha256, constant_time_eq};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

// The payloads of HELLO and ACK.
mod payload;
pub use payload::{Ack, Hello};

/// The first four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"NLCM";

/// The format's version.
pub const VERSION: u8 = 1;

/// Bytes before the payload: magic, version, kind, report id, seq, total, length.
pub const HEADER_LEN: usize = 24;

/// Bytes of the truncated HMAC-SHA256 tag at the end.
pub const TAG_LEN: usize = 16;

/// The largest payload, and the size of every DATA chunk but the last.
///
/// With our 40 bytes of header and tag, 8 of UDP and 20 of IPv4 (40 of
/// IPv6), a full datagram is a packet of 1,268 bytes (1,288): under
/// Ethernet's 1,500 and the 1,400 or so that tunnels and VPNs leave, so it
/// is not split into IP fragments on the paths you will meet. (IPv6 only
/// promises 1,280 bytes on every link: at that bare minimum ours would be 8
/// bytes too long. QUIC, which made the same choice of 1,200, counts it as
/// the whole UDP payload.) On loopback the MTU is 64 KiB, so a much bigger
/// payload would seem to work there and then fail across a real network:
/// the limit must not rely on it.
pub const MAX_PAYLOAD: usize = 1200;

/// The largest datagram the format allows: header, 1,200 bytes, tag.
pub const MAX_DATAGRAM: usize = HEADER_LEN + MAX_PAYLOAD + TAG_LEN;

/// The chunks one ACK describes: a 32-byte bitmap holds 256 bits.
pub const ACK_SPAN: u32 = 256;

/// The most bytes of `key=value` lines a HELLO may carry.
pub const MAX_HELLO_LINES: usize = 512;

/// What a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Camera → server: "I have a report of `total` chunks" (the payload is a [`Hello`]).
    Hello,
    /// Camera → server: chunk `seq` of the photo.
    Data,
    /// Server → camera: the chunks held so far (the payload is an [`Ack`] bitmap).
    Ack,
    /// Server → camera: the report is stored on disk (empty payload).
    Done,
    /// Server → camera: refused; the payload is the reason as UTF-8 (`too large`, `busy`).
    Err,
}

impl Kind {
    /// The kind's byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Kind::Hello => 1,
            Kind::Data => 2,
            Kind::Ack => 3,
            Kind::Done => 4,
            Kind::Err => 5,
        }
    }

    /// The kind for a byte on the wire, if it is one.
    pub fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            1 => Kind::Hello,
            2 => Kind::Data,
            3 => Kind::Ack,
            4 => Kind::Done,
            5 => Kind::Err,
            _ => return None,
        })
    }

    /// The kind's name as `--trace` shows it: `HELLO`, `DATA`, `ACK`, `DONE`, `ERR`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "HELLO",
            Kind::Data => "DATA",
            Kind::Ack => "ACK",
            Kind::Done => "DONE",
            Kind::Err => "ERR",
        }
    }
}

/// The fixed fields of a datagram (everything but the payload and the tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the datagram is for.
    pub kind: Kind,
    /// The report it belongs to: random per report, chosen by the camera.
    pub report: u64,
    /// DATA: the chunk number; ACK: the base (every chunk below it is held); else 0.
    pub seq: u32,
    /// The number of DATA chunks in the report.
    pub total: u32,
}

/// Why [`parse`] rejected a datagram. A receiver counts these and drops the
/// datagram; it never answers one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a header and a tag, or the length field disagrees with
    /// the datagram's real size.
    Length,
    /// A payload longer than [`MAX_PAYLOAD`].
    TooLong,
    /// The first four bytes are not `NLCM`.
    Magic,
    /// A version we do not speak.
    Version,
    /// A kind byte that is not 1 to 5.
    Kind,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::Length => "wrong length",
            Malformed::TooLong => "payload too long",
            Malformed::Magic => "wrong magic",
            Malformed::Version => "wrong version",
            Malformed::Kind => "unknown kind",
        })
    }
}

impl std::error::Error for Malformed {}

/// A datagram whose shape is right but whose tag is not checked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unverified<'a> {
    /// The fixed fields.
    pub header: Header,
    /// The payload, exactly as long as the length field says.
    pub payload: &'a [u8],
    /// Everything the tag covers: the header and the payload.
    signed: &'a [u8],
    /// The 16 bytes of tag at the end.
    tag: &'a [u8],
}

impl Unverified<'_> {
    /// Is the tag right for `secret`? Compared in constant time, so that the
    /// time a wrong guess takes says nothing about how close it was.
    pub fn verify(&self, secret: &[u8]) -> bool {
        constant_time_eq(&tag(secret, self.signed), self.tag)
    }
}

/// Builds one datagram: the header, `payload`, and the tag made with `secret`.
///
/// # Panics
///
/// If `payload` is longer than [`MAX_PAYLOAD`]: that is a bug in the caller,
/// never something a peer can cause.
pub fn build(header: &Header, payload: &[u8], secret: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= MAX_PAYLOAD,
        "a datagram payload is at most {MAX_PAYLOAD} bytes, not {}",
        payload.len()
    );
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.kind.code());
    out.extend_from_slice(&header.report.to_be_bytes());
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.total.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    let tag = tag(secret, &out);
    out.extend_from_slice(&tag);
    out
}

/// Checks a received datagram's shape and splits it into its fields. The
/// tag is not checked yet: call [`Unverified::verify`].
///
/// ```
/// use netlessons::datagram::{parse, Malformed};
///
/// assert_eq!(parse(b"hello").unwrap_err(), Malformed::Length);
/// assert_eq!(parse(&[0u8; 40]).unwrap_err(), Malformed::Magic);
/// ```
pub fn parse(bytes: &[u8]) -> Result<Unverified<'_>, Malformed> {
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(Malformed::Length);
    }
    if bytes[0..4] != MAGIC {
        return Err(Malformed::Magic);
    }
    if bytes[4] != VERSION {
        return Err(Malformed::Version);
    }
    let kind = Kind::from_code(bytes[5]).ok_or(Malformed::Kind)?;
    let u32_at =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut report = [0u8; 8];
    report.copy_from_slice(&bytes[6..14]);
    let len = usize::from(u16::from_be_bytes([bytes[22], bytes[23]]));
    if len > MAX_PAYLOAD {
        return Err(Malformed::TooLong);
    }
    // The length field must account for every byte: a datagram keeps its
    // boundaries, so any disagreement is damage or mischief, never "read more".
    if HEADER_LEN + len + TAG_LEN != bytes.len() {
        return Err(Malformed::Length);
    }
    let end = HEADER_LEN + len;
    Ok(Unverified {
        header: Header {
            kind,
            report: u64::from_be_bytes(report),
            seq: u32_at(14),
            total: u32_at(18),
        },
        payload: &bytes[HEADER_LEN..end],
        signed: &bytes[..end],
        tag: &bytes[end..],
    })
}

/// The tag: the first 16 bytes of HMAC-SHA256(`secret`, `signed`).
///
/// Sixteen bytes (128 bits) are plenty against forgery, and truncating an
/// HMAC is standard practice (RFC 2104 §5); the full 32 would cost 16 more
/// bytes in every datagram.
pub fn tag(secret: &[u8], signed: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = HmacSha256::new(secret);
    mac.update(signed);
    let full = mac.finish();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// How many DATA chunks a photo of `size` bytes takes: `ceil(size / 1200)`.
///
/// ```
/// use netlessons::datagram::chunk_count;
/// assert_eq!(chunk_count(1), 1);
/// assert_eq!(chunk_count(1200), 1);
/// assert_eq!(chunk_count(1201), 2);
/// ```
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(MAX_PAYLOAD as u64)
}

/// A time as HELLO's `time=` line and the stored `received=` line write it,
/// in UTC: `2026-12-01T19:00:00Z` (ISO 8601). std has no calendar, so the
/// date is computed here.
///
/// ```
/// use netlessons::datagram::utc_time;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// assert_eq!(utc_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
/// assert_eq!(utc_time(UNIX_EPOCH + Duration::from_secs(1_796_151_600)), "2026-12-01T19:00:00Z");
/// ```
pub fn utc_time(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Howard Hinnant's civil_from_days: eras of 400 years, each of which
    // repeats the Gregorian calendar exactly.
    let z = secs / 86_400 + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// One datagram as `--trace` shows it: kind, the report id's first four hex
/// digits, seq/total and the payload size, as in `DATA 1f3a… 17/170 1200 B`.
///
/// ```
/// use netlessons::datagram::{describe, Header, Kind};
///
/// let h = Header { kind: Kind::Data, report: 0x1f3a_0000_0000_0042, seq: 17, total: 170 };
/// assert_eq!(describe(&h, 1200), "DATA 1f3a… 17/170 1200 B");
/// ```
pub fn describe(header: &Header, payload_len: usize) -> String {
    format!(
        "{} {:04x}… {}/{} {payload_len} B",
        header.kind.name(),
        header.report >> 48,
        header.seq,
        header.total
    )
}

/// `--drop PERCENT --seed N`: throws away a share of the datagrams a program
/// would send, so that a learner can watch the recovery on one machine.
///
/// The choice comes from the seeded [`Rng`](crate::random::Rng), so the same
/// seed drops the same datagrams again: a run can be repeated. It is a
/// demonstration tool, not a model of a real network, whose losses come in
/// bursts (a full queue drops many datagrams in a row).
#[derive(Debug, Clone)]
pub struct Dropper {
    /// The share to drop, in millionths (0 = none).
    per_million: u64,
    rng: crate::random::Rng,
}

impl Dropper {
    /// Drops `percent` % (0 to 100) of what it is asked about, chosen by `seed`.
    ///
    /// ```
    /// use netlessons::datagram::Dropper;
    ///
    /// let mut none = Dropper::new(0.0, 1);
    /// assert!((0..1000).all(|_| !none.drop_next()));
    /// let mut half = Dropper::new(50.0, 7);
    /// let dropped = (0..10_000).filter(|_| half.drop_next()).count();
    /// assert!((4_500..5_500).contains(&dropped));
    /// ```
    pub fn new(percent: f64, seed: u64) -> Dropper {
        let share = if percent.is_finite() {
            percent.clamp(0.0, 100.0)
        } else {
            0.0
        };
        Dropper {
            per_million: (share * 10_000.0).round() as u64,
            // Mixing the seed makes nearby seeds (1, 2, 3) give unrelated
            // sequences.
            rng: crate::random::Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }
    }

    /// Should the next datagram be thrown away?
    pub fn drop_next(&mut self) -> bool {
        self.per_million > 0 && self.rng.below(1_000_000) < self.per_million
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind) -> Header {
        Header {
            kind,
            report: 0x0102_0304_0506_0708,
            seq: 9,
            total: 10,
        }
    }

    /// The bytes on the wire are exactly the documented layout.
    #[test]
    fn layout_is_byte_exact() {
        let bytes = build(&header(Kind::Data), b"ab", b"k");
        assert_eq!(
            &bytes[..HEADER_LEN + 2],
            b"NLCM\x01\x02\x01\x02\x03\x04\x05\x06\x07\x08\0\0\0\x09\0\0\0\x0a\0\x02ab"
        );
        let full = crate::sha256::hmac_sha256(b"k", &bytes[..HEADER_LEN + 2]);
        assert_eq!(&bytes[HEADER_LEN + 2..], &full[..16]);
        assert_eq!(bytes.len(), HEADER_LEN + 2 + TAG_LEN);
    }

    /// Every kind survives a round trip, and only the right secret verifies it.
    #[test]
    fn round_trip_every_kind() {
        for kind in [Kind::Hello, Kind::Data, Kind::Ack, Kind::Done, Kind::Err] {
            assert_eq!(Kind::from_code(kind.code()), Some(kind));
            let payload = vec![0x5a; MAX_PAYLOAD];
            let bytes = build(&header(kind), &payload, b"secret");
            assert_eq!(bytes.len(), MAX_DATAGRAM);
            let got = parse(&bytes).unwrap();
            assert_eq!(got.header, header(kind));
            assert_eq!(got.payload, &payload[..]);
            assert!(got.verify(b"secret"));
            assert!(!got.verify(b"secreT"));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(6), None);
    }

    /// Each kind of damage gets its own reason, and a flipped bit anywhere fails the tag.
    #[test]
    fn damage_is_caught() {
        let good = build(&header(Kind::Data), b"payload", b"k");
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(parse(&bad), Err(Malformed::Magic));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(parse(&bad), Err(Malformed::Version));
        let mut bad = good.clone();
        bad[5] = 9;
        assert_eq!(parse(&bad), Err(Malformed::Kind));
        assert_eq!(parse(&good[..good.len() - 1]), Err(Malformed::Length));
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(parse(&longer), Err(Malformed::Length));
        let mut bad = good.clone();
        bad[22..24].copy_from_slice(&1201u16.to_be_bytes());
        assert_eq!(parse(&bad), Err(Malformed::TooLong));
        assert_eq!(parse(&vec![0u8; 65_507]), Err(Malformed::Magic));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            if let Ok(d) = parse(&bad) {
                assert!(!d.verify(b"k"), "a flip at byte {i} went unnoticed");
            }
        }
    }

    /// Chunk counts round up, and dates come out in ISO 8601 UTC.
    #[test]
    fn counts_and_dates() {
        assert_eq!(chunk_count(204_000), 170);
        assert_eq!(chunk_count(1 << 20), 874);
        assert_eq!(
            utc_time(UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
