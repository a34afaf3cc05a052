// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Region types: [`Region`] (info with capabilities), [`RegionMapping`] / [`MappedArea`]
//! (safe mappings of mmappable areas) and [`IoRegionFd`] (DEVICE_GET_REGION_IO_FDS entries).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use vfio_user_proto::wire::{RegionTypeCap, SparseArea, REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE};
use vfio_user_proto::RegionCap;
use vm_memory::{AtomicAccess, Bytes, FileOffset, MmapRegion, VolatileMemory, VolatileSlice};

use crate::error::{Error, Result};

/// What DEVICE_GET_REGION_INFO reported for one region, validated.
#[derive(Debug)]
pub struct Region {
    /// Region index.
    pub index: u32,
    /// `VFIO_REGION_INFO_FLAG_*`. MMAP is cleared when the server sent no fd.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region in its mmap fd (base of the sparse areas).
    pub offset: u64,
    /// The capabilities (SPARSE_MMAP areas are within the region).
    pub caps: Vec<RegionCap>,
    pub(crate) fd: Option<Arc<File>>,
}

impl Region {
    /// Readable through REGION_READ.
    pub fn readable(&self) -> bool {
        self.flags & REGION_FLAG_READ != 0
    }

    /// Writable through REGION_WRITE.
    pub fn writable(&self) -> bool {
        self.flags & REGION_FLAG_WRITE != 0
    }

    /// Mappable: the server set MMAP and sent the fd.
    pub fn mappable(&self) -> bool {
        self.flags & REGION_FLAG_MMAP != 0 && self.fd.is_some()
    }

    /// The SPARSE_MMAP areas, if the server sent that capability.
    pub fn sparse_areas(&self) -> Option<&[SparseArea]> {
        self.caps.iter().find_map(|c| match c {
            RegionCap::SparseMmap(a) => Some(a.as_slice()),
            _ => None,
        })
    }

    /// The SPARSE_MMAP areas (what rust-vmm's `Region::sparse_areas` holds); empty without
    /// that capability. [`SparseMmapArea`] converts into vfio-bindings'
    /// `vfio_region_sparse_mmap_area` with the `vfio-bindings-0-6` or `-0-7` feature.
    pub fn sparse_mmap_areas(&self) -> Vec<SparseMmapArea> {
        self.sparse_areas()
            .unwrap_or_default()
            .iter()
            .map(|a| SparseMmapArea { offset: a.offset, size: a.size })
            .collect()
    }

    /// The areas that may be mmapped: the sparse areas, or the whole region without that
    /// capability; none when the region is not mappable.
    pub fn mmap_areas(&self) -> Vec<SparseArea> {
        if !self.mappable() {
            return Vec::new();
        }
        match self.sparse_areas() {
            Some(a) => a.iter().filter(|a| a.size != 0).copied().collect(),
            None => vec![SparseArea { offset: 0, size: self.size }],
        }
    }

    /// The TYPE capability (device-specific regions).
    pub fn region_type(&self) -> Option<RegionTypeCap> {
        self.caps.iter().find_map(|c| match c {
            RegionCap::Type(t) => Some(*t),
            _ => None,
        })
    }

    /// The mmap fd.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Whether the mmap fd is sealed against shrinking (`F_SEAL_SHRINK`). A server can
    /// otherwise truncate the file behind a mapping, and accesses to the mapping then raise
    /// SIGBUS in the VMM; a VMM that must survive a hostile server maps only sealed regions
    /// (libvfio-user and rust-vmm's server do not seal).
    pub fn sealed_against_shrink(&self) -> bool {
        self.fd
            .as_ref()
            .and_then(|f| rustix::fs::fcntl_get_seals(f).ok())
            .is_some_and(|s| s.contains(rustix::fs::SealFlags::SHRINK))
    }

    /// The `PROT_*` the region's areas are mapped with (its READ / WRITE flags).
    pub(crate) fn prot(&self) -> i32 {
        let mut prot = 0;
        if self.readable() {
            prot |= libc::PROT_READ;
        }
        if self.writable() {
            prot |= libc::PROT_WRITE;
        }
        prot
    }

    /// The mmap fd, after checking that a regular file (memfd) is long enough for every
    /// area: accesses past its end would raise SIGBUS.
    pub(crate) fn checked_mmap_fd(&self) -> Result<Arc<File>> {
        let Some(file) = self.fd.clone() else {
            return Err(Error::Unsupported("region is not mappable"));
        };
        let st = rustix::fs::fstat(&*file).map_err(std::io::Error::from)?;
        let regular = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
        for a in self.mmap_areas() {
            let end = self.offset.checked_add(a.offset).and_then(|o| o.checked_add(a.size));
            if regular && !end.is_some_and(|end| end <= st.st_size as u64) {
                return Err(Error::Protocol(format!("region {}: mmap fd shorter than area {a:?}", self.index)));
            }
        }
        Ok(file)
    }

    /// The mmap fd and the region's offset in it, as vm-memory's `FileOffset` (what
    /// rust-vmm's `Region::file_offset` holds).
    pub fn file_offset(&self) -> Option<FileOffset> {
        self.fd.as_ref().map(|f| FileOffset::from_arc(f.clone(), self.offset))
    }
}

/// One SPARSE_MMAP area of a region: the part `[offset, offset + size)` of the region that
/// may be mmapped. The same fields as vfio-bindings' `vfio_region_sparse_mmap_area`, into
/// which it converts with the `vfio-bindings-0-6` or `vfio-bindings-0-7` feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SparseMmapArea {
    /// Offset of the area within the region.
    pub offset: u64,
    /// Size of the area in bytes.
    pub size: u64,
}

/// One mmapped area of a region; unmapped on drop.
#[derive(Debug)]
pub struct MappedArea {
    pub(crate) offset: u64,
    pub(crate) mmap: MmapRegion,
}

impl MappedArea {
    /// Offset of the area within the region.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Size of the area.
    pub fn len(&self) -> usize {
        self.mmap.size()
    }

    /// Whether the area is empty (never: empty areas are not mapped).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host address of the mapping, e.g. to register it with the hypervisor as guest
    /// memory. Valid while this area (its [`RegionMapping`]) lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.mmap.as_ptr()
    }

    /// The whole area as a volatile slice.
    pub fn as_volatile_slice(&self) -> VolatileSlice<'_> {
        self.mmap.as_volatile_slice()
    }
}

/// The mmapped areas of one region, with bounds-checked volatile accessors. The mappings
/// live as long as this handle. [`Client::reconnect`](crate::Client::reconnect) maps the
/// restarted server's memory in their place, at the same addresses (see there).
#[derive(Debug)]
pub struct RegionMapping {
    pub(crate) inner: Arc<MappedRegion>,
}

/// What a [`RegionMapping`] maps, shared with the client so that a reconnect can map the
/// new server's memory in place.
#[derive(Debug)]
pub(crate) struct MappedRegion {
    pub(crate) index: u32,
    /// The region's access rights (`PROT_*`) the areas are mapped with.
    pub(crate) prot: i32,
    pub(crate) areas: Vec<MappedArea>,
}

impl RegionMapping {
    /// The region index.
    pub fn index(&self) -> u32 {
        self.inner.index
    }

    /// The mapped areas.
    pub fn areas(&self) -> &[MappedArea] {
        &self.inner.areas
    }

    /// The area holding `[offset, offset + len)` and the offset within it.
    fn locate(&self, offset: u64, len: usize) -> Result<(&MappedArea, usize)> {
        let end = offset.checked_add(len as u64).ok_or(Error::InvalidInput("offset + length wraps"))?;
        self.inner
            .areas
            .iter()
            .find(|a| offset >= a.offset && end <= a.offset + a.len() as u64)
            .map(|a| (a, (offset - a.offset) as usize))
            .ok_or(Error::InvalidInput("range not inside one mapped area"))
    }

    /// Copies from the mapping at `offset` (region offset) into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (a, off) = self.locate(offset, buf.len())?;
        a.mmap.as_volatile_slice().read_slice(buf, off).map_err(|_| Error::InvalidInput("bad range"))
    }

    /// Copies `data` into the mapping at `offset` (region offset).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let (a, off) = self.locate(offset, data.len())?;
        a.mmap.as_volatile_slice().write_slice(data, off).map_err(|_| Error::InvalidInput("bad range"))
    }

    /// One aligned access of exactly `size_of::<T>()` bytes (a device register read).
    pub fn load<T: AtomicAccess>(&self, offset: u64) -> Result<T> {
        let (a, off) = self.locate(offset, std::mem::size_of::<T>())?;
        a.mmap.as_volatile_slice().load(off, Ordering::SeqCst).map_err(|_| Error::InvalidInput("unaligned access"))
    }

    /// One aligned store of exactly `size_of::<T>()` bytes (a device register write).
    pub fn store<T: AtomicAccess>(&self, offset: u64, val: T) -> Result<()> {
        let (a, off) = self.locate(offset, std::mem::size_of::<T>())?;
        a.mmap
            .as_volatile_slice()
            .store(val, off, Ordering::SeqCst)
            .map_err(|_| Error::InvalidInput("unaligned access"))
    }

    /// A volatile slice of `[offset, offset + len)`.
    pub fn slice(&self, offset: u64, len: usize) -> Result<VolatileSlice<'_>> {
        let (a, off) = self.locate(offset, len)?;
        a.mmap.get_slice(off, len).map_err(|_| Error::InvalidInput("bad range"))
    }
}

/// An ioeventfd (or ioregionfd) from DEVICE_GET_REGION_IO_FDS.
#[derive(Debug, Clone)]
pub struct IoRegionFd {
    /// Offset within the region.
    pub offset: u64,
    /// Access size (0: any).
    pub size: u64,
    /// `IO_FD_TYPE_*`: 0 ioeventfd, 1 ioregionfd, 2 libvfio-user shadow ioeventfd.
    pub kind: u32,
    /// `IOEVENTFD_FLAG_*` (DATAMATCH, PIO, ...).
    pub flags: u32,
    /// The value to match (or the ioregionfd user data).
    pub datamatch: u64,
    /// The fd, shared among the entries that named the same one.
    pub fd: Arc<OwnedFd>,
}
