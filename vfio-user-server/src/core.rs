// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device and everything the framework keeps about it ([`Core`]), and the server's
//! protocol limits. The command handlers live beside it, one file per family: `dispatch`
//! (routing, VERSION, device and IRQ queries, SET_IRQS, DMA, DEVICE_FEATURE), `region_access`
//! (region reads and writes), `migration`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vfio_user_dma::{DmaConfig, DmaSpace};
use vfio_user_proto::request::DecodeLimits;
use vfio_user_proto::version::Negotiated;
use vfio_user_proto::MigState;

use crate::answer::ReplyBuf;
use crate::description::DeviceDescription;
use crate::device::{Device, ResetKind};
use crate::dma::DmaHandle;
use crate::error::Result;
use crate::irq::{IrqChange, IrqHandle, IrqState};
use crate::pci::config::ConfigSpace;
use crate::region::{region_table, RegionFacts};

/// Server-side protocol limits, advertised in the VERSION reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most fds accepted with one message.
    pub max_msg_fds: u32,
    /// Largest REGION_READ / REGION_WRITE count accepted.
    pub max_data_xfer_size: u32,
    /// Most DMA regions at once.
    pub max_dma_maps: u32,
    /// Supported DMA page sizes (OR of powers of two, the `pgsizes` capability): DMA_MAP
    /// address, size and offset must be multiples of the smallest. `0` means 4096.
    pub pgsizes: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { max_msg_fds: 16, max_data_xfer_size: 1 << 20, max_dma_maps: 4096, pgsizes: 4096 }
    }
}

impl ServerLimits {
    pub(crate) fn pgsizes(&self) -> u64 {
        if self.pgsizes == 0 {
            4096
        } else {
            self.pgsizes
        }
    }
}

/// How long the server waits for a client before giving up on it: the connection is then
/// closed, what the client held released, and the next client served. Idle time between
/// messages is never bounded (a VMM may say nothing for hours); what is bounded is a wait
/// that only a stuck or hostile client makes last. The defaults (10 s each) are above QEMU's
/// own per-message timeout (5 s), so a VMM that QEMU's timeouts accept is never cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the connection until a VERSION is received whole.
    pub handshake: Duration,
    /// Longest wait without a byte arriving in the middle of a message (its header or
    /// payload begun): a client that stops mid-message.
    pub stall: Duration,
    /// Longest a send waits without progress for the client to read (a client that never
    /// reads its replies fills the socket).
    pub send: Duration,
    /// Longest the server waits for the client's reply to its own DMA_READ / DMA_WRITE.
    pub dma_reply: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let t = Duration::from_secs(10);
        Timeouts { handshake: t, stall: t, send: t, dma_reply: t }
    }
}

/// The device and everything the framework keeps about it.
pub(crate) struct Core<D> {
    pub(crate) desc: DeviceDescription,
    pub(crate) device: D,
    pub(crate) config: ConfigSpace,
    pub(crate) regions: Vec<RegionFacts>,
    pub(crate) irq: IrqHandle,
    pub(crate) dma: DmaHandle,
    pub(crate) limits: ServerLimits,
    pub(crate) mig_state: MigState,
    pub(crate) negotiated: Option<Negotiated>,
    /// The last reply's buffer, reused for the next one.
    spare: Vec<u8>,
}

impl<D: Device> Core<D> {
    pub(crate) fn new(
        desc: DeviceDescription,
        limits: ServerLimits,
        make: impl FnOnce(IrqHandle, DmaHandle) -> D,
    ) -> Result<Self> {
        let config = ConfigSpace::new(&desc)?;
        let irq = IrqHandle { state: Arc::new(Mutex::new(IrqState::new(&desc))) };
        let dma = DmaHandle {
            space: Arc::new(DmaSpace::new(DmaConfig {
                pgsizes: limits.pgsizes(),
                max_maps: limits.max_dma_maps as usize,
                ..Default::default()
            })),
            waits: Default::default(),
        };
        let device = make(irq.clone(), dma.clone());
        Ok(Core {
            regions: region_table(&desc),
            desc,
            device,
            config,
            irq,
            dma,
            limits,
            mig_state: MigState::Running,
            negotiated: None,
            spare: Vec::new(),
        })
    }

    pub(crate) fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits { max_data_xfer_size: self.limits.max_data_xfer_size, max_msg_fds: self.limits.max_msg_fds }
    }

    /// An empty reply, in the buffer of an earlier one.
    pub(crate) fn reply_buf(&mut self) -> ReplyBuf {
        ReplyBuf::new(std::mem::take(&mut self.spare))
    }

    /// Keeps a sent reply's buffer for the next reply.
    pub(crate) fn recycle(&mut self, buf: ReplyBuf) {
        self.spare = buf.0;
    }

    /// Tells the device about vectors whose state changed.
    pub(crate) fn notify(&self, changes: Vec<IrqChange>) {
        for (index, vector, state) in changes {
            self.device.irq_state_changed(index, vector, state);
        }
    }

    /// Resets the emulated state, then the device.
    pub(crate) fn reset(&mut self, kind: ResetKind) -> Result<()> {
        self.config.reset();
        let config = &mut self.config;
        let ((), changes) = self.irq.lock().change(&[], |irq| config.reset_irq(irq));
        self.notify(changes);
        Ok(self.device.reset(kind)?)
    }

    /// The client went away: unmap its DMA regions (closing their fds), stop DMA logging,
    /// drop the DMA transport and close its eventfds; keep the rest.
    pub(crate) fn disconnect(&mut self) {
        for r in &self.dma.space.regions() {
            self.device.dma_unmap(r);
        }
        if let Err(e) = self.dma.space.clear() {
            log::warn!("DMA mappings released late after disconnect: {e}");
        }
        let ((), changes) = self.irq.lock().change(&[], IrqState::release_client);
        self.notify(changes);
        if self.negotiated.take().is_some() {
            self.device.client_connected(false);
        }
    }
}
