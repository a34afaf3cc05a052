// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Receiving a message's data straight into guest memory ([`VolatileSlice`]s), without a
//! copy in user space: e.g. a DMA_WRITE's data into the memory it names. Guest memory may
//! change under us, so no Rust reference to it is ever created: bytes already buffered are
//! copied into it with vm-memory's volatile copies, the rest is written by the kernel's
//! `recvmsg` through raw iovecs (vfio-user-proto's
//! [`PayloadTail::recv_raw`](vfio_user_proto::connection::PayloadTail::recv_raw)).

use std::io;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use vfio_user_proto::{FrameError, Header, Receiver};
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{Bytes, VolatileSlice};

use super::volatile_send::advance;

/// The bytes of a [`VolatileSlice`], borrowed for as long as the slice, to be received into
/// straight from the socket (a DMA_WRITE's data, [`GuestMemoryAccess::write_zero_copy`]):
/// the write counterpart of [`VolatileBuf`](super::VolatileBuf). The memory is only written by the kernel or by
/// volatile copies. Writing through it does not mark the slice's dirty bitmap: the caller
/// does that once the data has landed.
///
/// [`GuestMemoryAccess::write_zero_copy`]: crate::GuestMemoryAccess::write_zero_copy
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

/// Receives the next message with its payload past the first `prefix` bytes placed
/// straight into guest memory: the buffers that `body` chooses from the header and those
/// bytes (e.g. a DMA_WRITE's data into the memory its address names), filled in order.
/// Bytes already buffered are copied (volatile copies); the rest is received by `recvmsg`
/// straight into the buffers. The prefix is not returned (`body` saw it). Returns the
/// header and the descriptors that came with the message.
///
/// Returns `Ok(None)`, having consumed nothing, when the payload is shorter than `prefix`,
/// or `body` returns `None` or buffers that are not together exactly the rest of the
/// payload: the message is then taken with `recv`.
///
/// It waits for data no longer than `stall` without any arriving: then it fails with
/// `ETIMEDOUT` ([`FrameError::Io`]), having perhaps consumed part of the message (the
/// connection must then be closed). The bound holds on a socket with a receive timeout
/// (`SO_RCVTIMEO`, checked at least that often) or a non-blocking one; on a blocking socket
/// without timeout, a `recvmsg` waits for data as long as it takes. Other errors as with
/// `Receiver::recv_into`; end of stream in the message is [`FrameError::EofMidMessage`].
pub(super) fn recv_volatile_with<'b>(
    rx: &mut Receiver,
    prefix: usize,
    stall: Duration,
    body: impl FnOnce(&Header, &[u8]) -> Option<&'b [VolatileBufMut<'b>]>,
) -> Result<Option<(Header, Vec<OwnedFd>)>, FrameError> {
    let mut progress = Instant::now();
    let header = loop {
        if let Some(h) = rx.next_header()? {
            break h;
        }
        fill_within(rx, stall, &mut progress)?;
    };
    let size = header.msg_size as usize;
    let rest = header.payload_len().and_then(|n| n.checked_sub(prefix));
    let Some(rest) = rest.filter(|_| size <= rx.max_msg_size()) else {
        return Ok(None);
    };
    // Wait until the prefix has arrived (the size bound was checked by next_header).
    let chosen = loop {
        if let Some(seen) = rx.buffered_prefix(prefix) {
            break body(&header, seen);
        }
        fill_within(rx, stall, &mut progress)?;
    };
    let Some(dst) = chosen.filter(|d| d.iter().try_fold(0usize, |a, b| a.checked_add(b.len)) == Some(rest)) else {
        return Ok(None);
    };
    // What has arrived past the prefix is copied; the rest is received in place.
    let Some(mut tail) = rx.payload_tail(prefix, |got| scatter_volatile(dst, 0, got)) else {
        return Ok(None);
    };
    let mut filled = rest - tail.left();
    let mut iov: Vec<libc::iovec> =
        dst.iter().filter(|d| d.len > 0).map(|d| libc::iovec { iov_base: d.ptr.cast(), iov_len: d.len }).collect();
    let mut first = advance(&mut iov, 0, filled);
    while filled < rest {
        // SAFETY: every iovec points into a `VolatileBufMut`, memory that stays valid and
        // writable for the call (borrowed by the caller for 'b); the kernel writes it like any
        // user memory, no Rust reference to it exists.
        let n = match unsafe { tail.recv_raw(&mut iov[first..]) }? {
            Some(0) => return Err(FrameError::EofMidMessage { got: size - rest + filled, need: size }),
            Some(n) => n,
            None => {
                wait_within(tail.as_fd(), stall, &progress)?;
                continue;
            }
        };
        progress = Instant::now();
        filled += n;
        first = advance(&mut iov, first, n);
    }
    Ok(Some((header, tail.finish()?)))
}

/// One [`Receiver::fill_timed`] that gives up, with `ETIMEDOUT`, once no data has arrived
/// for `stall` since `progress`.
fn fill_within(rx: &mut Receiver, stall: Duration, progress: &mut Instant) -> Result<(), FrameError> {
    match rx.fill_timed() {
        Ok(()) => {
            *progress = Instant::now();
            Ok(())
        }
        Err(FrameError::WouldBlock) => wait_within(rx.as_fd(), stall, progress),
        Err(e) => Err(e),
    }
}

/// Waits for the socket to become readable, up to what is left of `stall` since
/// `progress`; fails with `ETIMEDOUT` when nothing is left. A signal ends the wait early;
/// the caller looks again either way.
fn wait_within(fd: BorrowedFd<'_>, stall: Duration, progress: &Instant) -> Result<(), FrameError> {
    let left = stall.saturating_sub(progress.elapsed());
    if left.is_zero() {
        return Err(FrameError::Io(io::Error::from_raw_os_error(libc::ETIMEDOUT)));
    }
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = rustix::event::Timespec { tv_sec: left.as_secs() as _, tv_nsec: left.subsec_nanos() as _ };
    match poll(&mut fds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(FrameError::Io(e.into())),
    }
}
