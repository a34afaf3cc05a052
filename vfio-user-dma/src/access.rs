// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device's DMA API: copies, typed objects and zero-copy scatter-gather
//! translation, across adjacent regions of any kind.

use std::sync::{Arc, Weak};

use vm_memory::bitmap::RefSlice;
use vm_memory::{ByteValued, VolatileSlice};

use crate::bitmap::DirtyBitmap;
use crate::error::{Error, Result};
use crate::message;
use crate::region::{Backing, Region};
use crate::space::{find, DmaSpace, Snapshot};

/// A host slice of mapped DMA memory; writes through it mark pages dirty.
pub type DmaSlice<'a> = VolatileSlice<'a, RefSlice<'a, DirtyBitmap>>;

/// One piece of an access: a region, the offset into it, the offset into the
/// caller's buffer and the length.
struct Segment {
    region: Arc<Region>,
    off: u64,
    buf_off: usize,
    len: usize,
}

/// Splits `[iova, iova + len)` into per-region segments, checking that every
/// byte is mapped (`EFAULT`) with the needed permission (`EACCES`) before
/// anything is transferred.
fn segments(snap: &Snapshot, iova: u64, len: usize, write: bool) -> Result<Vec<Segment>> {
    let mut segs = Vec::new();
    let mut done = 0usize;
    while done < len {
        let addr = iova.checked_add(done as u64).ok_or(Error::Unmapped { iova: u64::MAX })?;
        let region = find(snap, addr).ok_or(Error::Unmapped { iova: addr })?;
        region.check(addr, write)?;
        let n = (len - done).min(usize::try_from(region.end() - addr).unwrap_or(usize::MAX));
        segs.push(Segment { region: Arc::clone(region), off: addr - region.iova, buf_off: done, len: n });
        done += n;
    }
    Ok(segs)
}

/// A [`Segment`] that does not keep its region alive (see [`unpinned`]).
pub(crate) struct Unpinned {
    pub(crate) region: Weak<Region>,
    /// Address of the segment's first byte.
    pub(crate) iova: u64,
    off: u64,
    buf_off: usize,
    len: usize,
}

/// Drops the references `segments` took, keeping weak ones.
///
/// The copy API (`read`/`write`) may reach message regions, where a chunk
/// waits for the client's DMA_READ/DMA_WRITE reply. Holding an `Arc` of any
/// region of the access across that round trip would make `unmap` of that
/// region wait for the reply; when the thread calling `unmap` is the one that
/// reads those replies (a server's request loop on the main socket), that is a
/// deadlock that only `unmap_timeout` breaks. So an access pins a region
/// ([`DmaSpace::pin`], which also checks that it is still mapped) only while it
/// copies locally or marks pages dirty, never while it waits for the client:
/// `unmap` never waits for a client reply. A message chunk whose check passed
/// just before a concurrent unmap may still reach the client after the unmap;
/// the client then sees an access to memory it no longer maps and refuses it.
fn unpinned(segs: Vec<Segment>) -> Vec<Unpinned> {
    segs.into_iter()
        .map(|s| Unpinned {
            region: Arc::downgrade(&s.region),
            iova: s.region.iova + s.off,
            off: s.off,
            buf_off: s.buf_off,
            len: s.len,
        })
        .collect()
}

impl DmaSpace {
    /// The region `region` if it is still mapped in the current snapshot (not
    /// unmapped, nor unmapped and replaced), else `EFAULT` at `iova`.
    pub(crate) fn pin(&self, region: &Weak<Region>, iova: u64) -> Result<Arc<Region>> {
        let snap = self.snapshot.load();
        find(&snap, iova)
            .filter(|r| std::ptr::eq(Arc::as_ptr(r), region.as_ptr()))
            .cloned()
            .ok_or(Error::Unmapped { iova })
    }

    /// Runs `f` on the single mmap/file-I/O region that holds the whole
    /// access, or returns `None` when the access needs the general path
    /// (several regions, or a message region). The snapshot guard is only
    /// held for the duration of a local copy.
    fn fast_path(
        &self,
        iova: u64,
        len: usize,
        write: bool,
        f: impl FnOnce(&Region, u64) -> Result<bool>,
    ) -> Option<Result<()>> {
        let snap = self.snapshot.load();
        let region = find(&snap, iova)?;
        if matches!(region.backing, Backing::Message { .. }) || (len as u64) > region.end() - iova {
            return None;
        }
        Some(region.check(iova, write).and_then(|()| f(region, iova - region.iova).map(|_| ())))
    }

    /// Reads `buf.len()` bytes of DMA memory at `iova`.
    ///
    /// The range may span adjacent regions of any kind. Errors: `EFAULT`
    /// ([`Error::Unmapped`]) when any byte is not mapped, `EACCES`
    /// ([`Error::PermissionDenied`]) when a region is not readable; nothing is
    /// transferred in either case. Message regions need a transport
    /// (`ENOTCONN`) and may fail with the transport's error.
    pub fn read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(r) = self.fast_path(iova, buf.len(), false, |reg, off| reg.read_local(off, buf)) {
            return r;
        }
        // Not in the `for` expression: its temporaries (the snapshot) would live for the loop.
        let segs = unpinned(segments(&self.snapshot.load(), iova, buf.len(), false)?);
        for s in segs {
            let part = &mut buf[s.buf_off..s.buf_off + s.len];
            let region = self.pin(&s.region, s.iova)?;
            if !region.read_local(s.off, part)? {
                drop(region);
                message::read(self.transport(), |a| self.pin(&s.region, a), s.iova, part)?;
            }
        }
        Ok(())
    }

    /// Writes `data` to DMA memory at `iova`, marking the written pages dirty.
    ///
    /// Same rules and errors as [`read`](Self::read); `EACCES` for a region
    /// that is not writable.
    pub fn write(&self, iova: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if let Some(r) = self.fast_path(iova, data.len(), true, |reg, off| reg.write_local(off, data)) {
            return r;
        }
        let segs = unpinned(segments(&self.snapshot.load(), iova, data.len(), true)?);
        for s in segs {
            let part = &data[s.buf_off..s.buf_off + s.len];
            let region = self.pin(&s.region, s.iova)?;
            if !region.write_local(s.off, part)? {
                drop(region);
                message::write(self.transport(), |a| self.pin(&s.region, a), &s.region, s.iova, s.off, part)?;
            }
        }
        Ok(())
    }

    /// Reads a `T` at `iova` (see [`read`](Self::read)).
    pub fn read_obj<T: ByteValued>(&self, iova: u64) -> Result<T> {
        let mut v = T::zeroed();
        self.read(iova, v.as_mut_slice())?;
        Ok(v)
    }

    /// Writes `val` at `iova` (see [`write`](Self::write)).
    pub fn write_obj<T: ByteValued>(&self, iova: u64, val: &T) -> Result<()> {
        self.write(iova, val.as_slice())
    }

    /// Translates `[iova, iova + len)` into host slices without copying.
    ///
    /// Every region in the range must be mmapped (`ENOTSUP`,
    /// [`Error::NotMappable`], for message and file-I/O regions: use
    /// [`read`](Self::read)/[`write`](Self::write) instead) and allow the
    /// access (`EACCES`); unmapped bytes give `EFAULT`.
    ///
    /// The returned guard keeps the regions mapped: `unmap` waits for it to
    /// be dropped. With `write`, every page of the range is marked dirty when
    /// the guard is dropped (writes through the slices also mark pages
    /// themselves). Do not write through a guard obtained with
    /// `write == false`: a read-only mapping is mapped `PROT_READ` and such a
    /// write faults.
    pub fn translate(&self, iova: u64, len: usize, write: bool) -> Result<DmaGuard> {
        let segs = segments(&self.snapshot.load(), iova, len, write)?;
        if let Some(s) = segs.iter().find(|s| !matches!(s.region.backing, Backing::Mmap(_))) {
            return Err(Error::NotMappable { iova: s.region.iova + s.off });
        }
        Ok(DmaGuard { iova, len, write, segs })
    }
}

/// Zero-copy view of a DMA range, from [`DmaSpace::translate`].
///
/// Holding it keeps the underlying mappings alive; drop it promptly, since
/// DMA_UNMAP waits for it.
pub struct DmaGuard {
    iova: u64,
    len: usize,
    write: bool,
    segs: Vec<Segment>,
}

impl std::fmt::Debug for DmaGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaGuard")
            .field("iova", &self.iova)
            .field("len", &self.len)
            .field("write", &self.write)
            .field("segments", &self.segs.len())
            .finish()
    }
}

impl DmaGuard {
    /// Start address of the range.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Length of the range in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The scatter-gather list: one host slice per region, in address order.
    pub fn slices(&self) -> impl Iterator<Item = DmaSlice<'_>> + '_ {
        self.segs.iter().filter_map(|s| s.region.slice(s.off, s.len).ok())
    }

    /// Copies the `buf.len()` bytes that start `offset` bytes into the range to `buf`,
    /// across the scatter-gather list. `EINVAL` if they run past the range's end.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.each_part(offset, buf.len(), |s, at| s.copy_to(&mut buf[at..at + s.len()]))
    }

    /// Copies `data` into the range, starting `offset` bytes into it, across the
    /// scatter-gather list (pages are marked dirty while logging). `EINVAL` if it runs past
    /// the range's end; `EACCES` if the guard was not taken for writing.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        if !self.write {
            return Err(Error::PermissionDenied { iova: self.iova.wrapping_add(offset as u64), write: true });
        }
        self.each_part(offset, data.len(), |s, at| {
            s.copy_from(&data[at..at + s.len()]);
            s.len()
        })
    }

    /// Calls `f(part, at)` for each piece of `offset..offset + len` of the range, in order:
    /// `part` is the host slice, `at` its position within the `len` bytes.
    fn each_part(&self, offset: usize, len: usize, mut f: impl FnMut(DmaSlice<'_>, usize) -> usize) -> Result<()> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len);
        let end = end.ok_or(Error::InvalidArgument("guard access beyond the end of the range"))?;
        let mut pos = 0usize;
        for s in self.slices() {
            let (lo, hi) = (pos.max(offset), (pos + s.len()).min(end));
            if lo < hi {
                let part = s.subslice(lo - pos, hi - lo).map_err(|_| Error::InvalidArgument("guard slice"))?;
                f(part, lo - offset);
            }
            pos += s.len();
            if pos >= end {
                break;
            }
        }
        Ok(())
    }
}

impl Drop for DmaGuard {
    fn drop(&mut self) {
        if self.write {
            for s in &self.segs {
                s.region.dirty().mark(s.off, s.len as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::{DmaProt, MapRequest};

    #[test]
    fn segments_split_at_region_boundaries() {
        let s = DmaSpace::default();
        for (iova, prot) in
            [(0x1000u64, DmaProt::READ_WRITE), (0x2000, DmaProt::READ_ONLY), (0x4000, DmaProt::READ_WRITE)]
        {
            s.map(MapRequest { iova, size: 0x1000, prot, ..Default::default() }).unwrap();
        }
        let snap = s.snapshot.load();
        let segs = segments(&snap, 0x1800, 0x1000, false).unwrap();
        let got: Vec<_> = segs.iter().map(|s| (s.region.iova, s.off, s.buf_off, s.len)).collect();
        assert_eq!(got, vec![(0x1000, 0x800, 0, 0x800), (0x2000, 0, 0x800, 0x800)]);
        assert!(matches!(
            segments(&snap, 0x1800, 0x1000, true),
            Err(Error::PermissionDenied { iova: 0x2000, write: true })
        ));
        assert!(matches!(segments(&snap, 0x2800, 0x1000, false), Err(Error::Unmapped { iova: 0x3000 })));
        assert!(segments(&snap, 0x9999, 0, true).unwrap().is_empty());
        assert!(matches!(segments(&snap, u64::MAX, 2, false), Err(Error::Unmapped { .. })));
    }
}
