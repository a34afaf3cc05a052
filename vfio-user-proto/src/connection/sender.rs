// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The sending half of a connection: one message per `sendmsg` (or `send` when small), with
//! its descriptors, under a lock that keeps concurrent senders from interleaving.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use vm_memory::ByteValued;

use super::wait::wait_for;
use super::{IOV_MAX, MAX_FDS_PER_MESSAGE};
use crate::error::FrameError;
use crate::header::{Header, HEADER_SIZE};

/// Most parts (after the header) one [`Sender::send`] takes.
pub const MAX_SEND_PARTS: usize = 7;
/// Messages without descriptors up to this size are sent from one buffer with `send(2)`.
const SMALL_MESSAGE: usize = 256;

/// The sending half of a connection; `Sync`, so many threads may send through one.
#[derive(Debug)]
pub struct Sender {
    sock: Arc<UnixStream>,
    lock: Mutex<()>,
    /// [`Sender::set_send_timeout`] in nanoseconds, 0 for none.
    timeout: AtomicU64,
}

impl Sender {
    pub(super) fn new(sock: Arc<UnixStream>) -> Self {
        Sender { sock, lock: Mutex::new(()), timeout: AtomicU64::new(0) }
    }

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
    /// The socket, for a caller that writes to it itself while holding the guard (e.g. the
    /// client's batches and its sends out of guest memory): it must write whole messages,
    /// and call [`wait_writable`](Self::wait_writable) on `EAGAIN`.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Waits until the socket takes more data, up to the send timeout (`ETIMEDOUT` past it).
    pub fn wait_writable(&self) -> Result<(), FrameError> {
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
        self.send_iov(&mut iov_store[..=parts.len()], header.msg_size as usize, fds)
    }

    /// Writes the `len` bytes of `iov` (already framed: one or more whole messages) with as
    /// few `sendmsg` calls as the socket allows, at most [`IOV_MAX`] buffers each, `fds`
    /// attached to the first. Blocks until all is written, within the send timeout.
    pub fn send_iov(&self, mut iov: &mut [IoSlice<'_>], len: usize, fds: &[BorrowedFd<'_>]) -> Result<(), FrameError> {
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
        let mut first = true;
        let mut remaining = len;
        while remaining > 0 {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if first && !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
            }
            let n_iov = iov.len().min(IOV_MAX);
            match sendmsg(self.sock.as_fd(), &iov[..n_iov], &mut control, SendFlags::NOSIGNAL) {
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
}
