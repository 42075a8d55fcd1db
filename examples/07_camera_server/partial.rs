//! A report in progress (the reassembly), a report finished, the limits,
//! and the drop counts: the state `reports.rs` works on.

use netlessons::datagram::{self, Ack, Hello};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The bounds on what strangers and cameras can make the server hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest photo accepted (`--max-size`); a larger HELLO gets ERR `too large`.
    pub max_size: u64,
    /// Reports in progress at once, from everyone; past it, ERR `busy`.
    pub max_partials: usize,
    /// Reports in progress at once from one IP address; past it, ERR `busy`.
    pub max_partials_per_ip: usize,
    /// A report in progress that hears nothing for this long is forgotten.
    pub expire: Duration,
    /// Finished reports remembered (to answer a late duplicate with DONE).
    pub max_finished: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_size: 8 * 1024 * 1024,
            max_partials: 64,
            max_partials_per_ip: 8,
            expire: Duration::from_secs(30),
            max_finished: 1024,
        }
    }
}

/// One report in progress: what its HELLO said and the chunks held so far.
pub struct Partial {
    pub camera: String,
    pub secret: String,
    pub hello: Hello,
    pub total: u32,
    /// The chunks held, by seq. A map rather than a vector of `total`
    /// slots: memory grows with the chunks that really arrived, never with
    /// the size a HELLO merely *declared* (a HELLO costs one datagram to
    /// send; a vector sized from it would let one datagram reserve 8 MiB).
    pub chunks: BTreeMap<u32, Vec<u8>>,
    /// Every seq below this is held: the base of the next ACK.
    pub first_missing: u32,
    pub last_heard: Instant,
    /// Datagrams received for this report, duplicates included (logged at the end).
    pub datagrams: u64,
}

impl Partial {
    /// The ACK that describes this report now: the base, and a bitmap of the
    /// 256 chunks from the base.
    pub fn ack(&self) -> Ack {
        let mut ack = Ack::new(self.first_missing);
        let end = self.first_missing.saturating_add(datagram::ACK_SPAN);
        for (&seq, _) in self.chunks.range(self.first_missing..end) {
            ack.set(seq);
        }
        ack
    }

    /// The size chunk `seq` must have: 1,200 bytes, except the last, which
    /// holds the rest.
    pub fn chunk_len(&self, seq: u32) -> usize {
        if seq + 1 < self.total {
            datagram::MAX_PAYLOAD
        } else {
            (self.hello.size - u64::from(self.total - 1) * datagram::MAX_PAYLOAD as u64) as usize
        }
    }
}

/// A report already stored: enough to answer its late datagrams with DONE.
pub struct Finished {
    pub secret: String,
    pub total: u32,
}

/// Why datagrams were dropped without an answer, counted for the log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dropped {
    pub not_allowed: u64,
    pub malformed: u64,
    pub bad_tag: u64,
    pub unknown_report: u64,
    pub bad_request: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.not_allowed + self.malformed + self.bad_tag + self.unknown_report + self.bad_request
    }
}

/// Are two addresses the same host for the per-address limit? IPv4 by
/// address; IPv6 by its /64, since one host is usually given a whole /64 and
/// can pick any address in it.
pub fn same_host(a: IpAddr, b: IpAddr) -> bool {
    // A dual-stack socket shows IPv4 peers as `::ffff:a.b.c.d`: compare
    // those as the IPv4 addresses they are, not as one shared /64.
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (plain(a), plain(b)) {
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..4] == b.segments()[..4],
        _ => a == b,
    }
}
