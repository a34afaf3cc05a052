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
