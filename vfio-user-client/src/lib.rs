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
//!   served from the VMM's guest memory without a copy in user space (a DMA_READ reply is
//!   sent straight out of it, a large DMA_WRITE received straight into it).
//! * **Live migration in one call**: [`migrate`] moves a device's state from one server to
//!   another (PRE_COPY rounds while it runs, STOP_COPY, RESUMING, STOP, RUNNING), streaming
//!   chunk by chunk, with the source's dirty pages collected for the VMM; [`Migration`]
//!   gives the same steps one by one.
//! * **Concurrent**: every method takes `&self`; many requests are in flight at once, their
//!   replies matched by message id, and one thread can pipeline
//!   ([`Client::region_read_batch`]). Every request has a timeout; a disconnect wakes every
//!   waiter; [`Client::reconnect`] reconnects to a restarted server and replays DMA
//!   mappings, IRQ eventfds and IRQ masks.
//! * **Hardened**: every reply is treated as hostile — sizes bounded by what was asked,
//!   counts and capability chains checked, stray fds refused, unknown replies close the
//!   connection. No panic, no unbounded allocation, and no `unsafe` in this crate
//!   (`#![forbid(unsafe_code)]`: mappings go through vm-memory, fds through rustix).
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
//! How the client is built (one connection with a reader role, futex wake-ups, timeouts,
//! disconnect and reconnect, sending, posted writes, pipelining, statistics) and which file
//! holds what: the workspace's `DESIGN.md`.
//!
//! # Hostile servers
//! The receive buffer is bounded by the largest reply we can ask for; every reply is
//! checked against its request (sizes, echoed fields, `argsz`, counts, fds); capability
//! chains are walked within `argsz` with loop detection; a server reporting more than 100
//! regions or 50 IRQ indexes is refused; a reply of an unknown type, to an id that is not
//! pending, of another command, or with a stray fd closes the connection. A server that
//! trickles bytes, never answers, never reads or never accepts runs into a timeout. Server
//! DMA is checked against the client's own table of mappings and their access rights. A
//! chaos test feeds pseudo-random replies to every call.
//!
//! # Moving from rust-vmm's `vfio_user::Client` (as Cloud Hypervisor uses it)
//!
//! | rust-vmm `vfio_user::Client` | here |
//! |---|---|
//! | `Client::new(path)` | [`Client::new`] or [`Client::connect`]`(path, Config)`; no `Mutex` needed around it |
//! | `resettable()` (inverted RESET flag) | [`Client::resettable`] (the flag read correctly) |
//! | `reset()` | [`Client::reset`] (own, longer timeout) |
//! | `region(index)` → `Region { flags, index, size, file_offset, sparse_areas }` | [`Client::region_info`] → [`Region`]: `flags`, `index`, `size`, [`Region::file_offset`], [`Region::sparse_mmap_areas`]; or [`Client::map_region`] for a mapping tied to a handle |
//! | `dma_map(offset, address, size, fd)` | [`Client::dma_map_fd`]`(address, size, fd, offset, DmaProt::READ_WRITE)`; without an fd [`Client::dma_map`] (Cloud Hypervisor skips such regions today) |
//! | `dma_unmap(address, size)` | [`Client::dma_unmap`]; also [`Client::dma_unmap_all`] |
//! | `region_read(region, offset, data)` | [`Client::region_read`] (split by `max_data_xfer_size`, error replies reported) |
//! | `region_write(region, offset, data)` | [`Client::region_write`], or [`Client::region_write_posted`] for NO_REPLY writes |
//! | `get_irq_info(index)` → `IrqInfo { index, flags, count }` | [`Client::irq_info`] → [`IrqInfo`] (`Into<vfio_irq_info>`) |
//! | `set_irqs(index, flags, start, count, fds)` | [`Client::set_irqs_raw`] with the same arguments (fds as `BorrowedFd`: `EventFd` in vmm-sys-util 0.15 has no `AsFd`, so `BorrowedFd::borrow_raw` while the `EventFd` lives), split by the server's `max_msg_fds` (Cloud Hypervisor batches 16 itself today); or [`Client::set_irqs`] with [`IrqSetData`] |
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
//! Guest memory for server-initiated DMA is handed over once, with [`Config::guest_memory`]
//! (any vm-memory `GuestAddressSpace`: `Arc<GuestMemoryMmap>`, the `GuestMemoryAtomic` Cloud
//! Hypervisor keeps) or [`Config::dma_memory`] for a custom [`DmaMemory`] (e.g. with IOVA
//! translation). Region, device and IRQ info convert into `vfio_bindings` structs
//! (`vfio_region_info`, `vfio_device_info`, `vfio_irq_info`), and [`Region::file_offset`]
//! gives the vm-memory `FileOffset` rust-vmm's `Region` holds.
//!
//! [vfio-user]: https://www.qemu.org/docs/master/interop/vfio-user.html

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod config;
mod connect;
mod device_feature;
mod dma_map;
mod dma_serve;
mod dma_serve_zero_copy;
mod error;
mod irq;
mod irq_state;
mod migrate;
mod pending;
mod reconnect;
mod region;
mod region_info;
mod send;
mod stats;
mod sync;
mod transport;
mod wake;

pub use client::{Client, DeviceInfo, RegionReadOp};
pub use config::{
    Config, DEFAULT_MAX_IRQS, DEFAULT_MAX_REGIONS, DEFAULT_RESET_TIMEOUT, DEFAULT_TIMEOUT, MAX_INFO_ARGSZ,
};
pub use dma_map::DmaProt;
pub use dma_serve::{DmaMapping, DmaMemory};
pub use error::{DisconnectReason, Error, Result};
pub use irq_state::{IrqAction, IrqInfo, IrqSetData};
pub use migrate::{migrate, DirtyRange, MigrateOptions, Migration, MigrationReport, Progress};
pub use region_info::{IoRegionFd, MappedArea, Region, RegionMapping};
pub use stats::Stats;
pub use vfio_user_proto::{MigState, Negotiated, RegionCap, VolatileBuf};

/// The workspace README's examples, compiled and run as doctests of this crate (its
/// dev-dependencies include the server crate the device example uses).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
