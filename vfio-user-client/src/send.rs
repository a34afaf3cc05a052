// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The send side of a connection: combining small messages from many threads into few
//! system calls, coalescing small posted writes into REGION_WRITE_MULTI, and noticing a
//! server that stopped reading.
//!
//! One thread at a time holds the send lock and writes to the socket. A thread that finds
//! it free sends its own message at once (after anything queued); a thread that finds it
//! taken queues a copy of its small, fd-less message and returns; the holder sends the queue
//! before it lets go, in as few system calls as the socket allows. Every path sends the
//! queue before its own message, and the queue is FIFO, so a message is never overtaken by
//! one submitted after it returned. Messages with fds, and large ones, wait for the lock.
//!
//! **Deferred sends.** When a reader has just woken callers with their replies, those
//! callers are about to send their next requests one after the other. Rather than one
//! system call each, a small request sent while some of them have not resumed yet is only
//! queued; the last of them to resume sends the whole queue ([`SendPath::woke`],
//! [`SendPath::resumed`]). Every caller counted by `woke` resumes (it has been woken and
//! takes its reply), so the queue is always sent; the background reader also sends it at
//! least every tick as a safety net.

use std::ops::Range;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vfio_user_proto::wire::WriteMultiEntry;
use vfio_user_proto::{FrameError, Header, SendGuard, Sender};
use vm_memory::ByteValued;

use crate::socket::{SendExt, VolatileBuf};
use crate::stats::{bump, Counters};
use crate::sync::lock;

/// Largest message (payload bytes) that is copied into the queue rather than waited for.
const COMBINE_MAX: usize = 4096;

/// Most entries in one REGION_WRITE_MULTI (QEMU sends at most 200).
pub(crate) const WRITE_MULTI_MAX: usize = 200;

/// Queued bytes sent at once even while sends are deferred.
const QUEUE_FLUSH_BYTES: usize = 64 * 1024;

/// A message waiting for the send lock's holder.
enum Queued {
    /// A whole message: its header (with its id) and where its payload is in
    /// [`Queue::bytes`].
    Msg(Header, Range<usize>),
    /// A posted write of at most 8 bytes, with the id allocated for it.
    Write(u16, WriteMultiEntry),
}

/// Messages waiting to be sent; their memory is kept from one batch to the next.
#[derive(Default)]
struct Queue {
    items: Vec<Queued>,
    /// Payloads of the [`Queued::Msg`] items.
    bytes: Vec<u8>,
}

/// The sending half of a connection. The send lock is the framing layer's
/// ([`Sender::lock`]): every send of the connection happens under it.
pub(crate) struct SendPath {
    sender: Sender,
    queue: Mutex<Queue>,
    /// The other half of the queue's double buffer, and the buffer a batch is framed into
    /// (used by the send lock's holder).
    spare: Mutex<(Queue, Vec<u8>)>,
    /// Whether `queue` may be non-empty.
    queued: AtomicBool,
    /// Callers woken with their reply that have not resumed yet (see the module doc);
    /// changed only under the `queue` lock, read without it to skip that lock when zero.
    woken: AtomicUsize,
    /// Sends started, and sends completed (in progress: the difference): the stall
    /// watchdog compares the latter between its looks (`watch`: count seen and since when,
    /// ms).
    started: AtomicU64,
    completed: AtomicU64,
    watch: Mutex<Option<(u64, u64)>>,
    /// Most entries the peer takes in one REGION_WRITE_MULTI.
    multi_fit: usize,
    stats: Arc<Counters>,
}

impl SendPath {
    /// `peer_max_xfer` bounds a REGION_WRITE_MULTI like a REGION_WRITE: 16 + the limit.
    pub(crate) fn new(sender: Sender, peer_max_xfer: u32, stats: Arc<Counters>) -> SendPath {
        SendPath {
            sender,
            queue: Mutex::new(Queue::default()),
            spare: Mutex::new((Queue::default(), Vec::new())),
            queued: AtomicBool::new(false),
            woken: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            watch: Mutex::new(None),
            multi_fit: WriteMultiEntry::max_per_message(peer_max_xfer).clamp(1, WRITE_MULTI_MAX),
            stats,
        }
    }

    /// Sends `msgs` in order, after anything queued. Small fd-less messages may be handed to
    /// another thread (the send lock's holder, or the last caller to resume, see the module
    /// doc): then this returns before they are on the wire, but nothing submitted later can
    /// overtake them.
    pub(crate) fn send(&self, msgs: &[(Header, &[&[u8]])], fds: &[BorrowedFd<'_>]) -> Result<(), FrameError> {
        let size: usize = msgs.iter().flat_map(|(_, p)| p.iter()).map(|p| p.len()).sum();
        let small = fds.is_empty() && size <= COMBINE_MAX;
        if small && self.enqueue(msgs, true) {
            return Ok(());
        }
        let guard = match self.sender.try_lock() {
            Some(g) => g,
            None if small => {
                self.enqueue(msgs, false);
                return self.recheck();
            }
            None => self.sender.lock(),
        };
        let sent = self.drain_locked(&guard).and_then(|()| match (msgs, fds) {
            ([(h, parts)], _) => self.track(|| guard.send(*h, parts, fds)),
            (_, []) => self.track(|| guard.send_batch(msgs)),
            _ => Err(FrameError::Io(std::io::ErrorKind::InvalidInput.into())),
        });
        drop(guard);
        sent.and_then(|()| self.recheck())
    }

    /// Sends one message now, waiting for the send lock (a reply to a server command: not
    /// ordered with the queue), then sends what was queued meanwhile.
    /// `data` is guest memory sent after `parts` without being copied.
    pub(crate) fn send_now(&self, h: Header, parts: &[&[u8]], data: &[VolatileBuf<'_>]) -> Result<(), FrameError> {
        let guard = self.sender.lock();
        let sent = self.track(|| match data {
            [] => guard.send(h, parts, &[]),
            _ => guard.send_volatile(h, parts, data),
        });
        drop(guard);
        sent.and_then(|()| self.recheck())
    }

    /// Queues `msgs`; with `only_if_deferring`, only while some woken caller has not
    /// resumed (and the queue is not large). Returns whether they were queued.
    fn enqueue(&self, msgs: &[(Header, &[&[u8]])], only_if_deferring: bool) -> bool {
        if only_if_deferring && self.woken.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let mut q = lock(&self.queue);
        if only_if_deferring && (self.woken.load(Ordering::SeqCst) == 0 || q.bytes.len() >= QUEUE_FLUSH_BYTES) {
            return false;
        }
        for (h, parts) in msgs {
            let start = q.bytes.len();
            for p in *parts {
                q.bytes.extend_from_slice(p);
            }
            let end = q.bytes.len();
            q.items.push(Queued::Msg(*h, start..end));
        }
        self.queued.store(true, Ordering::SeqCst);
        true
    }

    /// Queues a small posted write (id `id`) to be sent, coalesced with its neighbours, by
    /// the send lock's holder or the last caller to resume, or sends it now.
    pub(crate) fn post_small_write(&self, id: u16, entry: WriteMultiEntry) -> Result<(), FrameError> {
        if self.woken.load(Ordering::SeqCst) > 0 {
            let mut q = lock(&self.queue);
            if self.woken.load(Ordering::SeqCst) > 0 && q.bytes.len() < QUEUE_FLUSH_BYTES {
                q.items.push(Queued::Write(id, entry));
                self.queued.store(true, Ordering::SeqCst);
                return Ok(());
            }
        }
        let Some(guard) = self.sender.try_lock() else {
            lock(&self.queue).items.push(Queued::Write(id, entry));
            self.queued.store(true, Ordering::SeqCst);
            return self.recheck();
        };
        // The socket is free: send it now, as a plain REGION_WRITE, after anything queued.
        let sent = self.drain_locked(&guard).and_then(|()| {
            let (h, body) = encode_writes(id, &[entry]);
            self.track(|| guard.send(h, &[&body], &[]))
        });
        drop(guard);
        sent.and_then(|()| self.recheck())
    }

    /// A reader is about to wake `n` callers with their replies: their next small
    /// requests are deferred until the last of them has resumed.
    pub(crate) fn woke(&self, n: usize) {
        if n > 0 {
            let _q = lock(&self.queue);
            self.woken.fetch_add(n, Ordering::SeqCst);
        }
    }

    /// A caller counted by [`woke`](Self::woke) has resumed; the last one sends the queue.
    pub(crate) fn resumed(&self) -> Result<(), FrameError> {
        let flush = {
            let q = lock(&self.queue);
            let left = self.woken.load(Ordering::SeqCst).saturating_sub(1);
            self.woken.store(left, Ordering::SeqCst);
            left == 0 && !q.items.is_empty()
        };
        if flush {
            self.recheck()
        } else {
            Ok(())
        }
    }

    /// Sends the queue if nobody holds the send lock. Every holder calls this after letting
    /// go, so a message queued while it held the lock is never stranded; the background
    /// reader calls it periodically, so a deferred one is not either.
    pub(crate) fn recheck(&self) -> Result<(), FrameError> {
        while self.queued.load(Ordering::SeqCst) {
            let Some(guard) = self.sender.try_lock() else { return Ok(()) };
            let sent = self.drain_locked(&guard);
            drop(guard);
            sent?;
        }
        Ok(())
    }

    /// Sends everything queued (the send lock is held: `guard`), framed back to back into
    /// one buffer, with one `send` when the socket has room.
    fn drain_locked(&self, guard: &SendGuard<'_>) -> Result<(), FrameError> {
        if !self.queued.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut spare = lock(&self.spare);
        let (batch, out) = &mut *spare;
        while self.queued.swap(false, Ordering::SeqCst) {
            {
                let mut q = lock(&self.queue);
                std::mem::swap(&mut q.items, &mut batch.items);
                std::mem::swap(&mut q.bytes, &mut batch.bytes);
            }
            out.clear();
            let Queue { items, bytes } = batch;
            let mut items = items.drain(..).peekable();
            while let Some(item) = items.next() {
                match item {
                    Queued::Msg(h, range) => frame(out, h, &bytes[range]),
                    Queued::Write(id, first) => {
                        let mut run = vec![first];
                        while run.len() < self.multi_fit {
                            match items.next_if(|i| matches!(i, Queued::Write(..))) {
                                Some(Queued::Write(_, e)) => run.push(e),
                                _ => break,
                            }
                        }
                        if run.len() > 1 {
                            bump(&self.stats.write_multi_messages);
                            self.stats.write_multi_entries.fetch_add(run.len() as u64, Ordering::Relaxed);
                        }
                        let (h, body) = encode_writes(id, &run);
                        frame(out, h, &body);
                    }
                }
            }
            drop(items);
            bytes.clear();
            let sent = self.track(|| guard.send_framed(out));
            if out.capacity() > 4 * QUEUE_FLUSH_BYTES {
                *out = Vec::new();
            }
            sent?;
        }
        Ok(())
    }

    /// Runs a send, counting it for [`SendPath::stalled`].
    /// Only called with the send lock held, so the counters have a single writer.
    fn track<T>(&self, send: impl FnOnce() -> T) -> T {
        let n = self.completed.load(Ordering::Relaxed) + 1;
        self.started.store(n, Ordering::SeqCst);
        let sent = send();
        self.completed.store(n, Ordering::SeqCst);
        sent
    }

    /// Whether sends have been in progress without one completing for longer than
    /// `timeout` (the server stopped reading). Called periodically by one thread.
    pub(crate) fn stalled(&self, timeout: Duration) -> bool {
        let now = crate::sync::now_ms();
        // `completed` first: a send counted in it was counted in `started` before.
        let completed = self.completed.load(Ordering::SeqCst);
        let in_flight = self.started.load(Ordering::SeqCst) != completed;
        let mut w = lock(&self.watch);
        match *w {
            Some((seen, since)) if seen == completed && in_flight => {
                now.saturating_sub(since) > timeout.as_millis() as u64
            }
            _ => {
                *w = Some((completed, now));
                false
            }
        }
    }

    /// Shuts the socket down in both directions.
    pub(crate) fn shutdown(&self) {
        let _ = self.sender.shutdown();
    }

    /// Number of queued messages (tests).
    #[cfg(test)]
    pub(crate) fn queued_len(&self) -> usize {
        lock(&self.queue).items.len()
    }

    /// Holds the send lock (tests).
    #[cfg(test)]
    pub(crate) fn hold(&self) -> SendGuard<'_> {
        self.sender.lock()
    }

    /// What a holder does after letting go (tests that held the lock by hand).
    #[cfg(test)]
    pub(crate) fn after_hold(&self) -> Result<(), FrameError> {
        self.recheck()
    }
}

/// Appends one message without fds, header first (its `msg_size` set), to `out`.
fn frame(out: &mut Vec<u8>, h: Header, payload: &[u8]) {
    let h = h.with_payload_len(payload.len());
    out.extend_from_slice(h.as_slice());
    out.extend_from_slice(payload);
}

/// One posted REGION_WRITE, or a REGION_WRITE_MULTI of several, with NO_REPLY.
fn encode_writes(id: u16, run: &[WriteMultiEntry]) -> (Header, Vec<u8>) {
    let mut body = Vec::new();
    let cmd = WriteMultiEntry::append_writes(run, &mut body);
    (Header::command(id, cmd, body.len()).with_no_reply(), body)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use vfio_user_proto::wire::WRITE_MULTI_DATA_MAX;
    use vfio_user_proto::{decode_request, Command, Connection, DecodeLimits, Request};

    use super::*;

    fn write(i: u8) -> WriteMultiEntry {
        WriteMultiEntry { offset: u64::from(i), region: 0, count: 1, data: [i; WRITE_MULTI_DATA_MAX] }
    }

    #[test]
    fn queued_messages_keep_their_order_and_only_neighbouring_writes_coalesce() {
        let (a, b) = UnixStream::pair().unwrap();
        let (sender, _) = Connection::new(a).split();
        let s = SendPath::new(sender, 1 << 20, Default::default());
        let mut peer = Connection::new(b);
        let guard = s.hold();
        s.post_small_write(1, write(1)).unwrap();
        s.post_small_write(2, write(2)).unwrap();
        s.send(&[(Header::command(3, Command::DeviceReset, 0), &[])], &[]).unwrap();
        s.post_small_write(4, write(4)).unwrap();
        assert_eq!(s.queued_len(), 4, "all queued behind the held lock");
        drop(guard);
        // A message with an fd waits for the lock and sends the queue first.
        let (e, _keep) = UnixStream::pair().unwrap();
        s.send(&[(Header::command(5, Command::DmaMap, 0), &[&[0u8; 32]])], &[e.as_fd()]).unwrap();
        let limits = DecodeLimits::default();
        let mut got = Vec::new();
        for _ in 0..4 {
            let m = peer.recv().unwrap();
            let r = decode_request(&m.header, &m.payload, m.fds.len(), &limits);
            got.push(match r {
                Ok(Request::RegionWriteMulti(e)) => {
                    format!("multi{:?}", e.iter().map(|e| e.offset).collect::<Vec<_>>())
                }
                Ok(Request::RegionWrite(a, _)) => format!("write{}", a.offset),
                _ => format!("{}:{}", m.header.command, m.fds.len()),
            });
        }
        assert_eq!(got, ["multi[1, 2]", "13:0", "write4", "2:1"]);
    }
}
