// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The receiving half of a connection: a buffer that several pipelined messages share, a
//! payload of its own for a large message, the descriptors matched to the message they came
//! with, and the bounds on sizes and waits.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};

use super::wait::wait_ready;
use super::{Message, DEFAULT_MAX_MSG_SIZE, MAX_FDS_PER_MESSAGE};
use crate::error::{Damage, FrameError};
use crate::header::{Header, HEADER_SIZE};

const INITIAL_BUFFER: usize = 64 * 1024;
/// Payloads of at least this many bytes that have not entirely arrived are received
/// straight into their own buffer instead of the shared receive buffer.
pub(super) const DIRECT_PAYLOAD: usize = 16 * 1024;

/// The receiving half of a connection.
#[derive(Debug)]
pub struct Receiver {
    pub(super) sock: Arc<UnixStream>,
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Stream offset of `buf[start]`.
    pub(super) consumed: u64,
    /// Descriptors received, tagged with the stream offset of the last byte of their recvmsg.
    pub(super) fds: VecDeque<(u64, Vec<OwnedFd>)>,
    pub(super) pending_fds: usize,
    pub(super) max_msg_size: usize,
    /// A large message being received straight into its payload.
    pub(super) large: Option<Large>,
    /// A payload given back with [`Receiver::recycle`], for the next large message.
    pub(super) spare: Vec<u8>,
    /// Deliver damaged messages ([`Damage`]) instead of failing.
    pub(super) deliver_damaged: bool,
    /// Stream offsets (last byte) of the `recvmsg`s whose descriptors were truncated.
    pub(super) truncated: VecDeque<u64>,
    /// An oversized message whose payload is being discarded.
    pub(super) drain: Option<Drain>,
    /// Longest wait for more of a message that has begun ([`Receiver::set_stall_timeout`]).
    pub(super) stall: Option<Duration>,
    /// No wait for a new message past this ([`Receiver::set_idle_deadline`]).
    pub(super) idle_deadline: Option<Instant>,
}

/// An oversized message being read and discarded ([`Receiver::set_deliver_damaged`]).
#[derive(Debug)]
pub(super) struct Drain {
    pub(super) header: Header,
    /// Payload bytes still to discard.
    pub(super) left: u64,
    /// Stream offset just past the message.
    pub(super) end: u64,
    pub(super) max: usize,
}

/// A message whose header has arrived and whose payload is received into a buffer of its
/// own (see [`DIRECT_PAYLOAD`]).
#[derive(Debug)]
pub(super) struct Large {
    pub(super) header: Header,
    pub(super) payload: Vec<u8>,
    pub(super) filled: usize,
    /// Stream offset just past the message.
    pub(super) end: u64,
}

impl Receiver {
    pub(super) fn new(sock: Arc<UnixStream>) -> Self {
        Receiver {
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
        }
    }

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

    /// The socket, borrowed (e.g. to `poll` it).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Sets the socket's receive timeout (`SO_RCVTIMEO`), which bounds how long a
    /// [`fill_timed`](Receiver::fill_timed) blocks.
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

    /// The header of the next message if it has arrived, checked against the size bounds
    /// as [`recv`](Self::recv) does; nothing is consumed and no system call made. With
    /// [`take_buffered`](Self::take_buffered) and [`fill_timed`](Self::fill_timed), a
    /// building block for a caller's own receive loop (the client's reader).
    pub fn next_header(&self) -> Result<Option<Header>, FrameError> {
        self.buffered_header()
    }

    /// Takes the next message if it has arrived whole, without a system call.
    pub fn take_buffered(&mut self) -> Result<Option<Message>, FrameError> {
        self.take()
    }

    /// Receives what the socket has with one `recvmsg`, blocking in it (no `poll` first) up to
    /// the socket's receive timeout ([`set_read_timeout`](Self::set_read_timeout)): `Ok` when
    /// bytes arrived (perhaps not a whole message), [`FrameError::WouldBlock`] when the
    /// timeout expired, [`FrameError::Closed`] (or `EofMidMessage`) at the end of the
    /// stream. A caller with a deadline checks it between calls, so a peer trickling bytes
    /// cannot hold it past the deadline.
    pub fn fill_timed(&mut self) -> Result<(), FrameError> {
        self.fill(Fill::Timed)
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
    pub(super) fn buffered_header(&self) -> Result<Option<Header>, FrameError> {
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
    pub(super) fn take(&mut self) -> Result<Option<Message>, FrameError> {
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
    pub(super) fn oversized(&self, header: &Header) -> bool {
        self.drain.is_some() || header.msg_size as usize > self.max_msg_size
    }

    /// Drops `n` bytes from the front of the buffer.
    pub(super) fn consume(&mut self, n: usize) {
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
    pub(super) fn take_fds_whole(&mut self, msg_end: u64) -> Result<Vec<OwnedFd>, FrameError> {
        match self.take_fds(msg_end) {
            (fds, None) => Ok(fds),
            (_, Some(_)) => Err(FrameError::FdsTruncated),
        }
    }

    pub(super) fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    pub(super) fn fill(&mut self, mode: Fill) -> Result<(), FrameError> {
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
    pub(super) fn recv_some(&mut self, iov: &mut [IoSliceMut<'_>], mode: Fill) -> Result<usize, FrameError> {
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
    pub(super) fn received(&mut self, bytes: usize, batch: Vec<OwnedFd>) -> Result<(), FrameError> {
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
    pub(super) fn truncated_fds(&mut self, bytes: usize) -> Result<(), FrameError> {
        if !self.deliver_damaged {
            return Err(FrameError::FdsTruncated);
        }
        self.received(bytes, Vec::new())?;
        if bytes > 0 {
            self.truncated.push_back(self.consumed + (self.end - self.start) as u64 - 1);
        }
        Ok(())
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

/// How [`Receiver::fill`] waits for data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    /// Until data arrives (between messages: up to the idle deadline, if any).
    Blocking,
    /// Until more of a message that has begun arrives, up to the stall timeout, if any.
    Within,
    /// Not at all (`MSG_DONTWAIT`).
    NonBlocking,
    /// In `recvmsg`, up to the socket's receive timeout.
    Timed,
}
