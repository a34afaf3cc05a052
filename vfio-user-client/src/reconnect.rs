// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Reconnecting to a restarted server: a new connection, the same device, and the DMA
//! mappings, IRQ eventfds and IRQ masks replayed.

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crate::client::{fetch_device_info, Client};
use crate::error::{DisconnectReason, Error, Result};
use crate::sync::{lock, write_lock};

impl Client {
    /// Connects again to the same socket path — typically after the server restarted —
    /// renegotiates, checks that the device is the same, and replays every DMA mapping
    /// (with the client's duplicates of their fds), every IRQ eventfd and every IRQ mask.
    /// Every live [`RegionMapping`](crate::RegionMapping) is kept at its address with the
    /// new server's memory mapped in place (the region must offer the same mappable areas
    /// with the same access), so a BAR the VMM mapped into its guest carries on. Other
    /// cached region info is dropped (mmap fds change with the server). Calls in flight on
    /// the old connection fail with [`Error::Disconnected`]; calls made meanwhile may too.
    ///
    /// What the server must keep across its restart for the guest to carry on: the same
    /// device (IDs, regions, IRQ counts), its device state (registers, queues, what the
    /// guest configured through REGION_WRITE), and the memory behind its mappable regions
    /// (a memfd it keeps, e.g. by passing it to its successor; otherwise the guest sees that
    /// memory reset). The client brings back everything the VMM gave the server: DMA
    /// mappings, IRQ eventfds and masks.
    pub fn reconnect(&self) -> Result<()> {
        let path = self.path.as_ref().ok_or(Error::Unsupported("connected by fd: use reconnect_with"))?;
        let sock = crate::connect::connect_path(path, self.config.connect_timeout).map_err(Error::Connect)?;
        self.reconnect_with(sock)
    }

    /// [`reconnect`](Client::reconnect) over a socket the caller connected.
    pub fn reconnect_with(&self, sock: UnixStream) -> Result<()> {
        let _r = lock(&self.reconnect_lock);
        let _d = lock(&self.dma_ops);
        let irqs = lock(&self.irqs);
        self.transport().fail(DisconnectReason::Shutdown);
        let link = crate::connect::open(sock, &self.config, self.dma.clone(), self.stats.clone())?;
        let t = link.transport.clone();
        let device = fetch_device_info(&t, &self.config)?;
        if device != self.device {
            t.fail(DisconnectReason::Shutdown);
            return Err(Error::Protocol(format!("the device changed: was {:?}, now {device:?}", self.device)));
        }
        crate::dma_map::replay(self, &t)?;
        irqs.replay(&t, self.config.timeout)?;
        let remapped = self.remap_regions(&t).inspect_err(|_| t.fail(DisconnectReason::Shutdown))?;
        {
            let mut cache = lock(&self.regions);
            cache.clear();
            cache.extend(remapped.into_iter().map(|r| (r.index, Arc::new(r))));
        }
        // The old connection signalled the notice when it was closed above; the new one is
        // watched from now on.
        self.notice.clear();
        t.watch(self.notice.clone());
        let old = std::mem::replace(&mut *write_lock(&self.link), link);
        drop(old);
        crate::stats::bump(&self.stats.reconnects);
        Ok(())
    }
}
