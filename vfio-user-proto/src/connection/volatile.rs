// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Sending a message whose data lies in guest memory ([`VolatileSlice`]s), without copying
//! it into a buffer first: e.g. a DMA_READ reply straight out of the memory it names.

use std::io;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ByteValued, VolatileSlice};

use super::{SendGuard, IOV_MAX, MAX_SEND_PARTS};
use crate::error::FrameError;
use crate::header::{Header, HEADER_SIZE};

/// The bytes of a [`VolatileSlice`], borrowed for as long as the slice, to be sent with
/// [`SendGuard::send_volatile`]. The memory is only ever read by the kernel.
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

impl SendGuard<'_> {
    /// Sends one message without descriptors: `header` (its `msg_size` is computed here),
    /// then `parts`, then the bytes of `data`, with `sendmsg` reading `data` straight out of
    /// its memory. At most 7 parts and `1024 - 1 - parts.len()` data buffers (`EINVAL`
    /// otherwise, nothing sent). Blocks until the whole message is written.
    pub fn send_volatile(
        &self,
        mut header: Header,
        parts: &[&[u8]],
        data: &[VolatileBuf<'_>],
    ) -> Result<(), FrameError> {
        let einval = || FrameError::Io(io::Error::from_raw_os_error(libc::EINVAL));
        if parts.len() > MAX_SEND_PARTS || 1 + parts.len() + data.len() > IOV_MAX {
            return Err(einval());
        }
        let total = parts
            .iter()
            .map(|p| p.len())
            .chain(data.iter().map(|d| d.len))
            .try_fold(HEADER_SIZE, |acc, n| acc.checked_add(n));
        header.msg_size = total
            .and_then(|t| u32::try_from(t).ok())
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
            let n = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if n < 0 {
                match io::Error::last_os_error() {
                    e if e.raw_os_error() == Some(libc::EINTR) => continue,
                    e if e.raw_os_error() == Some(libc::EAGAIN) => {
                        self.wait_writable()?;
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::connection::Connection;
    use crate::header::Header;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn sends_header_parts_and_guest_data_as_one_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let conn = Connection::new(a);
        let mut peer = Connection::new(b);
        let (mut m1, mut m2) = (pattern(3000, 1), pattern(5, 2));
        let (s1, s2) = (VolatileSlice::from(&mut m1[..]), VolatileSlice::from(&mut m2[..]));
        let h = Header::command(7, crate::Command::DmaRead, 0);
        conn.sender.lock().send_volatile(h, &[b"prefix"], &[VolatileBuf::new(&s1), VolatileBuf::new(&s2)]).unwrap();
        let got = peer.recv().unwrap();
        assert_eq!(got.header.msg_id, 7);
        assert_eq!(got.header.msg_size as usize, HEADER_SIZE + 6 + 3005);
        assert_eq!(&got.payload[..6], b"prefix");
        assert_eq!(&got.payload[6..3006], &m1[..]);
        assert_eq!(&got.payload[3006..], &m2[..]);
    }

    #[test]
    fn a_message_larger_than_the_socket_buffer_is_sent_whole_after_short_writes() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let conn = Connection::new(a);
        let mut mem = pattern(4 << 20, 3);
        let expect = mem.clone();
        let reader = std::thread::spawn(move || {
            let mut all = vec![0u8; HEADER_SIZE + 8 + (4 << 20)];
            b.read_exact(&mut all).unwrap();
            all
        });
        let halves = mem.split_at_mut(1 << 20);
        let (s1, s2) = (VolatileSlice::from(halves.0), VolatileSlice::from(halves.1));
        let h = Header::command(1, crate::Command::DmaRead, 0);
        conn.sender.lock().send_volatile(h, &[&[9u8; 8]], &[VolatileBuf::new(&s1), VolatileBuf::new(&s2)]).unwrap();
        let all = reader.join().unwrap();
        assert_eq!(&all[HEADER_SIZE..HEADER_SIZE + 8], &[9u8; 8]);
        assert_eq!(&all[HEADER_SIZE + 8..], &expect[..]);
    }

    #[test]
    fn too_many_parts_are_refused_before_sending() {
        let (a, _b) = UnixStream::pair().unwrap();
        let conn = Connection::new(a);
        let mut m = [0u8; 1];
        let s = VolatileSlice::from(&mut m[..]);
        let bufs = vec![VolatileBuf::new(&s); IOV_MAX];
        let h = Header::command(1, crate::Command::DmaRead, 0);
        let e = conn.sender.lock().send_volatile(h, &[], &bufs).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
    }
}
