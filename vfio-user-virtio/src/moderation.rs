// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`Moderation`]: when a queue worker holds completions back instead of signalling each
//! one, so that a driver busy adding requests takes several in one interrupt.
//!
//! Every interrupt costs the driver's CPU (entry, the handler, waking the task that waits),
//! and a guest driving a fast device at some depth is bound by exactly that CPU. A driver
//! that negotiated `VIRTIO_RING_F_EVENT_IDX` writes in `used_event` how far it has consumed
//! the used ring, so the device can tell how many requests it has outstanding: added to the
//! available ring, their completions not consumed yet. A driver that has as many outstanding
//! as it ever keeps waits for one to complete and must be signalled now; below that it is
//! still adding requests, and a completion held back for a while is consumed with the next
//! ones, in one interrupt.
//!
//! The depth is learned: raised to what the driver is seen to have outstanding, lowered by
//! one when the driver goes quiet with completions held (it was waiting below the learned
//! depth; the worker signals then). A driver that consumes every completion as soon as it is
//! signalled never goes past the depth it is signalled at, so after [`PROBE_AFTER`] signals
//! at one depth of at least 2 the next is held for one more request (a probe); a probe that
//! ends quiet doubles the wait before the next one, up to [`PROBE_MAX`] signals. A driver
//! with one request at a time is signalled at once, always. How long a completion may be
//! held, and how long "quiet" is, are the worker's [`Pacing`](crate::Pacing).

use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// Signals at one depth before the first probe for a deeper driver.
pub const PROBE_AFTER: u16 = 8;
/// The most signals at one depth between probes (after probes that failed).
pub const PROBE_MAX: u16 = 64;

/// What a queue worker has learned of its driver (see [the module](crate::moderation)). One per
/// queue, kept across batches; a default one learns from scratch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moderation {
    /// The most requests the driver is believed to keep outstanding.
    depth: u16,
    /// Signals at `depth` since it last changed.
    hits: u16,
    /// Signals at one depth before the next probe (0 until a probe failed: `PROBE_AFTER`).
    probe_every: u16,
    /// `depth` was raised by a probe that the driver has not reached yet.
    probing: bool,
}

impl Moderation {
    /// The depth learned so far.
    pub fn depth(&self) -> u16 {
        self.depth
    }

    /// A completion was just put in the used ring: whether to signal it now, given the
    /// `outstanding` requests of the driver (None: unknown, signal).
    pub fn completed(&mut self, outstanding: Option<u16>) -> bool {
        let Some(n) = outstanding else { return true };
        if n > self.depth {
            self.depth = n;
            self.hits = 0;
        }
        if n < self.depth {
            return false;
        }
        if self.probing {
            // The driver went as deep as the probe: probe again soon.
            self.probing = false;
            self.probe_every = PROBE_AFTER;
        }
        self.hits = self.hits.saturating_add(1);
        if self.depth >= 2 && self.hits >= self.probe_every.max(PROBE_AFTER) {
            self.hits = 0;
            self.depth = self.depth.saturating_add(1);
            self.probing = true;
        }
        true
    }

    /// The driver added nothing for a while with completions held, `outstanding` of them
    /// (None: unknown): the depth goes down by one (not below that).
    pub fn quiet(&mut self, outstanding: Option<u16>) {
        let Some(n) = outstanding else { return };
        if self.probing {
            self.probing = false;
            self.probe_every = self.probe_every.max(PROBE_AFTER).saturating_mul(2).min(PROBE_MAX);
        }
        self.depth = n.max(self.depth.saturating_sub(1));
        self.hits = 0;
    }
}

/// The address of the available ring's `used_event` (virtio 1.x, 2.7.6: flags, idx,
/// `ring[size]`, used_event), if it has one.
pub fn used_event_addr(queue: &Queue) -> Option<GuestAddress> {
    let offset = 4 + 2 * u64::from(queue.size());
    queue.avail_ring().checked_add(offset).map(GuestAddress)
}

/// The requests the driver of `queue` has outstanding (taken from the available ring by the
/// device, their completions not consumed by the driver), from its `used_event`; `None` when
/// that says nothing: unreadable, or further than the queue size (Linux writes 0 there while
/// its callbacks are off).
pub fn outstanding<M: GuestMemory>(queue: &Queue, mem: &M) -> Option<u16> {
    let used_event = mem.load::<u16>(used_event_addr(queue)?, Ordering::Acquire).ok()?;
    let n = queue.next_avail().wrapping_sub(u16::from_le(used_event));
    (n <= queue.size()).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_at_a_time_is_always_signalled_at_once() {
        let mut m = Moderation::default();
        for _ in 0..1000 {
            assert!(m.completed(Some(1)));
        }
        assert_eq!(m.depth(), 1, "no probe at depth 1");
    }

    #[test]
    fn below_the_depth_completions_are_held() {
        let mut m = Moderation::default();
        assert!(m.completed(Some(4)), "a new depth is signalled");
        assert!(!m.completed(Some(1)));
        assert!(!m.completed(Some(3)));
        assert!(m.completed(Some(4)));
        assert!(m.completed(Some(6)), "deeper: the depth follows");
        assert_eq!(m.depth(), 6);
        assert!(m.completed(None), "unknown: signalled");
    }

    #[test]
    fn quiet_lowers_the_depth_by_one_but_not_below_what_is_outstanding() {
        let mut m = Moderation::default();
        m.completed(Some(8));
        m.quiet(Some(2));
        assert_eq!(m.depth(), 7);
        m.quiet(Some(7));
        assert_eq!(m.depth(), 7);
        m.quiet(None);
        assert_eq!(m.depth(), 7);
        for _ in 0..10 {
            m.quiet(Some(1));
        }
        assert_eq!(m.depth(), 1);
    }

    #[test]
    fn probes_back_off_when_they_fail_and_recover_when_they_succeed() {
        let mut m = Moderation::default();
        // Signals at depth 2 until a probe raises it to 3.
        let mut signals = 0;
        while m.depth() == 2 || signals == 0 {
            assert!(m.completed(Some(2)) || m.depth() == 3);
            signals += 1;
        }
        assert_eq!((signals, m.depth()), (usize::from(PROBE_AFTER), 3));
        // The driver does not go deeper: quiet; the next probe waits twice as long.
        assert!(!m.completed(Some(2)));
        m.quiet(Some(2));
        assert_eq!(m.depth(), 2);
        let mut n = 0;
        while m.depth() == 2 {
            assert!(m.completed(Some(2)));
            n += 1;
        }
        assert_eq!(n, 2 * PROBE_AFTER);
        // Fails every time: the wait stops growing at PROBE_MAX.
        for _ in 0..10 {
            m.quiet(Some(2));
            let mut n = 0;
            while m.depth() == 2 {
                m.completed(Some(2));
                n += 1;
            }
            assert!(n <= PROBE_MAX, "{n}");
        }
        // This probe succeeds (the driver reaches 3): back to probing every PROBE_AFTER.
        assert!(m.completed(Some(3)));
        let mut n = 1;
        while m.depth() == 3 {
            m.completed(Some(3));
            n += 1;
        }
        assert_eq!(n, PROBE_AFTER);
    }
}
