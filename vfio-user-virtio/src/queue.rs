// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`serve_queue`]: serving the available requests of one virtqueue, on a [`DmaView`] of
//! the client's memory. The transport's queue workers call it on each kick; it is public
//! so that it can be driven on its own (the `virtio_blk` fuzz target does).

use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::{Duration, Instant};

use vfio_user_dma::DmaSpace;
use virtio_queue::{Queue, QueueT};

use crate::device::VirtioDevice;
use crate::memory::DmaView;
use crate::moderation::{self, Moderation};

/// How [`serve_queue_polling`] paces its notifications and its polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// How long to watch the available index for more requests after a batch, before
    /// re-arming notifications (zero: not at all).
    pub poll: Duration,
    /// Completions are signalled (when the driver asks to be notified) once this long has
    /// passed since the device began serving the first of them, without waiting for the
    /// end of the batch: a batch of cheap requests costs one or two interrupts, while a
    /// driver waiting on long requests (1 MiB copies) learns of each one as it is done and
    /// can submit more while the device serves the rest, instead of the two taking turns.
    /// `Duration::MAX`: once per batch.
    pub signal_after: Duration,
    /// With `moderate`: held completions are signalled when the driver has added nothing
    /// for this long, or for twice its mean gap between requests if that is longer (up to
    /// [`QUIET_MAX`](crate::moderation::QUIET_MAX)): [`Moderation::quiet_after`].
    pub quiet: Duration,
    /// Interrupt moderation ([`Moderation`]), for a driver that negotiated
    /// `VIRTIO_RING_F_EVENT_IDX` and whose available ring is in a zero-copy mapping:
    /// `Some(hold)` holds a completion back, while the driver is below its learned depth and
    /// goes on adding requests, for up to `hold` since serving it began; held completions
    /// are signalled when the driver reaches its depth or goes quiet (see `quiet`), or with a
    /// request that took `signal_after` or more to serve. `None`: off.
    pub moderate: Option<Duration>,
}

/// What one [`serve_queue`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueOutcome {
    /// Requests put in the used ring.
    pub completed: u64,
    /// The driver asked to be notified of them (send the queue's interrupt).
    pub notify: bool,
    /// The used ring could not be written: the device needs a reset.
    pub broken: bool,
    /// Serving stopped because a DMA wait was cancelled (a reset or migration STOP, see
    /// [`DmaView::cancelled`]): the request being served was taken back (the queue's
    /// indexes rewound to before it, not put in the used ring), to be served again when
    /// the queue runs next.
    pub cancelled: bool,
}

/// Serves every available request of `queue` (index `q` of `device`) until there are no
/// more or `keep_going` says stop (checked before each request): pops each chain with
/// `virtio-queue`, has the device serve it, writes bounced data back, then puts it in the
/// used ring. Notifications are suppressed while it serves (`VIRTQ_USED_F_NO_NOTIFY`, or
/// with `VIRTIO_RING_F_EVENT_IDX` an `avail_event` left behind), re-armed and the ring
/// looked at again before returning. `notify` in the outcome says the driver asked to be
/// notified of what was completed.
pub fn serve_queue<D: VirtioDevice>(
    device: &D,
    q: u16,
    queue: &mut Queue,
    space: &DmaSpace,
    keep_going: impl Fn() -> bool,
) -> QueueOutcome {
    let mut notify = false;
    let pacing = Pacing { poll: Duration::ZERO, signal_after: Duration::MAX, quiet: Duration::ZERO, moderate: None };
    let mut moderation = Moderation::default();
    let mut out = serve_queue_polling(device, q, queue, space, keep_going, pacing, &mut moderation, || notify = true);
    out.notify = notify;
    out
}

/// [`serve_queue`], for a queue worker: it calls `signal` if the driver asked to be notified
/// at the end of each batch of requests, and within a batch once `pacing.signal_after` has
/// passed since it began serving the first completion not yet signalled; then, before
/// re-arming notifications, it watches the available index for up to `pacing.poll` for
/// more requests (only when the available ring is in a zero-copy mapping:
/// watching a bounced ring would cost messages), so that a driver which adds requests
/// again soon need not notify the device. With `pacing.moderate`, completions are held
/// back as [`Moderation`] (the worker's, kept across calls) says, and signalled at the
/// latest when the driver goes quiet (adds nothing for [`Moderation::quiet_after`]), before this returns. The outcome's
/// `notify` says `signal` was called.
#[allow(clippy::too_many_arguments)]
pub fn serve_queue_polling<D: VirtioDevice>(
    device: &D,
    q: u16,
    queue: &mut Queue,
    space: &DmaSpace,
    keep_going: impl Fn() -> bool,
    pacing: Pacing,
    moderation: &mut Moderation,
    mut signal: impl FnMut(),
) -> QueueOutcome {
    let mut out = QueueOutcome::default();
    let flush = |view: &mut DmaView<'_>| {
        if let Err(e) = view.flush() {
            log::warn!("virtio queue {q}: writing back to client memory: {e}");
        }
    };
    // Moderation reads `used_event` after each completion: only where that is a memory load.
    let moderated = pacing.moderate.filter(|_| {
        queue.event_idx_enabled()
            && moderation::used_event_addr(queue).is_some_and(|a| DmaView::new(space).is_direct(a.0, 2))
    });
    let moderate = moderated.is_some();
    // How long a completion may wait for its signal.
    let hold = moderated.unwrap_or(pacing.signal_after);
    // Completions not yet signalled, and when serving the first of them began.
    let mut unsignalled = 0u64;
    let mut since = Instant::now();
    // A fresh view for each request and ring update: a DMA_UNMAP, which waits for the views
    // of the memory it removes, never waits for more than one request.
    loop {
        {
            let mut view = DmaView::new(space);
            let _ = queue.disable_notification(&view);
            flush(&mut view);
        }
        let mut popped = false;
        let mut completed = 0u64;
        let mut cancelled = false;
        while keep_going() {
            let started = Instant::now();
            if unsignalled == 0 {
                since = started;
            }
            let mut view = DmaView::new(space);
            let (avail, used) = (queue.next_avail(), queue.next_used());
            let Some(chain) = queue.pop_descriptor_chain(&view) else { break };
            popped = true;
            let head = chain.head_index();
            if moderate {
                moderation.arrived(started);
            }
            let len = device.handle(q, &view, chain);
            // The request's bounced writes land before the used ring says it is done.
            flush(&mut view);
            // A reset or STOP cut a DMA wait short: the request may be half served (checked
            // before the used ring, which may be mmapped, says anything), or its used
            // element half written (a used ring reached by message). Take it back whole;
            // it is served again (its effects repeated) if the queue runs again.
            let added = if view.cancelled() { None } else { Some(queue.add_used(&view, head, len)) };
            if matches!(added, Some(Ok(()))) {
                flush(&mut view);
            }
            let Some(added) = added.filter(|_| !view.cancelled()) else {
                queue.set_next_avail(avail);
                queue.set_next_used(used);
                cancelled = true;
                break;
            };
            match added {
                Ok(()) => {
                    completed += 1;
                    unsignalled += 1;
                    // A request that took `signal_after` to serve is signalled at once, held
                    // back or not: its interrupt costs little beside it, and its driver may
                    // be waiting for it.
                    let long = started.elapsed() >= pacing.signal_after;
                    let at_depth = moderate && (long || moderation.completed(moderation::outstanding(queue, &view)));
                    if at_depth || since.elapsed() >= hold {
                        unsignalled = 0;
                        notify_if_asked(queue, space, &mut out, &mut signal);
                    }
                }
                // A head index beyond the queue names no descriptor: nothing to return.
                Err(virtio_queue::Error::InvalidDescriptorIndex) => {}
                Err(e) => {
                    log::warn!("virtio queue {q}: used ring: {e}");
                    out.completed += completed;
                    out.broken = true;
                    return out;
                }
            }
        }
        out.completed += completed;
        // Moderated completions wait for the driver to go quiet (below) or for the next ones.
        if unsignalled > 0 && (!moderate || cancelled || !keep_going()) {
            unsignalled = 0;
            notify_if_asked(queue, space, &mut out, &mut signal);
        }
        if cancelled {
            // Not re-armed: whoever cancelled stops or resets the queue, and kicks it if it
            // runs again.
            out.cancelled = true;
            return out;
        }
        // A pass that popped nothing while the available index says there is more met a
        // broken ring (e.g. an index that ran ahead by more than the queue size): re-arm
        // and wait for the next kick.
        let go_on = popped && keep_going();
        if go_on {
            let mut watched = Duration::ZERO;
            if unsignalled > 0 {
                // Held completions: signalled when they are due, or when the driver goes
                // quiet, by its own pace (it waits for them below its learned depth: one lower).
                let rest = hold.saturating_sub(since.elapsed());
                watched = moderation.quiet_after(pacing.quiet).min(rest);
                if watch_avail(queue, space, watched, &keep_going) {
                    continue;
                }
                if rest > watched {
                    moderation.quiet(moderation::outstanding(queue, &DmaView::new(space)));
                }
                unsignalled = 0;
                notify_if_asked(queue, space, &mut out, &mut signal);
            }
            if watch_avail(queue, space, pacing.poll.saturating_sub(watched), &keep_going) {
                continue;
            }
        }
        if unsignalled > 0 {
            unsignalled = 0;
            notify_if_asked(queue, space, &mut out, &mut signal);
        }
        // Re-arm notifications, then look again: the driver may have added buffers
        // before it saw them armed.
        let mut view = DmaView::new(space);
        let more = queue.enable_notification(&view);
        flush(&mut view);
        if !go_on || !matches!(more, Ok(true)) {
            break;
        }
    }
    out
}

/// Calls `signal` if the driver asks to be notified of the used buffers added since the
/// last time this was asked.
fn notify_if_asked(queue: &mut Queue, space: &DmaSpace, out: &mut QueueOutcome, signal: &mut impl FnMut()) {
    let mut view = DmaView::new(space);
    if queue.needs_notification(&view).unwrap_or(true) {
        out.notify = true;
        signal();
    }
    if let Err(e) = view.flush() {
        log::warn!("virtio queue: writing back to client memory: {e}");
    }
}

/// Whether the available index moves past what `queue` has taken within `poll` (false at
/// once for a zero `poll`, a ring that is not in a zero-copy mapping, or an unreadable one).
fn watch_avail(queue: &Queue, space: &DmaSpace, poll: Duration, keep_going: &impl Fn() -> bool) -> bool {
    if poll.is_zero() {
        return false;
    }
    let Some(idx_addr) = queue.avail_ring().checked_add(2) else { return false };
    let start = Instant::now();
    loop {
        let view = DmaView::new(space);
        if !view.is_direct(idx_addr, 2) {
            return false;
        }
        match queue.avail_idx(&view, AtomicOrdering::Acquire) {
            Ok(idx) if idx.0 != queue.next_avail() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        drop(view);
        if start.elapsed() >= poll || !keep_going() {
            return false;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use vfio_user_dma::{DmaProt, MapRequest};
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

    /// Serves `queue` on a [`Counter`] with `pacing` (queue index 0).
    fn serve_counting(
        queue: &mut Queue,
        space: &DmaSpace,
        keep_going: impl Fn() -> bool,
        pacing: Pacing,
        moderation: &mut Moderation,
        signal: impl FnMut(),
    ) -> QueueOutcome {
        serve_queue_polling(&Counter::default(), 0, queue, space, keep_going, pacing, moderation, signal)
    }

    fn setup(event_idx: bool) -> (DmaSpace, Queue) {
        setup_with(event_idx, false)
    }

    /// `sealed`: the memory is a sealed memfd, mmapped (zero-copy, like QEMU's guest RAM);
    /// otherwise it is reached with pread/pwrite.
    fn setup_with(event_idx: bool, sealed: bool) -> (DmaSpace, Queue) {
        use rustix::fs::{MemfdFlags, SealFlags};
        let space = DmaSpace::default();
        let fd = rustix::fs::memfd_create("q", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&fd, 0x10000).unwrap();
        if sealed {
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK).unwrap();
        }
        space
            .map(MapRequest { iova: 0, size: 0x10000, prot: DmaProt::READ_WRITE, fd: Some(fd), ..Default::default() })
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
    fn notifications_are_re_armed_and_each_batch_signalled_once() {
        for event_idx in [false, true] {
            let (space, mut queue) = setup(event_idx);
            for i in 0..2u64 {
                space.write_obj(0x1004 + 2 * i, &(i as u16)).unwrap();
            }
            space.write_obj(0x1002, &2u16).unwrap();
            let mut signals = 0;
            let pacing = Pacing {
                poll: Duration::from_micros(10),
                signal_after: Duration::MAX,
                quiet: Duration::ZERO,
                moderate: None,
            };
            let out = serve_counting(&mut queue, &space, || true, pacing, &mut Moderation::default(), || signals += 1);
            assert_eq!((out.completed, out.notify, signals), (2, true, 1));
            // The driver may notify again: no NO_NOTIFY flag left, avail_event at index 2.
            assert_eq!(space.read_obj::<u16>(0x2000).unwrap(), 0, "used flags");
            if event_idx {
                assert_eq!(space.read_obj::<u16>(0x2004 + 8 * 16).unwrap(), 2, "avail_event");
            }
        }
    }

    /// Serves one available chain (head 0) with moderation, the driver having consumed
    /// nothing (`used_event` 0), while a driver adds a second chain (head 1) during the
    /// worker's first watch; returns the used index at each signal.
    fn moderated(moderation: &mut Moderation, signal_after: Duration) -> Vec<u16> {
        let (space, mut queue) = setup_with(true, true);
        space.write_obj(0x1004, &0u16).unwrap();
        space.write_obj(0x1004 + 2, &1u16).unwrap();
        space.write_obj(0x1002, &1u16).unwrap();
        let calls = std::cell::Cell::new(0);
        // keep_going is asked before each request (twice for the first batch: one request,
        // then none), once after the batch, then before and during the watch: the second
        // request arrives on the third call, after the first batch, before the watch.
        let keep_going = || {
            calls.set(calls.get() + 1);
            if calls.get() == 3 {
                space.write_obj(0x1002, &2u16).unwrap();
            }
            true
        };
        let mut seen = Vec::new();
        let pacing = Pacing {
            poll: Duration::from_millis(20),
            signal_after,
            quiet: Duration::from_millis(20),
            moderate: Some(Duration::from_secs(60)),
        };
        let out = serve_counting(&mut queue, &space, keep_going, pacing, moderation, || {
            seen.push(space.read_obj::<u16>(0x2002).unwrap())
        });
        assert_eq!(out.completed, 2);
        seen
    }

    #[test]
    fn moderated_completions_are_signalled_at_the_depth_when_quiet_or_when_long() {
        // (depth the driver is known to keep, signal_after, the used index at each signal,
        // the depth after, what happens)
        let cases = [
            (4, Duration::MAX, 2, 3, "below its depth: the first completion held while the driver adds the second, both signalled when it goes quiet, which lowers the depth by one"),
            (1, Duration::MAX, 1, 2, "at its depth: signalled before the second request came, then the driver went deeper"),
            (4, Duration::ZERO, 1, 4, "a long request (every one, with signal_after zero): signalled at once though below the depth; nothing held, so no quiet"),
        ];
        for (depth, signal_after, seen, after, what) in cases {
            let mut m = Moderation::default();
            assert!(m.completed(Some(depth)));
            assert_eq!(moderated(&mut m, signal_after), [seen], "{what}");
            assert_eq!(m.depth(), after, "{what}");
        }
    }

    #[test]
    fn one_request_is_signalled_at_once_where_there_is_no_moderation() {
        // One request, the driver known to keep 4 outstanding: the batch is signalled at its
        // end and the moderation is not consulted (held, the completion would have lowered
        // its depth when the driver went quiet).
        let off = Pacing { poll: Duration::ZERO, signal_after: Duration::MAX, quiet: Duration::ZERO, moderate: None };
        let on = Pacing {
            poll: Duration::from_millis(1),
            signal_after: Duration::MAX,
            quiet: Duration::from_millis(1),
            moderate: Some(Duration::from_secs(60)),
        };
        // Moderation off; moderation on but the rings reached with pread (an unsealed memfd;
        // by message it would be the same), where reading used_event after every completion
        // would cost a read each.
        for (sealed, pacing) in [(true, off), (false, on)] {
            let (space, mut queue) = setup_with(true, sealed);
            space.write_obj(0x1004, &0u16).unwrap();
            space.write_obj(0x1002, &1u16).unwrap();
            let mut m = Moderation::default();
            m.completed(Some(4));
            let mut seen = Vec::new();
            let signal = || seen.push(space.read_obj::<u16>(0x2002).unwrap());
            let out = serve_counting(&mut queue, &space, || true, pacing, &mut m, signal);
            assert_eq!((out.completed, seen, m.depth()), (1, vec![1], 4), "sealed {sealed}");
        }
    }

    #[test]
    fn long_requests_are_signalled_one_by_one() {
        // Without EVENT_IDX the driver asks for every completion: with `signal_after` zero,
        // each request is signalled as soon as it is in the used ring.
        let (space, mut queue) = setup(false);
        for i in 0..3u64 {
            space.write_obj(0x1004 + 2 * i, &(i as u16)).unwrap();
        }
        space.write_obj(0x1002, &3u16).unwrap();
        let mut seen = Vec::new();
        let pacing =
            Pacing { poll: Duration::ZERO, signal_after: Duration::ZERO, quiet: Duration::ZERO, moderate: None };
        let out = serve_counting(
            &mut queue,
            &space,
            || true,
            pacing,
            &mut Moderation::default(),
            || seen.push(space.read_obj::<u16>(0x2002).unwrap()),
        );
        assert_eq!(out.completed, 3);
        assert_eq!(seen, [1, 2, 3], "one signal per request, after its used element");
    }

    /// Reads the first byte of each chain's first buffer.
    #[derive(Default)]
    struct Reader;

    impl VirtioDevice for Reader {
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
        fn handle<M: GuestMemory>(&self, _: u16, mem: &M, mut chain: DescriptorChain<&M>) -> u32 {
            let d = chain.next().unwrap();
            let _ = vm_memory::Bytes::read_obj::<u8>(mem, d.addr());
            0
        }
    }

    /// Client memory by message whose waits are cancelled until `ok` is set.
    struct Cancelling(std::sync::atomic::AtomicBool);

    impl vfio_user_dma::DmaTransport for Cancelling {
        fn max_data_xfer_size(&self) -> usize {
            4096
        }
        fn dma_read(&self, _: u64, buf: &mut [u8]) -> vfio_user_dma::Result<()> {
            if !self.0.load(Ordering::SeqCst) {
                return Err(vfio_user_dma::Error::from_errno(libc::ECANCELED));
            }
            buf.fill(7);
            Ok(())
        }
        fn dma_write(&self, _: u64, _: &[u8]) -> vfio_user_dma::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_cancelled_request_is_taken_back_and_served_again() {
        let (space, mut queue) = setup(false);
        let t = std::sync::Arc::new(Cancelling(false.into()));
        space.set_transport(Some(t.clone()));
        space.map(MapRequest { iova: 0x10000, size: 0x1000, prot: DmaProt::READ_WRITE, ..Default::default() }).unwrap();
        // Descriptor 0: one byte in the message mapping; head 0 available.
        space.write_obj(0, &0x10000u64).unwrap();
        space.write_obj(8, &1u32).unwrap();
        space.write_obj(0x1004, &0u16).unwrap();
        space.write_obj(0x1002, &1u16).unwrap();
        let out = serve_queue(&Reader, 0, &mut queue, &space, || true);
        assert!(out.cancelled && out.completed == 0 && !out.notify, "{out:?}");
        assert_eq!((queue.next_avail(), queue.next_used()), (0, 0), "indexes rewound");
        assert_eq!(space.read_obj::<u16>(0x2002).unwrap(), 0, "nothing in the used ring");
        t.0.store(true, Ordering::SeqCst);
        let out = serve_queue(&Reader, 0, &mut queue, &space, || true);
        assert_eq!((out.completed, out.cancelled), (1, false));
        assert_eq!(space.read_obj::<u16>(0x2002).unwrap(), 1, "served again");
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
