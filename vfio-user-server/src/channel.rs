// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One client connection's message routing: client commands in arrival order, replies to
//! the server's own DMA_READ / DMA_WRITE requests routed by msg_id to the waiting caller,
//! and the synchronous twin-socket path.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, ThreadId};

use vfio_user_proto::command::Command;
use vfio_user_proto::connection::{Connection, Message, Receiver, Sender};
use vfio_user_proto::reply::{decode_reply, Reply};
use vfio_user_proto::request::DecodeLimits;
use vfio_user_proto::wire::DmaAccess;
use vfio_user_proto::{FrameError, Header};
use vm_memory::ByteValued;

use crate::error::{Error, Result};

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
}

/// What DMA callers and the request-handling thread share.
#[derive(Debug, Default)]
struct Routing {
    /// msg_ids of DMA requests sent on the main socket and not yet answered.
    outstanding: Vec<u16>,
    /// Replies received for outstanding requests, not yet collected.
    replies: Vec<Message>,
    closed: bool,
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
    /// The twin socket, and a duplicate of its fd to shut it down without the lock.
    twin: OnceLock<(Mutex<Connection>, UnixStream)>,
    next_id: AtomicU16,
    peer_max_xfer: AtomicU32,
    local_max_xfer: u32,
    dispatcher: Mutex<Option<ThreadId>>,
    /// Replies (whole messages without fds) waiting to go out in one `send`.
    batch: Mutex<Vec<u8>>,
}

impl Channel {
    pub(crate) fn new(conn: Connection, local_max_xfer: u32) -> Self {
        let (sender, mut receiver) = conn.split();
        receiver.set_max_msg_size(max_msg_size(local_max_xfer));
        Channel {
            sender,
            inbox: Mutex::new(Inbox { receiver, queued: VecDeque::new() }),
            routing: Mutex::new(Routing::default()),
            cond: Condvar::new(),
            twin: OnceLock::new(),
            next_id: AtomicU16::new(0),
            peer_max_xfer: AtomicU32::new(vfio_user_proto::version::DEFAULT_MAX_DATA_XFER_SIZE),
            local_max_xfer,
            dispatcher: Mutex::new(None),
            batch: Mutex::new(Vec::new()),
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
        if let Some(t) = twin {
            let dup = t.try_clone()?;
            let mut conn = Connection::new(t);
            conn.receiver.set_max_msg_size(self.max_msg_size());
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
    /// pipelined commands leave in one `send`; large ones go at once.
    pub(crate) fn queue(&self, msg: &[u8]) -> std::result::Result<(), FrameError> {
        let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        if b.is_empty() && msg.len() >= BATCH_LIMIT {
            return self.sender.send_framed(msg);
        }
        b.extend_from_slice(msg);
        if b.len() >= BATCH_LIMIT {
            self.sender.send_framed(&b)?;
            b.clear();
        }
        Ok(())
    }

    /// Sends the queued replies.
    pub(crate) fn flush(&self) -> std::result::Result<(), FrameError> {
        let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
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
        let expected = m.header.is_reply()
            && matches!(m.header.cmd(), Ok(Command::DmaRead | Command::DmaWrite))
            && r.outstanding.contains(&id);
        if !expected {
            return Err(FrameError::UnexpectedType { flags: m.header.flags, command: m.header.command });
        }
        r.outstanding.retain(|&x| x != id);
        r.replies.push(m);
        drop(r);
        self.cond.notify_all();
        Ok(None)
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
        if let Some(m) = inbox.queued.pop_front() {
            return Ok(Some(m));
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
            return Ok(m);
        }
        loop {
            if !inbox.receiver.has_buffered_message() {
                // About to wait for the client: it may be waiting for these.
                self.flush().map_err(|e| self.broken(e))?;
            }
            let m = inbox.receiver.recv().map_err(|e| self.broken(e))?;
            if let Some(c) = self.sort(m).map_err(|e| self.broken(e))? {
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

    /// Sends one server → client command and returns its (successful) reply.
    fn transact(&self, cmd: Command, parts: &[&[u8]]) -> Result<Message> {
        if let Some((twin, _)) = self.twin.get() {
            let mut t = twin.lock().unwrap_or_else(|e| e.into_inner());
            let id = self.alloc_id();
            t.send(Header::command(id, cmd, 0), parts, &[])?;
            let m = t.recv()?;
            if !m.header.is_reply() || m.header.msg_id != id || m.header.command != cmd as u16 {
                drop(t);
                self.close();
                return Err(Error::InvalidArgument("unexpected message on the twin socket"));
            }
            return check_error(m);
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
        let mut id = self.alloc_id();
        while r.outstanding.contains(&id) {
            id = self.alloc_id();
        }
        r.outstanding.push(id);
        drop(r);
        if let Err(e) = self.sender.send(Header::command(id, cmd, 0), parts, &[]) {
            self.routing().outstanding.retain(|&x| x != id);
            return Err(e.into());
        }
        if on_dispatcher {
            // The request-handling thread itself waits: it receives here, and sets client
            // commands aside for later, in order.
            let mut inbox = self.inbox();
            loop {
                if let Some(m) = self.take_reply(id) {
                    return check_error(m);
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
        let mut r = self.routing();
        loop {
            if let Some(pos) = r.replies.iter().position(|m| m.header.msg_id == id) {
                return check_error(r.replies.swap_remove(pos));
            }
            if r.closed {
                r.outstanding.retain(|&x| x != id);
                return Err(Error::NotConnected);
            }
            r = self.cond.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn take_reply(&self, id: u16) -> Option<Message> {
        let mut r = self.routing();
        let pos = r.replies.iter().position(|m| m.header.msg_id == id)?;
        Some(r.replies.swap_remove(pos))
    }

    /// DMA_READ, split at [`Self::max_data_xfer_size`].
    pub(crate) fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        let chunk = self.max_data_xfer_size();
        let mut addr = iova;
        for part in buf.chunks_mut(chunk) {
            let req = DmaAccess { addr, count: part.len() as u64 };
            let m = self.transact(Command::DmaRead, &[req.as_slice()])?;
            match decode_reply(&m.header, &m.payload, m.fds.len()) {
                Ok(Reply::DmaRead(a, data)) if a.addr == addr && data.len() == part.len() => part.copy_from_slice(data),
                _ => return Err(Error::InvalidArgument("malformed DMA_READ reply")),
            }
            addr += part.len() as u64;
        }
        Ok(())
    }

    /// DMA_WRITE, split at [`Self::max_data_xfer_size`].
    pub(crate) fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()> {
        let chunk = self.max_data_xfer_size();
        let mut addr = iova;
        for part in data.chunks(chunk) {
            let req = DmaAccess { addr, count: part.len() as u64 };
            let m = self.transact(Command::DmaWrite, &[req.as_slice(), part])?;
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

fn check_error(m: Message) -> Result<Message> {
    if m.header.is_error() {
        Err(Error::Remote(m.header.errno()))
    } else {
        Ok(m)
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
