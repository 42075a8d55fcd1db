//! The payloads of the two datagrams that carry more than bytes of the
//! photo: HELLO says what is coming, ACK says what has arrived.

use super::{ACK_SPAN, MAX_HELLO_LINES};

/// The payload of a HELLO: the photo's size and SHA-256, then `key=value`
/// lines (`camera=`, `plate=`, `speed=`, `time=`, `ext=`), each ending in `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The photo's size in bytes (at least 1).
    pub size: u64,
    /// The SHA-256 of the whole photo, checked before it is stored.
    pub sha256: [u8; 32],
    /// The `key=value` lines, each ending in `\n`, at most 512 bytes in all.
    pub lines: String,
}

impl Hello {
    /// The payload bytes: size (u64), digest (32 bytes), lines.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.lines.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.sha256);
        out.extend_from_slice(self.lines.as_bytes());
        out
    }

    /// Reads a HELLO payload, or `None` if it breaks the format: too short,
    /// size 0, lines over 512 bytes, not UTF-8, or not ending in `\n`.
    ///
    /// ```
    /// use netlessons::datagram::Hello;
    ///
    /// let hello = Hello { size: 5, sha256: [7; 32], lines: "camera=north\next=jpg\n".into() };
    /// let back = Hello::decode(&hello.encode()).unwrap();
    /// assert_eq!(back.get("camera"), Some("north"));
    /// assert_eq!(back.get("plate"), None);
    /// ```
    pub fn decode(payload: &[u8]) -> Option<Hello> {
        if payload.len() < 40 || payload.len() - 40 > MAX_HELLO_LINES {
            return None;
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&payload[..8]);
        let size = u64::from_be_bytes(size);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&payload[8..40]);
        let lines = std::str::from_utf8(&payload[40..]).ok()?;
        if size == 0 || !(lines.is_empty() || lines.ends_with('\n')) {
            return None;
        }
        Some(Hello {
            size,
            sha256,
            lines: lines.to_string(),
        })
    }

    /// The value of the first line `key=…`, if there is one. Unknown keys
    /// are simply never asked for, which is how the format ignores them.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    }
}

/// The payload of an ACK: which chunks the server holds.
///
/// Every chunk below `base` (the header's seq) is held; the 32-byte bitmap
/// says which of `base..base+256` are, most significant bit of byte 0 first.
/// This is a *selective* acknowledgement: the camera learns exactly which
/// chunks are missing and resends only those (TCP's SACK option, RFC 2018,
/// does the same), instead of everything after the first gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Every chunk below this is held.
    pub base: u32,
    /// Bit `i` (byte `i / 8`, mask `0x80 >> i % 8`): chunk `base + i` is held.
    pub bitmap: [u8; 32],
}

impl Ack {
    /// An ACK for `base` with no chunk above it marked.
    pub fn new(base: u32) -> Ack {
        Ack {
            base,
            bitmap: [0; 32],
        }
    }

    /// Marks chunk `seq` as held (ignored outside `base..base+256`).
    pub fn set(&mut self, seq: u32) {
        if let Some(i) = seq.checked_sub(self.base).filter(|&i| i < ACK_SPAN) {
            self.bitmap[(i / 8) as usize] |= 0x80 >> (i % 8);
        }
    }

    /// Does this ACK show chunk `seq` as held?
    ///
    /// ```
    /// use netlessons::datagram::Ack;
    ///
    /// let mut ack = Ack::new(10);
    /// ack.set(12);
    /// assert!(ack.holds(3) && ack.holds(12)); // below base, and marked
    /// assert!(!ack.holds(10) && !ack.holds(11) && !ack.holds(400));
    /// assert_eq!(ack.bitmap[0], 0b0010_0000);
    /// ```
    pub fn holds(&self, seq: u32) -> bool {
        match seq.checked_sub(self.base) {
            None => true,
            Some(i) if i < ACK_SPAN => self.bitmap[(i / 8) as usize] & (0x80 >> (i % 8)) != 0,
            Some(_) => false,
        }
    }

    /// Reads an ACK from its header's seq and its payload (exactly 32 bytes).
    pub fn decode(base: u32, payload: &[u8]) -> Option<Ack> {
        let bitmap: [u8; 32] = payload.try_into().ok()?;
        Some(Ack { base, bitmap })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HELLO payloads decode back, and broken ones are refused.
    #[test]
    fn hello_payload() {
        let hello = Hello {
            size: 170 * 1200,
            sha256: [1; 32],
            lines: "camera=north\nplate=AB 123\nspeed=87\nx=y\n".into(),
        };
        let back = Hello::decode(&hello.encode()).unwrap();
        assert_eq!(back, hello);
        assert_eq!(back.get("plate"), Some("AB 123"));
        assert_eq!(back.get("speed"), Some("87"));
        assert_eq!(back.get("spee"), None);
        let mut zero = hello.clone();
        zero.size = 0;
        assert_eq!(Hello::decode(&zero.encode()), None);
        let mut unterminated = hello.clone();
        unterminated.lines = "camera=north".into();
        assert_eq!(Hello::decode(&unterminated.encode()), None);
        let mut long = hello.clone();
        long.lines = format!("camera={}\n", "x".repeat(MAX_HELLO_LINES));
        assert_eq!(Hello::decode(&long.encode()), None);
        assert_eq!(Hello::decode(&[0; 39]), None);
        let mut bytes = hello.encode();
        bytes.extend_from_slice(b"\xff\n");
        assert_eq!(Hello::decode(&bytes), None);
    }

    /// The ACK bitmap is most-significant-bit first and spans 256 chunks.
    #[test]
    fn ack_bitmap() {
        let mut ack = Ack::new(100);
        for seq in [100, 107, 108, 355, 356, 99] {
            ack.set(seq);
        }
        assert_eq!(ack.bitmap[0], 0x81);
        assert_eq!(ack.bitmap[1], 0x80);
        assert_eq!(ack.bitmap[31], 0x01);
        assert!(ack.holds(0) && ack.holds(99) && ack.holds(355));
        assert!(!ack.holds(101) && !ack.holds(356));
        let back = Ack::decode(100, &ack.bitmap).unwrap();
        assert_eq!(back, ack);
        assert_eq!(Ack::decode(100, &[0; 31]), None);
    }
}
