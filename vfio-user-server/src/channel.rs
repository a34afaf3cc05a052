// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One client connection's message routing: client commands in arrival order, replies to
//! the server's own DMA_READ / DMA_WRITE requests routed by msg_id to the waiting caller,
//! and the synchronous twin-socket path.
//!
//! The data of a DMA_READ reply is received straight into the caller's buffer, never
//! copied in user space: on the twin socket and on the request-handling thread the caller
//! receives it itself; on the main socket, the request-handling thread reads the header,
//! then hands the socket to the waiting device thread, which receives the rest, and waits
//! until it is done.
//!
//! Waiting for replies to our own requests is done differently from the client's
//! (`vfio-user-client`'s `pending.rs` / `wake.rs`, a futex board a reader wakes a batch of
//! callers on with one system call), on purpose: here one thread owns the socket and handles
//! the client's commands, device threads have a few DMA requests in flight, never a batch
//! per wake-up, and a DMA reply must be routed past client commands arriving meanwhile
//! (queued for the owning thread) or handed the socket to receive its data in place. That
//! interleaving with command handling is what the mutexes and condition variables below
//! express; the futex board would add nothing for so few waiters. DESIGN.md has the longer
//! comparison.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, ThreadId};
use std::time::Instant;

use vfio_user_proto::command::Command;
use vfio_user_proto::connection::{Connection, Message, Receiver, Sender};
use vfio_user_proto::reply::{decode_reply, Reply};
use vfio_user_proto::request::DecodeLimits;
use vfio_user_proto::wire::DmaAccess;
use vfio_user_proto::{FrameError, Header};
use vm_memory::ByteValued;

use crate::core::Timeouts;
use crate::dma::WaitCanceller;
use crate::error::{Error, Result};

/// Most DMA requests abandoned by [`WaitCanceller::begin_cancel`] whose replies have not come; a
/// client that leaves more unanswered is dropped (each abandoned request keeps its msg_id).
const MAX_ABANDONED: usize = 256;

/// Queued replies are sent once they reach this many bytes.
const BATCH_LIMIT: usize = 64 * 1024;

/// Most client commands set aside while the request-handling thread waits for the reply to
/// its own DMA request; a client that sends more without answering is dropped. (QEMU
/// coalesces posted writes beyond 1024 queued messages, so it stays well below.)
pub(crate) const MAX_QUEUED_COMMANDS: usize = 4096;

/// What only the request-handling thread touches: the socket's receiving half and the
/// client commands it set aside while waiting for a reply of its own.
#[derive(Debug)]
struct Inbox {
    receiver: Receiver,
    queued: VecDeque<Message>,
    /// The msg_id of a DMA_READ reply whose header is next on the socket, left for the
    /// device thread that asked for it to receive into its buffer; the request-handling
    /// thread waits (on `inbox_cv`) until that thread clears it.
    handoff: Option<u16>,
    /// The deadline for the next command: the end of the handshake until VERSION is
    /// negotiated, then none (a client may be idle between messages).
    idle_deadline: Option<Instant>,
}

/// A DMA request sent on the main socket whose reply has not been collected.
#[derive(Debug)]
struct Outstanding {
    id: u16,
    /// For a DMA_READ whose caller receives the data into its buffer: the `msg_size` of a
    /// successful reply.
    direct: Option<u32>,
    state: ReplyState,
}

#[derive(Debug)]
enum ReplyState {
    Waiting,
    /// Received as a message (a command-handling step that does not block, an error reply,
    /// or a reply of a size other than expected).
    Arrived(Message),
    /// Its header is next on the socket, the rest is for the caller to receive.
    HandedOff,
    /// Its caller gave up ([`WaitCanceller::begin_cancel`]): the reply is dropped when it comes.
    Abandoned,
}

/// What DMA callers and the request-handling thread share.
#[derive(Debug, Default)]
struct Routing {
    /// DMA requests sent on the main socket and not yet collected.
    outstanding: Vec<Outstanding>,
    closed: bool,
    /// Live [`WaitCanceller::begin_cancel`] calls: while non-zero, device threads' requests on
    /// the main socket fail with `ECANCELED` instead of waiting for their reply.
    cancelling: usize,
}

/// A reply to a DMA request.
enum Answer {
    /// The whole message.
    Msg(Message),
    /// A DMA_READ reply whose data went straight into the caller's buffer: its prefix.
    Direct(DmaAccess),
}

/// The routing state of one connection. The receiving half has its own lock, held by the
/// request-handling thread even while it blocks in `recvmsg`; DMA callers on other threads
/// only take the routing lock, so they never wait for the socket.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) sender: Sender,
    inbox: Mutex<Inbox>,
    routing: Mutex<Routing>,
    cond: Condvar,
    /// Signalled when a device thread has taken a handed-off reply ([`Inbox::handoff`]).
    inbox_cv: Condvar,
    /// The twin socket, and a duplicate of its fd to shut it down without the lock.
    twin: OnceLock<(Mutex<Connection>, UnixStream)>,
    next_id: AtomicU16,
    peer_max_xfer: AtomicU32,
    local_max_xfer: u32,
    dispatcher: Mutex<Option<ThreadId>>,
    /// Replies (whole messages without fds) waiting to go out in one `send`.
    batch: Mutex<Vec<u8>>,
    /// Whether `batch` may be non-empty (read without its lock).
    batched: AtomicBool,
    /// Whether more client commands were already received when the last one was taken:
    /// its reply is batched only then.
    more: AtomicBool,
    /// How long to wait for the client.
    timeouts: Timeouts,
}

impl Channel {
    pub(crate) fn new(conn: Connection, local_max_xfer: u32, timeouts: Timeouts) -> Self {
        let (sender, mut receiver) = conn.split();
        receiver.set_max_msg_size(max_msg_size(local_max_xfer));
        // A stalled client must not hold the device: VERSION must come within the handshake
        // timeout (cleared once negotiated), a message that has begun must keep arriving,
        // and our replies must be read. Idle time between messages is not bounded.
        receiver.set_stall_timeout(Some(timeouts.stall));
        let handshake = Instant::now().checked_add(timeouts.handshake);
        receiver.set_idle_deadline(handshake);
        if let Err(e) = sender.set_send_timeout(Some(timeouts.send)) {
            log::warn!("could not set the send timeout: {e}");
        }
        // Lost descriptors (full table) and oversized messages get an error reply; the
        // stream stays in sync and the connection is kept.
        receiver.set_deliver_damaged(true);
        Channel {
            sender,
            inbox: Mutex::new(Inbox { receiver, queued: VecDeque::new(), handoff: None, idle_deadline: handshake }),
            routing: Mutex::new(Routing::default()),
            cond: Condvar::new(),
            inbox_cv: Condvar::new(),
            twin: OnceLock::new(),
            next_id: AtomicU16::new(0),
            peer_max_xfer: AtomicU32::new(vfio_user_proto::version::DEFAULT_MAX_DATA_XFER_SIZE),
            local_max_xfer,
            dispatcher: Mutex::new(None),
            batch: Mutex::new(Vec::new()),
            batched: AtomicBool::new(false),
            more: AtomicBool::new(false),
            timeouts,
        }
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routing(&self) -> MutexGuard<'_, Routing> {
        self.routing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the negotiated parameters.
    pub(crate) fn negotiated(&self, peer_max_xfer: u32, twin: Option<UnixStream>) -> Result<()> {
        self.peer_max_xfer.store(peer_max_xfer, Ordering::Relaxed);
        // The handshake is done: the client may now stay idle between messages.
        let mut inbox = self.inbox();
        inbox.idle_deadline = None;
        inbox.receiver.set_idle_deadline(None);
        drop(inbox);
        if let Some(t) = twin {
            let dup = t.try_clone()?;
            let mut conn = Connection::new(t);
            conn.receiver.set_max_msg_size(self.max_msg_size());
            conn.receiver.set_stall_timeout(Some(self.timeouts.stall));
            conn.sender.set_send_timeout(Some(self.timeouts.send))?;
            let _ = self.twin.set((Mutex::new(conn), dup));
        }
        Ok(())
    }

    /// Marks the calling thread as the one handling requests.
    pub(crate) fn set_dispatcher(&self) {
        let mut d = self.dispatcher.lock().unwrap_or_else(|e| e.into_inner());
        let me = thread::current().id();
        if *d != Some(me) {
            *d = Some(me);
        }
    }

    fn on_dispatcher(&self) -> bool {
        *self.dispatcher.lock().unwrap_or_else(|e| e.into_inner()) == Some(thread::current().id())
    }

    /// Queues a reply without fds (a whole message). Queued replies go out before the
    /// request-handling thread waits for the client ([`Self::flush`]), so the replies to
    /// pipelined commands leave in one `send`; large ones, and the reply to a command with
    /// none received behind it (lock-step), go at once.
    pub(crate) fn queue(&self, msg: &[u8]) -> std::result::Result<(), FrameError> {
        // Only the request-handling thread queues and flushes, so with nothing batched the
        // batch is empty: a reply that goes at once (lock-step) takes no batch lock.
        let direct = msg.len() >= BATCH_LIMIT || !self.more.load(Ordering::Relaxed);
        if direct && !self.batched.load(Ordering::Relaxed) {
            return self.sender.send_framed(msg);
        }
        let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        if b.is_empty() && direct {
            return self.sender.send_framed(msg);
        }
        b.extend_from_slice(msg);
        self.batched.store(true, Ordering::Relaxed);
        if b.len() >= BATCH_LIMIT {
            self.batched.store(false, Ordering::Relaxed);
            self.sender.send_framed(&b)?;
            b.clear();
        }
        Ok(())
    }

    /// Sends the queued replies.
    pub(crate) fn flush(&self) -> std::result::Result<(), FrameError> {
        // Only the request-handling thread queues and flushes: no lock when nothing is queued.
        if !self.batched.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        self.batched.store(false, Ordering::Relaxed);
        if b.is_empty() {
            return Ok(());
        }
        let r = self.sender.send_framed(&b);
        b.clear();
        if b.capacity() > 4 * BATCH_LIMIT {
            b.shrink_to(BATCH_LIMIT);
        }
        r
    }

    /// Sorts one received message: a command is returned, a reply is routed to its waiter.
    /// A reply nobody waits for breaks the connection.
    fn sort(&self, m: Message) -> std::result::Result<Option<Message>, FrameError> {
        if m.header.is_command() {
            return Ok(Some(m));
        }
        let mut r = self.routing();
        let id = m.header.msg_id;
        let dma = matches!(m.header.cmd(), Ok(Command::DmaRead | Command::DmaWrite));
        let slot = r
            .outstanding
            .iter()
            .position(|o| o.id == id && matches!(o.state, ReplyState::Waiting | ReplyState::Abandoned));
        match slot {
            Some(i) if m.header.is_reply() && dma => {
                if matches!(r.outstanding[i].state, ReplyState::Abandoned) {
                    // Its caller was cancelled: the late reply answers nothing.
                    r.outstanding.swap_remove(i);
                    return Ok(None);
                }
                r.outstanding[i].state = ReplyState::Arrived(m);
            }
            _ => return Err(FrameError::UnexpectedType { flags: m.header.flags, command: m.header.command }),
        }
        drop(r);
        self.cond.notify_all();
        Ok(None)
    }

    /// If `h` is the successful reply to an outstanding DMA_READ whose caller receives the
    /// data itself, and of the size expected, marks it handed off and returns its id.
    fn claim_direct(&self, h: &Header) -> Option<u16> {
        if !h.is_reply() || h.is_error() || h.command != Command::DmaRead as u16 {
            return None;
        }
        let mut r = self.routing();
        let o = r.outstanding.iter_mut().find(|o| o.id == h.msg_id)?;
        if o.direct != Some(h.msg_size) || !matches!(o.state, ReplyState::Waiting) {
            return None;
        }
        o.state = ReplyState::HandedOff;
        Some(o.id)
    }

    /// Lets the device thread waiting for reply `id`, whose header is next on the socket,
    /// receive it, and waits until it has. Fails if the connection broke meanwhile.
    fn hand_off<'a>(
        &'a self,
        mut inbox: MutexGuard<'a, Inbox>,
        id: u16,
    ) -> std::result::Result<MutexGuard<'a, Inbox>, FrameError> {
        inbox.handoff = Some(id);
        self.cond.notify_all();
        while inbox.handoff == Some(id) {
            inbox = self.inbox_cv.wait(inbox).unwrap_or_else(|e| e.into_inner());
        }
        if self.routing().closed {
            return Err(FrameError::Closed);
        }
        Ok(inbox)
    }

    /// Receives the DMA_READ reply whose header is next on `receiver` (its size checked)
    /// into `buf`. A framing error breaks the connection; descriptors make it malformed.
    fn recv_direct(&self, receiver: &mut Receiver, buf: &mut [u8]) -> Result<DmaAccess> {
        let mut a = DmaAccess::default();
        match receiver.recv_into(a.as_mut_slice(), buf) {
            Ok((_, fds)) if fds.is_empty() => Ok(a),
            Ok(_) => Err(Error::InvalidArgument("malformed DMA_READ reply")),
            Err(e) => Err(self.broken(e).into()),
        }
    }

    /// Handles a receive error: the connection is dead.
    fn broken(&self, e: FrameError) -> FrameError {
        self.routing().closed = true;
        self.cond.notify_all();
        e
    }

    /// The next client command, without blocking (`Ok(None)`: nothing complete yet).
    /// Replies to outstanding DMA requests met on the way are routed. A framing error, or a
    /// reply nobody waits for, breaks the connection.
    ///
    /// With `read` false only messages already received are returned: no system call is
    /// made (the caller polls the socket instead of finding it empty with a failed read).
    pub(crate) fn next_command(&self, read: bool) -> std::result::Result<Option<Message>, FrameError> {
        let mut inbox = self.inbox();
        let c = self.next_command_in(&mut inbox, read);
        self.more.store(!inbox.queued.is_empty() || inbox.receiver.has_buffered_message(), Ordering::Relaxed);
        c
    }

    fn next_command_in(&self, inbox: &mut Inbox, read: bool) -> std::result::Result<Option<Message>, FrameError> {
        if let Some(m) = inbox.queued.pop_front() {
            return Ok(Some(m));
        }
        inbox.receiver.set_idle_deadline(inbox.idle_deadline);
        if inbox.idle_deadline.is_some_and(|d| Instant::now() >= d) {
            // An event loop calls this only when the socket is readable; a client that
            // never completes VERSION is dropped at its next wake-up past the deadline.
            return Err(self.broken(FrameError::Io(std::io::Error::from_raw_os_error(libc::ETIMEDOUT))));
        }
        if !read && !inbox.receiver.has_buffered_message() {
            return Ok(None);
        }
        loop {
            match inbox.receiver.try_recv() {
                Ok(m) => {
                    if let Some(c) = self.sort(m).map_err(|e| self.broken(e))? {
                        return Ok(Some(c));
                    }
                }
                Err(FrameError::WouldBlock) => return Ok(None),
                Err(e) => return Err(self.broken(e)),
            }
        }
    }

    /// The next client command, blocking until one arrives (or the connection breaks).
    /// Queued replies are sent before it blocks.
    pub(crate) fn next_command_blocking(&self) -> std::result::Result<Message, FrameError> {
        let mut inbox = self.inbox();
        if let Some(m) = inbox.queued.pop_front() {
            self.more.store(true, Ordering::Relaxed);
            return Ok(m);
        }
        let deadline = inbox.idle_deadline;
        inbox.receiver.set_idle_deadline(deadline);
        loop {
            if !inbox.receiver.has_buffered_message() {
                // About to wait for the client: it may be waiting for these.
                self.flush().map_err(|e| self.broken(e))?;
            }
            let h = inbox.receiver.peek_header().map_err(|e| self.broken(e))?;
            if let Some(id) = self.claim_direct(&h) {
                inbox = self.hand_off(inbox, id)?;
                continue;
            }
            let m = inbox.receiver.recv().map_err(|e| self.broken(e))?;
            if let Some(c) = self.sort(m).map_err(|e| self.broken(e))? {
                self.more.store(inbox.receiver.has_buffered_message(), Ordering::Relaxed);
                return Ok(c);
            }
        }
    }

    /// Marks the connection dead and wakes every waiter, including a thread blocked
    /// receiving on it.
    pub(crate) fn close(&self) {
        let _ = self.sender.shutdown();
        if let Some(t) = self.twin.get() {
            let _ = t.1.shutdown(std::net::Shutdown::Both);
        }
        self.routing().closed = true;
        self.cond.notify_all();
    }

    fn max_msg_size(&self) -> usize {
        max_msg_size(self.local_max_xfer)
    }

    /// The largest transfer per DMA message: the smaller of the client's limit and ours
    /// (the reply to a DMA_READ must fit our receive limit).
    pub(crate) fn max_data_xfer_size(&self) -> usize {
        self.peer_max_xfer.load(Ordering::Relaxed).min(self.local_max_xfer).max(1) as usize
    }

    fn alloc_id(&self) -> u16 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends one server → client command and returns its (successful) reply. With `dest`,
    /// a DMA_READ's data may be received straight into it ([`Answer::Direct`]).
    fn transact(&self, cmd: Command, parts: &[&[u8]], dest: Option<&mut [u8]>) -> Result<Answer> {
        // The msg_size of a successful DMA_READ reply carrying all of `dest`.
        let direct = dest.as_ref().and_then(|d| vfio_user_proto::header::msg_size(DmaAccess::payload_len(d.len())));
        if let Some((twin, _)) = self.twin.get() {
            let mut t = twin.lock().unwrap_or_else(|e| e.into_inner());
            let id = self.alloc_id();
            // The client must answer within the DMA reply timeout; a failure on the twin
            // socket (a timeout included) leaves it out of sync: the connection goes.
            let res = t.send(Header::command(id, cmd, 0), parts, &[]).and_then(|()| {
                t.receiver.set_idle_deadline(Instant::now().checked_add(self.timeouts.dma_reply));
                let h = t.receiver.peek_header();
                t.receiver.set_idle_deadline(None);
                h
            });
            let h = match res {
                Ok(h) => h,
                Err(e) => {
                    drop(t);
                    self.close();
                    return Err(e.into());
                }
            };
            if let (Some(d), Some(size)) = (dest, direct) {
                if h.is_reply() && !h.is_error() && h.msg_id == id && h.command == cmd as u16 && h.msg_size == size {
                    return self.recv_direct(&mut t.receiver, d).map(Answer::Direct);
                }
            }
            let m = match t.recv() {
                Ok(m) => m,
                Err(e) => {
                    drop(t);
                    self.close();
                    return Err(e.into());
                }
            };
            if !m.header.is_reply() || m.header.msg_id != id || m.header.command != cmd as u16 {
                drop(t);
                self.close();
                return Err(Error::InvalidArgument("unexpected message on the twin socket"));
            }
            return check_error(m).map(Answer::Msg);
        }
        let on_dispatcher = self.on_dispatcher();
        if on_dispatcher {
            // Replies to earlier commands go first: the client may wait for them.
            self.flush()?;
        }
        let mut r = self.routing();
        if r.closed {
            return Err(Error::NotConnected);
        }
        if r.cancelling > 0 && !on_dispatcher {
            return Err(cancelled());
        }
        let mut id = self.alloc_id();
        while r.outstanding.iter().any(|o| o.id == id) {
            id = self.alloc_id();
        }
        r.outstanding.push(Outstanding { id, direct, state: ReplyState::Waiting });
        drop(r);
        if let Err(e) = self.sender.send(Header::command(id, cmd, 0), parts, &[]) {
            self.forget(id);
            return Err(e.into());
        }
        if on_dispatcher {
            self.wait_on_dispatcher(id, dest)
        } else {
            self.wait_elsewhere(id, dest)
        }
    }

    /// The request-handling thread waits for its own reply: it receives here, and sets
    /// client commands aside for later, in order.
    fn wait_on_dispatcher(&self, id: u16, dest: Option<&mut [u8]>) -> Result<Answer> {
        let mut inbox = self.inbox();
        // The client must answer within the DMA reply timeout (its commands meanwhile do not
        // extend it); past it the receive fails and the connection goes. The command paths
        // put the usual deadline back (`Inbox::idle_deadline`).
        inbox.receiver.set_idle_deadline(Instant::now().checked_add(self.timeouts.dma_reply));
        loop {
            if let Some(m) = self.take_arrived(id) {
                return check_error(m).map(Answer::Msg);
            }
            let h = match inbox.receiver.peek_header() {
                Ok(h) => h,
                Err(e) => return Err(self.broken(e).into()),
            };
            if let Some(cid) = self.claim_direct(&h) {
                if cid == id {
                    self.forget(id);
                    let d = dest.ok_or(Error::InvalidArgument("DMA_READ reply without a buffer"))?;
                    return self.recv_direct(&mut inbox.receiver, d).map(Answer::Direct);
                }
                inbox = self.hand_off(inbox, cid)?;
                continue;
            }
            let m = match inbox.receiver.recv() {
                Ok(m) => m,
                Err(e) => return Err(self.broken(e).into()),
            };
            if m.header.is_command() {
                // The client may pipeline while we wait, but not without bound.
                if inbox.queued.len() >= MAX_QUEUED_COMMANDS {
                    drop(inbox);
                    self.close();
                    return Err(Error::InvalidArgument("too many commands queued behind a DMA request"));
                }
                inbox.queued.push_back(m);
            } else if let Err(e) = self.sort(m) {
                drop(inbox);
                self.close();
                return Err(e.into());
            }
        }
    }

    /// A device thread waits for its reply, routed to it by the request-handling thread,
    /// or handed to it to receive into `dest`.
    fn wait_elsewhere(&self, id: u16, dest: Option<&mut [u8]>) -> Result<Answer> {
        let deadline = Instant::now().checked_add(self.timeouts.dma_reply);
        let mut r = self.routing();
        loop {
            let Some(pos) = r.outstanding.iter().position(|o| o.id == id) else {
                return Err(Error::NotConnected);
            };
            match r.outstanding[pos].state {
                ReplyState::Waiting if r.closed => {
                    r.outstanding.swap_remove(pos);
                    return Err(Error::NotConnected);
                }
                ReplyState::Waiting if r.cancelling > 0 => {
                    r.outstanding[pos].state = ReplyState::Abandoned;
                    let abandoned = r.outstanding.iter().filter(|o| matches!(o.state, ReplyState::Abandoned)).count();
                    drop(r);
                    if abandoned > MAX_ABANDONED {
                        log::warn!("{abandoned} DMA requests left without a reply");
                        self.close();
                    }
                    return Err(cancelled());
                }
                ReplyState::Waiting => {
                    let left = deadline.and_then(|d| d.checked_duration_since(Instant::now()));
                    match left {
                        Some(left) if !left.is_zero() => {
                            r = self.cond.wait_timeout(r, left).unwrap_or_else(|e| e.into_inner()).0;
                        }
                        None if deadline.is_none() => r = self.cond.wait(r).unwrap_or_else(|e| e.into_inner()),
                        _ => {
                            // The client did not answer in time: a late reply would answer
                            // nothing, so the connection goes now.
                            r.outstanding.swap_remove(pos);
                            drop(r);
                            log::warn!("no reply to a DMA request within {:?}", self.timeouts.dma_reply);
                            self.close();
                            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::ETIMEDOUT)));
                        }
                    }
                }
                ReplyState::Arrived(_) => {
                    return match r.outstanding.swap_remove(pos).state {
                        ReplyState::Arrived(m) => check_error(m).map(Answer::Msg),
                        _ => Err(Error::NotConnected),
                    };
                }
                ReplyState::Abandoned => return Err(cancelled()),
                ReplyState::HandedOff => {
                    r.outstanding.swap_remove(pos);
                    drop(r);
                    // The request-handling thread waits, the inbox released, until we are done.
                    let mut inbox = self.inbox();
                    let res = match (inbox.handoff == Some(id), dest) {
                        (true, Some(d)) => self.recv_direct(&mut inbox.receiver, d).map(Answer::Direct),
                        _ => Err(self.broken(FrameError::Closed).into()),
                    };
                    inbox.handoff = None;
                    drop(inbox);
                    self.inbox_cv.notify_all();
                    return res;
                }
            }
        }
    }

    fn take_arrived(&self, id: u16) -> Option<Message> {
        let mut r = self.routing();
        let pos = r.outstanding.iter().position(|o| o.id == id && matches!(o.state, ReplyState::Arrived(_)))?;
        match r.outstanding.swap_remove(pos).state {
            ReplyState::Arrived(m) => Some(m),
            _ => None,
        }
    }

    fn forget(&self, id: u16) {
        self.routing().outstanding.retain(|o| o.id != id);
    }

    /// DMA_READ, split at [`Self::max_data_xfer_size`]; the data is received straight into
    /// `buf` when the reply has the expected size.
    pub(crate) fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        let chunk = self.max_data_xfer_size();
        let mut addr = iova;
        for part in buf.chunks_mut(chunk) {
            let req = DmaAccess { addr, count: part.len() as u64 };
            let len = part.len();
            match self.transact(Command::DmaRead, &[req.as_slice()], Some(&mut *part))? {
                Answer::Direct(a) if a == req => {}
                Answer::Msg(m) => match decode_reply(&m.header, &m.payload, m.fds.len()) {
                    Ok(Reply::DmaRead(a, data)) if a.addr == addr && data.len() == len => part.copy_from_slice(data),
                    _ => return Err(Error::InvalidArgument("malformed DMA_READ reply")),
                },
                Answer::Direct(_) => return Err(Error::InvalidArgument("malformed DMA_READ reply")),
            }
            addr += len as u64;
        }
        Ok(())
    }

    /// DMA_WRITE, split at [`Self::max_data_xfer_size`].
    pub(crate) fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()> {
        let chunk = self.max_data_xfer_size();
        let mut addr = iova;
        for part in data.chunks(chunk) {
            let req = DmaAccess { addr, count: part.len() as u64 };
            let Answer::Msg(m) = self.transact(Command::DmaWrite, &[req.as_slice(), part], None)? else {
                return Err(Error::InvalidArgument("malformed DMA_WRITE reply"));
            };
            match decode_reply(&m.header, &m.payload, m.fds.len()) {
                Ok(Reply::DmaWrite(None)) => {}
                Ok(Reply::DmaWrite(Some(a))) if a.addr == addr && a.count == part.len() as u64 => {}
                _ => return Err(Error::InvalidArgument("malformed DMA_WRITE reply")),
            }
            addr += part.len() as u64;
        }
        Ok(())
    }
}

/// The largest message a client obeying our `max_data_xfer_size` sends (a REGION_WRITE), or
/// that answers our DMA_READs.
fn max_msg_size(local_max_xfer: u32) -> usize {
    DecodeLimits { max_data_xfer_size: local_max_xfer, max_msg_fds: 0 }.max_msg_size()
}

fn cancelled() -> Error {
    Error::Io(std::io::Error::from_raw_os_error(libc::ECANCELED))
}

fn check_error(m: Message) -> Result<Message> {
    if m.header.is_error() {
        Err(Error::Remote(m.header.errno()))
    } else {
        Ok(m)
    }
}

/// Until `end_cancel`, DMA requests of threads other than the request-handling one fail
/// with `ECANCELED` instead of waiting for the client's reply on the main socket (those
/// waiting now are woken; their replies are dropped when they come), so that the
/// request-handling thread may wait for those threads (a reset waiting for its queue
/// workers) without waiting for replies only it would receive. Calls nest. The twin socket
/// needs none of this: its callers receive their replies themselves.
impl WaitCanceller for Channel {
    fn begin_cancel(&self) {
        self.routing().cancelling += 1;
        self.cond.notify_all();
    }

    fn end_cancel(&self) {
        let mut r = self.routing();
        r.cancelling = r.cancelling.saturating_sub(1);
    }
}

/// The current connection's channel, shared with [`crate::ShutdownHandle`]s.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChannelSlot(Arc<Mutex<Option<Arc<Channel>>>>);

impl ChannelSlot {
    pub(crate) fn get(&self) -> Result<Arc<Channel>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::NotConnected)
    }

    pub(crate) fn set(&self, c: Option<Arc<Channel>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = c;
    }
}

/// The [`vfio_user_dma::DmaTransport`] of one connection: DMA_READ / DMA_WRITE for the
/// `DmaSpace`'s message-based mappings, over the twin socket when negotiated, else over
/// the main socket with the routing above. Set on connect, cleared on disconnect.
///
/// The `DmaSpace` keeps no mapping alive while a call waits for the client (see
/// `vfio_user_dma`'s message path), so DMA_UNMAP, handled by the thread that also routes
/// main-socket replies, never waits for a reply only that thread could read.
#[derive(Debug)]
pub(crate) struct SocketTransport(pub(crate) Arc<Channel>);

fn dma_error(e: Error) -> vfio_user_dma::Error {
    vfio_user_dma::Error::from_errno(e.errno())
}

impl vfio_user_dma::DmaTransport for SocketTransport {
    fn max_data_xfer_size(&self) -> usize {
        self.0.max_data_xfer_size()
    }

    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> vfio_user_dma::Result<()> {
        self.0.dma_read(iova, buf).map_err(dma_error)
    }

    fn dma_write(&self, iova: u64, data: &[u8]) -> vfio_user_dma::Result<()> {
        self.0.dma_write(iova, data).map_err(dma_error)
    }
}
