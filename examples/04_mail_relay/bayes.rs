//! Chapter 11's exercise, in the reference: a **naive Bayes** filter in the
//! manner of Paul Graham's "A Plan for Spam" (2002).
//!
//! Rules (`score.rs`) are written by people and miss what nobody thought of.
//! A Bayesian filter learns instead, from two piles of mail its user has
//! already sorted: spam and *ham* (wanted mail). For each word it works out
//! how likely a message containing that word is spam, and for a new message
//! it combines the strongest of those clues.
//!
//! With `--bayes DIR` the relay learns from `DIR/spam/` and `DIR/ham/` (one
//! message per file) at start, and every message gets
//!
//! ```text
//! X-Spam-Bayes: 0.999873
//! ```
//!
//! (the combined probability, six decimals) below the other `X-Spam-*`
//! headers, and the rule `BAYES_SPAM` (5 points) fires when it is above 0.9.
//!
//! Graham's choices, each for a reason:
//!
//! * **Tokens** are runs of letters, digits, `-`, `'` and `$` (so `$19.99`
//!   gives `$19` and `99`), in lower case; tokens made only of digits are
//!   ignored (dates and prices say little).
//! * **Ham counts double**: a word's ham count is doubled before use, to
//!   bias against false positives (losing wanted mail is worse than seeing
//!   a spam).
//! * **Rare tokens are ignored**: with doubled ham count plus spam count
//!   under 5, there is too little evidence, and the token counts as unknown.
//! * **Unknown tokens get 0.4**: slightly innocent, since a new word is more
//!   often a real correspondent's than a spammer's.
//! * **Clamped to 0.01–0.99**: no single word may be proof either way.
//! * **The 15 most telling tokens** (farthest from 0.5; ties by the token's
//!   bytes, so the result is the same on every run) are combined, assuming
//!   (naively: hence the name) that they are independent:
//!   `P = Πp / (Πp + Π(1 − p))`.
//! * **In log space**: a product of fifteen small numbers can underflow, so
//!   the sums of their logarithms are combined instead:
//!   `P = 1 / (1 + exp(Σ ln(1 − p) − Σ ln p))`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::Path;

/// The probability above which the `BAYES_SPAM` rule fires.
pub const SPAM_ABOVE: f64 = 0.9;
/// How many tokens are combined.
pub const MOST_TELLING: usize = 15;
/// The probability of a token never seen (or seen too rarely).
pub const UNKNOWN: f64 = 0.4;
/// Tokens whose doubled ham count plus spam count is below this are unknown.
pub const MIN_COUNT: u64 = 5;

/// What was learnt from the two piles.
#[derive(Debug, Default)]
pub struct Bayes {
    /// Occurrences of each token in all ham messages.
    good: HashMap<String, u64>,
    /// Occurrences of each token in all spam messages.
    bad: HashMap<String, u64>,
    /// How many ham messages.
    ngood: u64,
    /// How many spam messages.
    nbad: u64,
}

impl Bayes {
    /// Learns from `dir/ham/` and `dir/spam/`, every plain file in each a
    /// message. Both must exist and hold at least one message.
    pub fn train_from(dir: &Path) -> io::Result<Bayes> {
        let mut bayes = Bayes::default();
        for (pile, is_spam) in [("ham", false), ("spam", true)] {
            let folder = dir.join(pile);
            let entries = fs::read_dir(&folder).map_err(|e| {
                io::Error::new(e.kind(), format!("--bayes needs {}: {e}", folder.display()))
            })?;
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    bayes.learn(&fs::read(entry.path())?, is_spam);
                }
            }
        }
        if bayes.ngood == 0 || bayes.nbad == 0 {
            return Err(io::Error::other(format!(
                "--bayes {}: both ham/ and spam/ need at least one message",
                dir.display()
            )));
        }
        Ok(bayes)
    }

    /// Counts one message's tokens into the ham or the spam pile.
    pub fn learn(&mut self, message: &[u8], is_spam: bool) {
        let (counts, messages) = if is_spam {
            (&mut self.bad, &mut self.nbad)
        } else {
            (&mut self.good, &mut self.ngood)
        };
        *messages += 1;
        for token in tokens(message) {
            *counts.entry(token).or_default() += 1;
        }
    }

    /// How likely a message containing `token` is spam.
    pub fn token_probability(&self, token: &str) -> f64 {
        let g = 2 * self.good.get(token).copied().unwrap_or(0);
        let b = self.bad.get(token).copied().unwrap_or(0);
        if g + b < MIN_COUNT || self.ngood == 0 || self.nbad == 0 {
            return UNKNOWN;
        }
        let good = (g as f64 / self.ngood as f64).min(1.0);
        let bad = (b as f64 / self.nbad as f64).min(1.0);
        (bad / (good + bad)).clamp(0.01, 0.99)
    }

    /// The combined probability that `message` is spam.
    #[cfg(test)]
    pub fn probability(&self, message: &[u8]) -> f64 {
        self.combine(&tokens(message).collect())
    }

    /// The combined probability of a message with these (distinct) tokens.
    pub fn combine(&self, distinct: &BTreeSet<String>) -> f64 {
        let mut scored: Vec<(f64, &str)> = distinct
            .iter()
            .map(|t| (self.token_probability(t), t.as_str()))
            .collect();
        // Most telling first; equally telling ones in byte order of the token.
        scored.sort_by(|(p, a), (q, b)| {
            let (tell_p, tell_q) = ((p - 0.5).abs(), (q - 0.5).abs());
            tell_q.total_cmp(&tell_p).then_with(|| a.cmp(b))
        });
        let (mut ln_spam, mut ln_ham) = (0.0, 0.0);
        for (p, _) in scored.iter().take(MOST_TELLING) {
            ln_spam += p.ln();
            ln_ham += (1.0 - p).ln();
        }
        1.0 / (1.0 + (ln_ham - ln_spam).exp())
    }
}

/// The tokens of a message, in order, repeats included.
pub fn tokens(message: &[u8]) -> impl Iterator<Item = String> + '_ {
    message
        .split(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'\'' | b'$')))
        .filter(|t| !t.is_empty() && !t.iter().all(u8::is_ascii_digit))
        .map(|t| String::from_utf8_lossy(t).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens: letters, digits, - ' $; lower case; digits-only ones dropped.
    #[test]
    fn tokenizer() {
        let found: Vec<String> =
            tokens(b"Buy NOW: only $19.99, it's 100% off-price! 2026").collect();
        assert_eq!(found, ["buy", "now", "only", "$19", "it's", "off-price"]);
    }

    /// Token probabilities follow Graham: ham doubled, rare ignored, clamped.
    #[test]
    fn token_probabilities() {
        let mut b = Bayes::default();
        for _ in 0..5 {
            b.learn(b"viagra offer", true);
            b.learn(b"meeting offer", false);
        }
        b.learn(b"rare rare", false); // g = 2 × 2 = 4: too rare
        assert_eq!(b.token_probability("viagra"), 0.99);
        assert_eq!(b.token_probability("meeting"), 0.01);
        // offer: g = 10, b = 5: (5/5) / ((10/5 → 1) + 1) = 0.5
        assert_eq!(b.token_probability("offer"), 0.5);
        assert_eq!(b.token_probability("rare"), UNKNOWN);
        assert_eq!(b.token_probability("never"), UNKNOWN);
        assert!(b.probability(b"viagra viagra") > SPAM_ABOVE);
        assert!(b.probability(b"meeting") < 0.1);
        // No tokens at all: no evidence either way.
        assert_eq!(b.probability(b"1234 !!"), 0.5);
    }

    /// Only the 15 most telling tokens count: 15 innocent words outweigh
    /// any number of weaker clues, and log space does not underflow.
    #[test]
    fn fifteen_most_telling() {
        let mut b = Bayes::default();
        let ham: Vec<String> = (0..20).map(|i| format!("ham{i:02}")).collect();
        for _ in 0..5 {
            b.learn(ham.join(" ").as_bytes(), false);
            b.learn(b"spammy", true);
        }
        let mixed = format!("{} spammy", ham.join(" "));
        // 20 tokens at 0.01 and one at 0.99: the 15 first (by bytes) of the
        // 0.01 ones tie with it on how telling they are, and "ham.." < "spammy".
        assert!(b.probability(mixed.as_bytes()) < 1e-20);
    }
}
