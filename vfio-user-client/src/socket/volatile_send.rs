// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Sending a message whose data lies in guest memory ([`VolatileSlice`]s), without copying
//! it into a buffer first: e.g. a DMA_READ reply straight out of the memory it names. The
//! `sendmsg` is made on raw iovecs: `VolatileSlice`s cannot become `&[u8]`s soundly.

use std::io;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ByteValued, VolatileSlice};

use vfio_user_proto::connection::{IOV_MAX, MAX_SEND_PARTS};
use vfio_user_proto::{FrameError, Header, SendGuard};

/// The bytes of a [`VolatileSlice`], borrowed for as long as the slice, to be sent straight
/// out of guest memory (a DMA_READ reply, [`GuestMemoryAccess::read_zero_copy`]). The memory
/// is only ever read by the kernel.
///
/// [`GuestMemoryAccess::read_zero_copy`]: crate::GuestMemoryAccess::read_zero_copy
#[derive(Debug, Clone, Copy)]
pub struct VolatileBuf<'a> {
    ptr: *const u8,
    len: usize,
    _slice: PhantomData<&'a [u8]>,
}

impl<'a> VolatileBuf<'a> {
    /// The bytes of `slice`.
    pub fn new<B: BitmapSlice>(slice: &'a VolatileSlice<'_, B>) -> Self {
        VolatileBuf { ptr: slice.ptr_guard().as_ptr(), len: slice.len(), _slice: PhantomData }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Sends one message without descriptors through `guard`: `header` (its `msg_size` is
/// computed here), then `parts`, then the bytes of `data`, with `sendmsg` reading `data`
/// straight out of its memory. At most 7 parts and `1024 - 1 - parts.len()` data buffers
/// (`EINVAL` otherwise, nothing sent). Blocks until the whole message is written.
pub(super) fn send_volatile(
    guard: &SendGuard<'_>,
    mut header: Header,
    parts: &[&[u8]],
    data: &[VolatileBuf<'_>],
) -> Result<(), FrameError> {
    let einval = || FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL));
    if parts.len() > MAX_SEND_PARTS || 1 + parts.len() + data.len() > IOV_MAX {
        return Err(einval());
    }
    let total =
        parts.iter().map(|p| p.len()).chain(data.iter().map(|d| d.len)).try_fold(0usize, |acc, n| acc.checked_add(n));
    header.msg_size = total
        .and_then(vfio_user_proto::header::msg_size)
        .ok_or_else(|| FrameError::Io(io::Error::from_raw_os_error(libc::E2BIG)))?;
    let hdr = header.as_slice();
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(1 + parts.len() + data.len());
    iov.push(libc::iovec { iov_base: hdr.as_ptr() as *mut libc::c_void, iov_len: hdr.len() });
    iov.extend(parts.iter().map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() }));
    iov.extend(data.iter().map(|d| libc::iovec { iov_base: d.ptr as *mut libc::c_void, iov_len: d.len }));
    let mut first = 0;
    let mut remaining = header.msg_size as usize;
    while remaining > 0 {
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov[first..].as_mut_ptr();
        msg.msg_iovlen = (iov.len() - first) as _;
        // SAFETY: every iovec points to memory that stays valid and readable for the
        // call: the header and `parts` are borrowed here, each `data` buffer borrows its
        // `VolatileSlice` (valid mapped memory for the slice's lifetime). The kernel only
        // reads them, like any user memory that may change concurrently; no Rust
        // reference to the guest memory is created.
        let n = unsafe { libc::sendmsg(guard.as_fd().as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::EINTR) => continue,
                e if e.raw_os_error() == Some(libc::EAGAIN) => {
                    guard.wait_writable()?;
                    continue;
                }
                e => return Err(FrameError::Io(e)),
            }
        }
        let n = n as usize;
        remaining -= n.min(remaining);
        // Skip what was written.
        first = advance(&mut iov, first, n);
    }
    Ok(())
}

/// Skips `n` bytes of `iov` from index `first` (what a `sendmsg` or `recvmsg` moved);
/// returns the new first index.
pub(super) fn advance(iov: &mut [libc::iovec], mut first: usize, mut n: usize) -> usize {
    while n > 0 && first < iov.len() {
        let v = &mut iov[first];
        if n >= v.iov_len {
            n -= v.iov_len;
            first += 1;
        } else {
            // SAFETY: `n < iov_len`, so the advanced pointer stays inside the buffer.
            v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
            v.iov_len -= n;
            n = 0;
        }
    }
    first
}
