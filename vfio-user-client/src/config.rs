// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Client configuration: timeouts, the capabilities we offer, and the limits we enforce on
//! what the server reports.

use std::sync::Arc;
use std::time::Duration;

use vfio_user_proto::version::DEFAULT_MAX_DMA_MAPS;
use vfio_user_proto::{Capabilities, TwinSocket};

use crate::dma_serve::GuestMemoryAccess;

/// Default timeout of a request, as in QEMU (`x-msg-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout of DEVICE_RESET, which may take long.
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(60);
/// QEMU's cap on the number of regions a server may report.
pub const DEFAULT_MAX_REGIONS: u32 = 100;
/// QEMU's cap on the number of IRQ indexes a server may report.
pub const DEFAULT_MAX_IRQS: u32 = 50;
/// Most bytes a region-info or IO-fds reply may need (capability chains and sub-region
/// tables are small; this bounds what a server can make us ask for).
pub const MAX_INFO_ARGSZ: u32 = 64 * 1024;

/// How a [`Client`](crate::Client) behaves. `Config::default()` matches QEMU's client where
/// QEMU has a setting.
#[derive(Clone)]
pub struct Config {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reset_timeout: Duration,
    pub(crate) max_msg_fds: u32,
    pub(crate) max_data_xfer_size: u32,
    pub(crate) twin_socket: bool,
    pub(crate) coalesce_writes: bool,
    pub(crate) max_regions: u32,
    pub(crate) max_irqs: u32,
    pub(crate) memory: Option<Arc<dyn GuestMemoryAccess>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_TIMEOUT,
            reset_timeout: DEFAULT_RESET_TIMEOUT,
            max_msg_fds: 16,
            max_data_xfer_size: vfio_user_proto::version::DEFAULT_MAX_DATA_XFER_SIZE,
            twin_socket: true,
            coalesce_writes: true,
            max_regions: DEFAULT_MAX_REGIONS,
            max_irqs: DEFAULT_MAX_IRQS,
            memory: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reset_timeout", &self.reset_timeout)
            .field("max_msg_fds", &self.max_msg_fds)
            .field("max_data_xfer_size", &self.max_data_xfer_size)
            .field("twin_socket", &self.twin_socket)
            .field("coalesce_writes", &self.coalesce_writes)
            .field("max_regions", &self.max_regions)
            .field("max_irqs", &self.max_irqs)
            .field("memory", &self.memory.is_some())
            .finish()
    }
}

impl Config {
    /// The timeout of every request (default 5 s). Must be non-zero.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t.max(Duration::from_millis(1));
        self
    }

    /// The timeout of connecting: the socket connect, VERSION and the DEVICE_GET_INFO that
    /// follows (default 5 s), separate from [`timeout`](Config::timeout) so that a client
    /// with short request timeouts still tolerates a server slow to start.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t.max(Duration::from_millis(1));
        self
    }

    /// The timeout of DEVICE_RESET (default 60 s).
    pub fn reset_timeout(mut self, t: Duration) -> Self {
        self.reset_timeout = t.max(Duration::from_millis(1));
        self
    }

    /// Most fds we accept with one message (advertised as `max_msg_fds`, default 16, at
    /// least 1, at most 253).
    pub fn max_msg_fds(mut self, n: u32) -> Self {
        self.max_msg_fds = n.clamp(1, vfio_user_proto::version::SCM_MAX_FD);
        self
    }

    /// Largest DMA_READ/DMA_WRITE the server may send us, and the largest chunk we move in
    /// one message (advertised as `max_data_xfer_size`; default 1 MiB, between 4 KiB and
    /// 64 MiB, QEMU's bounds).
    pub fn max_data_xfer_size(mut self, n: u32) -> Self {
        self.max_data_xfer_size = n.clamp(4096, 64 << 20);
        self
    }

    /// Whether to offer twin-socket mode (default on): server-initiated DMA then travels on
    /// a socket of its own, served by a thread of its own, at once. Without it, DMA requests
    /// on the main socket are served by whichever thread reads it; right after a burst of
    /// requests the background reader steps back in within 1 to 8 milliseconds.
    pub fn twin_socket(mut self, on: bool) -> Self {
        self.twin_socket = on;
        self
    }

    /// Whether posted writes of at most 8 bytes that queue up behind another send are
    /// coalesced into REGION_WRITE_MULTI when the server accepts it (default on).
    pub fn coalesce_writes(mut self, on: bool) -> Self {
        self.coalesce_writes = on;
        self
    }

    /// Most regions and IRQ indexes a server may report (default 100 and 50, like QEMU).
    pub fn max_regions_irqs(mut self, regions: u32, irqs: u32) -> Self {
        self.max_regions = regions;
        self.max_irqs = irqs;
        self
    }

    /// The VMM's memory, from which the server's DMA_READ/DMA_WRITE are served: e.g.
    /// `Arc::new(Arc::new(guest_memory_mmap))` or `Arc::new(GuestMemoryAtomic::new(..))`.
    /// Without it, only DMA into mappings made with an fd is served (through the fd).
    pub fn dma_memory(mut self, memory: Arc<dyn GuestMemoryAccess>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// [`dma_memory`](Config::dma_memory) for a vm-memory address space, e.g.
    /// `Arc<GuestMemoryMmap>` or `GuestMemoryAtomic<GuestMemoryMmap>` (IOVA = guest address).
    pub fn guest_memory<AS>(self, memory: AS) -> Self
    where
        AS: vm_memory::GuestAddressSpace + Send + Sync + 'static,
    {
        self.dma_memory(Arc::new(memory))
    }

    /// The capabilities we offer in VERSION.
    pub(crate) fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_msg_fds: self.max_msg_fds,
            max_data_xfer_size: self.max_data_xfer_size,
            max_dma_maps: DEFAULT_MAX_DMA_MAPS,
            pgsizes: page_size(),
            twin_socket: Some(TwinSocket { supported: self.twin_socket, fd_index: None }),
            write_multiple: true,
        }
    }
}

/// The host page size.
pub(crate) fn page_size() -> u64 {
    rustix::param::page_size() as u64
}
