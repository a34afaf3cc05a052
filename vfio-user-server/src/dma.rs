// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA: the device's access to the client's memory.
//!
//! The framework, not the device, turns DMA_MAP / DMA_UNMAP into mappings of a
//! [`DmaSpace`] from the `vfio-user-dma` crate (re-exported as
//! [`crate::vfio_user_dma`]): an fd is mmapped as a vm-memory region (or accessed with
//! `pread`/`pwrite` with libvfio-user's FILE_IO flag), a region without fd is reached with
//! DMA_READ / DMA_WRITE messages to the client, on the twin socket when negotiated,
//! otherwise on the main socket. The device gets a [`DmaHandle`] and never sees an fd.

use std::sync::Arc;

use vfio_user_dma::{ByteValued, DmaGuard, DmaMemory, DmaSpace, Result};

/// Description of one DMA mapping, given to [`Device::dma_map`](crate::Device::dma_map)
/// and [`Device::dma_unmap`](crate::Device::dma_unmap): address, size, permissions
/// ([`Prot`](vfio_user_dma::Prot)) and how the memory is reached
/// ([`RegionKind`](vfio_user_dma::RegionKind)).
pub type DmaRegion = vfio_user_dma::RegionInfo;

/// A cloneable, thread-safe handle with which a device reads and writes the client's
/// memory: the device side of the server's [`DmaSpace`].
///
/// Accesses may span adjacent mappings of any kind and are checked whole before any byte
/// moves: `EFAULT` for unmapped bytes, `EACCES` for a write to a read-only mapping (or a
/// read from a write-only one); see [`vfio_user_dma::Error::errno`].
///
/// Message-based mappings (DMA_MAP without fd) are reached with DMA_READ / DMA_WRITE, split
/// at the client's `max_data_xfer_size`. On the main socket the reply is routed back by the
/// thread handling requests: a device thread waits for it, and a device callback running
/// on that thread receives it itself (queueing client commands that arrive meanwhile).
/// Without a twin socket a device thread therefore must not make the request-handling
/// thread wait for it while it does message-based DMA: it must not hold a lock the
/// device's callbacks take (such as the `Mutex` around a [`DeviceMut`](crate::DeviceMut)),
/// nor a [`DmaGuard`] or [`memory`](Self::memory) view (DMA_UNMAP waits for those), across
/// such an access. A plain `read`/`write` to a message mapping keeps no mapping alive while
/// it waits for the client, so DMA_UNMAP never waits for a DMA reply.
#[derive(Clone, Debug)]
pub struct DmaHandle {
    pub(crate) space: Arc<DmaSpace>,
}

impl DmaHandle {
    /// The server's [`DmaSpace`], for code that wants one (e.g. to hand an
    /// `Arc<DmaSpace>` to a library). Its control path (`map`, `unmap`, logging,
    /// `set_transport`) belongs to the framework: device code only accesses memory.
    pub fn space(&self) -> &Arc<DmaSpace> {
        &self.space
    }

    /// Reads `buf.len()` bytes of client memory at `iova` ([`DmaSpace::read`]).
    pub fn read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        self.space.read(iova, buf)
    }

    /// Writes `data` to client memory at `iova`, marking pages dirty while DMA logging
    /// is active ([`DmaSpace::write`]).
    pub fn write(&self, iova: u64, data: &[u8]) -> Result<()> {
        self.space.write(iova, data)
    }

    /// Reads `buf.len()` bytes of client memory at `iova` with DMA_READ messages, even
    /// where the client mapped an fd ([`DmaSpace::read_by_message`]): the range must be
    /// mapped and readable, and is split at the client's `max_data_xfer_size` as for
    /// mappings without fd. The same rules as for those apply on the main socket (see
    /// above).
    pub fn read_by_message(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        self.space.read_by_message(iova, buf)
    }

    /// Writes `data` to client memory at `iova` with DMA_WRITE messages, even where the
    /// client mapped an fd ([`DmaSpace::write_by_message`]). The client does the write,
    /// so the pages are not marked in the server's dirty log.
    pub fn write_by_message(&self, iova: u64, data: &[u8]) -> Result<()> {
        self.space.write_by_message(iova, data)
    }

    /// Reads a `T` at `iova` ([`DmaSpace::read_obj`]).
    pub fn read_obj<T: ByteValued>(&self, iova: u64) -> Result<T> {
        self.space.read_obj(iova)
    }

    /// Writes `val` at `iova` ([`DmaSpace::write_obj`]).
    pub fn write_obj<T: ByteValued>(&self, iova: u64, val: &T) -> Result<()> {
        self.space.write_obj(iova, val)
    }

    /// Zero-copy view of `[iova, iova + len)` of mmapped mappings
    /// ([`DmaSpace::translate`]); DMA_UNMAP waits for the guard to be dropped.
    pub fn translate(&self, iova: u64, len: usize, write: bool) -> Result<DmaGuard> {
        self.space.translate(iova, len, write)
    }

    /// The mmapped read-write mappings as a vm-memory `GuestMemory`
    /// ([`DmaSpace::memory`]); take one per request, DMA_UNMAP waits for it.
    pub fn memory(&self) -> Arc<DmaMemory> {
        self.space.memory()
    }

    /// The mapping containing `iova`, if any.
    pub fn region_at(&self, iova: u64) -> Option<DmaRegion> {
        self.space.region_at(iova)
    }

    /// Every mapping, sorted by address.
    pub fn regions(&self) -> Vec<DmaRegion> {
        self.space.regions()
    }
}
