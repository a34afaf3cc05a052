// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A framework for putting an emulated PCI device behind a [vfio-user] socket.
//!
//! The device author writes a [`DeviceDescription`] (PCI IDs, BARs, ROM, device-specific
//! regions, interrupts, capabilities) and implements [`Device`] (or [`DeviceMut`]) for the
//! behaviour: region reads and writes, reset, DMA map notifications, interrupt state. The
//! framework does the rest: VERSION negotiation (twin socket included), validation of
//! every command, configuration-space emulation (header, BAR sizing, PM, MSI, MSI-X,
//! PCI Express with FLR, vendor-specific and DSN capabilities), the MSI-X table and PBA,
//! SET_IRQS with mask and pending state ([`IrqHandle`]), the client's DMA mappings as a
//! `vfio-user-dma` `DmaSpace` with server-to-client DMA ([`DmaHandle`]), DMA dirty logging,
//! and the connection lifecycle ([`Server`]).
//!
//! ```no_run
//! use vfio_user_server::{Bar, Device, DeviceDescription, Endpoint, Listener, Server};
//!
//! struct Scratch(std::sync::Mutex<[u8; 256]>);
//!
//! impl Device for Scratch {
//!     fn region_read(&self, _region: u32, offset: u64, data: &mut [u8]) -> std::io::Result<()> {
//!         let m = self.0.lock().unwrap();
//!         data.copy_from_slice(&m[offset as usize..offset as usize + data.len()]);
//!         Ok(())
//!     }
//! }
//!
//! let desc = DeviceDescription::builder(0x1af4, 0x10f0).bar(0, Bar::memory32(256)).build()?;
//! let mut server = Server::new(desc, Scratch(std::sync::Mutex::new([0; 256])))?;
//! server.set_endpoint(Endpoint::Listener(Listener::bind("/tmp/scratch.sock")?));
//! server.run()?;
//! # Ok::<(), vfio_user_server::Error>(())
//! ```
//!
//! # Protocol decisions
//! * Before VERSION every other command gets `EINVAL` and the connection stays open (the
//!   client may still send VERSION). A second VERSION gets `EINVAL`. A VERSION with a major
//!   other than 0 gets `ENOTSUP` and the connection is closed.
//! * Framing errors (a size below the header, EOF inside a message, a reply that answers
//!   nothing, an undefined message type) close the connection; the device's DMA regions
//!   and eventfds are released and the next client is accepted.
//! * A message over the size limit (`max_data_xfer_size` plus the largest fixed part and
//!   the header) is read and discarded without being stored and answered `E2BIG`, the
//!   errno of a count over `max_data_xfer_size` (the spec names no errno for either); the
//!   connection is kept.
//! * A message whose descriptors the kernel truncated (`MSG_CTRUNC`: the server's descriptor
//!   table is full) is answered `EMFILE` ("too many open files", on the server's side; the
//!   client's fds were fine), the descriptors that did arrive closed, the connection kept.
//!   To keep the table from filling, a DMA mapping that keeps its fd open (FILE_IO, or an
//!   fd not sealed against shrinking: mmapped mappings close theirs) counts against a
//!   budget taken at VERSION from the soft `RLIMIT_NOFILE` (less the descriptors open, room
//!   for one message's descriptors and an eventfd per interrupt vector); past it DMA_MAP
//!   gets `ENOSPC`, and the VERSION reply's `max_dma_maps` is at most that budget. Server
//!   binaries call [`raise_fd_limit`] at start-up (soft limit to the hard one).
//! * DEVICE_FEATURE supports DMA_LOGGING_START / STOP / REPORT (and PROBE of them). A
//!   logging page size below 4096 is raised to 4096 in the START reply.
//! * Migration v2, for a device whose [`Device::migration`] says it can: MIGRATION (GET,
//!   PROBE) and MIG_DEVICE_STATE (GET, SET, PROBE); a SET is walked arc by arc along the
//!   spec's shortest path through [`Device::migration_transition`] and answered when done.
//!   A refused transition (to ERROR, STOP_COPY → PRE_COPY, out of ERROR, anything touching
//!   PRE_COPY without support) gets `EINVAL` and changes nothing; a failed arc leaves the
//!   device in ERROR with the arc's errno, and DEVICE_RESET brings it back to RUNNING.
//!   MIG_DATA_READ is served in PRE_COPY / STOP_COPY, MIG_DATA_WRITE in RESUMING, `EINVAL`
//!   elsewhere. In STOP and STOP_COPY, DMA_MAP, DMA_UNMAP, SET_IRQS and DEVICE_RESET get
//!   `EBUSY` (libvfio-user answers `EINVAL` and also refuses the info queries, which change
//!   nothing); in STOP_COPY region accesses get `EBUSY` too. The state survives a client's
//!   disconnect. Devices without migration get `ENOTSUP` for both features. A
//!   MIG_DATA_READ reply is as long as the request asked, zero-padded after the `size`
//!   bytes it announces, as libvfio-user sends it (its client reads exactly that length).
//! * SET_IRQS with DATA_EVENTFD takes eventfds only: any other fd (memfd, directory,
//!   socket, pipe, `/dev/null`) is `EINVAL`, as kernel VFIO answers, before any vector
//!   changes. Interrupt eventfds are signalled without touching their flags (the open file
//!   is the client's too, and libvfio-user's client reads it blocking); a write that would
//!   block (a full counter) is skipped after a `poll`.
//! * DMA_MAP flags: READ / WRITE give the mapping's permissions (neither: `EINVAL`);
//!   libvfio-user's MMAP bit (the default with an fd) mmaps the fd, its FILE_IO bit accesses
//!   it with `pread`/`pwrite`. DMA_UNMAP with the legacy GET_DIRTY_BITMAP flag needs DMA
//!   logging to be active; the bitmap's `size` must be the exact byte count rounded up to
//!   at most a multiple of 8.
//! * Replies without descriptors are queued and sent, several in one `send`, before the
//!   server waits for the client again; replies always leave in command order, but a
//!   DMA_READ / DMA_WRITE from a device thread may overtake queued replies (the protocol
//!   tells them apart by the message type).
//! * The MSI-X table's mask bits count only once the client writes the emulated table
//!   (QEMU and Cloud Hypervisor keep their own table); see [`irq`].
//!
//! [vfio-user]: https://www.qemu.org/docs/master/interop/vfio-user.html

#![deny(missing_docs)]

mod answer;
mod channel;
mod core;
pub mod description;
pub mod device;
mod dispatch;
pub mod dma;
pub mod error;
mod fdlimit;
pub mod irq;
mod migration;
pub mod pci;
mod region;
mod region_access;
pub mod server;
pub mod socket_path;

pub use crate::core::ServerLimits;
pub use crate::core::Timeouts;
pub use description::{
    Bar, BarKind, DescriptionBuilder, DeviceDescription, DeviceRegion, MsiConfig, MsixConfig, PcieConfig,
};
pub use device::{errno, Device, DeviceMut, IoEventFd, MigrationSupport, ResetKind};
pub use dma::{CancelWaits, DmaHandle, DmaRegion};
pub use error::{Error, Result};
pub use fdlimit::raise_fd_limit;
pub use irq::{IrqHandle, VectorState};
pub use server::{Endpoint, Event, Listener, Server, ShutdownHandle};
pub use socket_path::SocketPath;
/// The DMA crate the framework maps the client's memory with ([`DmaHandle::space`]).
pub use vfio_user_dma;
pub use vfio_user_proto::MigState;
