// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The trait a device author implements.
//!
//! [`Device`] takes `&self` (the device does its own locking, and may be shared with its
//! worker threads); [`DeviceMut`] takes `&mut self` and is served through a `Mutex`, thanks
//! to the blanket `impl<T: DeviceMut> Device for Mutex<T>`. Every method has a default, so a
//! device implements only what it has. The framework has validated every argument before a
//! method is called: region indexes exist, `offset + data.len()` lies within the region,
//! DMA mappings do not overlap, and so on. Errors are `std::io::Error`s; their raw OS error
//! (or `EIO`) becomes the errno of the error reply.
//!
//! Methods are added over time (migration, for instance) only as defaulted methods, so
//! existing devices keep compiling.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use crate::dma::DmaRegion;
use crate::irq::VectorState;

/// Why the device is being reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetKind {
    /// DEVICE_RESET from the client.
    Device,
    /// Function Level Reset through the PCI Express Device Control register.
    Flr,
}

/// An ioeventfd the client may register with its hypervisor for a region
/// (DEVICE_GET_REGION_IO_FDS): writes the guest makes at `offset` signal `fd` instead of
/// arriving as REGION_WRITE.
#[derive(Clone, Debug)]
pub struct IoEventFd {
    /// Offset within the region.
    pub offset: u64,
    /// Access size in bytes (0 = any size).
    pub size: u64,
    /// Only writes of this value signal the fd.
    pub datamatch: Option<u64>,
    /// The eventfd (shared with the device, which reads it).
    pub fd: Arc<OwnedFd>,
}

fn unsupported() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// A device served over vfio-user, with shared (`&self`) access.
pub trait Device: Send + Sync {
    /// Reads `data.len()` bytes at `offset` of region `region` (a BAR, the ROM, or a
    /// device-specific region). Default: `EINVAL`.
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let _ = (region, offset, data);
        Err(unsupported())
    }

    /// Writes `data` at `offset` of region `region`. Default: `EINVAL`.
    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let _ = (region, offset, data);
        Err(unsupported())
    }

    /// Reads configuration-space bytes in a range the description handed to the device
    /// ([`config_callback`](crate::DescriptionBuilder::config_callback)). Default: zeros.
    fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let _ = offset;
        data.fill(0);
        Ok(())
    }

    /// Writes configuration-space bytes in a device-owned range. Default: ignored.
    fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let _ = (offset, data);
        Ok(())
    }

    /// Resets the device. The framework has already reset its emulated configuration
    /// space and interrupt state. Default: nothing to do.
    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        let _ = kind;
        Ok(())
    }

    /// The client added a DMA region, already mapped in the server's
    /// [`DmaSpace`](crate::vfio_user_dma::DmaSpace): the device may access it through its
    /// [`DmaHandle`](crate::DmaHandle) from now on. Failing refuses the DMA_MAP (the mapping
    /// is removed again). Default: accept.
    fn dma_map(&self, region: &DmaRegion) -> io::Result<()> {
        let _ = region;
        Ok(())
    }

    /// The client is removing a DMA region (DMA_UNMAP, or it disconnected). Called before
    /// the mapping is removed: the device should drop any [`DmaGuard`] or `memory()` view
    /// it keeps, since the framework then waits (bounded) for those before it unmaps the
    /// memory and replies.
    ///
    /// [`DmaGuard`]: crate::vfio_user_dma::DmaGuard
    fn dma_unmap(&self, region: &DmaRegion) {
        let _ = region;
    }

    /// A vector's state changed: the client installed or removed its eventfd, or it was
    /// masked or unmasked (through SET_IRQS or the emulated registers).
    fn irq_state_changed(&self, index: u32, vector: u32, state: VectorState) {
        let _ = (index, vector, state);
    }

    /// The ioeventfds of a region, for DEVICE_GET_REGION_IO_FDS. Default: none.
    fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
        let _ = region;
        Vec::new()
    }

    /// A client connected (after VERSION) or went away (`false`; its DMA regions have
    /// been unmapped and its eventfds closed already). Default: nothing.
    fn client_connected(&self, connected: bool) {
        let _ = connected;
    }
}

/// A device served over vfio-user, with exclusive (`&mut self`) access; wrap it in a
/// `Mutex` to serve it. Methods mirror [`Device`].
pub trait DeviceMut: Send {
    /// See [`Device::region_read`].
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let _ = (region, offset, data);
        Err(unsupported())
    }

    /// See [`Device::region_write`].
    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let _ = (region, offset, data);
        Err(unsupported())
    }

    /// See [`Device::config_read`].
    fn config_read(&mut self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let _ = offset;
        data.fill(0);
        Ok(())
    }

    /// See [`Device::config_write`].
    fn config_write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let _ = (offset, data);
        Ok(())
    }

    /// See [`Device::reset`].
    fn reset(&mut self, kind: ResetKind) -> io::Result<()> {
        let _ = kind;
        Ok(())
    }

    /// See [`Device::dma_map`].
    fn dma_map(&mut self, region: &DmaRegion) -> io::Result<()> {
        let _ = region;
        Ok(())
    }

    /// See [`Device::dma_unmap`].
    fn dma_unmap(&mut self, region: &DmaRegion) {
        let _ = region;
    }

    /// See [`Device::irq_state_changed`].
    fn irq_state_changed(&mut self, index: u32, vector: u32, state: VectorState) {
        let _ = (index, vector, state);
    }

    /// See [`Device::region_io_fds`].
    fn region_io_fds(&mut self, region: u32) -> Vec<IoEventFd> {
        let _ = region;
        Vec::new()
    }

    /// See [`Device::client_connected`].
    fn client_connected(&mut self, connected: bool) {
        let _ = connected;
    }
}

impl<T: DeviceMut> Device for Mutex<T> {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.lock().unwrap_or_else(|e| e.into_inner()).region_read(region, offset, data)
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.lock().unwrap_or_else(|e| e.into_inner()).region_write(region, offset, data)
    }

    fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.lock().unwrap_or_else(|e| e.into_inner()).config_read(offset, data)
    }

    fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.lock().unwrap_or_else(|e| e.into_inner()).config_write(offset, data)
    }

    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        self.lock().unwrap_or_else(|e| e.into_inner()).reset(kind)
    }

    fn dma_map(&self, region: &DmaRegion) -> io::Result<()> {
        self.lock().unwrap_or_else(|e| e.into_inner()).dma_map(region)
    }

    fn dma_unmap(&self, region: &DmaRegion) {
        self.lock().unwrap_or_else(|e| e.into_inner()).dma_unmap(region)
    }

    fn irq_state_changed(&self, index: u32, vector: u32, state: VectorState) {
        self.lock().unwrap_or_else(|e| e.into_inner()).irq_state_changed(index, vector, state)
    }

    fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
        self.lock().unwrap_or_else(|e| e.into_inner()).region_io_fds(region)
    }

    fn client_connected(&self, connected: bool) {
        self.lock().unwrap_or_else(|e| e.into_inner()).client_connected(connected)
    }
}

impl<T: Device + ?Sized> Device for Arc<T> {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        (**self).region_read(region, offset, data)
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).region_write(region, offset, data)
    }

    fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        (**self).config_read(offset, data)
    }

    fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).config_write(offset, data)
    }

    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        (**self).reset(kind)
    }

    fn dma_map(&self, region: &DmaRegion) -> io::Result<()> {
        (**self).dma_map(region)
    }

    fn dma_unmap(&self, region: &DmaRegion) {
        (**self).dma_unmap(region)
    }

    fn irq_state_changed(&self, index: u32, vector: u32, state: VectorState) {
        (**self).irq_state_changed(index, vector, state)
    }

    fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
        (**self).region_io_fds(region)
    }

    fn client_connected(&self, connected: bool) {
        (**self).client_connected(connected)
    }
}

impl<T: Device + ?Sized> Device for Box<T> {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        (**self).region_read(region, offset, data)
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).region_write(region, offset, data)
    }

    fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        (**self).config_read(offset, data)
    }

    fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        (**self).config_write(offset, data)
    }

    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        (**self).reset(kind)
    }

    fn dma_map(&self, region: &DmaRegion) -> io::Result<()> {
        (**self).dma_map(region)
    }

    fn dma_unmap(&self, region: &DmaRegion) {
        (**self).dma_unmap(region)
    }

    fn irq_state_changed(&self, index: u32, vector: u32, state: VectorState) {
        (**self).irq_state_changed(index, vector, state)
    }

    fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
        (**self).region_io_fds(region)
    }

    fn client_connected(&self, connected: bool) {
        (**self).client_connected(connected)
    }
}
