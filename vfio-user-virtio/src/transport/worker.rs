// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The queue workers: one thread per queue waits on the queue's kick eventfd (signalled by
//! the client's ioeventfd, or by the transport when a notification arrives as a
//! REGION_WRITE), pops descriptor chains with `virtio-queue`, has the device serve them,
//! fills the used ring and signals the queue's MSI-X eventfd directly.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustix::event::{poll, PollFd, PollFlags};
use virtio_queue::QueueT;

use super::Inner;
use crate::device::VirtioDevice;
use crate::memory::DmaView;

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
            process(&inner, q);
        }
    }
}

/// Serves every available request of queue `q`, then signals the driver if it wants it.
pub(crate) fn process<D: VirtioDevice>(inner: &Inner<D>, q: u16) {
    if !inner.running() {
        return;
    }
    let mut slot = inner.lock_queue(q);
    let Some(queue) = slot.as_mut() else { return };
    let space = inner.dma.space();
    let mut view = DmaView::new(space);
    let mut used = false;
    let event_idx = queue.event_idx_enabled();
    loop {
        if event_idx {
            let _ = queue.disable_notification(&view);
        }
        while inner.running() {
            let Some(chain) = queue.pop_descriptor_chain(&view) else { break };
            let head = chain.head_index();
            let len = inner.device.handle(q, &view, chain);
            // The request's bounced writes land before the used ring says it is done.
            if let Err(e) = view.flush() {
                log::warn!("virtio queue {q}: writing back to client memory: {e}");
            }
            match queue.add_used(&view, head, len) {
                Ok(()) => {}
                // A head index beyond the queue names no descriptor: nothing to return.
                Err(virtio_queue::Error::InvalidDescriptorIndex) => continue,
                Err(e) => {
                    log::warn!("virtio queue {q}: used ring: {e}");
                    inner.needs_reset();
                    return;
                }
            }
            if let Err(e) = view.flush() {
                log::warn!("virtio queue {q}: writing back to client memory: {e}");
            }
            used = true;
            inner.stats[usize::from(q)].fetch_add(1, Ordering::Relaxed);
        }
        if !event_idx || !inner.running() {
            break;
        }
        // Re-arm notifications, then look again: the driver may have added buffers
        // before it saw them armed.
        let more = queue.enable_notification(&view);
        if let Err(e) = view.flush() {
            log::warn!("virtio queue {q}: writing back to client memory: {e}");
        }
        if !matches!(more, Ok(true)) {
            break;
        }
    }
    if used && queue.needs_notification(&view).unwrap_or(true) {
        inner.interrupt(q);
    }
}
