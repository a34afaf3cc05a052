// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `recvmsg` into raw iovecs, for memory that must not be referenced as `&mut [u8]` (guest
//! memory may change under us): the one raw-libc `unsafe` of the receive side, used by
//! [`PayloadTail`](super::PayloadTail).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::receiver::Receiver;
use super::{IOV_MAX, MAX_FDS_PER_MESSAGE};
use crate::error::FrameError;

impl Receiver {
    /// One `recvmsg` straight into `iov` (`MSG_WAITALL`: the kernel fills as much as it can
    /// before the socket's receive timeout). Returns the byte count (0 at end of stream), or
    /// `None` when nothing arrived (`EAGAIN`); counts the bytes as consumed and tags the
    /// descriptors that came with them, as `recv_some` does.
    ///
    /// # Safety
    /// Every iovec must describe memory valid for writes for the call, which no Rust
    /// reference points into ([`PayloadTail::recv_raw`](super::PayloadTail::recv_raw)).
    pub(super) unsafe fn recv_raw(&mut self, iov: &mut [libc::iovec]) -> Result<Option<usize>, FrameError> {
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
            // SAFETY: every iovec describes memory valid for writes for the call, which no Rust
            // reference points into (this function's contract); the kernel writes it like any
            // user memory. The control buffer is ours.
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
