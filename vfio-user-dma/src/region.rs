// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One DMA mapping: parameters, backing (mmap, file I/O or messages) and
//! per-region access primitives.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryRegion, GuestRegionMmap, MemoryRegionAddress, MmapRegion, VolatileSlice,
};

use crate::bitmap::DirtyBitmap;
use crate::error::{Error, Result};

/// What the device may do with a mapping: the workspace's one permission type, from the
/// wire crate (the DMA_MAP read/write flags).
pub use vfio_user_proto::DmaProt;

fn mmap_prot(prot: DmaProt) -> i32 {
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
    pub prot: DmaProt,
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
    /// The fd is mmapped into this process (it is sealed against shrinking, so the
    /// mapping cannot fault); zero-copy access is possible. The fd itself is closed.
    Mmap,
    /// The fd is accessed with `pread`/`pwrite`: libvfio-user's `FILE_IO` flag, or an fd
    /// that is not sealed against shrinking (`F_SEAL_SHRINK`), whose mapping could fault.
    FileIo,
    /// No fd: accessed with DMA_READ/DMA_WRITE messages.
    Message,
}

/// Public description of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    /// Start address.
    pub iova: u64,
    /// Size in bytes.
    pub size: u64,
    /// Permissions.
    pub prot: DmaProt,
    /// Backing kind.
    pub kind: RegionKind,
}

pub(crate) enum Backing {
    Mmap(Mapped),
    FileIo { file: File, offset: u64, dirty: DirtyBitmap },
    Message { dirty: DirtyBitmap },
}

/// A mapping. Shared as `Arc<Region>` between the space, its snapshots and
/// device guards; dropping the last reference unmaps the memory and closes
/// the fd.
pub(crate) struct Region {
    pub(crate) iova: u64,
    pub(crate) size: u64,
    pub(crate) prot: DmaProt,
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
                } else if sealed_against_shrinking(&file) {
                    // The seal is checked before the size: once sealed, the size checked
                    // here can never drop, so the mapping can never fault.
                    Backing::Mmap(Mapped::new(file, iova, size, file_offset, prot)?)
                } else {
                    // A file that may shrink is never touched through a pointer: the client
                    // could truncate it and a device access would kill the server with
                    // SIGBUS. pread/pwrite report the short file as an error instead.
                    check_file_size(&file, file_offset, size)?;
                    Backing::FileIo { file, offset: file_offset, dirty: DirtyBitmap::new(size) }
                }
            }
        };
        Ok(Region { iova, size, prot, backing })
    }

    /// Whether mapping `req` (which has an fd) would keep it open: the `FILE_IO` flag, or
    /// an fd not sealed against shrinking.
    pub(crate) fn keeps_fd(req: &MapRequest) -> bool {
        match &req.fd {
            Some(fd) => req.file_io || !sealed_against_shrinking(fd),
            None => false,
        }
    }

    /// Whether this mapping holds an open fd.
    pub(crate) fn keeps_open_fd(&self) -> bool {
        matches!(self.backing, Backing::FileIo { .. })
    }

    /// One past the last address (no overflow: checked at map time).
    pub(crate) fn end(&self) -> u64 {
        self.iova + self.size
    }

    pub(crate) fn info(&self) -> MappingInfo {
        MappingInfo {
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
            Backing::Mmap(m) if self.prot == DmaProt::READ_WRITE => Some(&m.region),
            _ => None,
        }
    }

    pub(crate) fn dirty(&self) -> &DirtyBitmap {
        match &self.backing {
            Backing::Mmap(m) => {
                let r: &MmapRegion<DirtyBitmap> = &m.region;
                r.bitmap()
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
            Backing::Mmap(m) => {
                m.region.get_slice(MemoryRegionAddress(off), len).map_err(|_| Error::Unmapped { iova: self.iova + off })
            }
            _ => Err(Error::NotMappable { iova: self.iova + off }),
        }
    }

    /// Copies `[off, off + buf.len())` of an mmap or file-I/O region into `buf`.
    /// Returns `false` for message regions (the caller uses the transport).
    pub(crate) fn read_local(&self, off: u64, buf: &mut [u8]) -> Result<bool> {
        match &self.backing {
            Backing::Mmap(m) => {
                m.region
                    .read_slice(buf, MemoryRegionAddress(off))
                    .map_err(|_| Error::Unmapped { iova: self.iova + off })?;
            }
            Backing::FileIo { file, offset, .. } => {
                file.read_exact_at(buf, offset + off).map_err(|e| self.file_error(e, off))?
            }
            Backing::Message { .. } => return Ok(false),
        }
        Ok(true)
    }

    /// Copies `data` to `[off, off + data.len())` of an mmap or file-I/O
    /// region, marking pages dirty. Returns `false` for message regions.
    pub(crate) fn write_local(&self, off: u64, data: &[u8]) -> Result<bool> {
        match &self.backing {
            // The vm-memory write path marks the DirtyBitmap itself.
            Backing::Mmap(m) => m
                .region
                .write_slice(data, MemoryRegionAddress(off))
                .map_err(|_| Error::Unmapped { iova: self.iova + off })?,
            Backing::FileIo { file, offset, dirty } => {
                file.write_all_at(data, offset + off).map_err(|e| self.file_error(e, off))?;
                dirty.mark(off, data.len() as u64);
            }
            Backing::Message { .. } => return Ok(false),
        }
        Ok(true)
    }
}

impl Region {
    /// A file-I/O error at region offset `off`: a file that ended early (the client
    /// truncated it after DMA_MAP) is `EFAULT` ([`Error::BackingShrunk`]), as an access
    /// to memory that is not there; anything else keeps its OS errno.
    fn file_error(&self, e: std::io::Error, off: u64) -> Error {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::WriteZero => {
                Error::BackingShrunk { iova: self.iova + off }
            }
            _ => Error::Io(e),
        }
    }
}

/// Whether `file` carries the `F_SEAL_SHRINK` seal (a memfd created with
/// `MFD_ALLOW_SEALING` and sealed so; QEMU's `memory-backend-memfd` does it by default).
/// Seals cannot be removed, so such a file never gets shorter. Files that cannot carry
/// seals (`EINVAL`) are not sealed.
fn sealed_against_shrinking(file: impl std::os::fd::AsFd) -> bool {
    rustix::fs::fcntl_get_seals(file).is_ok_and(|s| s.contains(rustix::fs::SealFlags::SHRINK))
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

/// A mapping of a client's fd, made by this crate so that the fd can be closed at once:
/// a mapping needs no open descriptor, and the fd table, not the mapping count, would
/// otherwise bound how many DMA_MAPs a server can hold.
pub(crate) struct Mapped {
    /// Declared before `_unmap`, so dropped (never used) before the memory goes.
    pub(crate) region: GuestRegionMmap<DirtyBitmap>,
    _unmap: Unmap,
}

/// Owns one `mmap`: unmaps it when dropped.
struct Unmap {
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: `Unmap` only names a mapping for `munmap`; it is never dereferenced, so it may
// move to and be shared between threads.
unsafe impl Send for Unmap {}
// SAFETY: as above: no access through the pointer, only the final `munmap`.
unsafe impl Sync for Unmap {}

impl Drop for Unmap {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` are a mapping made by `Mapped::new` that nothing else unmaps,
        // and the region built on it (declared first in `Mapped`) is already dropped.
        unsafe {
            libc::munmap(self.addr, self.len);
        }
    }
}

impl Mapped {
    fn new(file: File, iova: u64, size: u64, offset: u64, prot: DmaProt) -> Result<Mapped> {
        // A regular file (memfd included) that is too small would SIGBUS on access.
        check_file_size(&file, offset, size)?;
        let len = usize::try_from(size).map_err(|_| Error::InvalidArgument("size too large"))?;
        let off = libc::off_t::try_from(offset).map_err(|_| Error::InvalidArgument("file offset too large"))?;
        // SAFETY: a new mapping at an address the kernel chooses (no MAP_FIXED) of an fd we
        // own; nothing else in the process is affected. The result is checked below.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, mmap_prot(prot), libc::MAP_SHARED, file.as_raw_fd(), off) };
        if addr == libc::MAP_FAILED {
            return Err(Error::Mmap(std::io::Error::last_os_error()));
        }
        let unmap = Unmap { addr, len };
        // The mapping keeps the file alive in the kernel: the fd is closed now.
        drop(file);
        // SAFETY: `addr` and `len` are the mapping just made; `unmap` keeps it until the
        // region built here is dropped (`Mapped` drops `region` first).
        let builder = unsafe {
            MmapRegionBuilder::new_with_bitmap(len, DirtyBitmap::new(size))
                .with_mmap_prot(mmap_prot(prot))
                .with_mmap_flags(libc::MAP_SHARED)
                .with_raw_mmap_pointer(addr.cast())
        };
        let mmap = builder.build().map_err(|_| Error::InvalidArgument("invalid mmap parameters"))?;
        let region =
            GuestRegionMmap::new(mmap, GuestAddress(iova)).ok_or(Error::InvalidArgument("iova + size overflows"))?;
        Ok(Mapped { region, _unmap: unmap })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prot_to_mmap() {
        assert_eq!(mmap_prot(DmaProt::READ_ONLY), libc::PROT_READ);
        assert_eq!(mmap_prot(DmaProt::WRITE_ONLY), libc::PROT_WRITE);
        assert_eq!(mmap_prot(DmaProt::READ_WRITE), libc::PROT_READ | libc::PROT_WRITE);
    }

    #[test]
    fn message_region_checks() {
        let r = Region::new(MapRequest { iova: 0x1000, size: 0x2000, prot: DmaProt::READ_ONLY, ..Default::default() })
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
