// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VMM side of [vfio-user]: drive a PCI device emulated in another process over a UNIX
//! stream socket.
//!
//! * **Everything the protocol offers**: VERSION with every capability (twin socket,
//!   `write_multiple`, `max_msg_fds`, `max_data_xfer_size`, `pgsizes`, `max_dma_maps`), and
//!   the negotiated limits obeyed in everything sent; device, region (capabilities, sparse
//!   areas, TYPE, IO fds) and IRQ info; region I/O of any length, posted writes coalesced
//!   into REGION_WRITE_MULTI; safe mappings of mmappable regions; DMA_MAP with or without an
//!   fd, DMA_UNMAP (one, all, with dirty bitmap); SET_IRQS for every data × action; RESET;
//!   DEVICE_FEATURE, migration v2 and DMA logging; server-initiated DMA_READ/DMA_WRITE
//!   served from the VMM's guest memory.
//! * **Concurrent**: every method takes `&self`; many requests are in flight at once, their
//!   replies matched by message id. Every request has a timeout; a disconnect wakes every
//!   waiter; [`Client::reconnect`] reconnects to a restarted server and replays DMA
//!   mappings and IRQ eventfds.
//! * **Hardened**: every reply is treated as hostile — sizes bounded by what was asked,
//!   counts and capability chains checked, stray fds refused, unknown replies close the
//!   connection. No panic, no unbounded allocation.
//!
//! # Example
//! ```no_run
//! use std::path::Path;
//! use vfio_user_client::{Client, Config};
//!
//! let client = Client::connect(Path::new("/run/dev.sock"), Config::default())?;
//! let mut id = [0u8; 4];
//! client.region_read(7, 0, &mut id)?; // PCI config space: vendor and device id
//! # Ok::<(), vfio_user_client::Error>(())
//! ```
//!
//! # Design
//! One connection is a transport (send lock, pending table keyed by `msg_id`, reader
//! role). A thread that waits for a reply reads the socket itself when no other thread does,
//! so a lone request costs no hand-off between threads; other waiters sleep on their own
//! slot until the reader hands them their reply (with its fds) or the reader role. A
//! background thread reads while the client is idle, so server-initiated DMA and a closed
//! socket are seen at any time; with a twin socket, a thread of its own serves DMA there.
//!
//! # Moving from rust-vmm's `vfio_user::Client` (as Cloud Hypervisor uses it)
//!
//! | rust-vmm `vfio_user::Client` | here |
//! |---|---|
//! | `Client::new(path)` | [`Client::new`] or [`Client::connect`]`(path, Config)`; no `Mutex` needed around it |
//! | `resettable()` (inverted RESET flag) | [`Client::resettable`] (the flag read correctly) |
//! | `reset()` | [`Client::reset`] (own, longer timeout) |
//! | `region(index)` → `Region { flags, index, size, file_offset, sparse_areas }` | [`Client::region_info`] → [`Region`]: `flags`, `index`, `size`, [`Region::file_offset`], [`Region::sparse_areas`]; or [`Client::map_region`] for a mapping tied to a handle |
//! | `dma_map(offset, address, size, fd)` | [`Client::dma_map_fd`]`(address, size, fd, offset, DmaProt::READ_WRITE)`; without an fd [`Client::dma_map`] (Cloud Hypervisor skips such regions today) |
//! | `dma_unmap(address, size)` | [`Client::dma_unmap`]; also [`Client::dma_unmap_all`] |
//! | `region_read(region, offset, data)` | [`Client::region_read`] (split by `max_data_xfer_size`, error replies reported) |
//! | `region_write(region, offset, data)` | [`Client::region_write`], or [`Client::region_write_posted`] for NO_REPLY writes |
//! | `get_irq_info(index)` → `IrqInfo { index, flags, count }` | [`Client::irq_info`] → [`IrqInfo`] (`Into<vfio_irq_info>`) |
//! | `set_irqs(index, flags, start, count, fds)` | [`Client::set_irqs_raw`] with the same arguments (fds as `BorrowedFd`), split by the server's `max_msg_fds` (Cloud Hypervisor batches 16 itself today); or [`Client::set_irqs`] with [`IrqSetData`] |
//! | `shutdown()` | [`Client::shutdown`] (also on drop) |
//!
//! Cloud Hypervisor's `Vfio` trait hooks for migration and dirty logging, which its
//! vfio-user device cannot serve today, map to:
//!
//! | `Vfio` hook | here |
//! |---|---|
//! | `migration_flags` | [`Client::migration_flags`] (and [`Client::device_feature_probe`]) |
//! | `set_migration_state` | [`Client::set_migration_state`] ([`MigState`]) |
//! | `read_migration_data` / `write_migration_data` | [`Client::read_migration_data`] / [`Client::write_migration_data`] |
//! | `start_dma_logging` / `stop_dma_logging` / `report_dma_logging` | [`Client::start_dma_logging`] / [`Client::stop_dma_logging`] / [`Client::report_dma_logging`] |
//!
//! Guest memory for server-initiated DMA is handed over once, in [`Config::dma_memory`]:
//! any vm-memory `GuestAddressSpace` (`Arc<GuestMemoryMmap>`, `GuestMemoryAtomic<..>`)
//! implements [`DmaMemory`].
//!
//! [vfio-user]: https://www.qemu.org/docs/master/interop/vfio-user.html

#![deny(missing_docs)]

mod client;
mod config;
mod connect;
mod dma;
mod dma_map;
mod error;
mod irq;
mod migration;
mod pending;
mod region;
mod transport;

pub use client::{Client, DeviceInfo, RegionReadOp};
pub use config::{
    Config, DEFAULT_MAX_IRQS, DEFAULT_MAX_REGIONS, DEFAULT_RESET_TIMEOUT, DEFAULT_TIMEOUT, MAX_INFO_ARGSZ,
};
pub use dma::{DmaMapping, DmaMemory};
pub use dma_map::DmaProt;
pub use error::{DisconnectReason, Error, Result};
pub use irq::{IrqAction, IrqInfo, IrqSetData};
pub use region::{IoRegionFd, MappedArea, Region, RegionMapping};
pub use vfio_user_proto::{MigState, Negotiated, RegionCap};
