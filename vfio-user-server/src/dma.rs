// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA: the client's DMA_MAP / DMA_UNMAP bookkeeping ([`DmaMappings`]) and device access to
//! guest memory ([`DmaHandle`]), through the region's fd when the client passed one, else
//! with DMA_READ / DMA_WRITE messages to the client ([`DmaTransport`]).
//!
//! This module is the seam where the `vfio-user-dma` crate's `DmaSpace` plugs in: it can
//! replace [`DmaMappings`] (same validation rules) and use [`DmaHandle`] as its
//! `DmaTransport` for regions without an fd.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vfio_user_proto::wire::{DMA_MAP_FLAG_READ, DMA_MAP_FLAG_WRITE};
use vm_memory::ByteValued;

use crate::channel::ChannelSlot;
use crate::error::{Error, Result};

/// One DMA region the client mapped.
#[derive(Clone, Debug)]
pub struct DmaRegion {
    /// DMA (IO virtual) address.
    pub iova: u64,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region in `fd`.
    pub offset: u64,
    /// `DMA_MAP_FLAG_*` bits (READ, WRITE, and libvfio-user's MMAP / FILE_IO).
    pub flags: u32,
    /// The file backing the region; `None` for message-based access.
    pub fd: Option<Arc<OwnedFd>>,
}

impl DmaRegion {
    /// Whether the device may read the region.
    pub fn readable(&self) -> bool {
        self.flags & DMA_MAP_FLAG_READ != 0
    }

    /// Whether the device may write the region.
    pub fn writable(&self) -> bool {
        self.flags & DMA_MAP_FLAG_WRITE != 0
    }

    fn end(&self) -> u64 {
        self.iova + self.size
    }
}

/// The client's DMA mappings, keyed by IOVA. Validation: page-aligned address and size,
/// no overlap (`EEXIST`), at most `max_maps` regions (`ENOSPC`), unmap only of an exact
/// earlier mapping (`ENOENT`).
#[derive(Debug)]
pub struct DmaMappings {
    regions: BTreeMap<u64, DmaRegion>,
    max_maps: usize,
    page_size: u64,
}

impl DmaMappings {
    /// An empty set allowing `max_maps` regions of `page_size` granularity.
    pub fn new(max_maps: usize, page_size: u64) -> Self {
        DmaMappings { regions: BTreeMap::new(), max_maps, page_size: page_size.max(1) }
    }

    /// Adds a region.
    pub fn map(&mut self, region: DmaRegion) -> Result<()> {
        let mask = self.page_size - 1;
        if region.size == 0 || region.iova & mask != 0 || region.size & mask != 0 {
            return Err(Error::InvalidArgument("DMA region not page aligned"));
        }
        if region.fd.is_some() && region.offset & mask != 0 {
            return Err(Error::InvalidArgument("DMA region file offset not page aligned"));
        }
        let end = region.iova.checked_add(region.size).ok_or(Error::InvalidArgument("DMA region wraps"))?;
        if self.regions.range(..end).next_back().is_some_and(|(_, r)| r.end() > region.iova) {
            return Err(Error::Overlap);
        }
        if self.regions.len() >= self.max_maps {
            return Err(Error::TooManyMappings);
        }
        self.regions.insert(region.iova, region);
        Ok(())
    }

    /// Removes the region mapped at exactly `iova` with exactly `size`.
    pub fn unmap(&mut self, iova: u64, size: u64) -> Result<DmaRegion> {
        match self.regions.get(&iova) {
            Some(r) if r.size == size => Ok(self.regions.remove(&iova).ok_or(Error::NoSuchMapping)?),
            _ => Err(Error::NoSuchMapping),
        }
    }

    /// Removes every region.
    pub fn unmap_all(&mut self) -> Vec<DmaRegion> {
        std::mem::take(&mut self.regions).into_values().collect()
    }

    /// The region containing `iova..iova + len` entirely.
    pub fn find(&self, iova: u64, len: u64) -> Option<&DmaRegion> {
        let end = iova.checked_add(len)?;
        self.regions.range(..=iova).next_back().map(|(_, r)| r).filter(|r| end <= r.end())
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether there are no regions.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

/// Moves bytes between the device and guest memory by messages: what the server offers the
/// `vfio-user-dma` crate for regions it cannot map.
pub trait DmaTransport {
    /// Largest transfer one message may carry (the client's `max_data_xfer_size`).
    fn max_data_xfer_size(&self) -> usize;
    /// Reads guest memory at `iova` into `buf`.
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()>;
    /// Writes `data` to guest memory at `iova`.
    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()>;
}

/// A cloneable, thread-safe handle with which a device reads and writes guest memory.
///
/// Each access must lie within one DMA region of the current client. Regions with an fd
/// are accessed with `pread`/`pwrite` on it; the others with DMA_READ / DMA_WRITE messages,
/// split at the client's `max_data_xfer_size`, on the twin socket when negotiated,
/// otherwise on the main socket. On the main socket the reply is routed back by the
/// thread handling requests: a device thread waits for it, and a device callback running
/// on that thread receives it itself (queueing client commands that arrive meanwhile).
/// A device thread therefore must not make the request-handling thread wait for it while
/// it does message-based DMA without a twin socket — in particular it must not hold a lock
/// the device's callbacks take (such as the `Mutex` around a [`DeviceMut`](crate::DeviceMut))
/// across such an access.
#[derive(Clone, Debug)]
pub struct DmaHandle {
    pub(crate) maps: Arc<RwLock<DmaMappings>>,
    pub(crate) channel: ChannelSlot,
}

fn file_io(
    fd: &OwnedFd,
    mut off: u64,
    mut len: usize,
    mut step: impl FnMut(&OwnedFd, u64, usize) -> rustix::io::Result<usize>,
) -> Result<()> {
    let mut done = 0;
    while len > 0 {
        match step(fd, off, done)? {
            0 => return Err(Error::InvalidArgument("DMA region beyond the end of its file")),
            n => {
                off += n as u64;
                done += n;
                len -= n.min(len);
            }
        }
    }
    Ok(())
}

impl DmaHandle {
    /// Takes the mappings for a change. Waits for fd-backed accesses in flight, so that
    /// once a region is removed no access to it is under way.
    pub(crate) fn maps_mut(&self) -> RwLockWriteGuard<'_, DmaMappings> {
        self.maps.write().unwrap_or_else(|e| e.into_inner())
    }

    fn maps(&self) -> RwLockReadGuard<'_, DmaMappings> {
        self.maps.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The region containing `iova..iova + len`, if the client mapped one.
    pub fn region(&self, iova: u64, len: u64) -> Option<DmaRegion> {
        self.maps().find(iova, len).cloned()
    }

    fn checked(maps: &DmaMappings, iova: u64, len: usize, write: bool) -> Result<&DmaRegion> {
        let r = maps.find(iova, len as u64).ok_or(Error::NoSuchMapping)?;
        if (write && !r.writable()) || (!write && !r.readable()) {
            return Err(Error::InvalidArgument("DMA region does not allow this access"));
        }
        Ok(r)
    }

    /// Reads guest memory at `iova` into `buf`.
    pub fn read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        let maps = self.maps();
        let r = Self::checked(&maps, iova, buf.len(), false)?;
        if let Some(fd) = &r.fd {
            // The read lock is held until the access is over (see `maps_mut`).
            let len = buf.len();
            return file_io(fd, r.offset + (iova - r.iova), len, |fd, off, done| {
                rustix::io::pread(fd, &mut buf[done..], off)
            });
        }
        drop(maps);
        self.channel.get()?.dma_read(iova, buf)
    }

    /// Writes `data` to guest memory at `iova`.
    pub fn write(&self, iova: u64, data: &[u8]) -> Result<()> {
        let maps = self.maps();
        let r = Self::checked(&maps, iova, data.len(), true)?;
        if let Some(fd) = &r.fd {
            return file_io(fd, r.offset + (iova - r.iova), data.len(), |fd, off, done| {
                rustix::io::pwrite(fd, &data[done..], off)
            });
        }
        drop(maps);
        self.channel.get()?.dma_write(iova, data)
    }
}

impl DmaHandle {
    /// Reads a plain-data object (a descriptor, say) from guest memory at `iova`.
    pub fn read_obj<T: ByteValued + Default>(&self, iova: u64) -> Result<T> {
        let mut v = T::default();
        self.read(iova, v.as_mut_slice())?;
        Ok(v)
    }

    /// Writes a plain-data object to guest memory at `iova`.
    pub fn write_obj<T: ByteValued>(&self, iova: u64, v: &T) -> Result<()> {
        self.write(iova, v.as_slice())
    }
}

impl DmaTransport for DmaHandle {
    fn max_data_xfer_size(&self) -> usize {
        self.channel
            .get()
            .map_or(vfio_user_proto::version::DEFAULT_MAX_DATA_XFER_SIZE as usize, |c| c.max_data_xfer_size())
    }

    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        Self::checked(&self.maps(), iova, buf.len(), false)?;
        self.channel.get()?.dma_read(iova, buf)
    }

    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()> {
        Self::checked(&self.maps(), iova, data.len(), true)?;
        self.channel.get()?.dma_write(iova, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(iova: u64, size: u64) -> DmaRegion {
        DmaRegion { iova, size, offset: 0, flags: DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE, fd: None }
    }

    #[test]
    fn map_rules() {
        let mut m = DmaMappings::new(3, 4096);
        m.map(region(0x10000, 0x2000)).unwrap();
        assert!(matches!(m.map(region(0x10000, 0x1000)), Err(Error::Overlap)));
        assert!(matches!(m.map(region(0x11000, 0x1000)), Err(Error::Overlap)));
        assert!(matches!(m.map(region(0xf000, 0x2000)), Err(Error::Overlap)));
        assert!(matches!(m.map(region(0x0, 0x100000)), Err(Error::Overlap)));
        assert!(matches!(m.map(region(0x12001, 0x1000)), Err(Error::InvalidArgument(_))));
        assert!(matches!(m.map(region(0xffff_ffff_ffff_f000, 0x2000)), Err(Error::InvalidArgument(_))));
        m.map(region(0x12000, 0x1000)).unwrap();
        m.map(region(0xf000, 0x1000)).unwrap();
        assert!(matches!(m.map(region(0x20000, 0x1000)), Err(Error::TooManyMappings)));
        assert_eq!(m.find(0x10ff0, 0x20).unwrap().iova, 0x10000);
        assert!(m.find(0x11ff0, 0x20).is_none(), "spans two regions");
        assert!(matches!(m.unmap(0x10000, 0x1000), Err(Error::NoSuchMapping)));
        assert!(matches!(m.unmap(0x11000, 0x1000), Err(Error::NoSuchMapping)));
        assert_eq!(m.unmap(0x10000, 0x2000).unwrap().size, 0x2000);
        assert_eq!(m.unmap_all().len(), 2);
        assert!(m.is_empty());
    }
}
