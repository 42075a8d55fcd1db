//! Joins and leaves, announced in batches.
//!
//! `Room::join` and `Room::leave` only queue a [`Notice`]; one thread,
//! [`Room::announce`], sends whatever is waiting to everyone as one batch,
//! at most [`NOTICE_BATCHES_PER_SEC`] times a second.

use crate::outbox::{Outbox, Outgoing, deliver_item};
use crate::room::{Me, Room};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// At most this many batches of join and leave notices a second (see [`Notices`]).
const NOTICE_BATCHES_PER_SEC: u32 = 10;
/// The longest a client's first words wait for its join to be announced.
const JOIN_NOTICE_WAIT: Duration = Duration::from_secs(5);

/// Joins and leaves not yet announced to the room.
///
/// Announcing every join to everyone costs the room one line per member
/// per join: with n clients arriving, n² lines. When 3,000 clients join at
/// once that is 4.5 million lines, each a queue entry and a wake-up of a
/// writer thread: about a minute of server CPU, during which the room (and
/// any newcomer) waits. So joins and leaves are queued here and announced in
/// batches by one thread, at most [`NOTICE_BATCHES_PER_SEC`] a second: a
/// storm of 3,000 joins becomes a few dozen batches, each one entry in each
/// queue and one write per client. Every line is still said; a quiet room
/// hears a single join at once.
#[derive(Debug, Default)]
pub struct Notices {
    pending: Vec<Notice>,
    /// The number the next notice gets.
    next_seq: u64,
    /// Every notice numbered below this has been delivered.
    delivered: u64,
}

/// `* NAME joined` or `* NAME left`, and its number. A member hears only
/// of what happened after it joined (not of its own arrival, nor of joins
/// before it, which its `/who` shows).
#[derive(Debug)]
pub struct Notice {
    seq: u64,
    line: Arc<str>,
}

impl Room {
    fn notices(&self) -> MutexGuard<'_, Notices> {
        self.notices.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a join or leave for the announcer; returns its number.
    pub fn notify(&self, line: String) -> u64 {
        let mut notices = self.notices();
        let seq = notices.next_seq;
        notices.next_seq += 1;
        notices.pending.push(Notice {
            seq,
            line: line.into(),
        });
        self.notices_changed.notify_all();
        seq
    }

    /// The announcer thread: takes whatever joins and leaves are waiting and
    /// delivers them as one batch to everyone in the room, at most
    /// [`NOTICE_BATCHES_PER_SEC`] times a second. Runs as long as the server.
    pub fn announce(&self) {
        let gap = Duration::from_secs(1) / NOTICE_BATCHES_PER_SEC;
        let mut last_batch: Option<Instant> = None;
        loop {
            let mut notices = self.notices();
            while notices.pending.is_empty() {
                notices = self
                    .notices_changed
                    .wait(notices)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Right after a batch, wait out the gap: what arrives meanwhile
            // joins this batch. After a quiet spell, go at once.
            if let Some(since) = last_batch.map(|t| t.elapsed()).filter(|&e| e < gap) {
                drop(notices);
                thread::sleep(gap - since);
                notices = self.notices();
            }
            let batch = std::mem::take(&mut notices.pending);
            let upto = notices.next_seq;
            drop(notices);
            last_batch = Some(Instant::now());

            let Some(first) = batch.first().map(|n| n.seq) else {
                continue;
            };
            let members: Vec<(u64, Outbox)> = self
                .lock()
                .members
                .values()
                .map(|member| (member.since, member.outbox.clone()))
                .collect();
            // Members from before the batch get all of it, in one shared
            // list; a newcomer in the batch gets what came after its join.
            let (newcomers, others): (Vec<_>, Vec<_>) =
                members.into_iter().partition(|&(since, _)| since >= first);
            let others: Vec<Outbox> = others.into_iter().map(|(_, outbox)| outbox).collect();
            let lines: Arc<[Arc<str>]> = batch.iter().map(|n| Arc::clone(&n.line)).collect();
            deliver_item(&others, &Outgoing::Lines(lines));
            for (since, outbox) in newcomers {
                let theirs: Arc<[Arc<str>]> = batch
                    .iter()
                    .filter(|n| n.seq > since)
                    .map(|n| Arc::clone(&n.line))
                    .collect();
                if !theirs.is_empty() {
                    deliver_item(std::slice::from_ref(&outbox), &Outgoing::Lines(theirs));
                }
            }
            self.notices().delivered = upto;
            self.notices_changed.notify_all();
        }
    }

    /// Waits (briefly) until our own join has been announced, before we say
    /// anything to the others.
    pub fn after_my_join(&self, me: &Me) {
        let Some(seq) = me.join_notice.get() else {
            return;
        };
        let notices = self.notices();
        let _ = self
            .notices_changed
            .wait_timeout_while(notices, JOIN_NOTICE_WAIT, |n| n.delivered <= seq);
        me.join_notice.set(None);
    }
}
