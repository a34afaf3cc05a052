// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Receiving a message's data straight into guest memory ([`VolatileSlice`]s), without a
//! copy in user space: e.g. a DMA_WRITE's data into the memory it names. Guest memory may
//! change under us, so no Rust reference to it is ever created: bytes already buffered are
//! copied into it with vm-memory's volatile copies, the rest is written by the kernel's
//! `recvmsg` through raw iovecs.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{Bytes, VolatileSlice};

use super::volatile::advance;
use super::{wait_for, Fill, Message, Receiver, IOV_MAX, MAX_FDS_PER_MESSAGE};
use crate::error::FrameError;
use crate::header::{Header, HEADER_SIZE};

/// The bytes of a [`VolatileSlice`], borrowed for as long as the slice, to be received into
/// with [`Receiver::recv_volatile_with`]: the write counterpart of
/// [`VolatileBuf`](super::VolatileBuf). The memory is only written by the kernel or by
/// volatile copies. Writing through it does not mark the slice's dirty bitmap: the caller
/// does that once the data has landed.
#[derive(Debug, Clone, Copy)]
pub struct VolatileBufMut<'a> {
    ptr: *mut u8,
    len: usize,
    _slice: PhantomData<&'a mut [u8]>,
}

// SAFETY: a `VolatileBufMut` is only a borrowed pointer and length into memory that is
// accessed with volatile copies or by the kernel, exactly as a `VolatileSlice` (Send + Sync).
unsafe impl Send for VolatileBufMut<'_> {}
// SAFETY: see `Send`: sharing it gives no access a `VolatileSlice` does not give.
unsafe impl Sync for VolatileBufMut<'_> {}

impl<'a> VolatileBufMut<'a> {
    /// The bytes of `slice`, to be written.
    pub fn new<B: BitmapSlice>(slice: &'a VolatileSlice<'_, B>) -> Self {
        VolatileBufMut { ptr: slice.ptr_guard_mut().as_ptr(), len: slice.len(), _slice: PhantomData }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` into the buffer at `at` with a volatile copy; `at + src.len() <= len`.
    fn write_at(&self, at: usize, src: &[u8]) {
        // SAFETY: `ptr` and `len` describe the memory of a `VolatileSlice` borrowed for 'a,
        // valid and writable for as long as `self` exists; the new slice only lives here.
        let vs = unsafe { VolatileSlice::new(self.ptr, self.len) };
        // Cannot fail: the caller keeps the copy within the buffer.
        let _ = vs.write_slice(src, at);
    }
}

/// Copies `src` into `dst` (taken as one buffer, in order) starting at offset `at`.
fn scatter_volatile(dst: &[VolatileBufMut<'_>], mut at: usize, mut src: &[u8]) {
    for d in dst {
        if src.is_empty() {
            return;
        }
        if at >= d.len {
            at -= d.len;
            continue;
        }
        let n = (d.len - at).min(src.len());
        d.write_at(at, &src[..n]);
        src = &src[n..];
        at = 0;
    }
}

impl Receiver {
    /// Like [`recv_timed`](Self::recv_timed), except that a message whose header `divert`
    /// accepts (when it is the next one) is left unconsumed and its header returned as
    /// `Ok(Err(header))`, for the caller to receive with
    /// [`recv_volatile_with`](Self::recv_volatile_with) or [`recv`](Self::recv). At most one
    /// `recvmsg`, as with `recv_timed`; [`FrameError::WouldBlock`] when it brought neither a
    /// whole message nor a diverted header.
    pub fn recv_timed_unless(
        &mut self,
        divert: impl Fn(&Header) -> bool,
    ) -> Result<Result<Message, Header>, FrameError> {
        let mut filled = false;
        loop {
            if let Some(h) = self.buffered_header()?.filter(|h| divert(h)) {
                return Ok(Err(h));
            }
            if let Some(m) = self.take()? {
                return Ok(Ok(m));
            }
            if filled {
                return Err(FrameError::WouldBlock);
            }
            self.fill(Fill::Timed)?;
            filled = true;
        }
    }

    /// Receives the next message with its payload past the first `prefix` bytes placed
    /// straight into guest memory: the buffers that `body` chooses from the header and those
    /// bytes (e.g. a DMA_WRITE's data into the memory its address names), filled in order.
    /// Bytes already buffered are copied (volatile copies); the rest is received by `recvmsg`
    /// straight into the buffers. The prefix is not returned (`body` saw it). Returns the
    /// header and the descriptors that came with the message.
    ///
    /// Returns `Ok(None)`, having consumed nothing, when the payload is shorter than
    /// `prefix`, or `body` returns `None` or buffers that are not together exactly the rest
    /// of the payload: the message is then taken with [`recv`](Self::recv).
    ///
    /// It waits for data no longer than `stall` without any arriving: then it fails with
    /// `ETIMEDOUT` ([`FrameError::Io`]), having perhaps consumed part of the message (the
    /// connection must then be closed). The bound holds on a socket with a receive timeout
    /// (`SO_RCVTIMEO`, checked at least that often) or a non-blocking one; on a blocking
    /// socket without timeout, a `recvmsg` waits for data as long as it takes. Other errors
    /// as with [`recv_into`](Self::recv_into); end of stream in the message is
    /// [`FrameError::EofMidMessage`].
    pub fn recv_volatile_with<'b>(
        &mut self,
        prefix: usize,
        stall: Duration,
        body: impl FnOnce(&Header, &[u8]) -> Option<&'b [VolatileBufMut<'b>]>,
    ) -> Result<Option<(Header, Vec<OwnedFd>)>, FrameError> {
        let mut progress = Instant::now();
        let header = loop {
            if let Some(h) = self.buffered_header()? {
                break h;
            }
            self.fill_within(stall, &mut progress)?;
        };
        let size = header.msg_size as usize;
        let Some(rest) = (size - HEADER_SIZE).checked_sub(prefix).filter(|_| !self.oversized(&header)) else {
            return Ok(None);
        };
        // Wait until the prefix has arrived (the size bound was checked by buffered_header).
        while !self.prefix_ready(prefix) {
            self.fill_within(stall, &mut progress)?;
        }
        let seen = self.prefix(prefix);
        let Some(dst) =
            body(&header, seen).filter(|d| d.iter().try_fold(0usize, |a, b| a.checked_add(b.len)) == Some(rest))
        else {
            return Ok(None);
        };
        // What has arrived past the prefix, and the stream offset past the message.
        let (mut filled, msg_end) = match self.large.take() {
            Some(l) => {
                scatter_volatile(dst, 0, &l.payload[prefix..l.filled]);
                let n = l.filled - prefix;
                let end = l.end;
                self.recycle(l.payload);
                (n, end)
            }
            None => {
                let avail = (self.end - self.start).min(size);
                let end = self.consumed + size as u64;
                scatter_volatile(dst, 0, &self.buf[self.start + HEADER_SIZE + prefix..self.start + avail]);
                self.consume(avail);
                (avail - HEADER_SIZE - prefix, end)
            }
        };
        let mut iov: Vec<libc::iovec> =
            dst.iter().filter(|d| d.len > 0).map(|d| libc::iovec { iov_base: d.ptr.cast(), iov_len: d.len }).collect();
        let mut first = advance(&mut iov, 0, filled);
        while filled < rest {
            let n = match self.recv_raw(&mut iov[first..])? {
                Some(0) => return Err(FrameError::EofMidMessage { got: size - rest + filled, need: size }),
                Some(n) => n,
                None => {
                    wait_within(self, stall, &progress)?;
                    continue;
                }
            };
            progress = Instant::now();
            filled += n;
            first = advance(&mut iov, first, n);
        }
        Ok(Some((header, self.take_fds_whole(msg_end)?)))
    }

    /// One [`fill`](Self::fill) that gives up, with `ETIMEDOUT`, once no data has arrived for
    /// `stall` since `progress`.
    fn fill_within(&mut self, stall: Duration, progress: &mut Instant) -> Result<(), FrameError> {
        match self.fill(Fill::Timed) {
            Ok(()) => {
                *progress = Instant::now();
                Ok(())
            }
            Err(FrameError::WouldBlock) => wait_within(self, stall, progress),
            Err(e) => Err(e),
        }
    }

    /// One `recvmsg` straight into `iov` (`MSG_WAITALL`: the kernel fills as much as it can
    /// before the socket's receive timeout). Returns the byte count (0 at end of stream), or
    /// `None` when nothing arrived (`EAGAIN`); counts the bytes as consumed and tags the
    /// descriptors that came with them, as `recv_some` does.
    fn recv_raw(&mut self, iov: &mut [libc::iovec]) -> Result<Option<usize>, FrameError> {
        const SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE));
        // usize-aligned, as a cmsghdr needs.
        let mut space = [0usize; SPACE.div_ceil(std::mem::size_of::<usize>())];
        loop {
            // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control data).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = iov.len().min(IOV_MAX) as _;
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&space) as _;
            let flags = libc::MSG_CMSG_CLOEXEC | libc::MSG_WAITALL;
            // SAFETY: every iovec points into a `VolatileBufMut`, memory that stays valid and
            // writable for the call (borrowed by the caller); the kernel writes it like any
            // user memory, no Rust reference to it exists. The control buffer is ours.
            let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, flags) };
            if n < 0 {
                match io::Error::last_os_error() {
                    e if e.raw_os_error() == Some(libc::EINTR) => continue,
                    e if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
                    e => return Err(FrameError::Io(e)),
                }
            }
            // Owned first, so that they are closed whatever happens next.
            let batch = take_rights(&msg);
            if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                drop(batch);
                self.truncated_fds(n as usize)?;
                return Ok(Some(n as usize));
            }
            self.received(n as usize, batch)?;
            return Ok(Some(n as usize));
        }
    }
}

/// Waits for the socket to become readable, up to what is left of `stall` since
/// `progress`; fails with `ETIMEDOUT` when nothing is left.
fn wait_within(rx: &Receiver, stall: Duration, progress: &Instant) -> Result<(), FrameError> {
    let left = stall.saturating_sub(progress.elapsed());
    if left.is_zero() {
        return Err(FrameError::Io(io::Error::from_raw_os_error(libc::ETIMEDOUT)));
    }
    wait_for(rustix::fd::AsFd::as_fd(&*rx.sock), PollFlags::IN, Some(left))
}

/// The descriptors of the `SCM_RIGHTS` messages in `msg`'s control data, owned.
fn take_rights(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by `recvmsg`; its control pointer and length describe our
    // buffer, which the CMSG macros walk within its bounds.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header returned by CMSG_FIRSTHDR/NXTHDR lies within the buffer.
        let c = unsafe { cmsg.read_unaligned() };
        if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: the data of this control message follows its header in the buffer.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            let bytes = c.cmsg_len as usize - (data as usize - cmsg as usize);
            for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                // SAFETY: `i` indexes an int within this message's data; the kernel installed
                // the descriptor for us (close-on-exec), so we own it.
                let fd = unsafe { data.cast::<libc::c_int>().add(i).read_unaligned() };
                // SAFETY: as above: a fresh descriptor nobody else owns.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: `cmsg` is a header within the buffer of `msg`.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    fds
}
