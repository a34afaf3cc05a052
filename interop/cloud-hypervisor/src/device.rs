// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device (creation with reset, BAR mappings, DMA map/unmap of guest memory regions,
//! shutdown on drop) and the `Vfio` hooks, through `vfio_user_client::Client`.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    vfio_region_sparse_mmap_area, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user_client::{borrow_eventfd, Client, DmaProt, Error};
use vm_memory::bitmap::AtomicBitmap;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{Address, FileOffset, GuestMemoryRegion, GuestRegionMmap, MmapRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::vfio::{dirty_ranges, DmaLoggingRange, Vfio, VfioError, VfioIrq, VfioMigrationState};

/// Most migration data [`Vfio::read_migration_data`] takes in one call.
const MAX_MIGRATION_DATA: usize = 256 << 20;
/// The chunk it reads at a time.
const MIGRATION_CHUNK: usize = 64 << 10;

/// One mmapped area of a BAR: where it is in the BAR, and the mapping (which Cloud
/// Hypervisor registers with the hypervisor as a user memory region).
#[derive(Debug)]
pub struct MappedArea {
    /// Region index.
    pub index: u32,
    /// Offset of the area in the region.
    pub offset: u64,
    /// The mapping.
    pub mapping: MmapRegion,
}

/// The vfio-user PCI device.
pub struct VfioUserPciDevice {
    client: Arc<Client>,
    /// The BARs' mmapped areas.
    pub mmio_regions: Vec<MappedArea>,
}

impl VfioUserPciDevice {
    /// Takes the connected client; resets the device when it says it can be reset.
    pub fn new(client: Arc<Client>) -> Result<Self, Error> {
        // rust-vmm's `resettable()` reads the RESET flag inverted; ours reads it as sent.
        if client.resettable() {
            client.reset()?;
        }
        Ok(VfioUserPciDevice { client, mmio_regions: Vec::new() })
    }

    /// The `Vfio` hooks of this device.
    pub fn vfio_wrapper(&self) -> VfioUserClientWrapper {
        VfioUserClientWrapper { client: self.client.clone() }
    }

    /// Maps the mmappable areas of the BARs `(index, length)`: the sparse areas, or the
    /// whole BAR without that capability, with the region's access rights.
    pub fn map_mmio_regions(&mut self, bars: &[(u32, u64)]) -> Result<(), Error> {
        for &(index, length) in bars {
            let region = self.client.region_info(index)?;
            if region.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 {
                continue;
            }
            let Some(file_offset) = region.file_offset() else { continue };
            let mut prot = 0;
            if region.flags & VFIO_REGION_INFO_FLAG_READ != 0 {
                prot |= libc::PROT_READ;
            }
            if region.flags & VFIO_REGION_INFO_FLAG_WRITE != 0 {
                prot |= libc::PROT_WRITE;
            }
            // Our own area type, converted into this tree's vfio-bindings 0.6 struct.
            let sparse: Vec<vfio_region_sparse_mmap_area> =
                region.sparse_mmap_areas().into_iter().map(Into::into).collect();
            let areas =
                if sparse.is_empty() { vec![vfio_region_sparse_mmap_area { offset: 0, size: length }] } else { sparse };
            for s in areas {
                let size = usize::try_from(s.size).map_err(|_| Error::InvalidInput("area too large"))?;
                let mapping = MmapRegionBuilder::new(size)
                    .with_file_offset(FileOffset::from_arc(file_offset.arc().clone(), file_offset.start() + s.offset))
                    .with_mmap_prot(prot)
                    .with_mmap_flags(libc::MAP_SHARED)
                    .build()
                    .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
                self.mmio_regions.push(MappedArea { index, offset: s.offset, mapping });
            }
        }
        Ok(())
    }

    /// DMA-maps one guest memory region (regions without a file are skipped, as Cloud
    /// Hypervisor does).
    pub fn dma_map(&mut self, region: &GuestRegionMmap<AtomicBitmap>) -> Result<(), Error> {
        let Some(file_offset) = region.file_offset() else { return Ok(()) };
        self.client.dma_map_fd(
            region.start_addr().raw_value(),
            region.len(),
            file_offset.file().as_fd(),
            file_offset.start(),
            DmaProt::READ_WRITE,
        )
    }

    /// DMA-unmaps one guest memory region.
    pub fn dma_unmap(&mut self, region: &GuestRegionMmap<AtomicBitmap>) -> Result<(), Error> {
        self.client.dma_unmap(region.start_addr().raw_value(), region.len())
    }
}

impl Drop for VfioUserPciDevice {
    fn drop(&mut self) {
        // The BAR mappings go with `mmio_regions`; then the connection.
        self.mmio_regions.clear();
        let _ = self.client.shutdown();
    }
}

/// The `Vfio` hooks through our client.
pub struct VfioUserClientWrapper {
    client: Arc<Client>,
}

impl Vfio for VfioUserClientWrapper {
    fn region_read(&self, index: u32, offset: u64, data: &mut [u8]) {
        let _ = self.client.region_read(index, offset, data);
    }

    fn region_write(&self, index: u32, offset: u64, data: &[u8]) {
        let _ = self.client.region_write(index, offset, data);
    }

    fn get_irq_info(&self, irq_index: u32) -> Option<VfioIrq> {
        self.client.irq_info(irq_index).ok().map(|i| VfioIrq { index: i.index, flags: i.flags, count: i.count })
    }

    fn enable_irq(&self, irq_index: u32, event_fds: Vec<&EventFd>) -> Result<(), VfioError> {
        // No batching by hand: the client splits by the server's max_msg_fds.
        let fds: Vec<BorrowedFd<'_>> = event_fds.into_iter().map(borrow_eventfd).collect();
        let flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
        self.client.set_irqs_raw(irq_index, flags, 0, fds.len() as u32, &fds).map_err(VfioError::VfioUser)
    }

    fn disable_irq(&self, irq_index: u32) -> Result<(), VfioError> {
        let flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
        self.client.set_irqs_raw(irq_index, flags, 0, 0, &[]).map_err(VfioError::VfioUser)
    }

    fn unmask_irq(&self, irq_index: u32) -> Result<(), VfioError> {
        let flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
        self.client.set_irqs_raw(irq_index, flags, 0, 1, &[]).map_err(VfioError::VfioUser)
    }

    fn migration_flags(&self) -> Result<Option<u64>, VfioError> {
        match self.client.migration_flags() {
            Ok(flags) => Ok(Some(flags)),
            // An error reply: the device has no MIGRATION feature.
            Err(Error::Server { .. }) => Ok(None),
            Err(e) => Err(VfioError::VfioUser(e)),
        }
    }

    fn set_migration_state(&self, state: VfioMigrationState) -> Result<(), VfioError> {
        self.client.set_migration_state(state.into()).map_err(VfioError::VfioUser)
    }

    fn read_migration_data(&self) -> Result<Vec<u8>, VfioError> {
        let mut out = Vec::new();
        loop {
            let at = out.len();
            if at + MIGRATION_CHUNK > MAX_MIGRATION_DATA {
                return Err(VfioError::VfioUser(Error::InvalidInput("more migration data than the limit")));
            }
            out.resize(at + MIGRATION_CHUNK, 0);
            let n = self.client.read_migration_data(&mut out[at..]).map_err(VfioError::VfioUser)?;
            out.truncate(at + n);
            if n < MIGRATION_CHUNK {
                return Ok(out);
            }
        }
    }

    fn write_migration_data(&self, data: &[u8]) -> Result<(), VfioError> {
        self.client.write_migration_data(data).map_err(VfioError::VfioUser)
    }

    fn start_dma_logging(&self, page_size: u64, ranges: &[DmaLoggingRange]) -> Result<u64, VfioError> {
        let ranges: Vec<(u64, u64)> = ranges.iter().map(|r| (r.iova, r.length)).collect();
        self.client.start_dma_logging(page_size, &ranges).map_err(VfioError::VfioUser)
    }

    fn stop_dma_logging(&self) -> Result<(), VfioError> {
        self.client.stop_dma_logging().map_err(VfioError::VfioUser)
    }

    fn report_dma_logging(&self, range: DmaLoggingRange, page_size: u64) -> Result<Vec<(u64, u64)>, VfioError> {
        let bitmap =
            self.client.report_dma_logging(range.iova, range.length, page_size).map_err(VfioError::VfioUser)?;
        Ok(dirty_ranges(&bitmap, range.iova, page_size))
    }
}
