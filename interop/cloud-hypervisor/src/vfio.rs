// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The hooks Cloud Hypervisor's common VFIO code calls on a device (its `Vfio` trait), with
//! the same signatures, and the small types they use.

use vfio_bindings::bindings::vfio::{VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX};
use vfio_user_client::MigState;
use vmm_sys_util::eventfd::EventFd;

/// An IRQ index's info, as vfio-ioctls' `VfioIrq` carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfioIrq {
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// The IRQ index.
    pub index: u32,
    /// Number of vectors.
    pub count: u32,
}

/// A range of IOVA to log dirty pages in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaLoggingRange {
    /// Start.
    pub iova: u64,
    /// Length in bytes.
    pub length: u64,
}

/// The migration states Cloud Hypervisor asks a VFIO device for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfioMigrationState {
    /// Failed.
    Error,
    /// Stopped.
    Stop,
    /// Running.
    Running,
    /// Stopped, saving the final state.
    StopCopy,
    /// Loading state.
    Resuming,
    /// Running without peer-to-peer DMA.
    RunningP2P,
    /// Running, saving pre-copy data.
    PreCopy,
    /// Pre-copy without peer-to-peer DMA.
    PreCopyP2P,
}

impl From<VfioMigrationState> for MigState {
    fn from(s: VfioMigrationState) -> MigState {
        match s {
            VfioMigrationState::Error => MigState::Error,
            VfioMigrationState::Stop => MigState::Stop,
            VfioMigrationState::Running => MigState::Running,
            VfioMigrationState::StopCopy => MigState::StopCopy,
            VfioMigrationState::Resuming => MigState::Resuming,
            VfioMigrationState::RunningP2P => MigState::RunningP2p,
            VfioMigrationState::PreCopy => MigState::PreCopy,
            VfioMigrationState::PreCopyP2P => MigState::PreCopyP2p,
        }
    }
}

/// What a hook returns on failure.
#[derive(Debug)]
pub enum VfioError {
    /// The vfio-user client failed.
    VfioUser(vfio_user_client::Error),
    /// The device cannot migrate.
    NoMigrationSupport,
}

impl std::fmt::Display for VfioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VfioError::VfioUser(e) => write!(f, "vfio-user: {e}"),
            VfioError::NoMigrationSupport => f.write_str("the device does not support migration"),
        }
    }
}

impl std::error::Error for VfioError {}

/// The dirty ranges `(gpa, length)` of a DMA_LOGGING_REPORT bitmap of the range starting at
/// `base` (page `p` = bit `p % 64` of word `p / 64`), adjacent pages merged: what Cloud
/// Hypervisor's memory-range table makes of it.
pub fn dirty_ranges(bitmap: &[u64], base: u64, page_size: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (w, word) in bitmap.iter().enumerate() {
        for bit in 0..64u64 {
            if word & (1 << bit) == 0 {
                continue;
            }
            let gpa = base + (w as u64 * 64 + bit) * page_size;
            match out.last_mut() {
                Some((start, len)) if *start + *len == gpa => *len += page_size,
                _ => out.push((gpa, page_size)),
            }
        }
    }
    out
}

/// The device hooks of Cloud Hypervisor's common VFIO code. The config-space and MSI-X
/// helpers are provided on top of the required methods, as in Cloud Hypervisor.
pub trait Vfio: Send + Sync {
    /// Reads config space.
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        self.region_read(VFIO_PCI_CONFIG_REGION_INDEX, offset.into(), data);
    }
    /// Writes config space.
    fn write_config(&self, offset: u32, data: &[u8]) {
        self.region_write(VFIO_PCI_CONFIG_REGION_INDEX, offset.into(), data);
    }
    /// One config dword.
    fn read_config_dword(&self, offset: u32) -> u32 {
        let mut d = [0u8; 4];
        self.read_config(offset, &mut d);
        u32::from_le_bytes(d)
    }
    /// Installs MSI-X vector eventfds.
    fn enable_msix(&self, fds: Vec<&EventFd>) -> Result<(), VfioError> {
        self.enable_irq(VFIO_PCI_MSIX_IRQ_INDEX, fds)
    }
    /// Removes them.
    fn disable_msix(&self) -> Result<(), VfioError> {
        self.disable_irq(VFIO_PCI_MSIX_IRQ_INDEX)
    }
    /// Region read; errors are dropped, as the hook has no way to report them.
    fn region_read(&self, index: u32, offset: u64, data: &mut [u8]);
    /// Region write; errors are dropped likewise.
    fn region_write(&self, index: u32, offset: u64, data: &[u8]);
    /// IRQ info of `irq_index`.
    fn get_irq_info(&self, irq_index: u32) -> Option<VfioIrq>;
    /// Installs trigger eventfds on `irq_index` from vector 0.
    fn enable_irq(&self, irq_index: u32, event_fds: Vec<&EventFd>) -> Result<(), VfioError>;
    /// Disables `irq_index`.
    fn disable_irq(&self, irq_index: u32) -> Result<(), VfioError>;
    /// Unmasks vector 0 of `irq_index`.
    fn unmask_irq(&self, irq_index: u32) -> Result<(), VfioError>;
    /// The MIGRATION feature's flags; `None` if the device cannot migrate.
    fn migration_flags(&self) -> Result<Option<u64>, VfioError>;
    /// Moves the device to `state`.
    fn set_migration_state(&self, state: VfioMigrationState) -> Result<(), VfioError>;
    /// Reads all the migration data the device has now.
    fn read_migration_data(&self) -> Result<Vec<u8>, VfioError>;
    /// Writes migration data into a RESUMING device.
    fn write_migration_data(&self, data: &[u8]) -> Result<(), VfioError>;
    /// Starts dirty-page logging of `ranges`; returns the page size the device chose.
    fn start_dma_logging(&self, page_size: u64, ranges: &[DmaLoggingRange]) -> Result<u64, VfioError>;
    /// Stops it.
    fn stop_dma_logging(&self) -> Result<(), VfioError>;
    /// The dirty ranges of `range` (cleared on the device).
    fn report_dma_logging(&self, range: DmaLoggingRange, page_size: u64) -> Result<Vec<(u64, u64)>, VfioError>;
}
