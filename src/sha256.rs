//! SHA-256 and HMAC-SHA256, written out in full because `std` has neither.
//!
//! The file server checks every upload and download against a SHA-256 digest, and the auth
//! handshake proves that both sides know a shared secret with HMAC-SHA256. Both algorithms
//! are short enough to read in one sitting, so they live here rather than in a crate.
//!
//! * [`sha256`] and the streaming [`Sha256`] follow FIPS 180-4, the standard that defines
//!   SHA-256. The section numbers in the comments (§5.1.1, §6.2.2, …) point into it.
//! * [`hmac_sha256`] and the streaming [`HmacSha256`] follow RFC 2104.
//! * [`to_hex`] and [`from_hex`] turn digests into the lowercase text the protocols send.
//! * [`constant_time_eq`] compares secrets without leaking, through timing, where they differ.
//!
//! ```
//! use netlessons::sha256::{hmac_sha256, sha256, to_hex};
//!
//! assert_eq!(
//!     to_hex(&sha256(b"abc")),
//!     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
//! );
//! let tag = hmac_sha256(b"key", b"The quick brown fox jumps over the lazy dog");
//! assert_eq!(
//!     to_hex(&tag),
//!     "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
//! );
//! ```
//!
//! This is a careful, fast, portable implementation, but a teaching one: a production
//! library would also use the CPU's SHA instructions where they exist (several times
//! faster), and would wipe key material from memory when it is dropped.

use std::fmt;
use std::hint::black_box;

/// SHA-256 works on blocks of this many bytes.
const BLOCK_LEN: usize = 64;

/// The first 32 bits of the fractional parts of the cube roots of the first 64 primes
/// (FIPS 180-4 §4.2.2). "Nothing up my sleeve" numbers: anyone can recompute them, so
/// nobody can have hidden a weakness in the choice.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The starting hash value: the first 32 bits of the fractional parts of the square roots
/// of the first 8 primes (FIPS 180-4 §5.3.3).
const INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

// The four mixing functions of FIPS 180-4 §4.1.2. Each XORs together three rotations (or
// shifts) of a word, so that every output bit depends on several input bits.
//
// They are written as nested rotations rather than as the formula in the standard,
// because that is fewer instructions: rotating `x` right by 9, XORing `x`, rotating by 11,
// XORing `x` and rotating by 2 rotates the three copies of `x` by 9+11+2 = 22, 11+2 = 13
// and 2 bits in total, which is exactly Σ0. On x86 without the newer `rorx` instruction
// every separate rotation of `x` would first need a copy of `x`; the nested form needs one.
// The unit tests check the results against the standard's test vectors.

/// Σ0(x) = ROTR²(x) ⊕ ROTR¹³(x) ⊕ ROTR²²(x), applied to working variable `a`.
#[inline(always)]
fn big_sigma0(x: u32) -> u32 {
    ((x.rotate_right(9) ^ x).rotate_right(11) ^ x).rotate_right(2)
}

/// Σ1(x) = ROTR⁶(x) ⊕ ROTR¹¹(x) ⊕ ROTR²⁵(x), applied to working variable `e`.
#[inline(always)]
fn big_sigma1(x: u32) -> u32 {
    ((x.rotate_right(14) ^ x).rotate_right(5) ^ x).rotate_right(6)
}

/// σ0(x) = ROTR⁷(x) ⊕ ROTR¹⁸(x) ⊕ SHR³(x), used by the message schedule.
#[inline(always)]
fn small_sigma0(x: u32) -> u32 {
    (x.rotate_right(11) ^ x).rotate_right(7) ^ (x >> 3)
}

/// σ1(x) = ROTR¹⁷(x) ⊕ ROTR¹⁹(x) ⊕ SHR¹⁰(x), used by the message schedule.
#[inline(always)]
fn small_sigma1(x: u32) -> u32 {
    (x.rotate_right(2) ^ x).rotate_right(17) ^ (x >> 10)
}

/// Runs the SHA-256 compression function on one 64-byte block (FIPS 180-4 §6.2.2),
/// mixing it into `state`.
///
/// Nearly all of the time spent hashing is spent here, so it is written for speed while
/// following the standard step by step:
///
/// * `block` is a `&[u8; 64]` and the schedule a `[u32; 16]`, and every index below is a
///   constant, so the compiler knows they are all in range: no bounds checks at run time.
/// * The 64 rounds are written out in full by the `rounds!` macro, with no loop. In the
///   standard every round ends by moving the eight working variables along one place
///   (`h = g; g = f; …; a = T1 + T2`). Here each round instead names the variables in a
///   rotated order, so that moving costs nothing; after eight rounds every variable is
///   back in its original role, and the pattern repeats.
// The carry into a 65th round is computed and never used; the optimiser drops it.
#[allow(unused_assignments)]
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK_LEN]) {
    // The message schedule W (§6.2.2 step 1) is 64 words: the block's 16 big-endian words,
    // then 48 more, each mixing four earlier ones:
    //     W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]
    // Since no word looks back further than 16 places, 16 words of storage are enough:
    // `w[t % 16]` holds W[t-16] until round t overwrites it with W[t]. This keeps the
    // schedule small enough to stay in the CPU's registers and fastest cache.
    let mut w = [0u32; 16];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }

    // The eight working variables start as the current hash value (step 2).
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;

    // Maj(a, b, c) takes each bit that at least two of a, b, c share. It can be computed as
    // `b ^ ((a ^ b) & (b ^ c))`, and this round's `b ^ c` is the previous round's `a ^ b`
    // (the variables moved along one place), so we carry that value from round to round.
    let mut previous_a_xor_b = b ^ c;

    // One round (step 3). All additions are modulo 2^32, hence `wrapping_add`: a plain `+`
    // would panic on overflow in a debug build.
    //
    // Only two variables get new values in a round: `d + T1` becomes the next `e`, and
    // `T1 + T2` the next `a`. We store them into the slots named `$d` and `$h`, whose old
    // values are no longer needed, and the next round calls the slots by their new roles.
    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $t:expr) => {
            // From round 16 on, compute the next schedule word in place. `$t` is a literal,
            // so this `if` is decided when compiling and costs nothing at run time.
            if $t >= 16 {
                w[$t % 16] = w[$t % 16]
                    .wrapping_add(small_sigma0(w[($t + 1) % 16]))
                    .wrapping_add(w[($t + 9) % 16])
                    .wrapping_add(small_sigma1(w[($t + 14) % 16]));
            }
            // Ch(e, f, g) "chooses" each bit from f where e has a 1 and from g where e has
            // a 0; `g ^ (e & (f ^ g))` is the same as the standard's `(e & f) ^ (!e & g)`.
            let choose = $g ^ ($e & ($f ^ $g));
            let t1 = $h
                .wrapping_add(big_sigma1($e))
                .wrapping_add(choose)
                .wrapping_add(K[$t])
                .wrapping_add(w[$t % 16]);
            let a_xor_b = $a ^ $b;
            let majority = $b ^ (a_xor_b & previous_a_xor_b);
            previous_a_xor_b = a_xor_b;
            let t2 = big_sigma0($a).wrapping_add(majority);
            $d = $d.wrapping_add(t1);
            $h = t1.wrapping_add(t2);
        };
    }
    // Eight rounds from round `$t`, each naming the variables one place further along.
    macro_rules! rounds {
        ($t:expr) => {
            round!(a, b, c, d, e, f, g, h, $t);
            round!(h, a, b, c, d, e, f, g, $t + 1);
            round!(g, h, a, b, c, d, e, f, $t + 2);
            round!(f, g, h, a, b, c, d, e, $t + 3);
            round!(e, f, g, h, a, b, c, d, $t + 4);
            round!(d, e, f, g, h, a, b, c, $t + 5);
            round!(c, d, e, f, g, h, a, b, $t + 6);
            round!(b, c, d, e, f, g, h, a, $t + 7);
        };
    }
    rounds!(0);
    rounds!(8);
    rounds!(16);
    rounds!(24);
    rounds!(32);
    rounds!(40);
    rounds!(48);
    rounds!(56);

    // Step 4: add the result into the hash value (again modulo 2^32).
    for (word, value) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(value);
    }
}

/// Compresses every whole 64-byte block of `data` into `state` and returns the bytes left
/// over (fewer than 64).
fn compress_blocks<'a>(state: &mut [u32; 8], data: &'a [u8]) -> &'a [u8] {
    let mut blocks = data.chunks_exact(BLOCK_LEN);
    for block in &mut blocks {
        // `chunks_exact` only yields slices of exactly BLOCK_LEN bytes, so this conversion
        // to a fixed-size array reference cannot fail (and compiles to nothing).
        let block: &[u8; BLOCK_LEN] = block.try_into().expect("chunks_exact yields whole blocks");
        compress(state, block);
    }
    blocks.remainder()
}

/// A streaming SHA-256 hasher: feed it bytes with [`update`](Sha256::update) as they
/// arrive, then call [`finish`](Sha256::finish) for the 32-byte digest.
///
/// Streaming is what lets the file server hash a large upload as it is written to disk,
/// without ever holding the whole file in memory. Feeding the same bytes in any chunking
/// gives the same digest as [`sha256`] on all of them at once.
///
/// ```
/// use netlessons::sha256::{sha256, Sha256};
///
/// let mut hasher = Sha256::new();
/// hasher.update(b"hello, ");
/// hasher.update(b"world");
/// assert_eq!(hasher.finish(), sha256(b"hello, world"));
/// ```
#[derive(Clone)]
pub struct Sha256 {
    /// The hash value so far (H0..H7 in the standard).
    state: [u32; 8],
    /// Bytes waiting for a whole block; only the first `buffered` are meaningful.
    buffer: [u8; BLOCK_LEN],
    /// How many bytes of `buffer` are in use (always below `BLOCK_LEN` between calls).
    buffered: usize,
    /// Total message length in bytes, needed for the padding at the end.
    length: u64,
}

impl Sha256 {
    /// Creates a hasher for a new, empty message.
    pub fn new() -> Self {
        Sha256 {
            state: INITIAL_STATE,
            buffer: [0; BLOCK_LEN],
            buffered: 0,
            length: 0,
        }
    }

    /// Adds `data` to the message. Can be called any number of times, with any lengths.
    pub fn update(&mut self, data: &[u8]) {
        // The standard limits a message to 2^64 - 1 bits; wrapping rather than panicking
        // matches what other implementations do past that (unreachable in practice) limit.
        self.length = self.length.wrapping_add(data.len() as u64);
        let mut data = data;

        // First top up a partly filled buffer from the previous call.
        if self.buffered > 0 {
            let take = (BLOCK_LEN - self.buffered).min(data.len());
            let (head, rest) = data.split_at(take);
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(head);
            self.buffered += take;
            data = rest;
            if self.buffered < BLOCK_LEN {
                return; // still not a whole block: nothing to compress yet
            }
            compress(&mut self.state, &self.buffer);
            self.buffered = 0;
        }

        // Then hash whole blocks straight from the caller's slice. Copying them into
        // `buffer` first would work too, but would touch every byte twice.
        let rest = compress_blocks(&mut self.state, data);

        // Keep the tail (under 64 bytes) for the next call or for `finish`.
        self.buffer[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    /// Pads the message, hashes the last block(s) and returns the 32-byte digest.
    ///
    /// It takes `self` by value, so a finished hasher cannot be fed more data by mistake.
    /// To hash a common prefix once and finish several ways, `clone` it first.
    pub fn finish(self) -> [u8; 32] {
        let mut state = self.state;
        let bit_length = self.length.wrapping_mul(8);

        // Padding (§5.1.1): a single 1 bit (the byte 0x80), then zeros, then the message
        // length in bits as a 64-bit big-endian number, so that the total is a multiple of
        // 64 bytes. If the tail leaves no room for the 8 length bytes after the 0x80, the
        // padding spills into one more block.
        let mut block = [0u8; BLOCK_LEN];
        block[..self.buffered].copy_from_slice(&self.buffer[..self.buffered]);
        block[self.buffered] = 0x80;
        if self.buffered >= BLOCK_LEN - 8 {
            compress(&mut state, &block);
            block = [0u8; BLOCK_LEN];
        }
        block[BLOCK_LEN - 8..].copy_from_slice(&bit_length.to_be_bytes());
        compress(&mut state, &block);

        // The digest is the final hash value, each word written big-endian.
        let mut digest = [0u8; 32];
        for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

impl Default for Sha256 {
    /// Same as [`Sha256::new`].
    fn default() -> Self {
        Sha256::new()
    }
}

impl fmt::Debug for Sha256 {
    /// Shows how many bytes were hashed, not the internal state: the state of a hasher fed
    /// with a secret (as inside HMAC) is as sensitive as the secret, and has no place in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256")
            .field("bytes_hashed", &self.length)
            .finish_non_exhaustive()
    }
}

/// Returns the SHA-256 digest of `data` (FIPS 180-4).
///
/// ```
/// use netlessons::sha256::{sha256, to_hex};
///
/// assert_eq!(
///     to_hex(&sha256(b"")),
///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finish()
}

/// A streaming HMAC-SHA256 (RFC 2104): a message authentication code, that is a digest
/// that only someone who knows `key` can compute.
///
/// Why not simply `sha256(key + message)`? Because SHA-256 is built so that, from the
/// digest of some input, anyone can compute the digest of that input with more bytes
/// appended (a "length extension"), without knowing the key. HMAC hashes twice, with the
/// key mixed in at both ends, which closes that hole:
///
/// ```text
/// HMAC(K, m) = SHA-256((K' ^ opad) || SHA-256((K' ^ ipad) || m))
/// ```
///
/// where `K'` is the key padded with zeros to 64 bytes (or first hashed, if longer),
/// `ipad` is 64 bytes of `0x36` and `opad` 64 bytes of `0x5c`.
///
/// ```
/// use netlessons::sha256::{hmac_sha256, HmacSha256};
///
/// let mut mac = HmacSha256::new(b"secret");
/// mac.update(b"client ");
/// mac.update(b"abc123");
/// assert_eq!(mac.finish(), hmac_sha256(b"secret", b"client abc123"));
/// ```
#[derive(Clone)]
pub struct HmacSha256 {
    /// Hashes `(K' ^ ipad) || message`; `update` feeds it.
    inner: Sha256,
    /// Already fed `K' ^ opad`; `finish` feeds it the inner digest. Preparing it in `new`
    /// means the key need not be kept around.
    outer: Sha256,
}

impl HmacSha256 {
    /// Starts an HMAC with `key`, which may have any length (even zero, though a short key
    /// is a weak one: use at least 32 random bytes where you can).
    pub fn new(key: &[u8]) -> Self {
        // K': keys longer than a block are first hashed down to 32 bytes; then the key is
        // padded with zeros to a full block (RFC 2104 §2).
        let mut padded_key = [0u8; BLOCK_LEN];
        if key.len() > BLOCK_LEN {
            padded_key[..32].copy_from_slice(&sha256(key));
        } else {
            padded_key[..key.len()].copy_from_slice(key);
        }

        let mut inner_pad = [0u8; BLOCK_LEN];
        let mut outer_pad = [0u8; BLOCK_LEN];
        for ((k, i), o) in padded_key.iter().zip(&mut inner_pad).zip(&mut outer_pad) {
            *i = k ^ 0x36;
            *o = k ^ 0x5c;
        }

        let mut inner = Sha256::new();
        inner.update(&inner_pad);
        let mut outer = Sha256::new();
        outer.update(&outer_pad);
        HmacSha256 { inner, outer }
    }

    /// Adds `data` to the message being authenticated.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// Returns the 32-byte authentication tag.
    pub fn finish(self) -> [u8; 32] {
        let inner_digest = self.inner.finish();
        let mut outer = self.outer;
        outer.update(&inner_digest);
        outer.finish()
    }
}

impl fmt::Debug for HmacSha256 {
    /// Shows nothing of the state, which is derived from the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSha256").finish_non_exhaustive()
    }
}

/// Returns HMAC-SHA256 of `msg` under `key` (RFC 2104); see [`HmacSha256`] for how it works.
///
/// ```
/// use netlessons::sha256::{hmac_sha256, to_hex};
///
/// // RFC 4231, test case 2.
/// let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
/// assert_eq!(
///     to_hex(&tag),
///     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
/// );
/// ```
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new(key);
    mac.update(msg);
    mac.finish()
}

/// Formats bytes as lowercase hexadecimal, two characters per byte.
///
/// ```
/// use netlessons::sha256::to_hex;
///
/// assert_eq!(to_hex(&[0x00, 0xab, 0xff]), "00abff");
/// ```
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Parses hexadecimal text into bytes, strictly: an even number of characters, each one
/// of `0-9`, `a-f` or `A-F`, and nothing else (no `0x`, no spaces, no sign). Returns
/// `None` for anything else, so text from a peer can be passed in as it is.
///
/// ```
/// use netlessons::sha256::from_hex;
///
/// assert_eq!(from_hex("00abFF"), Some(vec![0x00, 0xab, 0xff]));
/// assert_eq!(from_hex("abc"), None); // odd length
/// assert_eq!(from_hex("0x12"), None); // not a hex digit
/// ```
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    // Working on bytes rather than chars means a multi-byte UTF-8 character is simply a
    // run of bytes that are not hex digits, rejected like any other.
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((hex_value(pair[0])? << 4) | hex_value(pair[1])?))
        .collect()
}

/// The value of one ASCII hex digit, or `None` if `digit` is not one.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Compares two byte strings in time that depends only on their lengths, never on their
/// contents. Use it whenever one side is a secret, such as an expected HMAC proof.
///
/// Why not `a == b`? An ordinary comparison stops at the first byte that differs. An
/// attacker who can send many guesses and time the answers learns how many leading bytes
/// of a guess were right (a "timing attack"), and can then find a valid proof one byte at
/// a time: some 256 × 32 guesses instead of 2^256. Here every byte is always looked at.
///
/// Lengths are not treated as secret: different lengths return `false` at once. That is
/// fine for digests and proofs, whose length (32 bytes, 64 hex characters) everyone knows.
///
/// ```
/// use netlessons::sha256::constant_time_eq;
///
/// assert!(constant_time_eq(b"proof", b"proof"));
/// assert!(!constant_time_eq(b"proof", b"pr00f"));
/// assert!(!constant_time_eq(b"proof", b"proofs"));
/// ```
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // OR together the XOR of every pair: the result is zero only if all pairs are equal.
    // There is no branch on the data inside the loop.
    //
    // An optimising compiler is allowed to notice that once `difference` is non-zero the
    // answer is known, and exit early, which would bring the leak back. `black_box` hides
    // the values from the optimiser so it cannot reason about them. Rust documents it as a
    // best-effort hint rather than a guarantee; dedicated crates go further (for example
    // with inline assembly), which this std-only crate cannot do.
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= black_box(x ^ y);
    }
    black_box(difference) == 0
}

#[cfg(test)]
mod tests;
