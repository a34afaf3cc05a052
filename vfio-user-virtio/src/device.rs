// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`VirtioDevice`]: what a virtio device implements to run on the
//! [`VirtioPci`](crate::VirtioPci) transport.
//!
//! The transport does everything generic: PCI capabilities, feature negotiation, device
//! status and reset, queue set-up, the queue worker threads (one per queue), popping
//! descriptor chains with `virtio-queue`, the used ring, interrupt suppression and MSI-X,
//! migration of the transport state. A device describes itself (type, queues, features,
//! configuration space) and serves one request at a time in
//! [`handle`](VirtioDevice::handle), on the worker thread of its queue.

use virtio_queue::DescriptorChain;
use vm_memory::GuestMemory;

/// A virtio device (virtio 1.x) served by [`VirtioPci`](crate::VirtioPci).
///
/// Methods may be called from several threads at once: [`handle`](Self::handle) from the
/// worker of each queue, the others from the thread serving the socket.
pub trait VirtioDevice: Send + Sync + 'static {
    /// The virtio device ID (`VIRTIO_ID_*`, e.g. 2 for a block device).
    fn device_type(&self) -> u16;

    /// The 24-bit PCI class code to announce.
    fn class_code(&self) -> u32 {
        0xff_0000
    }

    /// Number of virtqueues (1 to [`MAX_QUEUES`](crate::MAX_QUEUES)).
    fn num_queues(&self) -> u16;

    /// Maximum size of each queue (a power of two, at most 32768).
    fn queue_max_size(&self) -> u16 {
        256
    }

    /// Whether its queue workers moderate interrupts ([`Moderation`](crate::Moderation)):
    /// hold completions back while a driver below its learned queue depth goes on adding
    /// requests, so that it takes several in one interrupt. Worth it where requests complete
    /// fast and the driver keeps many outstanding (block devices); default: off.
    fn interrupt_moderation(&self) -> bool {
        false
    }

    /// The device-specific feature bits it offers. The transport adds `VIRTIO_F_VERSION_1`,
    /// `VIRTIO_RING_F_INDIRECT_DESC` and `VIRTIO_RING_F_EVENT_IDX`.
    fn features(&self) -> u64;

    /// Size in bytes of the device-specific configuration space.
    fn config_size(&self) -> usize;

    /// Reads the configuration space at `offset` (the transport has checked that the
    /// access lies within [`config_size`](Self::config_size)).
    fn read_config(&self, offset: usize, data: &mut [u8]);

    /// Writes the configuration space. Default: ignored (read-only configuration).
    fn write_config(&self, offset: usize, data: &[u8]) {
        let _ = (offset, data);
    }

    /// The driver set DRIVER_OK with these negotiated features.
    fn activate(&self, features: u64) {
        let _ = features;
    }

    /// The device was reset (status 0, DEVICE_RESET or FLR): forget negotiated state.
    fn reset(&self) {}

    /// Serves the request `chain` popped from queue `queue` (its buffers are in `mem`) and
    /// returns the number of
    /// bytes written into its device-writable buffers (the used-ring length). Every
    /// failure is reported to the driver in the request itself; this method must not
    /// panic on anything the driver wrote. Writes through `chain`'s memory must cover
    /// every byte they ask for (see [`DmaView`](crate::DmaView)).
    ///
    /// A request whose DMA a reset or migration STOP cut short (memory reached by DMA
    /// messages, [`DmaView::cancelled`](crate::DmaView::cancelled)) is taken back and may be
    /// served again from the start: serving a request twice must leave what serving it once
    /// leaves (block reads and writes do).
    fn handle<M: GuestMemory>(&self, queue: u16, mem: &M, chain: DescriptorChain<&M>) -> u32;

    /// The device's own state for live migration (the transport saves its own).
    /// Default: none.
    fn save(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Checks and restores state from [`save`](Self::save) on the destination. Default:
    /// accepts only an empty state.
    fn restore(&self, state: &[u8]) -> crate::Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(crate::Error::Migration("this device has no state to restore".into()))
        }
    }
}
