// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Receiving a payload into the caller's memory rather than a buffer of the receiver's:
//! [`Receiver::recv_into`] and [`Receiver::recv_into_with`] into byte slices, and
//! [`PayloadTail`] for memory that must not be referenced as a slice (guest memory: the
//! client receives a DMA_WRITE's data straight into it).

use std::io::{self, IoSliceMut};
use std::os::fd::OwnedFd;

use super::receiver::{Fill, Receiver};
use crate::error::FrameError;
use crate::header::{Header, HEADER_SIZE};

impl Receiver {
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
}

/// The rest of a message's payload, past the prefix its caller has seen, to be received
/// into memory the caller manages with [`recv_raw`](Self::recv_raw): made by
/// [`Receiver::payload_tail`]. Exactly [`left`](Self::left) bytes are still to come;
/// [`finish`](Self::finish) then returns the descriptors that came with the message.
#[derive(Debug)]
pub struct PayloadTail<'r> {
    rx: &'r mut Receiver,
    left: usize,
    /// Stream offset just past the message.
    end: u64,
}

impl PayloadTail<'_> {
    /// The socket, borrowed (e.g. to `poll` it between receives).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rx.as_fd()
    }

    /// How many bytes of the payload are still to be received.
    pub fn left(&self) -> usize {
        self.left
    }

    /// One `recvmsg` straight into `iov` (`MSG_WAITALL`: the kernel fills as much as it can
    /// before the socket's receive timeout). Returns the byte count (0 at the end of the
    /// stream), or `None` when nothing arrived (`EAGAIN`). `iov` together may not exceed
    /// [`left`](Self::left) bytes (`EINVAL`, nothing received), so no byte of the next
    /// message is taken. Descriptors that arrive are kept for [`finish`](Self::finish).
    ///
    /// # Safety
    /// Every iovec must describe memory that is valid for writes for the duration of the
    /// call and that no Rust reference points into (the kernel writes it, as it would any
    /// user memory; guest memory qualifies).
    pub unsafe fn recv_raw(&mut self, iov: &mut [libc::iovec]) -> Result<Option<usize>, FrameError> {
        let total = iov.iter().try_fold(0usize, |a, v| a.checked_add(v.iov_len));
        if !total.is_some_and(|t| t <= self.left) {
            return Err(FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        // SAFETY: the caller's guarantee on `iov`, as required by `Receiver::recv_raw`.
        let got = unsafe { self.rx.recv_raw(iov) }?;
        if let Some(n) = got {
            self.left -= n.min(self.left);
        }
        Ok(got)
    }

    /// Ends the message once every byte has been received: its descriptors. `EINVAL` while
    /// bytes are left; [`FrameError::FdsTruncated`] if the kernel truncated them.
    pub fn finish(self) -> Result<Vec<OwnedFd>, FrameError> {
        if self.left != 0 {
            return Err(FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        self.rx.take_fds_whole(self.end)
    }
}

impl Receiver {
    /// The first `prefix` payload bytes of the next message, once they have arrived; `None`
    /// until then (room is made for them, for the next [`fill_timed`](Self::fill_timed)).
    /// Also `None` unless the next message's header has arrived
    /// ([`next_header`](Self::next_header)), within [`max_msg_size`](Self::max_msg_size),
    /// with a payload of at least `prefix` bytes: the caller checks those first.
    pub fn buffered_prefix(&mut self, prefix: usize) -> Option<&[u8]> {
        let header = self.buffered_header().ok()??;
        if self.oversized(&header) || (header.msg_size as usize - HEADER_SIZE) < prefix || !self.prefix_ready(prefix) {
            return None;
        }
        Some(self.prefix(prefix))
    }

    /// Consumes the next message's header, its first `prefix` payload bytes and what has
    /// arrived of the rest, which `copy` is given (to place at the start of the rest), and
    /// returns the [`PayloadTail`] through which the caller receives the remainder. `None`,
    /// having consumed nothing, when [`buffered_prefix`](Self::buffered_prefix) is `None`.
    pub fn payload_tail(&mut self, prefix: usize, copy: impl FnOnce(&[u8])) -> Option<PayloadTail<'_>> {
        self.buffered_prefix(prefix)?;
        let size = self.buffered_header().ok()??.msg_size as usize;
        let (filled, end) = match self.large.take() {
            Some(l) => {
                copy(&l.payload[prefix..l.filled]);
                let (n, end) = (l.filled - prefix, l.end);
                self.recycle(l.payload);
                (n, end)
            }
            None => {
                let avail = (self.end - self.start).min(size);
                let end = self.consumed + size as u64;
                copy(&self.buf[self.start + HEADER_SIZE + prefix..self.start + avail]);
                self.consume(avail);
                (avail - HEADER_SIZE - prefix, end)
            }
        };
        Some(PayloadTail { left: size - HEADER_SIZE - prefix - filled, end, rx: self })
    }
}

/// Copies `src` to the start of `prefix` followed by `body`.
fn scatter(src: &[u8], prefix: &mut [u8], body: &mut [u8]) {
    let p = src.len().min(prefix.len());
    prefix[..p].copy_from_slice(&src[..p]);
    let rest = &src[p..];
    body[..rest.len()].copy_from_slice(rest);
}
