// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device's view of a vfio-user client's DMA memory.
//!
//! A vfio-user server receives DMA_MAP / DMA_UNMAP messages from the client
//! (the VMM). [`DmaSpace`] keeps these mappings and gives device code a
//! copy-based ([`DmaSpace::read`], [`DmaSpace::write`], `read_obj`,
//! `write_obj`) and a zero-copy ([`DmaSpace::translate`]) API that never
//! exposes an fd. Three kinds of regions exist:
//!
//! * **mmap** (fd passed): mapped `MAP_SHARED` with vm-memory's
//!   [`MmapRegion`](vm_memory::MmapRegion) / [`GuestRegionMmap`](vm_memory::GuestRegionMmap);
//! * **file I/O** (fd passed with libvfio-user's `FILE_IO` flag): `pread`/`pwrite`;
//! * **message** (no fd): DMA_READ / DMA_WRITE through a [`DmaTransport`]
//!   supplied by the server, split into `max_data_xfer_size` chunks.
//!
//! Device writes mark pages in per-region dirty bitmaps while dirty logging is
//! active ([`DmaSpace::start_logging`], [`DmaSpace::report`]).
//!
//! Device threads look addresses up in an immutable snapshot (a persistent B+
//! tree) that the control path swaps atomically, so device DMA never waits for
//! map/unmap, and a map or unmap costs O(log n) even with 64 Ki mappings.
//! `unmap` waits (bounded) until no device access references the region.
//!
//! ```
//! use vfio_user_dma::{DmaSpace, MapRequest, Prot};
//!
//! let space = DmaSpace::default();
//! // A region without fd is reached through a DmaTransport; none is set yet.
//! space
//!     .map(MapRequest { iova: 0x1000, size: 0x1000, prot: Prot::READ_WRITE, ..Default::default() })
//!     .unwrap();
//! assert_eq!(space.read_obj::<u32>(0x1000).unwrap_err().errno(), libc::ENOTCONN);
//! assert_eq!(space.read_obj::<u32>(0x4000).unwrap_err().errno(), libc::EFAULT);
//! space.unmap(0x1000, 0x1000).unwrap();
//! ```

#![deny(missing_docs)]

mod access;
mod bitmap;
mod dirty;
mod error;
mod message;
mod region;
mod space;
mod tree;

pub use access::{DmaGuard, DmaSlice};
pub use bitmap::{DirtyBitmap, TRACK_PAGE_SIZE};
pub use error::{Error, Result};
pub use message::DmaTransport;
pub use region::{MapRequest, Prot, RegionInfo, RegionKind};
pub use space::{
    DmaConfig, DmaSpace, DEFAULT_MAX_BITMAP_BYTES, DEFAULT_MAX_MAPS, DEFAULT_PGSIZES, DEFAULT_UNMAP_TIMEOUT,
};
pub use vm_memory::ByteValued;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<DmaSpace>();
        check::<DmaGuard>();
        check::<Error>();
        check::<std::sync::Arc<dyn DmaTransport>>();
    }
}
