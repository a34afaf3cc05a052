// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`DmaMemory`]: the published snapshot of the mappings, which is also a
//! vm-memory [`GuestMemoryBackend`] (and so a [`GuestMemory`] with the whole
//! [`Bytes<GuestAddress>`] API) over the mmapped read-write regions.
//!
//! [`GuestMemory`]: vm_memory::GuestMemory
//! [`Bytes<GuestAddress>`]: vm_memory::Bytes

use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestRegionMmap};

use crate::bitmap::DirtyBitmap;
use crate::region::Region;
use crate::tree::Tree;

/// One published version of the DMA mappings, from [`DmaSpace::memory`].
///
/// It implements vm-memory's [`GuestMemoryBackend`], hence [`GuestMemory`]
/// and [`Bytes<GuestAddress>`], so `virtio-queue` and other crates built on
/// vm-memory can use client memory directly; `Arc<DmaMemory>` is a
/// [`GuestAddressSpace`] (for a fixed snapshot).
///
/// # Regions of the view
///
/// The vm-memory regions ([`GuestRegionMmap<DirtyBitmap>`]) are exactly the
/// mappings that are **mmapped (DMA_MAP with an fd sealed with `F_SEAL_SHRINK`, without
/// the `FILE_IO` flag) and both readable and writable**. Left out are:
///
/// * message-based (no fd) and file-I/O mappings (the `FILE_IO` flag, or an fd that is
///   not sealed against shrinking, which a client could truncate under a mapping): they
///   have no host mapping;
/// * read-only and write-only mappings: vm-memory's `GuestMemoryBackend`
///   knows no access permissions, so a write through the view to a
///   read-only mapping (mapped `PROT_READ`) would kill the process with
///   `SIGSEGV`, and a read of a write-only one would ignore the protection.
///
/// Accesses to addresses outside the view fail with vm-memory's
/// `InvalidGuestAddress`. Device code that must reach such memory uses
/// [`DmaSpace::read`]/[`DmaSpace::write`] (which check permissions and
/// reach every kind of region).
///
/// vm-memory's `Bytes::write`/`read` on a range that runs into a hole move
/// the bytes before the hole (`write_slice` then fails with `PartialBuffer`),
/// unlike [`DmaSpace::write`], which checks the whole range first.
///
/// # Lifetime
///
/// A `DmaMemory` is immutable: it does not see later maps and unmaps, and it
/// keeps every region of its version (of any kind) mapped while held, so
/// [`DmaSpace::unmap`] waits for it to be dropped (up to
/// [`DmaConfig::unmap_timeout`](crate::DmaConfig::unmap_timeout), then
/// `EBUSY`). Take a fresh one per request (e.g. per queue notification) and
/// drop it when the request is done.
///
/// # Dirty logging
///
/// Writes through the view mark pages in the regions' [`DirtyBitmap`]s (vm-memory
/// calls the region bitmap), so they show up in [`DmaSpace::report`]. Writes
/// through raw host addresses (`get_host_address`) are not tracked.
///
/// [`DmaSpace::memory`]: crate::DmaSpace::memory
/// [`DmaSpace::read`]: crate::DmaSpace::read
/// [`DmaSpace::write`]: crate::DmaSpace::write
/// [`DmaSpace::unmap`]: crate::DmaSpace::unmap
/// [`DmaSpace::report`]: crate::DmaSpace::report
/// [`GuestMemory`]: vm_memory::GuestMemory
/// [`Bytes<GuestAddress>`]: vm_memory::Bytes
/// [`GuestAddressSpace`]: vm_memory::GuestAddressSpace
#[derive(Default)]
pub struct DmaMemory {
    /// Every mapping of this version, keyed by iova.
    pub(crate) tree: Tree<Arc<Region>>,
    /// How many of them are in the vm-memory view.
    pub(crate) view_regions: usize,
}

impl std::fmt::Debug for DmaMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaMemory")
            .field("mappings", &self.tree.len())
            .field("view_regions", &self.view_regions)
            .finish()
    }
}

impl DmaMemory {
    /// The mapping (of any kind) containing `iova`.
    #[inline]
    pub(crate) fn find(&self, iova: u64) -> Option<&Arc<Region>> {
        self.tree.floor(iova).map(|(_, r)| r).filter(|r| iova < r.end())
    }
}

impl GuestMemoryBackend for DmaMemory {
    type R = GuestRegionMmap<DirtyBitmap>;

    fn num_regions(&self) -> usize {
        self.view_regions
    }

    fn find_region(&self, addr: GuestAddress) -> Option<&Self::R> {
        self.find(addr.0).and_then(|r| r.view())
    }

    fn iter(&self) -> impl Iterator<Item = &Self::R> {
        self.tree.values().filter_map(|r| r.view())
    }
}
