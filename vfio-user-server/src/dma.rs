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

use std::sync::{Arc, Mutex};

use vfio_user_dma::DmaSpace;

/// Description of one DMA mapping, given to [`Device::dma_map`](crate::Device::dma_map)
/// and [`Device::dma_unmap`](crate::Device::dma_unmap): address, size, permissions
/// ([`DmaProt`](vfio_user_dma::DmaProt)) and how the memory is reached
/// ([`RegionKind`](vfio_user_dma::RegionKind)).
pub type DmaRegion = vfio_user_dma::MappingInfo;

/// A cloneable, thread-safe handle with which a device reads and writes the client's
/// memory: the device side of the server's [`DmaSpace`], whose access methods it
/// dereferences to ([`DmaSpace::read`], [`DmaSpace::write`], [`DmaSpace::translate`],
/// [`DmaSpace::memory`], ...).
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
/// nor a [`DmaGuard`](vfio_user_dma::DmaGuard) or [`memory`](DmaSpace::memory) view (DMA_UNMAP waits for those), across
/// such an access. A plain `read`/`write` to a message mapping keeps no mapping alive while
/// it waits for the client, so DMA_UNMAP never waits for a DMA reply.
#[derive(Clone, Debug)]
pub struct DmaHandle {
    pub(crate) space: Arc<DmaSpace>,
    /// The connection's side of [`cancel_waits`](Self::cancel_waits), set while a client
    /// is connected.
    pub(crate) waits: WaitSlot,
}

/// What [`DmaHandle::cancel_waits`] asks of the connection (the channel implements it).
pub(crate) trait WaitCanceller: Send + Sync + std::fmt::Debug {
    /// Device threads' DMA requests fail with `ECANCELED` instead of waiting for a reply.
    fn begin_cancel(&self);
    /// Ends one `begin_cancel`.
    fn end_cancel(&self);
}

/// The current connection's [`WaitCanceller`].
#[derive(Clone, Debug, Default)]
pub(crate) struct WaitSlot(Arc<Mutex<Option<Arc<dyn WaitCanceller>>>>);

impl WaitSlot {
    pub(crate) fn set(&self, c: Option<Arc<dyn WaitCanceller>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = c;
    }

    fn get(&self) -> Option<Arc<dyn WaitCanceller>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// While it lives, DMA requests that device threads make through the main socket fail
/// with `ECANCELED` instead of waiting for the client's reply (see
/// [`DmaHandle::cancel_waits`]).
#[derive(Debug)]
#[must_use = "the cancellation ends when the guard is dropped"]
pub struct CancelWaits(Option<Arc<dyn WaitCanceller>>);

impl Drop for CancelWaits {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.end_cancel();
        }
    }
}

impl DmaHandle {
    /// The server's [`DmaSpace`] as an `Arc` (e.g. to hand to a library). Its control path
    /// (`map`, `unmap`, logging, `set_transport`) belongs to the framework: device code only
    /// accesses memory.
    pub fn space(&self) -> &Arc<DmaSpace> {
        &self.space
    }

    /// Lets a device callback on the request-handling thread wait for the device's own
    /// threads while they may be waiting for DMA replies that only this thread would
    /// receive: until the returned guard is dropped, their DMA_READ / DMA_WRITE requests on
    /// the main socket fail with `ECANCELED` (those waiting now at once; the client's late
    /// replies are dropped), and accesses to mmapped memory are unaffected. For a reset or
    /// a migration STOP that must quiesce workers serving requests from memory mapped
    /// without fd. Requests on the twin socket are not cancelled (their callers receive
    /// the replies themselves), nor are the calling thread's own. Without a client, it
    /// does nothing.
    pub fn cancel_waits(&self) -> CancelWaits {
        let c = self.waits.get();
        if let Some(c) = &c {
            c.begin_cancel();
        }
        CancelWaits(c)
    }
}

/// The handle is the device's one way to DMA: every access method is [`DmaSpace`]'s
/// (`read` / `write` and `_obj`, `read_by_message` / `write_by_message`, `translate` to a
/// [`DmaGuard`](vfio_user_dma::DmaGuard) with its own `read` / `write`, and the vm-memory
/// view [`memory`](DmaSpace::memory)), reached through the handle.
impl std::ops::Deref for DmaHandle {
    type Target = DmaSpace;

    fn deref(&self) -> &DmaSpace {
        &self.space
    }
}
