// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Framing: whole messages with their SCM_RIGHTS file descriptors over a UNIX stream socket.
//!
//! The receive side reads into a buffer, so that several pipelined small messages cost one
//! system call, and bounds every message by `max_msg_size` before allocating for it. A
//! message with a large payload is not copied out of that buffer: once its header is known,
//! the rest is received straight into the payload it is returned with, or, with
//! [`Receiver::recv_into`], into buffers of the caller (e.g. a DMA_READ reply into the
//! device's destination), or with [`Receiver::recv_volatile_with`] straight into guest
//! memory (e.g. a DMA_WRITE's data). File
//! descriptors travel with the first bytes of the `sendmsg` that carried them, and Linux
//! ends a `recvmsg` right after the segment that carried descriptors; so the descriptors of
//! one `recvmsg` belong to the message that contains the last byte it returned. Received
//! descriptors are `OwnedFd`s opened close-on-exec (`MSG_CMSG_CLOEXEC`): dropping a message
//! closes any the receiver did not take.
//!
//! The send side writes a message with one `sendmsg` (header, body parts and descriptors),
//! or, when it is small and has no descriptors, copies it into one buffer for a cheaper
//! `send`, continuing after short writes; a mutex keeps concurrent senders from interleaving.
//! [`SendGuard::send_volatile`] sends data straight out of guest memory.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use vm_memory::ByteValued;

use crate::error::{Damage, FrameError};
use crate::header::{Header, HEADER_SIZE};
use crate::version::SCM_MAX_FD;

mod recv_volatile;
mod volatile;
pub use recv_volatile::VolatileBufMut;
pub use volatile::VolatileBuf;

/// The most file descriptors one message may carry before the connection is considered
/// broken (Linux's per-`sendmsg` maximum). The negotiated `max_msg_fds` is enforced by the
/// decoder, with an error reply; this is the hard bound of the framing layer.
pub const MAX_FDS_PER_MESSAGE: usize = SCM_MAX_FD as usize;

/// Default bound on `msg_size`: a 1 MiB transfer plus headers.
pub const DEFAULT_MAX_MSG_SIZE: usize = HEADER_SIZE + 16 + (1 << 20);

const INITIAL_BUFFER: usize = 64 * 1024;
/// Payloads of at least this many bytes that have not entirely arrived are received
/// straight into their own buffer instead of the shared receive buffer.
const DIRECT_PAYLOAD: usize = 16 * 1024;
/// Most iovecs one `sendmsg` takes (Linux `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;
const MAX_SEND_PARTS: usize = 7;
/// Messages without descriptors up to this size are sent from one buffer with `send(2)`.
const SMALL_MESSAGE: usize = 256;

/// One whole message as received.
#[derive(Debug)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The `msg_size - 16` bytes after the header.
    pub payload: Vec<u8>,
    /// The descriptors that came with the message.
    pub fds: Vec<OwnedFd>,
    /// Set when the message arrived whole but damaged (descriptors lost, or a payload over
    /// the limit that was discarded): answer it with an error, do not decode it. Only a
    /// receiver with [`Receiver::set_deliver_damaged`] returns such messages.
    pub damage: Option<Damage>,
}

impl Message {
    /// Returns the message if it is a command, [`FrameError::UnexpectedType`] otherwise.
    pub fn expect_command(self) -> Result<Message, FrameError> {
        if self.header.is_command() {
            Ok(self)
        } else {
            Err(FrameError::UnexpectedType { flags: self.header.flags, command: self.header.command })
        }
    }
}

/// The sending half of a connection; `Sync`, so many threads may send through one.
#[derive(Debug)]
pub struct Sender {
    sock: Arc<UnixStream>,
    lock: Mutex<()>,
    /// [`Sender::set_send_timeout`] in nanoseconds, 0 for none.
    timeout: AtomicU64,
}

impl Sender {
    /// Sends one message: `header` (its `msg_size` is computed here) followed by `parts`,
    /// with `fds` attached. Blocks until the whole message is written.
    pub fn send(&self, header: Header, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<(), FrameError> {
        self.lock().send(header, parts, fds)
    }

    /// Sends bytes that already hold one or more whole messages, headers included (a batch
    /// of replies, or a message built in place), with no descriptors, under the same lock
    /// as [`Sender::send`]. It uses `send(2)`, cheaper than `sendmsg(2)`. The caller is
    /// responsible for the framing: every header's `msg_size` must match.
    pub fn send_framed(&self, bytes: &[u8]) -> Result<(), FrameError> {
        self.lock().send_framed(bytes)
    }

    /// Sends several messages without descriptors back to back, with as few `sendmsg` calls
    /// as the socket allows (one when its buffer has room): each `(header, parts)` as in
    /// [`Sender::send`]. A pipelining sender saves a system call per message.
    pub fn send_batch(&self, msgs: &[(Header, &[&[u8]])]) -> Result<(), FrameError> {
        self.lock().send_batch(msgs)
    }

    /// Bounds how long a send waits for the peer to make room (it does not read): a send
    /// that makes no progress for `timeout` fails with `ETIMEDOUT` ([`FrameError::Io`]),
    /// having perhaps sent part of a message (the connection must then be closed). Sets the
    /// socket's `SO_SNDTIMEO` too, so that a blocking socket's `sendmsg` returns. `None`
    /// (the default) waits as long as it takes.
    pub fn set_send_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        let nanos = timeout.map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1));
        self.timeout.store(nanos, Ordering::Relaxed);
        self.sock.set_write_timeout(timeout.filter(|t| !t.is_zero()))
    }

    fn send_timeout(&self) -> Option<Duration> {
        match self.timeout.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Takes the lock that keeps senders from interleaving, for several sends in a row, or
    /// to combine other threads' messages while holding it.
    pub fn lock(&self) -> SendGuard<'_> {
        SendGuard {
            sock: &self.sock,
            timeout: self.send_timeout(),
            _guard: self.lock.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// [`lock`](Self::lock) if no other thread holds it.
    pub fn try_lock(&self) -> Option<SendGuard<'_>> {
        let guard = match self.lock.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(SendGuard { sock: &self.sock, timeout: self.send_timeout(), _guard: guard })
    }

    /// The socket's descriptor.
    pub fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The socket, borrowed.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&*self.sock)
    }

    /// Shuts the socket down in both directions, waking a receiver blocked on it.
    pub fn shutdown(&self) -> io::Result<()> {
        self.sock.shutdown(std::net::Shutdown::Both)
    }
}

/// Exclusive use of a [`Sender`]'s socket ([`Sender::lock`]): its sends do not take the
/// lock again.
#[derive(Debug)]
pub struct SendGuard<'a> {
    sock: &'a UnixStream,
    /// [`Sender::set_send_timeout`].
    timeout: Option<Duration>,
    _guard: std::sync::MutexGuard<'a, ()>,
}

impl SendGuard<'_> {
    /// Waits until the socket takes more data, up to the send timeout (`ETIMEDOUT` past it).
    fn wait_writable(&self) -> Result<(), FrameError> {
        let Some(t) = self.timeout else {
            return wait_for(self.sock.as_fd(), PollFlags::OUT, None);
        };
        let mut fds = [PollFd::new(&self.sock, PollFlags::OUT)];
        let ts = rustix::event::Timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ };
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => Err(FrameError::Io(io::Error::from_raw_os_error(libc::ETIMEDOUT))),
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(FrameError::Io(e.into())),
        }
    }

    /// [`Sender::send`].
    pub fn send(&self, mut header: Header, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<(), FrameError> {
        // Refusals carry a real errno (an `ErrorKind`-only error reported EIO).
        if parts.len() > MAX_SEND_PARTS || fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let total = parts.iter().try_fold(HEADER_SIZE, |acc, p| acc.checked_add(p.len()));
        header.msg_size = total
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(|| FrameError::Io(io::Error::from_raw_os_error(libc::E2BIG)))?;
        if fds.is_empty() && header.msg_size as usize <= SMALL_MESSAGE {
            // Copied into one buffer and sent with `send(2)`, cheaper than `sendmsg(2)`.
            let mut buf = [0u8; SMALL_MESSAGE];
            buf[..HEADER_SIZE].copy_from_slice(header.as_slice());
            let mut at = HEADER_SIZE;
            for p in parts {
                buf[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            return self.send_framed(&buf[..at]);
        }
        let mut iov_store = [IoSlice::new(&[]); MAX_SEND_PARTS + 1];
        iov_store[0] = IoSlice::new(header.as_slice());
        for (slot, p) in iov_store[1..].iter_mut().zip(parts) {
            *slot = IoSlice::new(p);
        }
        let mut iov = &mut iov_store[..=parts.len()];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
        let mut first = true;
        let mut remaining = header.msg_size as usize;
        while remaining > 0 {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if first && !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
            }
            match sendmsg(self.sock.as_fd(), iov, &mut control, SendFlags::NOSIGNAL) {
                Ok(n) => {
                    first = false;
                    remaining -= n.min(remaining);
                    IoSlice::advance_slices(&mut iov, n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => self.wait_writable()?,
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
        Ok(())
    }

    /// [`Sender::send_framed`].
    pub fn send_framed(&self, bytes: &[u8]) -> Result<(), FrameError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            match rustix::net::send(self.sock.as_fd(), rest, SendFlags::NOSIGNAL) {
                Ok(n) => rest = &rest[n.min(rest.len())..],
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => self.wait_writable()?,
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
        Ok(())
    }

    /// [`Sender::send_batch`].
    pub fn send_batch(&self, msgs: &[(Header, &[&[u8]])]) -> Result<(), FrameError> {
        let invalid = || FrameError::Io(io::Error::from(io::ErrorKind::InvalidInput));
        let mut headers = Vec::with_capacity(msgs.len());
        let mut remaining = 0usize;
        for (h, parts) in msgs {
            let size = parts
                .iter()
                .try_fold(HEADER_SIZE, |acc, p| acc.checked_add(p.len()))
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(invalid)?;
            headers.push(Header { msg_size: size, ..*h });
            remaining = remaining.checked_add(size as usize).ok_or_else(invalid)?;
        }
        let mut iov_store: Vec<IoSlice<'_>> = Vec::with_capacity(msgs.len() * 2);
        for (h, (_, parts)) in headers.iter().zip(msgs) {
            iov_store.push(IoSlice::new(h.as_slice()));
            iov_store.extend(parts.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)));
        }
        let mut iov = &mut iov_store[..];
        while remaining > 0 {
            let n_iov = iov.len().min(IOV_MAX);
            match sendmsg(self.sock.as_fd(), &iov[..n_iov], &mut SendAncillaryBuffer::default(), SendFlags::NOSIGNAL) {
                Ok(n) => {
                    remaining -= n.min(remaining);
                    IoSlice::advance_slices(&mut iov, n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => self.wait_writable()?,
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
        Ok(())
    }
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct Receiver {
    sock: Arc<UnixStream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    consumed: u64,
    /// Descriptors received, tagged with the stream offset of the last byte of their recvmsg.
    fds: VecDeque<(u64, Vec<OwnedFd>)>,
    pending_fds: usize,
    max_msg_size: usize,
    /// A large message being received straight into its payload.
    large: Option<Large>,
    /// A payload given back with [`Receiver::recycle`], for the next large message.
    spare: Vec<u8>,
    /// Deliver damaged messages ([`Damage`]) instead of failing.
    deliver_damaged: bool,
    /// Stream offsets (last byte) of the `recvmsg`s whose descriptors were truncated.
    truncated: VecDeque<u64>,
    /// An oversized message whose payload is being discarded.
    drain: Option<Drain>,
    /// Longest wait for more of a message that has begun ([`Receiver::set_stall_timeout`]).
    stall: Option<Duration>,
    /// No wait for a new message past this ([`Receiver::set_idle_deadline`]).
    idle_deadline: Option<Instant>,
}

/// An oversized message being read and discarded ([`Receiver::set_deliver_damaged`]).
#[derive(Debug)]
struct Drain {
    header: Header,
    /// Payload bytes still to discard.
    left: u64,
    /// Stream offset just past the message.
    end: u64,
    max: usize,
}

/// A message whose header has arrived and whose payload is received into a buffer of its
/// own (see [`DIRECT_PAYLOAD`]).
#[derive(Debug)]
struct Large {
    header: Header,
    payload: Vec<u8>,
    filled: usize,
    /// Stream offset just past the message.
    end: u64,
}

impl Receiver {
    /// Bounds `msg_size`; a larger message is a framing error ([`FrameError::Oversize`]).
    pub fn set_max_msg_size(&mut self, max: usize) {
        self.max_msg_size = max.max(HEADER_SIZE);
    }

    /// With `on`, a message that can be received whole but not as asked is returned with
    /// [`Message::damage`] set instead of failing the connection: one whose descriptors the
    /// kernel truncated (`MSG_CTRUNC`: this process's descriptor table is full; those that
    /// arrived are closed) and one over [`max_msg_size`](Self::max_msg_size), whose payload
    /// is read and discarded without being stored. The stream stays in sync, so a server
    /// can answer with an error reply and go on. Off by default: both are framing errors.
    /// The paths that receive into the caller's buffers (`recv_into`, ...) still fail on
    /// truncated descriptors.
    pub fn set_deliver_damaged(&mut self, on: bool) {
        self.deliver_damaged = on;
    }

    /// Bounds every wait for more of a message that has begun to arrive (its header, or the
    /// rest of its payload): when no byte arrives for `stall`, the blocking receives
    /// ([`recv`](Self::recv), [`peek_header`](Self::peek_header), `recv_into`, ...) fail
    /// with `ETIMEDOUT` ([`FrameError::Io`]) and the connection must be closed. The time
    /// between messages is not bounded by it (see [`set_idle_deadline`](Self::set_idle_deadline)).
    /// `None` (the default) waits as long as it takes.
    pub fn set_stall_timeout(&mut self, stall: Option<Duration>) {
        self.stall = stall;
    }

    /// Bounds the wait for the first byte of the next message: past `deadline`, the
    /// blocking receives fail with `ETIMEDOUT` ([`FrameError::Io`]); nothing is consumed,
    /// but a server then closes the connection (a handshake that never comes, a reply never
    /// sent). `None` (the default) waits as long as it takes.
    pub fn set_idle_deadline(&mut self, deadline: Option<Instant>) {
        self.idle_deadline = deadline;
    }

    /// The current bound on `msg_size`.
    pub fn max_msg_size(&self) -> usize {
        self.max_msg_size
    }

    /// The socket's descriptor, for an event loop to poll.
    pub fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sets the socket's receive timeout (`SO_RCVTIMEO`), which bounds how long a
    /// [`recv_timed`](Receiver::recv_timed) blocks.
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    /// Whether a whole message is already buffered (a poll on the fd would not show it).
    pub fn has_buffered_message(&self) -> bool {
        if let Some(d) = &self.drain {
            return d.left == 0;
        }
        if let Some(l) = &self.large {
            return l.filled == l.payload.len();
        }
        let avail = self.end - self.start;
        match crate::wire::read_at::<Header>(&self.buf[self.start..self.end], 0) {
            Some(h) => avail >= h.msg_size as usize,
            None => false,
        }
    }

    /// Receives one whole message, blocking until it has arrived.
    pub fn recv(&mut self) -> Result<Message, FrameError> {
        loop {
            if let Some(m) = self.take()? {
                return Ok(m);
            }
            self.fill(Fill::Blocking)?;
        }
    }

    /// Receives one whole message with at most one `recvmsg`, blocking in it (no `poll`
    /// first). Returns [`FrameError::WouldBlock`] when that `recvmsg` did not complete a
    /// message — because the socket's receive timeout (`SO_RCVTIMEO`) expired, or only part of
    /// a message arrived; what arrived stays buffered. A caller with a deadline checks it
    /// between calls, and a peer trickling bytes cannot hold it past the deadline.
    pub fn recv_timed(&mut self) -> Result<Message, FrameError> {
        if let Some(m) = self.take()? {
            return Ok(m);
        }
        self.fill(Fill::Timed)?;
        self.take()?.ok_or(FrameError::WouldBlock)
    }

    /// Receives one whole message if it can be done without blocking; a partial message
    /// stays buffered and [`FrameError::WouldBlock`] is returned.
    pub fn try_recv(&mut self) -> Result<Message, FrameError> {
        loop {
            if let Some(m) = self.take()? {
                return Ok(m);
            }
            self.fill(Fill::NonBlocking)?;
        }
    }

    /// The header of the next message if it has arrived, checked against the size bounds.
    fn buffered_header(&self) -> Result<Option<Header>, FrameError> {
        if let Some(l) = &self.large {
            return Ok(Some(l.header));
        }
        if let Some(d) = &self.drain {
            return Ok(Some(d.header));
        }
        let Some(header) = crate::wire::read_at::<Header>(&self.buf[self.start..self.end], 0) else {
            return Ok(None);
        };
        if (header.msg_size as usize) < HEADER_SIZE {
            return Err(FrameError::Undersize(header.msg_size));
        }
        if header.msg_size as usize > self.max_msg_size && !self.deliver_damaged {
            return Err(FrameError::Oversize { size: header.msg_size, max: self.max_msg_size });
        }
        Ok(Some(header))
    }

    /// Takes one buffered message, if a whole one is there.
    fn take(&mut self) -> Result<Option<Message>, FrameError> {
        if let Some(l) = self.large.take_if(|l| l.filled == l.payload.len()) {
            let (fds, damage) = self.take_fds(l.end);
            return Ok(Some(Message { header: l.header, payload: l.payload, fds, damage }));
        }
        if let Some(d) = self.drain.take_if(|d| d.left == 0) {
            let (fds, _) = self.take_fds(d.end);
            let damage = Some(Damage::Oversize { size: d.header.msg_size, max: d.max });
            return Ok(Some(Message { header: d.header, payload: Vec::new(), fds, damage }));
        }
        if self.large.is_some() || self.drain.is_some() {
            return Ok(None);
        }
        let Some(header) = self.buffered_header()? else {
            return Ok(None);
        };
        let size = header.msg_size as usize;
        let avail = self.end - self.start;
        if size > self.max_msg_size {
            // Only with deliver_damaged (buffered_header refused it otherwise): discard the
            // payload, what is buffered now and the rest as it arrives, never storing it.
            let n = avail.min(size);
            let end = self.consumed + size as u64;
            self.consume(n);
            let left = (size - n) as u64;
            self.drain = Some(Drain { header, left, end, max: self.max_msg_size });
            return self.take();
        }
        if avail < size {
            if size - HEADER_SIZE >= DIRECT_PAYLOAD {
                // The rest goes straight into the payload (bounded by max_msg_size above).
                let n = size - HEADER_SIZE;
                let mut payload = match std::mem::take(&mut self.spare) {
                    mut v if v.capacity() >= n => {
                        // Only bytes past what it held before are zeroed.
                        v.truncate(n);
                        v.resize(n, 0);
                        v
                    }
                    _ => vec![0; n],
                };
                let have = avail - HEADER_SIZE;
                payload[..have].copy_from_slice(&self.buf[self.start + HEADER_SIZE..self.end]);
                let end = self.consumed + size as u64;
                self.consume(avail);
                self.large = Some(Large { header, payload, filled: have, end });
            } else if self.buf.len() - self.start < size {
                // Make room for the whole message.
                self.compact();
                if self.buf.len() < size {
                    self.buf.resize(size, 0);
                }
            }
            return Ok(None);
        }
        let payload = self.buf[self.start + HEADER_SIZE..self.start + size].to_vec();
        let (fds, damage) = self.take_fds(self.consumed + size as u64);
        self.consume(size);
        Ok(Some(Message { header, payload, fds, damage }))
    }

    /// Gives back the payload of a message received earlier, once done with it: the next
    /// large payload is received into its memory rather than a newly allocated and zeroed
    /// buffer. One is kept (the largest, up to `max_msg_size`); small ones are dropped.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        let cap = payload.capacity();
        if cap >= DIRECT_PAYLOAD && cap <= self.max_msg_size && cap > self.spare.capacity() {
            self.spare = payload;
        }
    }

    /// Whether `header` (the next message's) is over the limit: only seen with
    /// [`set_deliver_damaged`](Self::set_deliver_damaged), and then only [`recv`](Self::recv)
    /// and its kin take the message (discarding its payload).
    fn oversized(&self, header: &Header) -> bool {
        self.drain.is_some() || header.msg_size as usize > self.max_msg_size
    }

    /// Drops `n` bytes from the front of the buffer.
    fn consume(&mut self, n: usize) {
        self.consumed += n as u64;
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// The descriptors received with the bytes before stream offset `msg_end`, and
    /// [`Damage::FdsTruncated`] if the kernel truncated some of them.
    fn take_fds(&mut self, msg_end: u64) -> (Vec<OwnedFd>, Option<Damage>) {
        let mut fds = Vec::new();
        while self.fds.front().is_some_and(|(tag, _)| *tag < msg_end) {
            if let Some((_, batch)) = self.fds.pop_front() {
                self.pending_fds -= batch.len();
                fds.extend(batch);
            }
        }
        let mut damage = None;
        while self.truncated.front().is_some_and(|tag| *tag < msg_end) {
            self.truncated.pop_front();
            damage = Some(Damage::FdsTruncated);
        }
        (fds, damage)
    }

    /// [`take_fds`](Self::take_fds) for the paths that receive into the caller's buffers:
    /// truncated descriptors fail them.
    fn take_fds_whole(&mut self, msg_end: u64) -> Result<Vec<OwnedFd>, FrameError> {
        match self.take_fds(msg_end) {
            (fds, None) => Ok(fds),
            (_, Some(_)) => Err(FrameError::FdsTruncated),
        }
    }

    /// Waits until the next message's header has arrived and returns it, consuming nothing:
    /// the caller then takes the message with [`recv`](Self::recv) or
    /// [`recv_into`](Self::recv_into). A header announcing a size outside the bounds is a
    /// framing error, as with `recv`.
    pub fn peek_header(&mut self) -> Result<Header, FrameError> {
        loop {
            if let Some(h) = self.buffered_header()? {
                return Ok(h);
            }
            self.fill(Fill::Blocking)?;
        }
    }

    /// Receives the next message, blocking, with its payload placed in the caller's
    /// buffers: the first `prefix.len()` bytes into `prefix`, the rest into `body`. What has
    /// already arrived is copied; the rest is received straight into the buffers, so a large
    /// payload is never copied in user space. Returns the message's header and descriptors.
    ///
    /// The payload must be exactly `prefix.len() + body.len()` bytes long (look at
    /// [`peek_header`](Self::peek_header) first): otherwise nothing is consumed and the error
    /// is `EINVAL` ([`FrameError::Io`]), and the message can be taken with `recv`. Any other
    /// error leaves the stream unusable, as with `recv`, and the buffers partly written.
    pub fn recv_into(&mut self, prefix: &mut [u8], body: &mut [u8]) -> Result<(Header, Vec<OwnedFd>), FrameError> {
        let header = self.peek_header()?;
        let total = prefix.len() + body.len();
        if header.msg_size as usize != HEADER_SIZE.saturating_add(total) || self.oversized(&header) {
            return Err(FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        // What has arrived: the payload so far, and the stream offset past the message.
        let (have, msg_end) = match self.large.take() {
            Some(l) => {
                scatter(&l.payload[..l.filled], prefix, body);
                (l.filled, l.end)
            }
            None => {
                let avail = (self.end - self.start).min(HEADER_SIZE + total);
                let end = self.consumed + (HEADER_SIZE + total) as u64;
                scatter(&self.buf[self.start + HEADER_SIZE..self.start + avail], prefix, body);
                self.consume(avail);
                (avail - HEADER_SIZE, end)
            }
        };
        let mut filled = have;
        while filled < total {
            let (p, b) = (prefix.len().min(filled), filled.saturating_sub(prefix.len()));
            let mut iov = [IoSliceMut::new(&mut prefix[p..]), IoSliceMut::new(&mut body[b..])];
            let n = self.recv_some(&mut iov, Fill::Within)?;
            if n == 0 {
                return Err(FrameError::EofMidMessage { got: HEADER_SIZE + filled, need: HEADER_SIZE + total });
            }
            filled += n;
        }
        Ok((header, self.take_fds_whole(msg_end)?))
    }

    /// Receives the next message, blocking, with its payload past the first `prefix` bytes
    /// placed straight into a buffer that `body` chooses from the header and those bytes
    /// (e.g. a DMA_WRITE's data into the memory its address names). The prefix is not
    /// returned (`body` saw it). Returns `Ok(None)`, having consumed nothing, when the payload
    /// is shorter than `prefix`, or `body` returns `None` or a buffer that is not exactly the
    /// rest of the payload: the message is then taken with [`recv`](Self::recv). Errors as
    /// with [`recv_into`](Self::recv_into).
    pub fn recv_into_with<'b>(
        &mut self,
        prefix: usize,
        body: impl FnOnce(&Header, &[u8]) -> Option<&'b mut [u8]>,
    ) -> Result<Option<(Header, Vec<OwnedFd>)>, FrameError> {
        let header = self.peek_header()?;
        let size = header.msg_size as usize;
        let Some(rest) = (size - HEADER_SIZE).checked_sub(prefix).filter(|_| !self.oversized(&header)) else {
            return Ok(None);
        };
        // Wait until the prefix has arrived (the size bound was checked by peek_header).
        while !self.prefix_ready(prefix) {
            self.fill(Fill::Blocking)?;
        }
        let seen = self.prefix(prefix);
        let Some(dst) = body(&header, seen).filter(|d| d.len() == rest) else {
            return Ok(None);
        };
        // What has arrived past the prefix, and the stream offset past the message.
        let (mut filled, msg_end) = match self.large.take() {
            Some(l) => {
                let got = &l.payload[prefix..l.filled];
                dst[..got.len()].copy_from_slice(got);
                (got.len(), l.end)
            }
            None => {
                let avail = (self.end - self.start).min(size);
                let end = self.consumed + size as u64;
                let got = &self.buf[self.start + HEADER_SIZE + prefix..self.start + avail];
                dst[..got.len()].copy_from_slice(got);
                let n = got.len();
                self.consume(avail);
                (n, end)
            }
        };
        while filled < rest {
            let n = self.recv_some(&mut [IoSliceMut::new(&mut dst[filled..])], Fill::Within)?;
            if n == 0 {
                return Err(FrameError::EofMidMessage { got: size - rest + filled, need: size });
            }
            filled += n;
        }
        Ok(Some((header, self.take_fds_whole(msg_end)?)))
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    fn fill(&mut self, mode: Fill) -> Result<(), FrameError> {
        // A message has begun: the wait for its rest is a stall, not idle time.
        let begun = self.large.is_some() || self.drain.is_some() || self.end > self.start;
        let mode = if mode == Fill::Blocking && begun { Fill::Within } else { mode };
        if let Some(mut d) = self.drain.take() {
            // Into the (empty) buffer, never past the message, and dropped at once.
            let want = usize::try_from(d.left).unwrap_or(usize::MAX).min(self.buf.len());
            let mut buf = std::mem::take(&mut self.buf);
            let r = self.recv_some(&mut [IoSliceMut::new(&mut buf[..want])], mode);
            self.buf = buf;
            let got = d.header.msg_size as u64 - d.left;
            let need = d.header.msg_size as usize;
            if let Ok(n) = r {
                d.left -= n as u64;
            }
            self.drain = Some(d);
            return match r? {
                0 => Err(FrameError::EofMidMessage { got: got as usize, need }),
                _ => Ok(()),
            };
        }
        if let Some(mut l) = self.large.take() {
            // Straight into the large message's payload, never past its end.
            let mut iov = [IoSliceMut::new(&mut l.payload[l.filled..])];
            let r = self.recv_some(&mut iov, mode);
            if let Ok(n) = r {
                l.filled += n;
            }
            let (got, need) = (HEADER_SIZE + l.filled, HEADER_SIZE + l.payload.len());
            self.large = Some(l);
            return match r? {
                0 => Err(FrameError::EofMidMessage { got, need }),
                _ => Ok(()),
            };
        }
        if self.buf.len() - self.end < 4096 {
            self.compact();
        }
        if self.end == self.buf.len() {
            // Only reachable with a tiny max_msg_size; grow a little within the bound.
            let grow = (self.buf.len() + HEADER_SIZE).min(self.max_msg_size.max(self.buf.len() + 1));
            self.buf.resize(grow, 0);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let r = self.recv_some(&mut [IoSliceMut::new(&mut buf[self.end..])], mode);
        self.buf = buf;
        match r? {
            0 => Err(self.eof()),
            n => {
                // recv_some counted the bytes as consumed; they are buffered instead.
                self.consumed -= n as u64;
                self.end += n;
                Ok(())
            }
        }
    }

    /// One `recvmsg` into `iov`: returns the byte count (0 at end of stream), counting the
    /// bytes as consumed and tagging the descriptors that came with them.
    fn recv_some(&mut self, iov: &mut [IoSliceMut<'_>], mode: Fill) -> Result<usize, FrameError> {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
        // A bounded wait polls (with the time left) rather than block in recvmsg.
        let deadline = match mode {
            Fill::Blocking => self.idle_deadline,
            Fill::Within => self.stall.and_then(|s| Instant::now().checked_add(s)),
            Fill::NonBlocking | Fill::Timed => None,
        };
        loop {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut flags = RecvFlags::CMSG_CLOEXEC;
            if mode == Fill::NonBlocking || deadline.is_some() {
                flags |= RecvFlags::DONTWAIT;
            }
            match recvmsg(self.sock.as_fd(), iov, &mut control, flags) {
                Ok(r) => {
                    let mut batch = Vec::new();
                    for m in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(fds) = m {
                            batch.extend(fds);
                        }
                    }
                    if r.flags.contains(ReturnFlags::CTRUNC) {
                        drop(batch);
                        self.truncated_fds(r.bytes)?;
                    } else {
                        self.received(r.bytes, batch)?;
                    }
                    return Ok(r.bytes);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) if matches!(mode, Fill::Blocking | Fill::Within) => {
                    wait_ready(self.sock.as_fd(), PollFlags::IN, deadline)?
                }
                Err(rustix::io::Errno::AGAIN) => return Err(FrameError::WouldBlock),
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
    }

    /// Counts `bytes` received past the buffer as consumed and tags the descriptors that
    /// came with them with the stream offset of their last byte.
    fn received(&mut self, bytes: usize, batch: Vec<OwnedFd>) -> Result<(), FrameError> {
        self.consumed += bytes as u64;
        if !batch.is_empty() && bytes > 0 {
            self.pending_fds += batch.len();
            if self.pending_fds > MAX_FDS_PER_MESSAGE {
                return Err(FrameError::TooManyFds { got: self.pending_fds, max: MAX_FDS_PER_MESSAGE });
            }
            // Offset of the last byte received, counting the buffered ones.
            let last = self.consumed + (self.end - self.start) as u64 - 1;
            self.fds.push_back((last, batch));
        }
        Ok(())
    }

    /// A `recvmsg` of `bytes` whose descriptors the kernel truncated (those that arrived
    /// are already closed): a framing error, or, with
    /// [`set_deliver_damaged`](Self::set_deliver_damaged), a mark on the message that
    /// holds its last byte.
    fn truncated_fds(&mut self, bytes: usize) -> Result<(), FrameError> {
        if !self.deliver_damaged {
            return Err(FrameError::FdsTruncated);
        }
        self.received(bytes, Vec::new())?;
        if bytes > 0 {
            self.truncated.push_back(self.consumed + (self.end - self.start) as u64 - 1);
        }
        Ok(())
    }

    /// Whether the first `prefix` payload bytes of the message whose header is buffered have
    /// arrived; if not, makes room for them in the buffer (when the message is not being
    /// received into a payload of its own), for the next `fill`.
    fn prefix_ready(&mut self, prefix: usize) -> bool {
        match &self.large {
            Some(l) => l.filled >= prefix,
            None if self.end - self.start >= HEADER_SIZE + prefix => true,
            None => {
                if self.buf.len() - self.start < HEADER_SIZE + prefix {
                    self.compact();
                    if self.buf.len() < HEADER_SIZE + prefix {
                        self.buf.resize(HEADER_SIZE + prefix, 0);
                    }
                }
                false
            }
        }
    }

    /// The first `prefix` payload bytes of the buffered message ([`prefix_ready`](Self::prefix_ready)).
    fn prefix(&self, prefix: usize) -> &[u8] {
        match &self.large {
            Some(l) => &l.payload[..prefix],
            None => &self.buf[self.start + HEADER_SIZE..self.start + HEADER_SIZE + prefix],
        }
    }

    fn eof(&self) -> FrameError {
        let got = self.end - self.start;
        if got == 0 {
            return FrameError::Closed;
        }
        let need = crate::wire::read_at::<Header>(&self.buf[self.start..self.end], 0)
            .map_or(HEADER_SIZE, |h| h.msg_size as usize);
        FrameError::EofMidMessage { got, need }
    }
}

/// Copies `src` to the start of `prefix` followed by `body`.
fn scatter(src: &[u8], prefix: &mut [u8], body: &mut [u8]) {
    let p = src.len().min(prefix.len());
    prefix[..p].copy_from_slice(&src[..p]);
    let rest = &src[p..];
    body[..rest.len()].copy_from_slice(rest);
}

/// How [`Receiver::fill`] waits for data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Until data arrives (between messages: up to the idle deadline, if any).
    Blocking,
    /// Until more of a message that has begun arrives, up to the stall timeout, if any.
    Within,
    /// Not at all (`MSG_DONTWAIT`).
    NonBlocking,
    /// In `recvmsg`, up to the socket's receive timeout.
    Timed,
}

/// Waits (`poll`) until `fd` is ready for `what`, or at most `timeout`; a signal ends the
/// wait early. The caller looks again either way.
fn wait_for(fd: BorrowedFd<'_>, what: PollFlags, timeout: Option<std::time::Duration>) -> Result<(), FrameError> {
    let mut fds = [PollFd::new(&fd, what)];
    let ts = timeout.map(|t| rustix::event::Timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ });
    match poll(&mut fds, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(FrameError::Io(e.into())),
    }
}

/// Waits (`poll`) until `fd` is ready for `what`; past `deadline` (if any) fails with
/// `ETIMEDOUT`. A signal ends the wait early; the caller looks again either way.
fn wait_ready(fd: BorrowedFd<'_>, what: PollFlags, deadline: Option<Instant>) -> Result<(), FrameError> {
    let left = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) {
            Some(l) => Some(l),
            None => return Err(FrameError::Io(io::Error::from_raw_os_error(libc::ETIMEDOUT))),
        },
    };
    wait_for(fd, what, left)
}

/// Both halves of a connection over one UNIX stream socket.
#[derive(Debug)]
pub struct Connection {
    /// The sending half.
    pub sender: Sender,
    /// The receiving half.
    pub receiver: Receiver,
}

impl Connection {
    /// Wraps a connected UNIX stream socket. The socket's blocking mode is left as it is;
    /// both halves cope with either.
    pub fn new(sock: UnixStream) -> Self {
        let sock = Arc::new(sock);
        Connection {
            sender: Sender { sock: sock.clone(), lock: Mutex::new(()), timeout: AtomicU64::new(0) },
            receiver: Receiver {
                sock,
                buf: vec![0; INITIAL_BUFFER],
                start: 0,
                end: 0,
                consumed: 0,
                fds: VecDeque::new(),
                pending_fds: 0,
                max_msg_size: DEFAULT_MAX_MSG_SIZE,
                large: None,
                spare: Vec::new(),
                deliver_damaged: false,
                truncated: VecDeque::new(),
                drain: None,
                stall: None,
                idle_deadline: None,
            },
        }
    }

    /// Wraps a connected socket given as an owned descriptor.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Connection::new(UnixStream::from(fd))
    }

    /// Sends one message; see [`Sender::send`].
    pub fn send(&self, header: Header, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<(), FrameError> {
        self.sender.send(header, parts, fds)
    }

    /// Receives one message, blocking; see [`Receiver::recv`].
    pub fn recv(&mut self) -> Result<Message, FrameError> {
        self.receiver.recv()
    }

    /// Receives one message without blocking; see [`Receiver::try_recv`].
    pub fn try_recv(&mut self) -> Result<Message, FrameError> {
        self.receiver.try_recv()
    }

    /// Splits into the two halves, e.g. to receive on one thread and send from others.
    pub fn split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.receiver.as_raw_fd()
    }
}
