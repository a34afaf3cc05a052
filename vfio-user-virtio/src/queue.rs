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
    let event_idx = queue.event_idx_enabled();
    let flush = |view: &mut DmaView<'_>| {
        if let Err(e) = view.flush() {
            log::warn!("virtio queue {q}: writing back to client memory: {e}");
        }
    };
    // A fresh view for each request and ring update: a DMA_UNMAP, which waits for the views
    // of the memory it removes, never waits for more than one request.
    loop {
        if event_idx {
            let mut view = DmaView::new(space);
            let _ = queue.disable_notification(&view);
            flush(&mut view);
        }
        let mut popped = false;
        while keep_going() {
            let mut view = DmaView::new(space);
            let Some(chain) = queue.pop_descriptor_chain(&view) else { break };
            popped = true;
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
        // Without EVENT_IDX there is nothing to re-arm. A pass that popped nothing while
        // the available index says there is more met a broken ring (e.g. an index that
        // ran ahead by more than the queue size): wait for the next kick.
        if !event_idx || !popped || !keep_going() {
            break;
        }
        // Re-arm notifications, then look again: the driver may have added buffers
        // before it saw them armed.
        let mut view = DmaView::new(space);
        let more = queue.enable_notification(&view);
        flush(&mut view);
        if !matches!(more, Ok(true)) {
            break;
        }
    }
    if out.completed > 0 {
        let mut view = DmaView::new(space);
        out.notify = queue.needs_notification(&view).unwrap_or(true);
        flush(&mut view);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use vfio_user_dma::{MapRequest, Prot};
    use virtio_queue::{DescriptorChain, QueueState};
    use vm_memory::GuestMemory;

    /// Counts requests and returns each with length 0.
    #[derive(Default)]
    struct Counter(AtomicU32);

    impl VirtioDevice for Counter {
        fn device_type(&self) -> u16 {
            0xff
        }
        fn num_queues(&self) -> u16 {
            1
        }
        fn features(&self) -> u64 {
            0
        }
        fn config_size(&self) -> usize {
            0
        }
        fn read_config(&self, _: usize, _: &mut [u8]) {}
        fn handle<M: GuestMemory>(&self, _: u16, _: &M, _: DescriptorChain<&M>) -> u32 {
            self.0.fetch_add(1, Ordering::Relaxed);
            0
        }
    }

    fn setup(event_idx: bool) -> (DmaSpace, Queue) {
        let space = DmaSpace::default();
        let fd = rustix::fs::memfd_create("q", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 0x10000).unwrap();
        space
            .map(MapRequest { iova: 0, size: 0x10000, prot: Prot::READ_WRITE, fd: Some(fd), ..Default::default() })
            .unwrap();
        let st = QueueState {
            max_size: 16,
            size: 16,
            ready: true,
            desc_table: 0,
            avail_ring: 0x1000,
            used_ring: 0x2000,
            event_idx_enabled: event_idx,
            ..Default::default()
        };
        (space, Queue::try_from(st).unwrap())
    }

    #[test]
    fn serves_what_is_available_and_stops_when_told() {
        for event_idx in [false, true] {
            let (space, mut queue) = setup(event_idx);
            let dev = Counter::default();
            // Three chains of one descriptor each: heads 0, 1, 2.
            for i in 0..3u64 {
                space.write_obj(0x1004 + 2 * i, &(i as u16)).unwrap();
            }
            space.write_obj(0x1002, &3u16).unwrap();
            let out = serve_queue(&dev, 0, &mut queue, &space, || true);
            assert_eq!((out.completed, out.broken), (3, false));
            assert!(out.notify);
            assert_eq!(space.read_obj::<u16>(0x2002).unwrap(), 3, "used index");
            assert_eq!(space.read_obj::<u32>(0x2004 + 8 * 2).unwrap(), 2, "third used element names head 2");
            // One more, but told to stop: nothing is taken.
            space.write_obj(0x1002, &4u16).unwrap();
            let out = serve_queue(&dev, 0, &mut queue, &space, || false);
            assert_eq!(out.completed, 0);
            assert_eq!(dev.0.load(Ordering::Relaxed), 3);
        }
    }

    #[test]
    fn a_broken_available_index_is_left_alone_even_with_event_idx() {
        // The available index runs ahead by more than the queue size: virtio-queue refuses
        // to pop, and serving must return (it once re-armed and looked again forever).
        for event_idx in [false, true] {
            let (space, mut queue) = setup(event_idx);
            space.write_obj(0x1002, &500u16).unwrap();
            let dev = Counter::default();
            let out = serve_queue(&dev, 0, &mut queue, &space, || true);
            assert_eq!(out, QueueOutcome::default());
        }
    }

    #[test]
    fn an_unwritable_used_ring_breaks_the_queue() {
        let (space, _) = setup(false);
        let st = QueueState {
            max_size: 16,
            size: 16,
            ready: true,
            avail_ring: 0x1000,
            used_ring: 0x10_0000,
            ..Default::default()
        };
        let mut queue = Queue::try_from(st).unwrap();
        space.write_obj(0x1002, &1u16).unwrap();
        let out = serve_queue(&Counter::default(), 0, &mut queue, &space, || true);
        assert!(out.broken);
    }
}
