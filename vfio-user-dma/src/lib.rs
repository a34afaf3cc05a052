// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device's view of a vfio-user client's DMA memory.
//!
//! A vfio-user server receives DMA_MAP / DMA_UNMAP messages from the client
//! (the VMM). [`DmaSpace`] keeps these mappings and gives device code a
//! copy-based ([`DmaSpace::read`], [`DmaSpace::write`], `read_obj`,
//! `write_obj`) and a zero-copy ([`DmaSpace::translate`]) API that never
//! exposes an fd. Three kinds of regions exist:
//!
//! * **mmap** (fd passed, sealed against shrinking with `F_SEAL_SHRINK`): mapped
//!   `MAP_SHARED` as a vm-memory [`MmapRegion`](vm_memory::MmapRegion) /
//!   [`GuestRegionMmap`](vm_memory::GuestRegionMmap); the fd is closed once mapped;
//! * **file I/O** (fd passed with libvfio-user's `FILE_IO` flag, or an fd that is not
//!   sealed against shrinking): `pread`/`pwrite`, the fd kept open;
//! * **message** (no fd): DMA_READ / DMA_WRITE through a [`DmaTransport`]
//!   supplied by the server, split into `max_data_xfer_size` chunks.
//!
//! [`DmaSpace::read_by_message`] and [`DmaSpace::write_by_message`] use messages for
//! any mapping, fd or not.
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
//! use vfio_user_dma::{DmaSpace, MapRequest, DmaProt};
//!
//! let space = DmaSpace::default();
//! // A region without fd is reached through a DmaTransport; none is set yet.
//! space
//!     .map(MapRequest { iova: 0x1000, size: 0x1000, prot: DmaProt::READ_WRITE, ..Default::default() })
//!     .unwrap();
//! assert_eq!(space.read_obj::<u32>(0x1000).unwrap_err().errno(), libc::ENOTCONN);
//! assert_eq!(space.read_obj::<u32>(0x4000).unwrap_err().errno(), libc::EFAULT);
//! space.unmap(0x1000, 0x1000).unwrap();
//! ```
//!
//! # Memory that may shrink
//!
//! A client may truncate a file after DMA_MAP. Mapped, the next device access past the
//! new end would kill the whole server with `SIGBUS`. So only fds carrying the
//! `F_SEAL_SHRINK` seal (seals cannot be removed) are mapped; any other fd is reached with
//! `pread`/`pwrite`, where a shrunk file gives the device `EFAULT`
//! ([`Error::BackingShrunk`]) and the server goes on. **For full speed (zero-copy
//! [`DmaSpace::translate`], the [`DmaSpace::memory`] view), a VMM passes memfds created
//! with `MFD_ALLOW_SEALING` and sealed with `F_SEAL_SHRINK`**, as QEMU's
//! `memory-backend-memfd` does by default (`seal=on`).
//!
//! # Device code
//!
//! The server keeps an `Arc<DmaSpace>` and hands clones of it to device
//! threads (`Arc<DmaSpace>` is `Send + Sync + 'static`; a clone is one
//! reference count increment). Device code copies with the `DmaSpace` API,
//! which reaches every kind of region and checks permissions, or takes a
//! vm-memory view with [`DmaSpace::memory`] for crates built on vm-memory's
//! [`GuestMemory`](vm_memory::GuestMemory) (e.g. `virtio-queue`); see
//! [`DmaMemory`] for what that view holds.
//!
//! ```
//! use std::fs::File;
//! use std::os::fd::OwnedFd;
//! use std::sync::Arc;
//! use std::thread;
//!
//! use vfio_user_dma::vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
//! use vfio_user_dma::{ByteValued, DmaSpace, MapRequest, DmaProt};
//!
//! /// A virtqueue descriptor as the guest driver writes it.
//! #[derive(Clone, Copy, Debug, Default)]
//! #[repr(C)]
//! struct Desc {
//!     addr: u64,
//!     len: u32,
//!     flags: u16,
//!     next: u16,
//! }
//! // SAFETY: repr(C), integer fields only, no padding.
//! unsafe impl ByteValued for Desc {}
//!
//! // The client's RAM: a memfd passed with DMA_MAP (here made locally), sealed against
//! // shrinking so that the space mmaps it (an unsealed fd is reached with pread/pwrite).
//! use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
//! let ram = File::from(memfd_create("ram", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?);
//! ram.set_len(0x10000)?;
//! fcntl_add_seals(&ram, SealFlags::SHRINK)?;
//! let space = Arc::new(DmaSpace::default());
//! space.map(MapRequest {
//!     iova: 0x4000_0000,
//!     size: 0x10000,
//!     prot: DmaProt::READ_WRITE,
//!     fd: Some(OwnedFd::from(ram)),
//!     ..Default::default()
//! })?;
//! // The driver puts a descriptor at the start of its ring.
//! let desc = Desc { addr: 0x4000_1000, len: 512, flags: 2, next: 0 };
//! space.write_obj(0x4000_0000, &desc)?;
//!
//! // A device thread.
//! let device = {
//!     let space = Arc::clone(&space);
//!     thread::spawn(move || -> vfio_user_dma::Result<()> {
//!         // Copy API: read the descriptor, write the data it points to.
//!         let d: Desc = space.read_obj(0x4000_0000)?;
//!         space.write(d.addr, &vec![0xab; d.len as usize])?;
//!
//!         // vm-memory view, e.g. for virtio-queue; drop it after the request.
//!         let mem = space.memory();
//!         assert_eq!(mem.num_regions(), 1);
//!         let d: Desc = mem.read_obj(GuestAddress(0x4000_0000)).unwrap();
//!         mem.write_obj(d.len, GuestAddress(0x4000_2000)).unwrap();
//!         Ok(())
//!     })
//! };
//! device.join().unwrap()?;
//! assert_eq!(space.read_obj::<u8>(0x4000_1000 + 511)?, 0xab);
//! assert_eq!(space.read_obj::<u32>(0x4000_2000)?, 512);
//! space.unmap(0x4000_0000, 0x10000)?; // no view held: returns at once
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod access;
mod bitmap;
mod by_message;
mod dirty;
mod error;
mod memory;
mod message;
mod region;
mod space;
mod tree;

pub use access::{DmaGuard, DmaSlice};
pub use bitmap::{DirtyBitmap, TRACK_PAGE_SIZE};
pub use error::{Error, Result};
pub use memory::DmaMemory;
pub use message::DmaTransport;
pub use region::{DmaProt, MapRequest, MappingInfo, RegionKind};
pub use space::{
    DmaConfig, DmaSpace, DEFAULT_MAX_BITMAP_BYTES, DEFAULT_MAX_MAPS, DEFAULT_PGSIZES, DEFAULT_UNMAP_TIMEOUT,
};
pub use vm_memory::{self, ByteValued};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_types_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<DmaSpace>();
        check::<std::sync::Arc<DmaSpace>>();
        check::<DmaMemory>();
        check::<std::sync::Arc<DmaMemory>>();
        check::<DmaGuard>();
        check::<Error>();
        check::<std::sync::Arc<dyn DmaTransport>>();
    }
}
