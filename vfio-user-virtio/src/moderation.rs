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
//! held is the worker's [`Pacing`](crate::Pacing).
//!
//! "Quiet" is measured against the driver's own pace: it has added nothing for twice its
//! mean gap between requests, at least [`Pacing::quiet`](crate::Pacing::quiet) and at most
//! [`QUIET_MAX`]. A driver bound by its CPU adds requests as fast as that CPU lets it; a guest
//! under TCG takes some 200 µs per request, and a fixed 100 µs took its ordinary gaps for
//! waits, lowering the depth and signalling early, in one boot more than in another.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
    /// What it decided so far.
    counts: ModerationCounts,
    /// The mean time between the driver's requests (an average over the last few), in ns.
    gap_ns: u64,
    /// When the last request was taken.
    last_arrival: Option<Instant>,
}

/// The longest gap between requests that counts as such in the mean (longer: idle).
const GAP_MAX: Duration = Duration::from_millis(2);
/// The longest a driver that is adding requests may be silent before it is quiet.
pub const QUIET_MAX: Duration = Duration::from_millis(1);

/// What a [`Moderation`] decided, counted since it was made (a worker logs them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModerationCounts {
    /// Completions held back (below the depth).
    pub held: u64,
    /// Completions at the depth (to be signalled at once).
    pub at_depth: u64,
    /// The depths of those, summed (over `at_depth`: the mean depth signalled at).
    pub depth_sum: u64,
    /// Probes begun (the depth raised by one without the driver reaching it yet).
    pub probes: u64,
    /// Probes that ended quiet (the driver did not reach the probed depth).
    pub failed_probes: u64,
    /// Times the driver went quiet with completions held.
    pub quiet: u64,
}

impl Moderation {
    /// The depth learned so far.
    pub fn depth(&self) -> u16 {
        self.depth
    }

    /// What it decided so far.
    pub fn counts(&self) -> ModerationCounts {
        self.counts
    }

    /// A request was taken from the available ring `now`.
    pub fn arrived(&mut self, now: Instant) {
        if let Some(last) = self.last_arrival {
            let dt = u64::try_from(now.saturating_duration_since(last).min(GAP_MAX).as_nanos()).unwrap_or(u64::MAX);
            self.gap_ns = self.gap_ns - self.gap_ns / 8 + dt / 8;
        }
        self.last_arrival = Some(now);
    }

    /// How long the driver may add nothing before it is quiet: twice its mean gap between
    /// requests, at least `least`, at most [`QUIET_MAX`].
    pub fn quiet_after(&self, least: Duration) -> Duration {
        least.max(Duration::from_nanos(self.gap_ns.saturating_mul(2))).min(QUIET_MAX.max(least))
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
            self.counts.held += 1;
            return false;
        }
        self.counts.at_depth += 1;
        self.counts.depth_sum += u64::from(n);
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
            self.counts.probes += 1;
        }
        true
    }

    /// The driver added nothing for a while with completions held, `outstanding` of them
    /// (None: unknown): the depth goes down by one (not below that).
    pub fn quiet(&mut self, outstanding: Option<u16>) {
        let Some(n) = outstanding else { return };
        self.counts.quiet += 1;
        if self.probing {
            self.counts.failed_probes += 1;
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
    fn quiet_follows_the_drivers_pace() {
        let mut m = Moderation::default();
        let least = Duration::from_micros(100);
        assert_eq!(m.quiet_after(least), least, "no pace known yet");
        // A request every 300 µs: quiet after twice that.
        let t0 = Instant::now();
        for i in 0..100u32 {
            m.arrived(t0 + Duration::from_micros(300) * i);
        }
        let q = m.quiet_after(least);
        assert!(q > Duration::from_micros(590) && q <= Duration::from_micros(600), "{q:?}");
        // A fast driver: `least`.
        let t1 = t0 + Duration::from_millis(30);
        for i in 0..100u32 {
            m.arrived(t1 + Duration::from_micros(10) * i);
        }
        assert_eq!(m.quiet_after(least), least);
        // An idle gap counts as GAP_MAX, and quiet is never longer than QUIET_MAX...
        for i in 0..100u64 {
            m.arrived(t1 + Duration::from_secs(1 + i));
        }
        assert_eq!(m.quiet_after(least), QUIET_MAX);
        // ...unless `least` is.
        assert_eq!(m.quiet_after(Duration::from_millis(5)), Duration::from_millis(5));
        // Time that runs backwards (it cannot, with Instant) would count as no gap.
        m.arrived(t0);
        assert!(m.quiet_after(least) <= QUIET_MAX);
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
