// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`serve_queue`]: serving the available requests of one virtqueue, on a [`DmaView`] of
//! the client's memory. The transport's queue workers call it on each kick; it is public
//! so that it can be driven on its own (the `virtio_blk` fuzz target does).

use vfio_user_dma::DmaSpace;
use virtio_queue::{Queue, QueueT};

use crate::device::VirtioDevice;
use crate::memory::DmaView;

/// What one [`serve_queue`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueOutcome {
    /// Requests put in the used ring.
    pub completed: u64,
    /// The driver asked to be notified of them (send the queue's interrupt).
    pub notify: bool,
    /// The used ring could not be written: the device needs a reset.
    pub broken: bool,
}

/// Serves every available request of `queue` (index `q` of `device`) until there are no
/// more or `keep_going` says stop (checked before each request): pops each chain with
/// `virtio-queue`, has the device serve it, writes bounced data back, then puts it in the
/// used ring. With `VIRTIO_RING_F_EVENT_IDX` notifications are re-armed and the ring
/// looked at again before returning.
pub fn serve_queue<D: VirtioDevice>(
    device: &D,
    q: u16,
    queue: &mut Queue,
    space: &DmaSpace,
    keep_going: impl Fn() -> bool,
) -> QueueOutcome {
    let mut out = QueueOutcome::default();
    let mut view = DmaView::new(space);
    let event_idx = queue.event_idx_enabled();
    let flush = |view: &mut DmaView<'_>| {
        if let Err(e) = view.flush() {
            log::warn!("virtio queue {q}: writing back to client memory: {e}");
        }
    };
    loop {
        if event_idx {
            let _ = queue.disable_notification(&view);
            flush(&mut view);
        }
        while keep_going() {
            let Some(chain) = queue.pop_descriptor_chain(&view) else { break };
            let head = chain.head_index();
            let len = device.handle(q, &view, chain);
            // The request's bounced writes land before the used ring says it is done.
            flush(&mut view);
            match queue.add_used(&view, head, len) {
                Ok(()) => out.completed += 1,
                // A head index beyond the queue names no descriptor: nothing to return.
                Err(virtio_queue::Error::InvalidDescriptorIndex) => {}
                Err(e) => {
                    log::warn!("virtio queue {q}: used ring: {e}");
                    out.broken = true;
                    return out;
                }
            }
            flush(&mut view);
        }
        if !event_idx || !keep_going() {
            break;
        }
        // Re-arm notifications, then look again: the driver may have added buffers
        // before it saw them armed.
        let more = queue.enable_notification(&view);
        flush(&mut view);
        if !matches!(more, Ok(true)) {
            break;
        }
    }
    if out.completed > 0 {
        out.notify = queue.needs_notification(&view).unwrap_or(true);
        flush(&mut view);
    }
    out
}
