// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The queue workers: one thread per queue waits on the queue's kick eventfd (signalled by
//! the client's ioeventfd, or by the transport when a notification arrives as a
//! REGION_WRITE), pops descriptor chains with `virtio-queue`, has the device serve them,
//! fills the used ring and signals the queue's MSI-X eventfd directly.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};

use super::Inner;
use crate::device::VirtioDevice;
use crate::moderation::Moderation;
use crate::queue::{serve_queue_polling, Pacing};

/// How long a worker watches its available ring for more requests after a batch before it
/// re-arms notifications and sleeps: a driver that adds requests meanwhile (a completion
/// answered by a new submission) costs no notification, i.e. no REGION_WRITE through the
/// socket thread and no wake-up of this one. The worker yields the CPU between looks.
const POLL: Duration = Duration::from_micros(100);

/// With interrupt moderation: held completions are signalled when the driver has added
/// nothing for this long ([`Pacing::quiet`]).
const QUIET: Duration = Duration::from_micros(100);

/// Completions are signalled within a batch once this long has passed since the worker
/// began serving the first one not yet signalled ([`Pacing::signal_after`]).
const SIGNAL_AFTER: Duration = Duration::from_micros(100);

/// With interrupt moderation ([`VirtioDevice::interrupt_moderation`]), the longest a
/// completion is held back while the driver goes on adding requests ([`Pacing::moderate`]).
const HOLD: Duration = Duration::from_millis(2);

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
            return;
        }
        if !fds[0].revents().is_empty() {
            drain(&kick_fd);
            process(&inner, q, &mut moderation);
        }
    }
}

/// Serves every available request of queue `q`, signalling the driver after each batch if
/// it wants it.
pub(crate) fn process<D: VirtioDevice>(inner: &Inner<D>, q: u16, moderation: &mut Moderation) {
    if !inner.running() {
        return;
    }
    let mut slot = inner.lock_queue(q);
    let Some(queue) = slot.as_mut() else { return };
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
        || inner.interrupt(q),
    );
    inner.stats[usize::from(q)].fetch_add(out.completed, Ordering::Relaxed);
    if out.broken {
        inner.needs_reset();
    }
}
