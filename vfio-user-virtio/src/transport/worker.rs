// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The queue workers: one thread per queue waits on the queue's kick eventfd (signalled by
//! the client's ioeventfd, or by the transport when a notification arrives as a
//! REGION_WRITE), pops descriptor chains with `virtio-queue`, has the device serve them,
//! fills the used ring and signals the queue's MSI-X eventfd directly.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use super::Inner;
use crate::device::VirtioDevice;
use crate::moderation::{Moderation, ModerationCounts};
use crate::queue::{serve_queue_polling, Pacing};

/// How long a worker watches its available ring for more requests after a batch before it
/// re-arms notifications and sleeps: a driver that adds requests meanwhile (a completion
/// answered by a new submission) costs no notification, i.e. no REGION_WRITE through the
/// socket thread and no wake-up of this one. The worker yields the CPU between looks.
const POLL: Duration = Duration::from_micros(100);

/// With interrupt moderation: held completions are signalled when the driver has added
/// nothing for this long at least, or twice its mean gap between requests if longer
/// ([`Pacing::quiet`]).
const QUIET: Duration = Duration::from_micros(100);

/// Completions are signalled within a batch once this long has passed since the worker
/// began serving the first one not yet signalled ([`Pacing::signal_after`]).
const SIGNAL_AFTER: Duration = Duration::from_micros(100);

/// With interrupt moderation ([`VirtioDevice::interrupt_moderation`]), the longest a
/// completion is held back while the driver goes on adding requests ([`Pacing::moderate`]).
const HOLD: Duration = Duration::from_millis(2);

/// How often a busy worker logs what it did (at debug level).
const LOG_EVERY: Duration = Duration::from_secs(10);
/// A worker woken after this long without a kick logs what it did before (a busy spell);
/// it also logs when it stops.
const IDLE: Duration = Duration::from_secs(1);

/// What a worker did since it last logged.
struct Activity {
    since: Instant,
    last: Instant,
    wakeups: u64,
    completed: u64,
    signals: u64,
    counts: ModerationCounts,
}

impl Activity {
    fn new(counts: ModerationCounts, at: Instant) -> Self {
        Activity { since: at, last: at, wakeups: 0, completed: 0, signals: 0, counts }
    }

    /// Logs and starts again once `LOG_EVERY` has passed, or after `IDLE` without a
    /// wake-up (called before the new one is counted), or when `stopping`, if requests
    /// were served. Without debug logging it does nothing (no clock read on the worker's
    /// path).
    fn maybe_log(&mut self, q: u16, moderation: &Moderation, stopping: bool) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let now = Instant::now();
        let due = stopping || now.duration_since(self.since) >= LOG_EVERY || now.duration_since(self.last) >= IDLE;
        if !due {
            self.last = now;
            return;
        }
        let counts = moderation.counts();
        if self.completed > 0 {
            let (n, c) = (&counts, &self.counts);
            log::debug!(
                "virtio queue {q}: {} requests, {} wake-ups, {} interrupts in {:.1} s; moderation at depth {}: \
                 {} at depth (mean {:.2}), {} held, {} quiet, {} probes ({} failed)",
                self.completed,
                self.wakeups,
                self.signals,
                self.last.duration_since(self.since).as_secs_f64(),
                moderation.depth(),
                n.at_depth - c.at_depth,
                (n.depth_sum - c.depth_sum) as f64 / (n.at_depth - c.at_depth).max(1) as f64,
                n.held - c.held,
                n.quiet - c.quiet,
                n.probes - c.probes,
                n.failed_probes - c.failed_probes,
            );
        }
        *self = Activity::new(counts, now);
    }
}

/// Signals an eventfd (a full counter means a wake-up is pending anyway).
pub(crate) fn kick(fd: &OwnedFd) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Empties an eventfd's counter (it is non-blocking).
fn drain(fd: &OwnedFd) {
    let mut b = [0u8; 8];
    let _ = rustix::io::read(fd, &mut b);
}

/// The body of queue `q`'s thread: serve kicks until the transport stops.
pub(crate) fn run<D: VirtioDevice>(inner: Arc<Inner<D>>, q: u16) {
    let kick_fd = Arc::clone(&inner.kicks[usize::from(q)]);
    let mut moderation = Moderation::default();
    let mut activity = Activity::new(moderation.counts(), Instant::now());
    loop {
        let mut fds = [PollFd::new(&*kick_fd, PollFlags::IN), PollFd::new(&inner.stop, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                log::error!("virtio queue {q}: poll: {e}");
                return;
            }
        }
        if !fds[1].revents().is_empty() {
            activity.maybe_log(q, &moderation, true);
            return;
        }
        if !fds[0].revents().is_empty() {
            drain(&kick_fd);
            activity.maybe_log(q, &moderation, false);
            let (completed, signals) = process(&inner, q, &mut moderation);
            activity.wakeups += 1;
            activity.completed += completed;
            activity.signals += signals;
        }
    }
}

/// Serves every available request of queue `q`, signalling the driver after each batch if
/// it wants it; returns the requests completed and the interrupts sent.
pub(crate) fn process<D: VirtioDevice>(inner: &Inner<D>, q: u16, moderation: &mut Moderation) -> (u64, u64) {
    if !inner.running() {
        return (0, 0);
    }
    let mut slot = inner.lock_queue(q);
    let Some(queue) = slot.as_mut() else { return (0, 0) };
    let mut signals = 0;
    let out = serve_queue_polling(
        &inner.device,
        q,
        queue,
        inner.dma.space(),
        || inner.running(),
        Pacing {
            poll: POLL,
            signal_after: SIGNAL_AFTER,
            quiet: QUIET,
            moderate: inner.device.interrupt_moderation().then_some(HOLD),
        },
        moderation,
        || {
            signals += 1;
            inner.interrupt(q)
        },
    );
    inner.stats[usize::from(q)].fetch_add(out.completed, Ordering::Relaxed);
    if out.broken {
        inner.needs_reset();
    }
    (out.completed, signals)
}
