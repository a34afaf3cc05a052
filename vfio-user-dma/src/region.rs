// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One DMA mapping: parameters, backing (mmap, file I/O or messages) and
//! per-region access primitives.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryRegion, GuestRegionMmap, MemoryRegionAddress, MmapRegion, VolatileSlice,
};

use crate::bitmap::DirtyBitmap;
use crate::error::{Error, Result};

/// What the device may do with a mapping: the workspace's one permission type, from the
/// wire crate (the DMA_MAP read/write flags).
pub use vfio_user_proto::DmaProt as Prot;

fn mmap_prot(prot: Prot) -> i32 {
    (if prot.read() { libc::PROT_READ } else { 0 }) | (if prot.write() { libc::PROT_WRITE } else { 0 })
}

/// Parameters of one DMA_MAP request.
#[derive(Debug, Default)]
pub struct MapRequest {
    /// I/O virtual address (guest physical address) of the mapping.
    pub iova: u64,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the mapping inside `fd` (ignored without fd).
    pub file_offset: u64,
    /// Permissions of the device on this memory.
    pub prot: Prot,
    /// The client's fd; `None` means the memory is reached with DMA_READ /
    /// DMA_WRITE messages through the [`DmaTransport`](crate::DmaTransport).
    pub fd: Option<OwnedFd>,
    /// libvfio-user's `VFIO_USER_F_DMA_REGION_FILE_IO`: access `fd` with
    /// `pread`/`pwrite` at `file_offset` instead of mapping it. Requires `fd`.
    pub file_io: bool,
}

/// How the device reaches a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// The fd is mmapped into this process; zero-copy access is possible.
    Mmap,
    /// The fd is accessed with `pread`/`pwrite`.
    FileIo,
    /// No fd: accessed with DMA_READ/DMA_WRITE messages.
    Message,
}

/// Public description of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Start address.
    pub iova: u64,
    /// Size in bytes.
    pub size: u64,
    /// Permissions.
    pub prot: Prot,
    /// Backing kind.
    pub kind: RegionKind,
}

pub(crate) enum Backing {
    Mmap(GuestRegionMmap<DirtyBitmap>),
    FileIo { file: File, offset: u64, dirty: DirtyBitmap },
    Message { dirty: DirtyBitmap },
}

/// A mapping. Shared as `Arc<Region>` between the space, its snapshots and
/// device guards; dropping the last reference unmaps the memory and closes
/// the fd.
pub(crate) struct Region {
    pub(crate) iova: u64,
    pub(crate) size: u64,
    pub(crate) prot: Prot,
    pub(crate) backing: Backing,
}

impl Region {
    /// Creates the backing for a request whose `iova`, `size` and
    /// `file_offset` were already validated (non-zero, no overflow, aligned).
    pub(crate) fn new(req: MapRequest) -> Result<Region> {
        let MapRequest { iova, size, file_offset, prot, fd, file_io } = req;
        let backing = match fd {
            None if file_io => return Err(Error::InvalidArgument("FILE_IO requires an fd")),
            None => Backing::Message { dirty: DirtyBitmap::new(size) },
            Some(fd) => {
                let file = File::from(fd);
                if file_offset.checked_add(size).map_or(true, |end| end > i64::MAX as u64) {
                    return Err(Error::InvalidArgument("file offset + size out of range"));
                }
                if file_io {
                    // procfs files such as /proc/<pid>/mem (FILE_IO's use case) are regular
                    // files of size 0: a size of 0 is taken as "unknown".
                    if file.metadata()?.len() != 0 {
                        check_file_size(&file, file_offset, size)?;
                    }
                    Backing::FileIo { file, offset: file_offset, dirty: DirtyBitmap::new(size) }
                } else {
                    Backing::Mmap(mmap_region(file, iova, size, file_offset, prot)?)
                }
            }
        };
        Ok(Region { iova, size, prot, backing })
    }

    /// One past the last address (no overflow: checked at map time).
    pub(crate) fn end(&self) -> u64 {
        self.iova + self.size
    }

    pub(crate) fn info(&self) -> RegionInfo {
        RegionInfo {
            iova: self.iova,
            size: self.size,
            prot: self.prot,
            kind: match self.backing {
                Backing::Mmap(_) => RegionKind::Mmap,
                Backing::FileIo { .. } => RegionKind::FileIo,
                Backing::Message { .. } => RegionKind::Message,
            },
        }
    }

    /// The vm-memory region for the [`DmaMemory`](crate::DmaMemory) view:
    /// only mmapped mappings that are both readable and writable (a
    /// vm-memory write to a `PROT_READ` mapping would fault).
    pub(crate) fn view(&self) -> Option<&GuestRegionMmap<DirtyBitmap>> {
        match &self.backing {
            Backing::Mmap(r) if self.prot == Prot::READ_WRITE => Some(r),
            _ => None,
        }
    }

    pub(crate) fn dirty(&self) -> &DirtyBitmap {
        match &self.backing {
            Backing::Mmap(r) => {
                let m: &MmapRegion<DirtyBitmap> = r;
                m.bitmap()
            }
            Backing::FileIo { dirty, .. } | Backing::Message { dirty } => dirty,
        }
    }

    pub(crate) fn check(&self, iova: u64, write: bool) -> Result<()> {
        let ok = if write { self.prot.write() } else { self.prot.read() };
        if ok {
            Ok(())
        } else {
            Err(Error::PermissionDenied { iova, write })
        }
    }

    /// Zero-copy slice of `[off, off + len)` of this region (`off`, `len`
    /// inside the region). Only for mmap regions.
    pub(crate) fn slice(
        &self,
        off: u64,
        len: usize,
    ) -> Result<VolatileSlice<'_, vm_memory::bitmap::BS<'_, DirtyBitmap>>> {
        match &self.backing {
            Backing::Mmap(r) => {
                r.get_slice(MemoryRegionAddress(off), len).map_err(|_| Error::Unmapped { iova: self.iova + off })
            }
            _ => Err(Error::NotMappable { iova: self.iova + off }),
        }
    }

    /// Copies `[off, off + buf.len())` of an mmap or file-I/O region into `buf`.
    /// Returns `false` for message regions (the caller uses the transport).
    pub(crate) fn read_local(&self, off: u64, buf: &mut [u8]) -> Result<bool> {
        match &self.backing {
            Backing::Mmap(r) => {
                r.read_slice(buf, MemoryRegionAddress(off)).map_err(|_| Error::Unmapped { iova: self.iova + off })?;
            }
            Backing::FileIo { file, offset, .. } => file.read_exact_at(buf, offset + off)?,
            Backing::Message { .. } => return Ok(false),
        }
        Ok(true)
    }

    /// Copies `data` to `[off, off + data.len())` of an mmap or file-I/O
    /// region, marking pages dirty. Returns `false` for message regions.
    pub(crate) fn write_local(&self, off: u64, data: &[u8]) -> Result<bool> {
        match &self.backing {
            // The vm-memory write path marks the DirtyBitmap itself.
            Backing::Mmap(r) => {
                r.write_slice(data, MemoryRegionAddress(off)).map_err(|_| Error::Unmapped { iova: self.iova + off })?
            }
            Backing::FileIo { file, offset, dirty } => {
                file.write_all_at(data, offset + off)?;
                dirty.mark(off, data.len() as u64);
            }
            Backing::Message { .. } => return Ok(false),
        }
        Ok(true)
    }
}

/// Refuses a regular file (memfd included) smaller than `offset + size`: mapped, it would
/// SIGBUS on access; read with FILE_IO, it would come up short. Other fds have no
/// meaningful size and are accepted.
fn check_file_size(file: &File, offset: u64, size: u64) -> Result<()> {
    let meta = file.metadata()?;
    if meta.file_type().is_file() && meta.len() < offset.saturating_add(size) {
        return Err(Error::InvalidArgument("fd is smaller than offset + size"));
    }
    Ok(())
}

fn mmap_region(file: File, iova: u64, size: u64, offset: u64, prot: Prot) -> Result<GuestRegionMmap<DirtyBitmap>> {
    // A regular file (memfd included) that is too small would SIGBUS on access.
    check_file_size(&file, offset, size)?;
    let len = usize::try_from(size).map_err(|_| Error::InvalidArgument("size too large"))?;
    let mmap = MmapRegionBuilder::new_with_bitmap(len, DirtyBitmap::new(size))
        .with_mmap_prot(mmap_prot(prot))
        .with_mmap_flags(libc::MAP_SHARED)
        .with_file_offset(FileOffset::new(file, offset))
        .build()
        .map_err(|e| match e {
            vm_memory::mmap::MmapRegionError::Mmap(io) => Error::Mmap(io),
            _ => Error::InvalidArgument("invalid mmap parameters"),
        })?;
    GuestRegionMmap::new(mmap, GuestAddress(iova)).ok_or(Error::InvalidArgument("iova + size overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prot_to_mmap() {
        assert_eq!(mmap_prot(Prot::READ_ONLY), libc::PROT_READ);
        assert_eq!(mmap_prot(Prot::WRITE_ONLY), libc::PROT_WRITE);
        assert_eq!(mmap_prot(Prot::READ_WRITE), libc::PROT_READ | libc::PROT_WRITE);
    }

    #[test]
    fn message_region_checks() {
        let r = Region::new(MapRequest { iova: 0x1000, size: 0x2000, prot: Prot::READ_ONLY, ..Default::default() })
            .unwrap();
        assert_eq!(r.end(), 0x3000);
        assert_eq!(r.info().kind, RegionKind::Message);
        assert!(r.check(0x1000, false).is_ok());
        assert!(matches!(r.check(0x1004, true), Err(Error::PermissionDenied { iova: 0x1004, write: true })));
        assert!(matches!(r.slice(0, 1), Err(Error::NotMappable { iova: 0x1000 })));
        assert!(!r.read_local(0, &mut [0; 4]).unwrap());
        assert!(!r.write_local(0, &[0; 4]).unwrap());
        assert!(!r.dirty().is_enabled());
    }
}
