// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The client's own paths over vfio-user-proto's socket layer, built on its building blocks
//! ([`Receiver::next_header`], [`Receiver::take_buffered`], [`Receiver::fill_timed`],
//! [`Receiver::payload_tail`], [`SendGuard::as_fd`], [`SendGuard::wait_writable`]): a
//! receive bounded by the socket's receive timeout, so that the reader can give up its role
//! on time; one that leaves a DMA_WRITE for the zero-copy path; several queued requests in one
//! `sendmsg`; and sends from and receives into guest memory (`volatile_send.rs`,
//! `volatile_recv.rs`), where the raw-libc `unsafe` of the sending side lives.

use std::io::IoSlice;

use vfio_user_proto::{FrameError, Header, Message, Receiver, SendGuard};
use vm_memory::ByteValued;

// Guest memory is reached through raw iovecs (a `VolatileSlice` cannot soundly become a
// byte slice): the only `unsafe` of these paths, each block argued where it is.
#[allow(unsafe_code)]
mod volatile_recv;
#[allow(unsafe_code)]
mod volatile_send;

#[cfg(test)]
mod tests;

pub use volatile_recv::VolatileBufMut;
pub use volatile_send::VolatileBuf;

/// What the client's reader needs of a [`Receiver`] beyond vfio-user-proto's receives.
pub(crate) trait RecvExt {
    /// Receives one whole message with at most one `recvmsg`, blocking in it (no `poll`
    /// first). Returns [`FrameError::WouldBlock`] when that `recvmsg` did not complete a
    /// message — because the socket's receive timeout (`SO_RCVTIMEO`) expired, or only part of
    /// a message arrived; what arrived stays buffered. A caller with a deadline checks it
    /// between calls, and a peer trickling bytes cannot hold it past the deadline.
    fn recv_timed(&mut self) -> Result<Message, FrameError>;

    /// Like [`recv_timed`](Self::recv_timed), except that a message whose header `divert`
    /// accepts (when it is the next one) is left unconsumed and its header returned as
    /// `Ok(Err(header))`, for the caller to receive with
    /// [`recv_volatile_with`](Self::recv_volatile_with) or `recv`. At most one `recvmsg`,
    /// as with `recv_timed`; [`FrameError::WouldBlock`] when it brought neither a whole
    /// message nor a diverted header.
    fn recv_timed_unless(&mut self, divert: impl Fn(&Header) -> bool) -> Result<Result<Message, Header>, FrameError>;

    /// Receives the next message with its payload past the first `prefix` bytes placed
    /// straight into guest memory; see `volatile_recv.rs`.
    fn recv_volatile_with<'b>(
        &mut self,
        prefix: usize,
        stall: std::time::Duration,
        body: impl FnOnce(&Header, &[u8]) -> Option<&'b [VolatileBufMut<'b>]>,
    ) -> Result<Option<(Header, Vec<std::os::fd::OwnedFd>)>, FrameError>;
}

impl RecvExt for Receiver {
    fn recv_timed(&mut self) -> Result<Message, FrameError> {
        if let Some(m) = self.take_buffered()? {
            return Ok(m);
        }
        self.fill_timed()?;
        self.take_buffered()?.ok_or(FrameError::WouldBlock)
    }

    fn recv_timed_unless(&mut self, divert: impl Fn(&Header) -> bool) -> Result<Result<Message, Header>, FrameError> {
        let mut filled = false;
        loop {
            if let Some(h) = self.next_header()?.filter(|h| divert(h)) {
                return Ok(Err(h));
            }
            if let Some(m) = self.take_buffered()? {
                return Ok(Ok(m));
            }
            if filled {
                return Err(FrameError::WouldBlock);
            }
            self.fill_timed()?;
            filled = true;
        }
    }

    fn recv_volatile_with<'b>(
        &mut self,
        prefix: usize,
        stall: std::time::Duration,
        body: impl FnOnce(&Header, &[u8]) -> Option<&'b [VolatileBufMut<'b>]>,
    ) -> Result<Option<(Header, Vec<std::os::fd::OwnedFd>)>, FrameError> {
        volatile_recv::recv_volatile_with(self, prefix, stall, body)
    }
}

/// What the client's sender needs of a [`SendGuard`] beyond vfio-user-proto's sends.
pub(crate) trait SendExt {
    /// Sends several messages without descriptors back to back, with as few `sendmsg` calls
    /// as the socket allows (one when its buffer has room): each `(header, parts)` as in
    /// `Sender::send` (the header's `msg_size` is computed here). A pipelining sender saves a
    /// system call per message.
    fn send_batch(&self, msgs: &[(Header, &[&[u8]])]) -> Result<(), FrameError>;

    /// Sends one message without descriptors whose data lies in guest memory; see
    /// `volatile_send.rs`.
    fn send_volatile(&self, header: Header, parts: &[&[u8]], data: &[VolatileBuf<'_>]) -> Result<(), FrameError>;
}

impl SendExt for SendGuard<'_> {
    fn send_batch(&self, msgs: &[(Header, &[&[u8]])]) -> Result<(), FrameError> {
        let invalid = || FrameError::Io(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        let mut headers = Vec::with_capacity(msgs.len());
        let mut remaining = 0usize;
        for (h, parts) in msgs {
            let size = parts
                .iter()
                .try_fold(0usize, |acc, p| acc.checked_add(p.len()))
                .and_then(vfio_user_proto::header::msg_size)
                .ok_or_else(invalid)?;
            headers.push(Header { msg_size: size, ..*h });
            remaining = remaining.checked_add(size as usize).ok_or_else(invalid)?;
        }
        let mut iov_store: Vec<IoSlice<'_>> = Vec::with_capacity(msgs.len() * 2);
        for (h, (_, parts)) in headers.iter().zip(msgs) {
            iov_store.push(IoSlice::new(h.as_slice()));
            iov_store.extend(parts.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)));
        }
        self.send_iov(&mut iov_store, remaining, &[])
    }

    fn send_volatile(&self, header: Header, parts: &[&[u8]], data: &[VolatileBuf<'_>]) -> Result<(), FrameError> {
        volatile_send::send_volatile(self, header, parts, data)
    }
}
