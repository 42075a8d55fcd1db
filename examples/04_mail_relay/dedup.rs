//! Dropping duplicates by `Message-ID` (chapter 7's exercise 5).
//!
//! Forwarding is *at-least-once*: when a relay is killed between the next
//! hop's `250` and the removal of its queue file, it sends the message
//! again after the restart, and the next hop stores it twice. Mail accepts
//! that rather than the opposite risk (removing the file first would lose
//! the message in the same crash). The receiving side can still catch most
//! such duplicates: every message carries a `Message-ID:` header that its
//! author's program made unique (RFC 5322 §3.6.4), and a retry of the same
//! message has the same one, and the same envelope.
//!
//! So we remember, for `--dedup-window` (an hour by default), the
//! `Message-ID`, envelope and text (by its SHA-256) of every message we
//! stored. A message that
//! matches one is answered `250` (the sender must stop retrying: as far as
//! it is concerned, delivery worked) and not stored again.
//!
//! Simplifications, and what a real server does instead: the memory is in
//! this process only, so a restart forgets it (a real one keeps it on disk,
//! as our greylist does); it is bounded at [`MAX_REMEMBERED`] messages; and
//! two copies arriving at the same moment can both be stored. A message
//! without a `Message-ID` is never taken for a duplicate.

use netlessons::sha256::{sha256, to_hex};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many messages are remembered; past it, the oldest go.
pub const MAX_REMEMBERED: usize = 100_000;

/// The messages stored in the last `window`, by `Message-ID` and envelope.
#[derive(Debug)]
pub struct Recent {
    window: Duration,
    /// A digest of each key (so a long `Message-ID` costs no more memory
    /// than a short one) and when it was stored.
    seen: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Recent {
    /// Remembers messages for `window`.
    pub fn new(window: Duration) -> Recent {
        Recent {
            window,
            seen: Mutex::default(),
        }
    }

    /// The key of a message: its `Message-ID`, its envelope (sender and
    /// every recipient, sorted, so the order of `RCPT`s does not matter),
    /// and the SHA-256 of its text.
    ///
    /// Why the text too? A retry is the same bytes again (the sending
    /// relay re-sends its queue file), so it still matches. But programs
    /// that send from a template sometimes reuse one `Message-ID` for
    /// different messages; without the text, the second would be dropped,
    /// a loss where we only wanted to spare a duplicate.
    pub fn key(message_id: &str, from: &str, recipients: &[String], text: &[u8; 32]) -> [u8; 32] {
        let mut rcpts: Vec<&str> = recipients.iter().map(String::as_str).collect();
        rcpts.sort_unstable();
        // NUL cannot occur in any of the parts, so the joined text is unambiguous.
        let key = format!(
            "{message_id}\0{from}\0{}\0{}",
            rcpts.join("\0"),
            to_hex(text)
        );
        sha256(key.as_bytes())
    }

    /// Was a message with this key stored within the window?
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(key).is_some_and(|at| at.elapsed() < self.window)
    }

    /// Notes that a message with this key was stored (call it only once
    /// it is: a message answered `451` must be taken when it comes again).
    pub fn remember(&self, key: [u8; 32]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            let window = self.window;
            seen.retain(|_, at| at.elapsed() < window);
            if seen.len() >= MAX_REMEMBERED {
                // Still full of recent ones: forget the oldest.
                if let Some(oldest) = seen.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                    seen.remove(&oldest);
                }
            }
        }
        seen.insert(key, Instant::now());
    }
}
