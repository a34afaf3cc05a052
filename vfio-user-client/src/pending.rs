// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The table of requests waiting for replies, keyed by `msg_id`, and the reader-role state.
//!
//! All of it lives under one mutex owned by the [`Transport`](crate::transport). A waiting
//! caller marks its slot asleep and sleeps on the connection's [`WakeBoard`] with its id's
//! [`bit`]; delivering a reply to a sleeper says so, and the deliverer wakes the bits of a
//! whole batch at once after it has let go of the mutex (so the woken callers do not find
//! it taken).
//!
//! [`WakeBoard`]: crate::wake::WakeBoard
//! [`bit`]: crate::wake::bit

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

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
}

enum Slot {
    /// `asleep`: the requester sleeps (otherwise waking it would be a wasted system call:
    /// it is reading the socket itself, or about to look at the slot). `woken`: the reply
    /// was delivered to the sleeping requester, which the deliverer wakes (and counts with
    /// `SendPath::woke`). `deadline`: the requester's (ms), for
    /// [`PendingTable::wake_expiring`].
    Waiting { reply: Option<Message>, asleep: bool, woken: bool, deadline: u64 },
    /// The requester gave up (timeout) at this time (ms); a late reply is dropped.
    Abandoned(u64),
}

/// Pending requests and reader state.
pub(crate) struct PendingTable {
    slots: HashMap<u16, Slot, BuildHasherDefault<IdHasher>>,
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
            let now = crate::sync::now_ms();
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

    /// Allocates an id for a request (whose requester gives up at `deadline`, ms) and its
    /// waiter slot.
    pub(crate) fn register(&mut self, deadline: u64) -> Result<u16> {
        self.sweep();
        for _ in 0..=u16::MAX as u32 {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if let std::collections::hash_map::Entry::Vacant(v) = self.slots.entry(id) {
                v.insert(Slot::Waiting { reply: None, asleep: false, woken: false, deadline });
                return Ok(id);
            }
        }
        Err(Error::NoMessageId)
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

    /// Takes the reply of `id` if it has arrived (and frees the id), with whether it was
    /// delivered to the requester while it was asleep (see [`Slot::Waiting`]).
    pub(crate) fn take_reply(&mut self, id: u16) -> Option<(Message, bool)> {
        match self.slots.get_mut(&id) {
            Some(Slot::Waiting { reply, woken, .. }) if reply.is_some() => {
                let m = reply.take().map(|m| (m, *woken));
                self.remove(id);
                m
            }
            _ => None,
        }
    }

    /// Forgets `id`.
    pub(crate) fn remove(&mut self, id: u16) {
        self.slots.remove(&id);
    }

    /// Gives up on `id`; its id stays reserved until a late reply arrives. A reply that
    /// already arrived is dropped and the id freed; returns whether it had been delivered to
    /// the sleeping requester (see [`Slot::Waiting`]).
    pub(crate) fn abandon(&mut self, id: u16) -> bool {
        match self.slots.get_mut(&id) {
            Some(Slot::Waiting { reply: Some(_), woken, .. }) => {
                let woken = *woken;
                self.slots.remove(&id);
                woken
            }
            Some(s) => {
                *s = Slot::Abandoned(crate::sync::now_ms());
                false
            }
            None => false,
        }
    }

    /// Hands a reply to its waiter; returns whether the waiter sleeps: the caller wakes it
    /// (after releasing the table's mutex).
    pub(crate) fn deliver(&mut self, msg: Message) -> std::result::Result<(Delivery, bool), DisconnectReason> {
        let id = msg.header.msg_id;
        match self.slots.get_mut(&id) {
            Some(Slot::Waiting { reply, asleep, woken, .. }) => {
                if reply.is_some() {
                    return Err(DisconnectReason::ProtocolViolation(format!("second reply to msg_id {id}")));
                }
                *reply = Some(msg);
                *woken = std::mem::take(asleep);
                Ok((Delivery::Reply(id), *woken))
            }
            Some(Slot::Abandoned(_)) => {
                log::debug!("late reply to msg_id {id} dropped");
                self.slots.remove(&id);
                Ok((Delivery::Late, false))
            }
            None if msg.header.is_error() && self.posted.contains(&id) => {
                log::warn!("server reported errno {} for posted command msg_id {id}", msg.header.errno());
                Ok((Delivery::PostedError, false))
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
        self.slots.values().any(|s| matches!(s, Slot::Waiting { reply: None, asleep: true, .. }))
    }

    /// Marks the requester of `id` as about to sleep (`false` once it is awake). Returns
    /// whether `id` is still waiting.
    pub(crate) fn set_sleeping(&mut self, id: u16, sleeping: bool) -> bool {
        match self.slots.get_mut(&id) {
            Some(Slot::Waiting { asleep, .. }) => {
                *asleep = sleeping;
                true
            }
            _ => false,
        }
    }

    /// A sleeping caller still waiting for its reply, to be woken so that it takes the
    /// reader role; `(whether any caller waits without its reply, the id to wake)`.
    pub(crate) fn waiter_to_wake(&mut self) -> (bool, Option<u16>) {
        let mut any = false;
        for (id, s) in self.slots.iter_mut() {
            if let Slot::Waiting { reply: None, asleep, .. } = s {
                if std::mem::take(asleep) {
                    return (true, Some(*id));
                }
                any = true;
            }
        }
        (any, None)
    }

    /// The wake-up bits of the sleeping requesters whose deadline is at or before `by`
    /// (ms), marked awake: a requester far from its deadline sleeps without a timeout
    /// (cheaper), and is woken by this in time to sleep again with a precise one.
    pub(crate) fn wake_expiring(&mut self, by: u64) -> u32 {
        let mut mask = 0;
        for (id, s) in self.slots.iter_mut() {
            if let Slot::Waiting { asleep, deadline, .. } = s {
                if *deadline <= by && std::mem::take(asleep) {
                    mask |= crate::wake::bit(*id);
                }
            }
        }
        mask
    }

    /// Marks every sleeper awake (the connection died; the caller wakes them all).
    pub(crate) fn wake_all(&mut self) {
        for s in self.slots.values_mut() {
            if let Slot::Waiting { asleep, .. } = s {
                *asleep = false;
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
        Message { header, payload: Vec::new(), fds: Vec::new(), damage: None }
    }

    #[test]
    fn ids_skip_those_in_use_and_wrap() {
        let mut t = PendingTable::new();
        t.next_id = u16::MAX;
        let a = t.register(u64::MAX).unwrap();
        let b = t.register(u64::MAX).unwrap();
        assert_eq!((a, b), (u16::MAX, 0));
        t.next_id = u16::MAX;
        let c = t.register(u64::MAX).unwrap();
        assert_eq!(c, 1, "ids in use are skipped");
    }

    #[test]
    fn exhausted_ids_are_an_error() {
        let mut t = PendingTable::new();
        for _ in 0..=u16::MAX as u32 {
            t.register(u64::MAX).unwrap();
        }
        assert!(matches!(t.register(u64::MAX), Err(Error::NoMessageId)));
    }

    #[test]
    fn old_abandoned_ids_are_swept_from_a_large_table() {
        let mut t = PendingTable::new();
        for _ in 0..SWEEP_FROM {
            let id = t.register(u64::MAX).unwrap();
            t.abandon(id);
        }
        let waiting = t.register(u64::MAX).unwrap();
        // A minute and a bit later, the abandoned ids go; the waiting request stays.
        t.sweep_at(crate::sync::now_ms() + ABANDONED_TTL_MS + 1);
        assert_eq!(t.len(), 1);
        assert!(t.take_reply(waiting).is_none());
        // Recent ones stay.
        let recent = t.register(u64::MAX).unwrap();
        t.abandon(recent);
        t.sweep_at(crate::sync::now_ms());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn delivery_rules() {
        let mut t = PendingTable::new();
        let id = t.register(u64::MAX).unwrap();
        assert_eq!(t.deliver(reply(id, false)).map(|d| d.0), Ok(Delivery::Reply(id)));
        assert!(t.deliver(reply(id, false)).is_err(), "a second reply is a violation");
        assert!(t.take_reply(id).is_some());
        assert!(t.deliver(reply(id, false)).is_err(), "no longer pending");
        let late = t.register(u64::MAX).unwrap();
        t.abandon(late);
        assert_eq!(t.deliver(reply(late, false)).map(|d| d.0), Ok(Delivery::Late));
        assert_eq!(t.len(), 0);
        let p = t.posted_id().unwrap();
        assert_eq!(t.deliver(reply(p, true)).map(|d| d.0), Ok(Delivery::PostedError));
        assert!(t.deliver(reply(p, false)).is_err(), "only error replies to posted commands are tolerated");
    }
}
