//! A seeded pseudo-random generator: the same seed, the same numbers.
//!
//! Tests use it to make varied input (garbage for the bad-input suite, files
//! to upload) and print the seed, so that a failure can be repeated exactly;
//! the load tester uses it for upload data that does not compress or repeat.
//! It is xorshift64* (Marsaglia's xorshift with a multiply, as Vigna
//! describes it): a few instructions a number, statistically fine for test
//! data. **Never for secrets**: anyone who sees a few outputs can predict
//! the rest. Secrets and nonces come from the OS ([`crate::auth::fill_random`]).
//!
//! ```
//! use netlessons::random::Rng;
//!
//! let mut a = Rng::new(42);
//! let mut b = Rng::new(42);
//! assert_eq!(a.bytes(16), b.bytes(16)); // same seed, same bytes
//! assert!(a.below(6) < 6);
//! ```

/// The generator's state: 64 bits, never zero.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by 1: xorshift needs a
    /// non-zero state, and would stay at zero for ever).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// A generator seeded from the clock, its seed printed on stderr as
    /// `LABEL: seed N`, so that a failing run can be repeated with
    /// [`Rng::new`]`(N)`.
    pub fn from_time(label: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        crate::log!("{label}: seed {seed}");
        Rng::new(seed)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`0` when `n` is 0). The remainder is very slightly
    /// biased towards small numbers, which test data does not mind.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed of zero still moves, and different seeds give different streams.
    #[test]
    fn zero_seed_moves_and_seeds_differ() {
        let mut zero = Rng::new(0);
        assert_ne!(zero.next_u64(), zero.next_u64());
        assert_ne!(Rng::new(1).bytes(32), Rng::new(2).bytes(32));
    }

    /// `below` stays in range and reaches both ends.
    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::new(7);
        let drawn: Vec<u64> = (0..1000).map(|_| rng.below(3)).collect();
        assert!(drawn.iter().all(|&n| n < 3));
        assert!(drawn.contains(&0) && drawn.contains(&2));
        assert_eq!(rng.below(0), 0);
    }
}
