// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! IRQ types and the SET_IRQS state: [`IrqIndexInfo`], [`IrqSetData`], what SET_IRQS installed
//! (replayed after a reconnect), and the sending of one logical SET_IRQS split by the
//! server's `max_msg_fds`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use vfio_user_proto::wire::{IrqSet, IRQ_SET_ACTION_MASK, IRQ_SET_ACTION_TRIGGER, IRQ_SET_ACTION_UNMASK};
use vfio_user_proto::{IrqData, Reply};

use crate::error::{Error, Result};
use crate::transport::decode;
use crate::transport::Transport;

pub use vfio_user_proto::IrqAction;

/// What DEVICE_GET_IRQ_INFO reported for one IRQ index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqIndexInfo {
    /// IRQ index (PCI: 0 INTx, 1 MSI, 2 MSI-X, 3 ERR, 4 REQ).
    pub index: u32,
    /// `VFIO_IRQ_INFO_*` (EVENTFD, MASKABLE, AUTOMASKED, NORESIZE).
    pub flags: u32,
    /// Number of vectors.
    pub count: u32,
}

/// The data of a DEVICE_SET_IRQS call.
#[derive(Clone, Copy, Debug)]
pub enum IrqSetData<'a> {
    /// DATA_NONE for `count` vectors. `count` 0 with [`IrqAction::Trigger`] and start 0
    /// disables the whole index.
    None {
        /// Number of vectors.
        count: u32,
    },
    /// DATA_BOOL: one flag per vector from `start`.
    Bool(&'a [bool]),
    /// DATA_EVENTFD: one entry per vector from `start`; `None` de-assigns that vector.
    /// Sent in as many messages as the server's `max_msg_fds` requires.
    Eventfds(&'a [Option<BorrowedFd<'a>>]),
}

impl IrqSetData<'_> {
    pub(crate) fn count(&self) -> usize {
        match self {
            IrqSetData::None { count } => *count as usize,
            IrqSetData::Bool(b) => b.len(),
            IrqSetData::Eventfds(f) => f.len(),
        }
    }
}

pub(crate) fn action_flag(a: IrqAction) -> u32 {
    a.flag().bits()
}

/// What SET_IRQS installed on the server and a reconnect sends again: the eventfds per
/// (index, action flag) per vector, and the vectors masked with DATA_NONE / DATA_BOOL.
#[derive(Default)]
pub(crate) struct IrqState {
    fds: BTreeMap<(u32, u32), BTreeMap<u32, Arc<OwnedFd>>>,
    masked: BTreeMap<u32, BTreeSet<u32>>,
}

impl IrqState {
    pub(crate) fn record(&mut self, index: u32, action: u32, start: u32, data: &IrqSetData<'_>) -> Result<()> {
        let mask = |set: &mut BTreeSet<u32>, v: u32| match action {
            IRQ_SET_ACTION_MASK => {
                set.insert(v);
            }
            IRQ_SET_ACTION_UNMASK => {
                set.remove(&v);
            }
            _ => {}
        };
        match data {
            IrqSetData::None { count: 0 } if action == IRQ_SET_ACTION_TRIGGER => {
                self.fds.retain(|(i, _), _| *i != index);
                self.masked.remove(&index);
            }
            IrqSetData::None { count } => {
                let set = self.masked.entry(index).or_default();
                for v in start..start + count {
                    mask(set, v);
                }
            }
            IrqSetData::Bool(flags) => {
                let set = self.masked.entry(index).or_default();
                for (i, _) in flags.iter().enumerate().filter(|(_, &on)| on) {
                    mask(set, start + i as u32);
                }
            }
            IrqSetData::Eventfds(fds) => {
                let map = self.fds.entry((index, action)).or_default();
                for (i, fd) in fds.iter().enumerate() {
                    let v = start + i as u32;
                    match fd {
                        Some(fd) => {
                            map.insert(v, Arc::new(fd.try_clone_to_owned()?));
                        }
                        None => {
                            map.remove(&v);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Installs every recorded eventfd on a new connection.
    pub(crate) fn replay(&self, t: &Transport, timeout: Duration) -> Result<()> {
        for (&(index, action), map) in &self.fds {
            let mut run: Vec<(u32, BorrowedFd<'_>)> = Vec::new();
            let flush = |run: &mut Vec<(u32, BorrowedFd<'_>)>| -> Result<()> {
                if let Some(&(start, _)) = run.first() {
                    let fds: Vec<Option<BorrowedFd<'_>>> = run.iter().map(|(_, f)| Some(*f)).collect();
                    send_set_irqs(t, index, action, start, &IrqSetData::Eventfds(&fds), timeout)?;
                }
                run.clear();
                Ok(())
            };
            for (&v, fd) in map {
                if run.last().is_some_and(|&(last, _)| last + 1 != v) {
                    flush(&mut run)?;
                }
                run.push((v, fd.as_fd()));
            }
            flush(&mut run)?;
        }
        for (&index, set) in &self.masked {
            let mut vectors = set.iter().copied().peekable();
            while let Some(first) = vectors.next() {
                let mut count = 1;
                while first.checked_add(count).is_some_and(|next| vectors.next_if_eq(&next).is_some()) {
                    count += 1;
                }
                send_set_irqs(t, index, IRQ_SET_ACTION_MASK, first, &IrqSetData::None { count }, timeout)?;
            }
        }
        Ok(())
    }
}

/// Sends one logical SET_IRQS, split into messages as needed.
pub(crate) fn send_set_irqs(
    t: &Transport,
    index: u32,
    action: u32,
    start: u32,
    data: &IrqSetData<'_>,
    timeout: Duration,
) -> Result<()> {
    let one = |start: u32, count: usize, data: IrqData<'_>, fds: &[BorrowedFd<'_>]| -> Result<()> {
        let set = IrqSet::new(data.flag().bits() | action, index, start, count as u32, data.bytes().len());
        let p = set.payload(&data);
        let msg = t.request(p.command(), &p.parts(), fds, timeout)?;
        match decode(t, &msg)? {
            Reply::DeviceSetIrqs => Ok(()),
            _ => Err(t.violation("DEVICE_SET_IRQS reply of another kind".into())),
        }
    };
    match data {
        IrqSetData::None { count } => one(start, *count as usize, IrqData::None, &[]),
        IrqSetData::Bool(b) => {
            let bytes: Vec<u8> = b.iter().map(|&x| x as u8).collect();
            one(start, b.len(), IrqData::Bool(&bytes), &[])
        }
        IrqSetData::Eventfds([]) => one(start, 0, IrqData::Eventfd(0), &[]),
        IrqSetData::Eventfds(fds) => {
            let max = t.negotiated.peer.max_msg_fds as usize;
            if max == 0 && fds.iter().any(|f| f.is_some()) {
                return Err(Error::Unsupported("the server accepts no file descriptors"));
            }
            let mut i = 0;
            while i < fds.len() {
                let some = fds[i].is_some();
                let mut j = i;
                while j < fds.len() && fds[j].is_some() == some && (!some || j - i < max.max(1)) {
                    j += 1;
                }
                let run: Vec<BorrowedFd<'_>> = fds[i..j].iter().flatten().copied().collect();
                one(start + i as u32, j - i, IrqData::Eventfd(run.len()), &run)?;
                i = j;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::fd::{AsFd, OwnedFd};

    use super::*;

    fn eventfd() -> OwnedFd {
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap()
    }

    /// Random SET_IRQS calls against a plain model of what the server holds: the recorded
    /// state (what a reconnect replays) must always match it.
    #[test]
    fn recorded_state_follows_a_model() {
        let fds: Vec<OwnedFd> = (0..4).map(|_| eventfd()).collect();
        let mut state = IrqState::default();
        let mut model_fds: BTreeSet<(u32, u32, u32)> = BTreeSet::new();
        let mut model_masked: BTreeSet<(u32, u32)> = BTreeSet::new();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let actions = [IRQ_SET_ACTION_MASK, IRQ_SET_ACTION_UNMASK, IRQ_SET_ACTION_TRIGGER];
        for _ in 0..2000 {
            let index = rnd(2) as u32;
            let action = actions[rnd(3) as usize];
            let start = rnd(6) as u32;
            let count = rnd(4) as u32;
            match rnd(4) {
                0 => {
                    let v: Vec<Option<std::os::fd::BorrowedFd<'_>>> =
                        (0..count).map(|i| (rnd(3) != 0).then(|| fds[(i % 4) as usize].as_fd())).collect();
                    state.record(index, action, start, &IrqSetData::Eventfds(&v)).unwrap();
                    for (i, f) in v.iter().enumerate() {
                        let key = (index, action, start + i as u32);
                        if f.is_some() {
                            model_fds.insert(key);
                        } else {
                            model_fds.remove(&key);
                        }
                    }
                }
                1 => {
                    let b: Vec<bool> = (0..count).map(|_| rnd(2) == 0).collect();
                    state.record(index, action, start, &IrqSetData::Bool(&b)).unwrap();
                    for (i, on) in b.iter().enumerate() {
                        let key = (index, start + i as u32);
                        match (action, on) {
                            (IRQ_SET_ACTION_MASK, true) => {
                                model_masked.insert(key);
                            }
                            (IRQ_SET_ACTION_UNMASK, true) => {
                                model_masked.remove(&key);
                            }
                            _ => {}
                        }
                    }
                }
                _ if action == IRQ_SET_ACTION_TRIGGER && count == 0 => {
                    // DATA_NONE | TRIGGER with count 0 disables the index (Linux ignores
                    // `start` then).
                    state.record(index, action, start, &IrqSetData::None { count: 0 }).unwrap();
                    model_fds.retain(|k| k.0 != index);
                    model_masked.retain(|k| k.0 != index);
                }
                _ => {
                    state.record(index, action, start, &IrqSetData::None { count }).unwrap();
                    for v in start..start + count {
                        match action {
                            IRQ_SET_ACTION_MASK => {
                                model_masked.insert((index, v));
                            }
                            IRQ_SET_ACTION_UNMASK => {
                                model_masked.remove(&(index, v));
                            }
                            _ => {}
                        }
                    }
                }
            }
            let got_fds: BTreeSet<(u32, u32, u32)> =
                state.fds.iter().flat_map(|(&(i, a), m)| m.keys().map(move |&v| (i, a, v))).collect();
            let got_masked: BTreeSet<(u32, u32)> =
                state.masked.iter().flat_map(|(&i, s)| s.iter().map(move |&v| (i, v))).collect();
            assert_eq!(got_fds, model_fds);
            assert_eq!(got_masked, model_masked);
        }
    }
}
