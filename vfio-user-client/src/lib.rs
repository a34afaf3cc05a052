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
//!   mappings, IRQ eventfds and IRQ masks, and maps its region memory in place of live
//!   region mappings; [`Client::disconnect_fd`] tells the VMM's epoll loop of a disconnect.
//! * **Hardened**: every reply is treated as hostile — sizes bounded by what was asked,
//!   counts and capability chains checked, stray fds refused, unknown replies close the
//!   connection. No panic, no unbounded allocation. `#![deny(unsafe_code)]`: mappings go
//!   through vm-memory and fds through rustix, but for these, with their safety argument:
//!   the `MAP_FIXED` that maps a restarted server's memory over a live region mapping on
//!   reconnect, `borrow_eventfd` (feature `vmm-sys-util-0-15`), which borrows the
//!   descriptor a vmm-sys-util `EventFd` owns, and the socket's sends from and receives
//!   into guest memory on raw iovecs (`socket/volatile_send.rs`, `socket/volatile_recv.rs`:
//!   `VolatileSlice`s cannot become byte slices soundly).
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
//! # Porting Cloud Hypervisor (or another rust-vmm VMM) from rust-vmm's `vfio_user::Client`
//!
//! Every call Cloud Hypervisor makes on rust-vmm's client has a counterpart here. The
//! stand-in crate `interop/cloud-hypervisor` of this repository makes each of them, with
//! Cloud Hypervisor's pinned versions (vfio-bindings 0.6.2, vm-memory 0.18 with
//! `AtomicBitmap` and `GuestMemoryAtomic`, vmm-sys-util 0.15), against our server, in CI.
//! The changes a maintainer makes, in order:
//!
//! 1. **Cargo.toml**: `vfio_user` becomes `vfio-user-client` with the features
//!    `vfio-bindings-0-6` (conversions into the vfio-bindings structs of Cloud Hypervisor's
//!    tree; `vfio-bindings-0-7` for 0.7) and `vmm-sys-util-0-15` (`borrow_eventfd`). No
//!    second copy of vfio-bindings, vm-memory or vmm-sys-util enters the tree: this crate
//!    pins none of them exactly.
//! 2. **No `Mutex`**: `Arc<Mutex<Client>>` becomes `Arc<Client>`; every method takes
//!    `&self`, and vCPU threads no longer serialise on one lock. [`Client::new`]`(path)` is
//!    unchanged; [`Client::connect`] takes a [`Config`] (timeouts, limits, guest memory).
//! 3. **`resettable()` is inverted in rust-vmm's crate**: it returns `true` when the
//!    device's RESET flag is *clear*, so Cloud Hypervisor today resets devices that cannot
//!    be reset and skips those that can. [`Client::resettable`] reads the flag the right way
//!    round; the `if resettable { reset() }` code stays as it is and now does what it says.
//!    [`Client::reset`] has its own, longer timeout.
//! 4. **Regions**: `region(index).unwrap()` (a field lookup that panics on a bad index)
//!    becomes [`Client::region_info`]`(index)?` → [`Region`]: `flags` and `index` as before,
//!    [`Region::file_offset`]`()` for the `file_offset` field (the same vm-memory
//!    `FileOffset`), [`Region::sparse_mmap_areas`]`()` for `sparse_areas`: a
//!    `Vec<`[`SparseMmapArea`]`>` with `offset` and `size`, used as is or converted with
//!    `.into()` into the `vfio_region_sparse_mmap_area` of Cloud Hypervisor's vfio-bindings.
//!    Or [`Client::map_region`] maps the areas itself and unmaps them on drop.
//! 5. **DMA**: `dma_map(offset, iova, size, raw_fd)` becomes
//!    [`Client::dma_map_fd`]`(iova, size, file.as_fd(), offset, `[`DmaProt::READ_WRITE`]`)`
//!    — **the file offset moves from first to fourth**, and the fd is borrowed, not raw.
//!    `dma_unmap(iova, size)` is [`Client::dma_unmap`]. Regions without a file can be
//!    mapped too ([`Client::dma_map`]; the server then reaches them by message), where Cloud
//!    Hypervisor skips them today.
//! 6. **IRQs**: `get_irq_info` is [`Client::irq_info`] → [`IrqIndexInfo`] (`index`, `flags`,
//!    `count`, as vfio-ioctls' `VfioIrq`). `set_irqs(index, flags, start, count, &[RawFd])`
//!    is [`Client::set_irqs_raw`] with the same arguments and `&[BorrowedFd]`: map each
//!    `&EventFd` (which has `AsRawFd` only) through `borrow_eventfd`, no `unsafe` needed.
//!    The batching by 16 fds goes: the client splits by the server's `max_msg_fds`.
//! 7. **Errors**: `vfio_user::Error` becomes [`Error`] (`#[non_exhaustive]`, with
//!    [`Error::errno`]); a disconnected server is [`Error::Disconnected`] on every call.
//! 8. **Migration and dirty logging** (the `Vfio` hooks Cloud Hypervisor's vfio-user device
//!    leaves at their "no migration support" defaults today):
//!
//!    | `Vfio` hook | here |
//!    |---|---|
//!    | `migration_flags() -> Option<u64>` | [`Client::migration_flags`]; an [`Error::Server`] reply means the device has no MIGRATION feature (`None`) |
//!    | `set_migration_state(state)` | [`Client::set_migration_state`]([`MigState`]; the same numbering as the kernel's `VFIO_DEVICE_STATE_*`) |
//!    | `read_migration_data() -> Vec<u8>` | [`Client::read_migration_data`] into a buffer, repeated until it returns less than the buffer (the end of what the device has now) |
//!    | `write_migration_data(data)` | [`Client::write_migration_data`] (split by the transfer limit) |
//!    | `start_dma_logging(page_size, ranges)` | [`Client::start_dma_logging`] with `(iova, length)` pairs; returns the page size the device chose |
//!    | `stop_dma_logging()` | [`Client::stop_dma_logging`] |
//!    | `report_dma_logging(range, page_size)` | [`Client::report_dma_logging`]: the bitmap in the kernel's layout, for `MemoryRangeTable::from_dirty_bitmap` |
//!
//!    Or [`migrate`] runs the whole sequence between two servers.
//! 9. **`shutdown()`** is [`Client::shutdown`] (also on drop).
//! 10. **New, optional**: [`Config::guest_memory`] with the `GuestMemoryAtomic` Cloud
//!     Hypervisor keeps lets the server use DMA_READ/DMA_WRITE (rust-vmm's client refuses
//!     them); [`Client::disconnect_fd`] tells the VMM's epoll loop that the server went away,
//!     and [`Client::reconnect`] brings the device back (see *Reconnect* above).
//!
//! Region, device and IRQ info and [`SparseMmapArea`] are this crate's own types; they
//! convert into the `vfio_bindings` structs (`vfio_region_info`, `vfio_device_info`,
//! `vfio_irq_info`, `vfio_region_sparse_mmap_area`) of vfio-bindings 0.6 or 0.7 with the
//! features `vfio-bindings-0-6` / `vfio-bindings-0-7`, so a VMM keeps the vfio-bindings
//! version it has. Guest memory for server-initiated DMA is handed over once, with
//! [`Config::guest_memory`] (any vm-memory `GuestAddressSpace`) or [`Config::dma_memory`]
//! for a custom [`GuestMemoryAccess`] (e.g. with IOVA translation).
//!
//! [vfio-user]: https://www.qemu.org/docs/master/interop/vfio-user.html

#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(any(feature = "vfio-bindings-0-6", feature = "vfio-bindings-0-7"))]
mod bindings;
mod client;
mod config;
mod connect;
mod device_feature;
mod dma_map;
mod dma_serve;
mod dma_serve_zero_copy;
mod error;
#[cfg(feature = "vmm-sys-util-0-15")]
mod eventfd;
mod irq;
mod irq_state;
mod migrate;
mod notice;
mod pending;
mod reconnect;
mod region;
mod region_info;
mod remap;
mod send;
mod socket;
mod stats;
mod sync;
mod transport;
mod wake;

pub use client::{Client, DeviceSummary, RegionReadOp};
pub use config::{
    Config, DEFAULT_MAX_IRQS, DEFAULT_MAX_REGIONS, DEFAULT_RESET_TIMEOUT, DEFAULT_TIMEOUT, MAX_INFO_ARGSZ,
};
pub use dma_map::DmaProt;
pub use dma_serve::{DmaMapping, GuestMemoryAccess};
pub use error::{DisconnectReason, Error, Result};
#[cfg(feature = "vmm-sys-util-0-15")]
pub use eventfd::borrow_eventfd;
pub use irq::max_irq_count;
pub use irq_state::{IrqAction, IrqIndexInfo, IrqSetData};
pub use migrate::{migrate, DirtyRange, MigrateOptions, Migration, MigrationReport, Progress};
pub use region_info::{IoRegionFd, MappedArea, Region, RegionMapping, SparseMmapArea};
pub use socket::{VolatileBuf, VolatileBufMut};
pub use stats::Stats;
pub use vfio_user_proto::{MigState, Negotiated, RegionCap};

/// The workspace README's examples, compiled and run as doctests of this crate (its
/// dev-dependencies include the server crate the device example uses).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
