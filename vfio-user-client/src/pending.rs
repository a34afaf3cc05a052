// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The table of requests waiting for replies, keyed by `msg_id`, and the reader-role state.
//!
//! All of it lives under one mutex owned by the [`Transport`](crate::transport). A waiting
//! caller sleeps on the condition variable of its own slot, so delivering a reply wakes
//! exactly that caller.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Condvar};

use vfio_user_proto::Message;

use crate::error::{DisconnectReason, Error, Result};

/// How long the id of an abandoned request stays reserved for its late reply (ms); a reply
/// later than that is a protocol violation. Without a limit, a server that never answers
/// some requests would eventually use up every id.
const ABANDONED_TTL_MS: u64 = 60_000;
/// Table size from which abandoned ids are swept.
const SWEEP_FROM: usize = 1024;

/// How many recent NO_REPLY message ids are remembered, to recognise error replies that
/// some servers send for posted commands anyway (rust-vmm's server does).
const POSTED_MEMORY: usize = 1024;

/// Condition variables kept for reuse, so that a request allocates none.
const SPARE_CONDVARS: usize = 64;

/// Hashes a message id by Fibonacci multiplication: ids are not attacker-chosen (we pick
/// them), so no keyed hash is needed.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u16(&mut self, i: u16) {
        self.0 = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Who currently reads the main socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReaderRole {
    /// Nobody.
    None,
    /// A thread waiting for its own reply.
    Caller,
    /// The background reader.
    Background,
}

/// What a dispatched message turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// A reply handed to the waiter of this id.
    Reply(u16),
    /// A late reply to a request that timed out: dropped.
    Late,
    /// An error reply to a posted (NO_REPLY) command: dropped.
    PostedError,
    /// A server-initiated command, served.
    Command,
}

enum Slot {
    /// `sleeping`: the requester is blocked on `cv` (otherwise notifying it would be a
    /// wasted system call: it is reading the socket itself, or about to look at the slot).
    Waiting { cv: Arc<Condvar>, reply: Option<Message>, sleeping: bool },
    /// The requester gave up (timeout) at this time (ms); a late reply is dropped.
    Abandoned(u64),
}

/// Pending requests and reader state.
pub(crate) struct PendingTable {
    slots: HashMap<u16, Slot, BuildHasherDefault<IdHasher>>,
    spare: Vec<Arc<Condvar>>,
    last_sweep: u64,
    posted: VecDeque<u16>,
    next_id: u16,
    /// Who reads the socket.
    pub(crate) reader: ReaderRole,
    /// Counts read sessions by callers; the background reader backs off while it moves.
    pub(crate) caller_reads: u64,
    /// Asks the background reader to take the role now (a message is buffered and nobody
    /// waits).
    pub(crate) kick_background: bool,
    /// Set once the connection is gone.
    pub(crate) dead: Option<DisconnectReason>,
}

impl PendingTable {
    pub(crate) fn new() -> Self {
        PendingTable {
            slots: HashMap::default(),
            spare: Vec::new(),
            last_sweep: 0,
            posted: VecDeque::new(),
            next_id: 1,
            reader: ReaderRole::None,
            caller_reads: 0,
            kick_background: false,
            dead: None,
        }
    }

    fn free_id(&mut self) -> Result<u16> {
        for _ in 0..=u16::MAX as u32 {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if !self.slots.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(Error::NoMessageId)
    }

    /// Forgets abandoned ids older than [`ABANDONED_TTL_MS`], when the table is large.
    fn sweep(&mut self) {
        if self.slots.len() >= SWEEP_FROM {
            let now = crate::transport::now_ms();
            // At most once a second: a sweep walks the whole table.
            if now.saturating_sub(self.last_sweep) >= 1000 {
                self.last_sweep = now;
                self.sweep_at(now);
            }
        }
    }

    fn sweep_at(&mut self, now: u64) {
        self.slots.retain(|_, s| !matches!(s, Slot::Abandoned(at) if now.saturating_sub(*at) > ABANDONED_TTL_MS));
    }

    /// Allocates an id for a request and its waiter slot.
    pub(crate) fn register(&mut self) -> Result<u16> {
        self.sweep();
        let cv = self.spare.pop().unwrap_or_default();
        for _ in 0..=u16::MAX as u32 {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if let std::collections::hash_map::Entry::Vacant(v) = self.slots.entry(id) {
                v.insert(Slot::Waiting { cv, reply: None, sleeping: false });
                return Ok(id);
            }
        }
        self.spare.push(cv);
        Err(Error::NoMessageId)
    }

    /// The condition variable the requester of `id` sleeps on (taken only when it must
    /// sleep, so that a request that never sleeps does not touch its reference count).
    pub(crate) fn condvar(&self, id: u16) -> Option<Arc<Condvar>> {
        match self.slots.get(&id) {
            Some(Slot::Waiting { cv, .. }) => Some(cv.clone()),
            _ => None,
        }
    }

    /// Allocates an id for a NO_REPLY command and remembers it for a while.
    pub(crate) fn posted_id(&mut self) -> Result<u16> {
        let id = self.free_id()?;
        if self.posted.len() == POSTED_MEMORY {
            self.posted.pop_front();
        }
        self.posted.push_back(id);
        Ok(id)
    }

    /// Takes the reply of `id` if it has arrived (and frees the id).
    pub(crate) fn take_reply(&mut self, id: u16) -> Option<Message> {
        match self.slots.get_mut(&id) {
            Some(Slot::Waiting { reply, .. }) if reply.is_some() => {
                let m = reply.take();
                self.remove(id);
                m
            }
            _ => None,
        }
    }

    /// Forgets `id`, keeping its condition variable for reuse when nobody else holds it.
    pub(crate) fn remove(&mut self, id: u16) {
        if let Some(Slot::Waiting { cv, .. }) = self.slots.remove(&id) {
            if self.spare.len() < SPARE_CONDVARS && Arc::strong_count(&cv) == 1 {
                self.spare.push(cv);
            }
        }
    }

    /// Gives up on `id`; its id stays reserved until a late reply arrives. A reply that
    /// already arrived is dropped and the id freed.
    pub(crate) fn abandon(&mut self, id: u16) {
        match self.slots.get_mut(&id) {
            Some(Slot::Waiting { reply: Some(_), .. }) => {
                self.slots.remove(&id);
            }
            Some(s) => *s = Slot::Abandoned(crate::transport::now_ms()),
            None => {}
        }
    }

    /// Hands a reply to its waiter.
    pub(crate) fn deliver(&mut self, msg: Message) -> std::result::Result<Delivery, DisconnectReason> {
        let id = msg.header.msg_id;
        match self.slots.get_mut(&id) {
            Some(Slot::Waiting { cv, reply, sleeping }) => {
                if reply.is_some() {
                    return Err(DisconnectReason::ProtocolViolation(format!("second reply to msg_id {id}")));
                }
                *reply = Some(msg);
                if *sleeping {
                    cv.notify_one();
                }
                Ok(Delivery::Reply(id))
            }
            Some(Slot::Abandoned(_)) => {
                log::debug!("late reply to msg_id {id} dropped");
                self.slots.remove(&id);
                Ok(Delivery::Late)
            }
            None if msg.header.is_error() && self.posted.contains(&id) => {
                log::warn!("server reported errno {} for posted command msg_id {id}", msg.header.errno());
                Ok(Delivery::PostedError)
            }
            None => Err(DisconnectReason::ProtocolViolation(format!(
                "reply with msg_id {id} (command {}) matches no pending request",
                msg.header.command
            ))),
        }
    }

    /// Whether some caller sleeps waiting for a reply that has not arrived (and so will take
    /// the reader role when it is handed over).
    pub(crate) fn has_sleepers(&self) -> bool {
        self.slots.values().any(|s| matches!(s, Slot::Waiting { reply: None, sleeping: true, .. }))
    }

    /// Records whether the requester of `id` is about to sleep on its condition variable.
    pub(crate) fn set_sleeping(&mut self, id: u16, on: bool) {
        if let Some(Slot::Waiting { sleeping, .. }) = self.slots.get_mut(&id) {
            *sleeping = on;
        }
    }

    /// Wakes one caller still waiting for its reply, so that it takes the reader role.
    /// Returns whether there was one.
    pub(crate) fn wake_one_waiter(&self) -> bool {
        let mut any = false;
        for s in self.slots.values() {
            if let Slot::Waiting { cv, reply: None, sleeping } = s {
                if *sleeping {
                    cv.notify_one();
                    return true;
                }
                any = true;
            }
        }
        any
    }

    /// Wakes every waiter (the connection died).
    pub(crate) fn wake_all(&self) {
        for s in self.slots.values() {
            if let Slot::Waiting { cv, sleeping: true, .. } = s {
                cv.notify_one();
            }
        }
    }

    /// Number of slots (waiting or abandoned).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_user_proto::{Command, Header};

    fn reply(id: u16, error: bool) -> Message {
        let c = Header { msg_id: id, ..Header::command(id, Command::DeviceReset, 0) };
        let header = if error { c.error_reply(libc::EIO) } else { c.reply(0) };
        Message { header, payload: Vec::new(), fds: Vec::new() }
    }

    #[test]
    fn ids_skip_those_in_use_and_wrap() {
        let mut t = PendingTable::new();
        t.next_id = u16::MAX;
        let a = t.register().unwrap();
        let b = t.register().unwrap();
        assert_eq!((a, b), (u16::MAX, 0));
        t.next_id = u16::MAX;
        let c = t.register().unwrap();
        assert_eq!(c, 1, "ids in use are skipped");
    }

    #[test]
    fn exhausted_ids_are_an_error() {
        let mut t = PendingTable::new();
        for _ in 0..=u16::MAX as u32 {
            t.register().unwrap();
        }
        assert!(matches!(t.register(), Err(Error::NoMessageId)));
    }

    #[test]
    fn old_abandoned_ids_are_swept_from_a_large_table() {
        let mut t = PendingTable::new();
        for _ in 0..SWEEP_FROM {
            let id = t.register().unwrap();
            t.abandon(id);
        }
        let waiting = t.register().unwrap();
        // A minute and a bit later, the abandoned ids go; the waiting request stays.
        t.sweep_at(crate::transport::now_ms() + ABANDONED_TTL_MS + 1);
        assert_eq!(t.len(), 1);
        assert!(t.take_reply(waiting).is_none());
        // Recent ones stay.
        let recent = t.register().unwrap();
        t.abandon(recent);
        t.sweep_at(crate::transport::now_ms());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn delivery_rules() {
        let mut t = PendingTable::new();
        let id = t.register().unwrap();
        assert_eq!(t.deliver(reply(id, false)), Ok(Delivery::Reply(id)));
        assert!(t.deliver(reply(id, false)).is_err(), "a second reply is a violation");
        assert!(t.take_reply(id).is_some());
        assert!(t.deliver(reply(id, false)).is_err(), "no longer pending");
        let late = t.register().unwrap();
        t.abandon(late);
        assert_eq!(t.deliver(reply(late, false)), Ok(Delivery::Late));
        assert_eq!(t.len(), 0);
        let p = t.posted_id().unwrap();
        assert_eq!(t.deliver(reply(p, true)), Ok(Delivery::PostedError));
        assert!(t.deliver(reply(p, false)).is_err(), "only error replies to posted commands are tolerated");
    }
}
