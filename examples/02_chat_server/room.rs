//! The shared state: who is online, under which name, and a handle on each
//! client's queue. Every connection thread holds the one [`Room`] through an
//! `Arc`; the `Mutex` inside lets one thread at a time look or change.

use crate::notices::Notices;
use crate::outbox::{Outbox, Outgoing, deliver};
use crate::protocol::{MAX_NAME, is_valid_name};
use netlessons::server::DEFAULT_STACK_SIZE;
use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

/// The chat room: everything the connection threads share.
///
/// Every method follows the same rule: lock, read or change [`Clients`], copy
/// out what is needed (the queues to deliver to), unlock, and only then
/// [`deliver`]. The lock is held for microseconds and never while waiting.
#[derive(Debug, Default)]
pub struct Room {
    clients: Mutex<Clients>,
    /// Joins and leaves waiting to be announced, and how far announcing got.
    pub notices: Mutex<Notices>,
    /// Signalled when a notice is queued, and when a batch has gone out.
    pub notices_changed: Condvar,
}

/// Who is online, under what name: the state behind the room's lock.
#[derive(Debug, Default)]
pub struct Clients {
    /// Everyone online, by a number that stays the same when they rename.
    pub members: HashMap<u64, Member>,
    /// The number the next client gets in `members`.
    next_id: u64,
    /// The last guest number handed out (`guest1`, `guest2`, …).
    last_guest: u64,
    /// The room's topic, once someone set one with `/topic`.
    topic: Option<String>,
}

/// One client as the room knows it.
#[derive(Debug)]
pub struct Member {
    name: String,
    pub outbox: Outbox,
    /// The number of this member's join notice: it hears of later ones.
    pub since: u64,
}

/// A client as its own thread knows it: its number in the room and its name.
/// Only this client's thread ever changes its name, so it may keep a copy.
#[derive(Debug)]
pub struct Me {
    id: u64,
    pub name: String,
    /// The number of our `* NAME joined` notice until it has gone out. What
    /// we say to the others waits for it, so nobody hears from us before
    /// they have heard that we joined.
    pub join_notice: Cell<Option<u64>>,
}

impl Clients {
    /// The member called `name`, ignoring case (`Alice` and `alice` are one
    /// name). Names are ASCII, so an ASCII comparison is enough.
    fn find(&self, name: &str) -> Option<(u64, &Member)> {
        self.members
            .iter()
            .find(|(_, member)| member.name.eq_ignore_ascii_case(name))
            .map(|(&id, member)| (id, member))
    }

    /// The next free guest name: the counter goes up, skipping any `guestN`
    /// someone has taken with `/nick`.
    fn new_guest_name(&mut self) -> String {
        loop {
            self.last_guest += 1;
            let name = format!("guest{}", self.last_guest);
            if self.find(&name).is_none() {
                return name;
            }
        }
    }

    /// Everyone's queue.
    fn everyone(&self) -> Vec<Outbox> {
        self.members
            .values()
            .map(|member| member.outbox.clone())
            .collect()
    }

    /// Everyone's queue but `id`'s.
    fn outboxes_except(&self, id: u64) -> Vec<Outbox> {
        self.members
            .iter()
            .filter(|&(&other, _)| other != id)
            .map(|(_, member)| member.outbox.clone())
            .collect()
    }
}

impl Room {
    /// Locks the shared state. A thread that panicked while holding the lock
    /// "poisons" it; every change here is a single insert, remove or
    /// assignment, so the state is still whole and we carry on.
    pub fn lock(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new room, with its announcer thread running.
    pub fn start() -> io::Result<Arc<Room>> {
        let room = Arc::new(Room::default());
        let announcer = Arc::clone(&room);
        thread::Builder::new()
            .name("announcer".to_string())
            .stack_size(DEFAULT_STACK_SIZE)
            .spawn(move || announcer.announce())?;
        Ok(room)
    }
    /// Adds a client under a fresh guest name, welcomes it and tells the others.
    pub fn join(&self, outbox: Outbox) -> Me {
        let me = {
            let mut clients = self.lock();
            let name = clients.new_guest_name();
            let id = clients.next_id;
            clients.next_id += 1;
            // The welcome goes into the queue *before* the client is in the
            // table, so it is the first line the client gets, whatever the
            // others are saying. The queue is brand new and empty, so this
            // `try_send` cannot find it full: nothing waits under the lock.
            let _ = outbox.queue.try_send(line(format!(
                "* welcome, you are {name} (type /help for the commands)"
            )));
            if let Some(topic) = &clients.topic {
                let _ = outbox.queue.try_send(line(format!("* topic: {topic}")));
            }
            // The others hear of it from the announcer, with any other
            // joins. Numbered under the room's lock, so that the number
            // orders this join with every other join and leave.
            let seq = self.notify(format!("* {name} joined"));
            clients.members.insert(
                id,
                Member {
                    name: name.clone(),
                    outbox,
                    since: seq,
                },
            );
            (id, name, seq)
        }; // the lock is released here
        let (id, name, seq) = me;
        Me {
            id,
            name,
            join_notice: Cell::new(Some(seq)),
        }
    }

    /// Removes a client and tells the others.
    pub fn leave(&self, me: &Me) {
        let mut clients = self.lock();
        clients.members.remove(&me.id);
        // After our join's notice, in the announcer's queue, like the join.
        self.notify(format!("* {} left", me.name));
    }

    /// Sends `line` to everyone but `from`.
    pub fn broadcast(&self, from: &Me, line: String) {
        self.after_my_join(from);
        let others = self.lock().outboxes_except(from.id);
        deliver(&others, &line.into());
    }

    /// Renames `me`, or says why not (the `! …` line to send back).
    pub fn rename(&self, me: &mut Me, name: &str) -> Result<(), String> {
        self.after_my_join(me);
        if !is_valid_name(name) {
            return Err(format!(
                "! invalid name {name}: use 1 to {MAX_NAME} letters, digits, _ or -"
            ));
        }
        let others = {
            let mut clients = self.lock();
            // Check and change under one lock. Checking, unlocking and then
            // changing would let two clients both see "bob" free and both
            // take it. (Renaming yourself to another case is fine.)
            if clients.find(name).is_some_and(|(id, _)| id != me.id) {
                return Err(format!("! name {name} is taken"));
            }
            if let Some(member) = clients.members.get_mut(&me.id) {
                member.name = name.to_string();
            }
            clients.outboxes_except(me.id)
        };
        let old = std::mem::replace(&mut me.name, name.to_string());
        if old != me.name {
            deliver(&others, &format!("* {old} is now {name}").into());
        }
        Ok(())
    }

    /// Sends `line` to the member called `to`; false if there is none.
    pub fn tell(&self, to: &str, line: String) -> bool {
        let target = self
            .lock()
            .find(to)
            .map(|(_, member)| member.outbox.clone());
        match target {
            Some(outbox) => {
                outbox.send(line);
                true
            }
            None => false,
        }
    }

    /// The `/who` answer: every name, sorted by byte order.
    pub fn who(&self) -> String {
        let mut names: Vec<String> = self
            .lock()
            .members
            .values()
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        format!("* online: {}", names.join(", "))
    }

    /// Sets the topic and tells everyone, the setter included.
    pub fn set_topic(&self, me: &Me, topic: &str) {
        self.after_my_join(me);
        let everyone = {
            let mut clients = self.lock();
            clients.topic = Some(topic.to_string());
            clients.everyone()
        };
        deliver(
            &everyone,
            &format!("* {} set the topic: {topic}", me.name).into(),
        );
    }

    /// The `/topic` answer.
    pub fn topic(&self) -> String {
        match &self.lock().topic {
            Some(topic) => format!("* topic: {topic}"),
            None => "* no topic set".to_string(),
        }
    }
}

/// A queued line, from text.
fn line(text: String) -> Outgoing {
    Outgoing::Line(text.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlessons::connection::SharedStream;
    use std::sync::mpsc;

    /// Guest numbers count up and skip names in use, ignoring case.
    #[test]
    fn guest_names_skip_names_in_use() {
        let mut clients = Clients::default();
        assert_eq!(clients.new_guest_name(), "guest1");
        let (queue, _lines) = mpsc::sync_channel(1);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let outbox = Outbox {
            queue,
            peer: stream.peer_addr().unwrap(),
            socket: SharedStream::new(stream),
            dropped: Arc::default(),
        };
        let name = "GUEST2".to_string();
        clients.members.insert(
            7,
            Member {
                name,
                outbox,
                since: 0,
            },
        );
        assert_eq!(clients.new_guest_name(), "guest3");
        assert!(clients.find("Guest2").is_some());
    }
}
