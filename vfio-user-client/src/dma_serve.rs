// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA mappings the client has made, and serving the server's DMA_READ / DMA_WRITE.
//!
//! The server may only touch memory inside a mapping it was given, with the access the
//! mapping allows (`READ` for DMA_READ, `WRITE` for DMA_WRITE). Every request is checked
//! against the client's own table of mappings first (EFAULT otherwise), then served from the
//! VMM's memory ([`GuestMemoryAccess`], e.g. a vm-memory `GuestMemoryMmap`); a mapping that was made
//! with an fd is served through that fd (`pread`/`pwrite`) when no memory was handed over.
//! A DMA_READ reply is sent straight out of the memory when it offers its slices
//! ([`GuestMemoryAccess::read_zero_copy`], as vm-memory's does), with no copy in user space; a large
//! DMA_WRITE's data is received straight into it likewise ([`GuestMemoryAccess::write_zero_copy`]).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use vfio_user_proto::wire::{put_with_room, DmaAccess, DMA_MAP_FLAG_READ, DMA_MAP_FLAG_WRITE};
use vfio_user_proto::{decode_request, DecodeLimits, FrameError, Header, Message, Request};
use vm_memory::bitmap::Bitmap;

use crate::socket::{VolatileBuf, VolatileBufMut};
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemory, Permissions};

/// The memory the server's DMA_READ / DMA_WRITE requests are served from, addressed by the
/// DMA address (IOVA) given in DMA_MAP.
///
/// Implemented for every vm-memory [`GuestAddressSpace`] — `Arc<GuestMemoryMmap>`,
/// `GuestMemoryAtomic<GuestMemoryMmap>`, ... — with IOVA = guest physical address, as in a VMM
/// without a virtual IOMMU. A VMM that translates IOVAs implements it itself.
///
/// Both calls must either transfer every byte or fail with an errno; a range not entirely
/// in memory is `EFAULT`. They run on the thread that is reading the socket at the time (a
/// caller waiting for its reply, the background reader, or the twin-socket thread), so they
/// must not block for long and must not call back into the [`Client`](crate::Client) (its
/// reply could not be read meanwhile).
pub trait GuestMemoryAccess: Send + Sync {
    /// Reads `buf.len()` bytes at `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), i32>;
    /// Writes `data` at `addr`.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), i32>;

    /// Serves a read of `len` bytes at `addr` without copying: calls `send` once with the
    /// memory of the range as buffers, in order, together exactly `len` bytes, and returns
    /// `Some(Ok(()))`; or fails with an errno (`EFAULT` for a range not entirely in memory)
    /// without calling `send`. `None`, the default, means "not supported": the read is then
    /// served with [`read`](Self::read) into a buffer, which is copied.
    fn read_zero_copy(
        &self,
        addr: u64,
        len: usize,
        send: &mut dyn FnMut(&[VolatileBuf<'_>]),
    ) -> Option<Result<(), i32>> {
        let _ = (addr, len, send);
        None
    }

    /// Serves a write of `len` bytes at `addr` without copying: calls `recv` once with the
    /// memory of the range as buffers, in order, together exactly `len` bytes, for the data
    /// to be received straight into them, and returns `Some(Ok(()))`; or fails with an errno
    /// (`EFAULT` for a range not entirely in memory) without calling `recv`. `recv` may not
    /// fill the buffers (its receive failed, or it declined); the caller knows. `None`, the
    /// default, means "not supported": the write is then served with
    /// [`write`](Self::write) from a buffer the data was received into.
    fn write_zero_copy(
        &self,
        addr: u64,
        len: usize,
        recv: &mut dyn FnMut(&[VolatileBufMut<'_>]),
    ) -> Option<Result<(), i32>> {
        let _ = (addr, len, recv);
        None
    }
}

impl<AS: GuestAddressSpace + Send + Sync> GuestMemoryAccess for AS {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), i32> {
        self.memory().read_slice(buf, GuestAddress(addr)).map_err(|_| libc::EFAULT)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), i32> {
        self.memory().write_slice(data, GuestAddress(addr)).map_err(|_| libc::EFAULT)
    }

    fn read_zero_copy(
        &self,
        addr: u64,
        len: usize,
        send: &mut dyn FnMut(&[VolatileBuf<'_>]),
    ) -> Option<Result<(), i32>> {
        let mem = self.memory();
        let slices = mem.get_slices(GuestAddress(addr), len, Permissions::Read).map_err(|_| libc::EFAULT);
        let slices = match slices.and_then(|iter| exactly(iter, len, |s| s.len())) {
            Ok(slices) => slices,
            Err(errno) => return Some(Err(errno)),
        };
        let bufs: Vec<VolatileBuf<'_>> = slices.iter().map(VolatileBuf::new).collect();
        send(&bufs);
        Some(Ok(()))
    }

    fn write_zero_copy(
        &self,
        addr: u64,
        len: usize,
        recv: &mut dyn FnMut(&[VolatileBufMut<'_>]),
    ) -> Option<Result<(), i32>> {
        let mem = self.memory();
        let slices = mem.get_slices(GuestAddress(addr), len, Permissions::Write).map_err(|_| libc::EFAULT);
        let slices = match slices.and_then(|iter| exactly(iter, len, |s| s.len())) {
            Ok(slices) => slices,
            Err(errno) => return Some(Err(errno)),
        };
        let bufs: Vec<VolatileBufMut<'_>> = slices.iter().map(VolatileBufMut::new).collect();
        recv(&bufs);
        // Written behind the slices' backs: their dirty bitmaps learn it now (marking what
        // a failed receive left unwritten is harmless).
        for s in &slices {
            s.bitmap().mark_dirty(0, s.len());
        }
        Some(Ok(()))
    }
}

/// The slices of a guest memory range, collected: `EFAULT` when one of them is an error or
/// they do not add up to exactly `len` bytes.
fn exactly<T, E>(
    iter: impl Iterator<Item = Result<T, E>>,
    len: usize,
    size: impl Fn(&T) -> usize,
) -> Result<Vec<T>, i32> {
    let slices = iter.collect::<Result<Vec<T>, E>>().map_err(|_| libc::EFAULT)?;
    if slices.iter().map(&size).sum::<usize>() != len {
        return Err(libc::EFAULT);
    }
    Ok(slices)
}

/// One DMA mapping as the client made it; kept to check the server's DMA requests and to
/// replay the mapping after a reconnect.
#[derive(Debug, Clone)]
pub struct DmaMapping {
    /// DMA address (IOVA).
    pub iova: u64,
    /// Size in bytes.
    pub size: u64,
    /// `DMA_MAP_FLAG_*` as sent.
    pub flags: u32,
    /// The client's own duplicate of the fd the mapping was made with, and the offset in it.
    pub fd: Option<(Arc<OwnedFd>, u64)>,
}

impl DmaMapping {
    fn end(&self) -> u64 {
        self.iova + self.size
    }
}

/// The client's DMA mappings, keyed by IOVA; never overlapping.
#[derive(Debug, Default)]
pub(crate) struct DmaTable {
    maps: BTreeMap<u64, DmaMapping>,
}

impl DmaTable {
    /// Whether `[iova, iova + size)` overlaps a mapping. `size` is non-zero and the range
    /// does not wrap (checked by the caller).
    pub(crate) fn overlaps(&self, iova: u64, size: u64) -> bool {
        let end = iova + size;
        if let Some((_, m)) = self.maps.range(..end).next_back() {
            return m.end() > iova;
        }
        false
    }

    pub(crate) fn insert(&mut self, m: DmaMapping) {
        self.maps.insert(m.iova, m);
    }

    /// Removes the mapping that exactly matches `iova`/`size`.
    pub(crate) fn remove_exact(&mut self, iova: u64, size: u64) -> Option<DmaMapping> {
        match self.maps.get(&iova) {
            Some(m) if m.size == size => self.maps.remove(&iova),
            _ => None,
        }
    }

    pub(crate) fn get_exact(&self, iova: u64, size: u64) -> Option<&DmaMapping> {
        self.maps.get(&iova).filter(|m| m.size == size)
    }

    pub(crate) fn clear(&mut self) {
        self.maps.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.maps.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &DmaMapping> {
        self.maps.values()
    }

    /// The mapping that contains all of `[addr, addr + count)`, if any.
    fn containing(&self, addr: u64, count: u64) -> Option<&DmaMapping> {
        let end = addr.checked_add(count)?;
        let (_, m) = self.maps.range(..=addr).next_back()?;
        (end <= m.end()).then_some(m)
    }
}

/// Sends a reply to a server command: header, payload parts, then guest memory.
pub(crate) type SendReply<'s> = dyn FnMut(Header, &[&[u8]], &[VolatileBuf<'_>]) -> Result<(), FrameError> + 's;

/// Everything needed to serve the server's DMA requests.
pub(crate) struct DmaServer {
    pub(crate) table: std::sync::RwLock<DmaTable>,
    pub(crate) memory: Option<Arc<dyn GuestMemoryAccess>>,
    /// What we advertised: the most bytes one DMA_READ/DMA_WRITE may move.
    pub(crate) limits: DecodeLimits,
}

impl DmaServer {
    /// Handles one server-to-client command and sends its reply, if it asks for one, with
    /// `send` (header, payload parts, then guest memory buffers). Returns whether the command
    /// was refused (answered with an error), or the error of `send`. `out` is scratch memory
    /// kept from one call to the next: it only grows (up to 16 + our `max_data_xfer_size`), so
    /// a reply neither allocates nor zeroes. A DMA_READ is sent straight out of the memory
    /// when [`GuestMemoryAccess::read_zero_copy`] supports it.
    pub(crate) fn serve(&self, msg: &Message, out: &mut Vec<u8>, send: &mut SendReply<'_>) -> Result<bool, FrameError> {
        let hdr = &msg.header;
        let result = match decode_request(hdr, &msg.payload, msg.fds.len(), &self.limits) {
            Ok(Request::DmaRead(a)) => match self.dma_read_zero_copy(hdr, &a, send) {
                Some(Ok(sent)) => return sent.map(|()| false),
                Some(Err(errno)) => Err(errno),
                None => self.dma_read(&a, out),
            },
            Ok(Request::DmaWrite(a, data)) => self.dma_write(&a, data).map(|()| put_with_room(out, &a, 0).end),
            Ok(other) => {
                log::warn!("server sent {} to the client; refused", other.command());
                Err(libc::EINVAL)
            }
            Err(e) => {
                log::warn!("invalid server command: {e}");
                Err(e.errno())
            }
        };
        let refused = result.is_err();
        if !hdr.no_reply() {
            match result {
                Ok(len) => send(hdr.reply(len), &[&out[..len]], &[])?,
                Err(errno) => send(hdr.error_reply(errno), &[], &[])?,
            }
        }
        Ok(refused)
    }

    /// A DMA_READ served straight out of the memory: `None` when that is not possible (no
    /// memory, or it does not support it); `Some(Err(errno))` when refused, nothing sent;
    /// otherwise the reply was sent (unless the request asked for none) with `send`'s result.
    fn dma_read_zero_copy(
        &self,
        hdr: &Header,
        a: &DmaAccess,
        send: &mut SendReply<'_>,
    ) -> Option<Result<Result<(), FrameError>, i32>> {
        let mem = self.memory.as_ref()?;
        if let Err(errno) = self.check(a.addr, a.count, DMA_MAP_FLAG_READ) {
            return Some(Err(errno));
        }
        if hdr.no_reply() {
            // Nothing to send: the read has no effect.
            return Some(Ok(Ok(())));
        }
        // `count` is bounded by our max_data_xfer_size (decode_request checked it).
        let len = a.count as usize;
        let mut sent = Ok(());
        let reply = hdr.reply(DmaAccess::payload_len(len));
        let head = a.read_reply(&[]);
        match mem.read_zero_copy(a.addr, len, &mut |bufs| sent = send(reply, &head.parts(), bufs))? {
            Ok(()) => Some(Ok(sent)),
            Err(errno) => Some(Err(errno)),
        }
    }

    pub(crate) fn check(&self, addr: u64, count: u64, need: u32) -> Result<Option<(Arc<OwnedFd>, u64)>, i32> {
        let table = crate::sync::read_lock(&self.table);
        let m = table.containing(addr, count).ok_or(libc::EFAULT)?;
        if m.flags & need == 0 {
            return Err(libc::EPERM);
        }
        Ok(m.fd.as_ref().map(|(fd, off)| (fd.clone(), off + (addr - m.iova))))
    }

    /// The reply payload of a DMA_READ into the start of `out`: the access, then the data.
    /// Returns its length.
    fn dma_read(&self, a: &DmaAccess, out: &mut Vec<u8>) -> Result<usize, i32> {
        let via_fd = self.check(a.addr, a.count, DMA_MAP_FLAG_READ)?;
        // `count` is bounded by our max_data_xfer_size (decode_request checked it).
        let room = put_with_room(out, a, a.count as usize);
        let len = room.end;
        let buf = &mut out[room];
        match (&self.memory, via_fd) {
            (Some(mem), _) => mem.read(a.addr, buf)?,
            (None, Some((fd, off))) => pread_all(fd.as_fd(), buf, off)?,
            (None, None) => return Err(libc::EFAULT),
        }
        Ok(len)
    }

    fn dma_write(&self, a: &DmaAccess, data: &[u8]) -> Result<(), i32> {
        let via_fd = self.check(a.addr, a.count, DMA_MAP_FLAG_WRITE)?;
        match (&self.memory, via_fd) {
            (Some(mem), _) => mem.write(a.addr, data),
            (None, Some((fd, off))) => pwrite_all(fd.as_fd(), data, off),
            (None, None) => Err(libc::EFAULT),
        }
    }
}

fn pread_all(fd: std::os::fd::BorrowedFd<'_>, mut buf: &mut [u8], mut off: u64) -> Result<(), i32> {
    while !buf.is_empty() {
        match rustix::io::pread(fd, &mut *buf, off) {
            Ok(0) => return Err(libc::EFAULT),
            Ok(n) => {
                buf = &mut buf[n..];
                off += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.raw_os_error()),
        }
    }
    Ok(())
}

fn pwrite_all(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8], mut off: u64) -> Result<(), i32> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, off) {
            Ok(0) => return Err(libc::EFAULT),
            Ok(n) => {
                data = &data[n..];
                off += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.raw_os_error()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(iova: u64, size: u64) -> DmaMapping {
        DmaMapping { iova, size, flags: DMA_MAP_FLAG_READ, fd: None }
    }

    #[test]
    fn overlap_and_containment() {
        let mut t = DmaTable::default();
        t.insert(map(0x1000, 0x1000));
        t.insert(map(0x3000, 0x1000));
        assert!(t.overlaps(0x1fff, 1));
        assert!(!t.overlaps(0x2000, 0x1000));
        assert!(t.overlaps(0x2000, 0x1001));
        assert!(t.overlaps(0, 0x1001));
        assert!(!t.overlaps(0, 0x1000));
        assert!(t.containing(0x1000, 0x1000).is_some());
        assert!(t.containing(0x1800, 0x801).is_none());
        assert!(t.containing(0x2000, 1).is_none());
        assert!(t.containing(u64::MAX, 2).is_none());
        assert!(t.remove_exact(0x1000, 0x800).is_none());
        assert!(t.remove_exact(0x1000, 0x1000).is_some());
        assert_eq!(t.len(), 1);
    }
}
