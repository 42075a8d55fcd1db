//! After the final `.`: from a received text to the `250` that promises it.
//!
//! Part of the SMTP session (`smtp.rs` declares it as its child module, so
//! it works on the same private `Session`): `Session::data` has read the
//! text into a `Draft`, and `Session::deliver` takes it from there:
//!
//! 1. the checks that need the whole message: too many `Received:` hops
//!    (a mail loop), and a retried copy of a message stored lately
//!    (exercise 5, `dedup.rs`);
//! 2. spam filter 3, content scoring (`score.rs`, chapter 11), whose
//!    verdict decides the folder and is written at the top of every copy;
//! 3. every copy stored durably, all or none (`Session::store`, with
//!    `spool.rs`'s `Batch`); only then the `250`.

use super::{Session, Transaction};
use crate::dedup::Recent;
use crate::draft::Draft;
use crate::message::{self, Hop};
use crate::score::{Origin, Verdict};
use crate::spool::{Batch, Folder};
use std::io::{self, BufReader, Write};
use std::time::SystemTime;

impl Session<'_> {
    /// After the final `.`: what needs the whole message (the hop count,
    /// the duplicate check, spam filter 3), then every copy stored, then
    /// `250`. The text is in `draft`, flushed; `transaction` is over.
    pub(super) fn deliver(
        &mut self,
        transaction: &Transaction,
        draft: &mut Draft,
    ) -> io::Result<()> {
        if draft.received_count() >= message::MAX_HOPS {
            return self.error("554 5.4.6 too many hops: this message is probably in a mail loop");
        }
        // Seen already? (Exercise 5: a retry of a message we stored.)
        let dedup = self.dedup_key(transaction, draft);
        if let (Some(recent), Some(key)) = (&self.service.recent, &dedup) {
            if recent.contains(key) {
                netlessons::log!(
                    "{} duplicate of a message stored within the last {} s (same Message-ID \
                     and envelope): not stored again",
                    self.conn.peer_addr(),
                    self.service.dedup_window.as_secs()
                );
                // 250: the sender must stop retrying, since for it the
                // delivery worked.
                return self.reply("250 2.0.0 OK: already delivered, not stored again");
            }
        }
        // ---- Spam filter 3, after DATA: content scoring. The whole message
        // is in the draft and nothing is promised yet: read it, score it,
        // and write the verdict at the top of every copy (score.rs).
        let verdict = match self.score(draft) {
            Ok(verdict) => verdict,
            Err(e) => return self.could_not_store(&e),
        };
        let folder = if verdict.is_spam() {
            Folder::Junk
        } else {
            Folder::Inbox
        };
        self.log_verdict(&verdict, transaction, folder);
        let added = verdict.headers();
        match self.store(transaction, draft, added.as_bytes(), folder) {
            Ok(id) => {
                if let (Some(recent), Some(key)) = (&self.service.recent, dedup) {
                    recent.remember(key);
                }
                self.reply(&format!("250 2.0.0 OK: queued as {id}"))
            }
            Err(e) => self.could_not_store(&e),
        }
    }

    /// Scores the message in `draft`. If the client wrote `X-Spam-*`
    /// fields of its own, the draft is replaced by a copy without them
    /// (rare, so the usual message is read once and copied once).
    fn score(&self, draft: &mut Draft) -> io::Result<Verdict> {
        let origin = Origin {
            outside: self.outside,
            domains: &self.service.domains,
        };
        let verdict = self
            .service
            .filters
            .scorer
            .scan(BufReader::new(draft.reader()?), origin)?;
        if verdict.client_spam_fields > 0 {
            let mut clean = self.service.spool.new_draft()?;
            crate::spam_headers::strip_spam_headers(BufReader::new(draft.reader()?), |line| {
                clean.push_line(line.strip_suffix(b"\n").unwrap_or(line));
                Ok(())
            })?;
            clean.finish()?;
            netlessons::log!(
                "{} score: removed {} X-Spam-* field(s) the client sent",
                self.conn.peer_addr(),
                verdict.client_spam_fields
            );
            *draft = clean;
        }
        Ok(verdict)
    }

    /// One log line for the content filter's decision and where the
    /// message goes.
    fn log_verdict(&self, verdict: &Verdict, transaction: &Transaction, folder: Folder) {
        let mut destinations = Vec::new();
        if !transaction.local.is_empty() {
            let place = if folder == Folder::Junk {
                ".Junk"
            } else {
                "inbox"
            };
            destinations.push(format!("{place} of {}", transaction.local.join(", ")));
        }
        if !transaction.remote.is_empty() {
            destinations.push(format!("relayed for {}", transaction.remote.join(", ")));
        }
        netlessons::log!(
            "{} score: {}: {}",
            self.conn.peer_addr(),
            verdict.summary(),
            destinations.join("; ")
        );
    }

    /// The key under which exercise 5 remembers this message, if it has
    /// a `Message-ID`.
    fn dedup_key(&self, transaction: &Transaction, draft: &Draft) -> Option<[u8; 32]> {
        let id = draft.message_id()?;
        let text = draft.digest()?;
        let local = transaction
            .local
            .iter()
            .map(|m| format!("{m}@{}", self.service.domains[0]));
        let rcpts: Vec<String> = local.chain(transaction.remote.iter().cloned()).collect();
        Some(Recent::key(id, &transaction.from, &rcpts, &text))
    }

    /// Delivers local copies and queues remote ones, durably, and returns
    /// the message's id. Only when this returns `Ok` may we say `250`.
    ///
    /// Each copy is `Return-Path:` (local copies only), our `Received:`,
    /// then `added`, then the text as it arrived. Every copy is written and
    /// synced before any becomes visible, and on an error none does (see
    /// `Batch`): a `451` then really means "nothing delivered", and the
    /// client's retry brings no duplicates.
    fn store(
        &self,
        transaction: &Transaction,
        draft: &mut Draft,
        added: &[u8],
        folder: Folder,
    ) -> io::Result<String> {
        let service = self.service;
        let id = service.spool.unique_name();
        let single = (transaction.recipients() == 1).then(|| {
            transaction
                .remote
                .first()
                .cloned()
                .unwrap_or_else(|| format!("{}@{}", transaction.local[0], service.domains[0]))
        });
        let hop = Hop {
            helo: self.helo.as_deref().unwrap_or(""),
            peer: self.conn.peer_addr().ip(),
            by: &service.host,
            with: if self.esmtp { "ESMTP" } else { "SMTP" },
            id: &id,
            for_rcpt: single.as_deref(),
        };
        let mut headers = message::received_header(&hop, SystemTime::now()).into_bytes();
        headers.extend_from_slice(added);
        // The final delivery also records the envelope sender, where a
        // reply about problems would go (RFC 5321 §4.4).
        let mut local = format!("Return-Path: <{}>\n", transaction.from).into_bytes();
        local.extend_from_slice(&headers);
        let mut batch = Batch::new(&service.spool);
        for mailbox in &transaction.local {
            service
                .spool
                .add_to_mailbox(&mut batch, mailbox, folder, |mut file| {
                    file.write_all(&local)?;
                    draft.copy_to(file)
                })?;
        }
        let queue = if transaction.remote.is_empty() {
            None
        } else {
            let queue = service
                .queue
                .as_ref()
                .expect("remote recipients need a queue");
            queue.add_copy(
                &mut batch,
                &id,
                &transaction.from,
                &transaction.remote,
                &headers,
                draft,
            )?;
            Some(queue)
        };
        batch.publish()?;
        if let Some(queue) = queue {
            queue.schedule(&id);
        }
        Ok(id)
    }

    /// The message could not be stored. Nothing was promised, so the client
    /// keeps it and tries again later; we log the reason for the operator.
    pub(super) fn could_not_store(&mut self, e: &io::Error) -> io::Result<()> {
        netlessons::log!("{} could not store a message: {e}", self.conn.peer_addr());
        self.error("451 4.3.0 Error: could not store the message; try again later")
    }
}
