// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA_MAP, DMA_UNMAP and the server-to-client DMA_READ / DMA_WRITE bodies.

use super::wire_struct;

/// DMA_MAP flag: the server may read the region.
pub const DMA_MAP_FLAG_READ: u32 = 1 << 0;
/// DMA_MAP flag: the server may write the region.
pub const DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
/// DMA_MAP flag (libvfio-user extension, not in the spec): mmap the attached fd.
pub const DMA_MAP_FLAG_MMAP: u32 = 1 << 2;
/// DMA_MAP flag (libvfio-user extension, not in the spec): access the attached fd with
/// `pread`/`pwrite` instead of mapping it.
pub const DMA_MAP_FLAG_FILE_IO: u32 = 1 << 3;
/// Every DMA_MAP flag this crate understands.
pub const DMA_MAP_FLAGS_KNOWN: u32 = DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE | DMA_MAP_FLAG_MMAP | DMA_MAP_FLAG_FILE_IO;

bitflags::bitflags! {
    /// What the server may do with a DMA region: the permission bits of DMA_MAP's flags.
    /// The one permission type of the workspace (the client maps with it, the DMA space
    /// enforces it).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct DmaProt: u32 {
        /// The server may read (DMA_READ, device reads of guest memory).
        const READ = DMA_MAP_FLAG_READ;
        /// The server may write.
        const WRITE = DMA_MAP_FLAG_WRITE;
    }
}

impl DmaProt {
    /// Read and write.
    pub const READ_WRITE: DmaProt = DmaProt::READ.union(DmaProt::WRITE);
    /// Read only.
    pub const READ_ONLY: DmaProt = DmaProt::READ;
    /// Write only.
    pub const WRITE_ONLY: DmaProt = DmaProt::WRITE;

    /// The permission bits of DMA_MAP flags (other bits are ignored).
    pub fn from_map_flags(flags: u32) -> DmaProt {
        DmaProt::from_bits_truncate(flags)
    }

    /// Whether reads are allowed.
    pub fn read(self) -> bool {
        self.contains(DmaProt::READ)
    }

    /// Whether writes are allowed.
    pub fn write(self) -> bool {
        self.contains(DmaProt::WRITE)
    }
}

/// The DMA_MAP request body (32 bytes, one region per message).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaMap {
    /// Size of this struct: 32.
    pub argsz: u32,
    /// `DMA_MAP_FLAG_*`.
    pub flags: u32,
    /// Offset of the region within the attached fd (0 without an fd).
    pub offset: u64,
    /// DMA (IO virtual) address of the region.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
}
wire_struct!(DmaMap, 32);

impl DmaMap {
    /// A DMA_MAP body (`argsz` is its own size).
    pub fn new(flags: u32, offset: u64, addr: u64, size: u64) -> Self {
        DmaMap { argsz: std::mem::size_of::<DmaMap>() as u32, flags, offset, addr, size }
    }
}

/// DMA_UNMAP flag (Linux value, kept by libvfio-user): the request carries a
/// [`DmaBitmap`] and the reply returns the region's dirty bitmap. From the 2021 protocol.
pub const DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1 << 0;
/// DMA_UNMAP flag (Linux value, sent by QEMU): unmap every region; address and size are 0.
pub const DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;
/// Every DMA_UNMAP flag this crate understands.
pub const DMA_UNMAP_FLAGS_KNOWN: u32 = DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | DMA_UNMAP_FLAG_ALL;

/// The DMA_UNMAP request body, echoed by the reply (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaUnmap {
    /// In the request: the largest reply payload accepted.
    pub argsz: u32,
    /// `DMA_UNMAP_FLAG_*`.
    pub flags: u32,
    /// DMA address of the region.
    pub addr: u64,
    /// Size of the region.
    pub size: u64,
}
wire_struct!(DmaUnmap, 24);

/// `struct vfio_user_bitmap`: follows [`DmaUnmap`] when `GET_DIRTY_BITMAP` is set (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaBitmap {
    /// Page size one bit stands for.
    pub pgsize: u64,
    /// Size of the bitmap in bytes.
    pub size: u64,
}
wire_struct!(DmaBitmap, 16);

/// The DMA_READ / DMA_WRITE access header (16 bytes); data follows in DMA_READ replies and
/// DMA_WRITE requests.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaAccess {
    /// DMA address.
    pub addr: u64,
    /// Number of bytes.
    pub count: u64,
}
wire_struct!(DmaAccess, 16);

impl DmaBitmap {
    /// The bytes of a DMA_UNMAP dirty bitmap over `size` bytes of memory, one bit per
    /// `pgsize` page (`pgsize` a power of two; checked by the decoder and the client).
    pub fn bytes_for(size: u64, pgsize: u64) -> u64 {
        size.div_ceil(pgsize).div_ceil(8)
    }
}

/// Bytes of the DMA_UNMAP entry (request and reply echo).
pub const DMA_UNMAP_SIZE: u32 = 24;
/// Bytes of the DMA_UNMAP entry followed by the bitmap header (before the bitmap itself).
pub const DMA_UNMAP_WITH_BITMAP_SIZE: u64 = 40;

/// A DMA_UNMAP request, typed by its flags (the decoder accepts exactly these three forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaUnmapOp {
    /// Unmap the one mapping at exactly `addr`..`addr + size` (no flags).
    One {
        /// DMA address of the mapping.
        addr: u64,
        /// Its size.
        size: u64,
    },
    /// `UNMAP_ALL`: unmap every mapping (address and size are 0 on the wire).
    All,
    /// `GET_DIRTY_BITMAP` (2021 protocol): unmap one mapping and return its dirty bitmap.
    WithDirtyBitmap {
        /// DMA address of the mapping.
        addr: u64,
        /// Its size.
        size: u64,
        /// The bitmap asked for (page size and bytes).
        bitmap: DmaBitmap,
    },
}

/// A decoded DMA_UNMAP request: the typed operation and the request's `argsz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaUnmapRequest {
    /// The largest reply payload accepted.
    pub argsz: u32,
    /// What is asked.
    pub op: DmaUnmapOp,
}

impl DmaUnmapRequest {
    /// Unmap the one mapping at `addr`/`size` (`argsz` = the 24-byte echo).
    pub fn one(addr: u64, size: u64) -> Self {
        DmaUnmapRequest { argsz: DMA_UNMAP_SIZE, op: DmaUnmapOp::One { addr, size } }
    }

    /// Unmap everything (`UNMAP_ALL`).
    pub fn all() -> Self {
        DmaUnmapRequest { argsz: DMA_UNMAP_SIZE, op: DmaUnmapOp::All }
    }

    /// Unmap `addr`/`size` and return its dirty bitmap at `pgsize` (a power of two dividing
    /// `size`): `argsz` covers the echo, the bitmap header and the bitmap; `None` if that
    /// does not fit in a `u32`.
    pub fn with_dirty_bitmap(addr: u64, size: u64, pgsize: u64) -> Option<Self> {
        let bytes = DmaBitmap::bytes_for(size, pgsize);
        let argsz = u32::try_from(bytes.checked_add(DMA_UNMAP_WITH_BITMAP_SIZE)?).ok()?;
        let bitmap = DmaBitmap { pgsize, size: bytes };
        Some(DmaUnmapRequest { argsz, op: DmaUnmapOp::WithDirtyBitmap { addr, size, bitmap } })
    }

    /// The typed form of a wire entry and optional bitmap header; `None` for flag bits outside
    /// the three forms (unknown bits, both ALL and GET_DIRTY_BITMAP, a bitmap header without
    /// GET_DIRTY_BITMAP or the reverse). Sizes and ranges are the decoder's to check.
    pub fn from_wire(unmap: DmaUnmap, bitmap: Option<DmaBitmap>) -> Option<Self> {
        let op = match (unmap.flags, bitmap) {
            (0, None) => DmaUnmapOp::One { addr: unmap.addr, size: unmap.size },
            (DMA_UNMAP_FLAG_ALL, None) if unmap.addr == 0 && unmap.size == 0 => DmaUnmapOp::All,
            (DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, Some(bitmap)) => {
                DmaUnmapOp::WithDirtyBitmap { addr: unmap.addr, size: unmap.size, bitmap }
            }
            _ => return None,
        };
        Some(DmaUnmapRequest { argsz: unmap.argsz, op })
    }

    /// The 24-byte wire entry (which the reply echoes) and the bitmap header, if any.
    pub fn to_wire(&self) -> (DmaUnmap, Option<DmaBitmap>) {
        let argsz = self.argsz;
        match self.op {
            DmaUnmapOp::One { addr, size } => (DmaUnmap { argsz, flags: 0, addr, size }, None),
            DmaUnmapOp::All => (DmaUnmap { argsz, flags: DMA_UNMAP_FLAG_ALL, addr: 0, size: 0 }, None),
            DmaUnmapOp::WithDirtyBitmap { addr, size, bitmap } => {
                (DmaUnmap { argsz, flags: DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, addr, size }, Some(bitmap))
            }
        }
    }
}
