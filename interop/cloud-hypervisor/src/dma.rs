// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The external DMA mapping hook (Cloud Hypervisor's `ExternalDmaMapping` for a vfio-user
//! device behind a virtual IOMMU): an IOVA range of guest memory mapped by its file.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use vfio_user_client::{Client, DmaProt};
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryBackend, GuestMemoryRegion};

/// Maps IOVAs of a device to guest memory.
pub struct VfioUserDmaMapping<M: GuestAddressSpace> {
    client: Arc<Client>,
    memory: Arc<M>,
}

impl<M: GuestAddressSpace> VfioUserDmaMapping<M>
where
    M::M: GuestMemoryBackend,
{
    /// For `client`'s device, over `memory` (e.g. a `GuestMemoryAtomic`).
    pub fn new(client: Arc<Client>, memory: Arc<M>) -> Self {
        VfioUserDmaMapping { client, memory }
    }

    /// Maps `[iova, iova + size)` to guest memory at `gpa`, which must lie in one region
    /// backed by a file.
    pub fn map(&self, iova: u64, gpa: u64, size: u64) -> io::Result<()> {
        let mem = self.memory.memory();
        let region = mem.find_region(GuestAddress(gpa)).ok_or_else(|| io::Error::other("no region at gpa"))?;
        let offset = gpa - region.start_addr().0;
        if size > region.len() - offset {
            return Err(io::Error::other("range extends past its region"));
        }
        let file = region.file_offset().ok_or_else(|| io::Error::other("region has no file"))?;
        let file_off = file.start().checked_add(offset).ok_or_else(|| io::Error::other("offset overflow"))?;
        self.client
            .dma_map_fd(iova, size, file.file().as_fd(), file_off, DmaProt::READ_WRITE)
            .map_err(|e| io::Error::other(format!("DMA map: {e}")))
    }

    /// Unmaps `[iova, iova + size)`.
    pub fn unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        self.client.dma_unmap(iova, size).map_err(|e| io::Error::other(format!("DMA unmap: {e}")))
    }
}
