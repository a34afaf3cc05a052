// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `server` sample: a device that behaves like libvfio-user's `samples/server.c`, so
//! that libvfio-user's `samples/client.c` runs against it, migration included.
//!
//! * PCI IDs `dead:beef`, subsystem `cafe:babe`, one INTx vector, DEVICE_RESET.
//! * **BAR0**, 8 bytes, trapped: a `time_t` in host byte order. Writing it (8 bytes at
//!   offset 0, nothing else) stores a time and, while the device is RUNNING, arms a timer
//!   for that time: `t - now` whole seconds from now; a time that is now disarms the timer,
//!   a time in the past is refused with `EINVAL` and not stored (the C sample's
//!   `setitimer`). Reading it gives `now - t`.
//! * **BAR1**, 16 KiB of memory in a memfd, read and written by message, and mmappable in
//!   two sparse areas, `[0, 0x1000)` and `[0x2000, 0x3000)`. The C sample declares
//!   `0x3000` bytes, a size that is not a power of two: PCI has no such BAR, libvfio-user
//!   master refuses it and QEMU aborts on it, so this BAR is the next power of two. Its
//!   first `0x3000` bytes ([`BAR1_USED`]) are the C sample's BAR1 (what migrates); the C
//!   sample client, which hard-codes `0x3000`, never looks further.
//! * **When the timer fires**, the device raises INTx, then does DMA to the client's
//!   mappings in the order the client made them (slots freed by DMA_UNMAP are reused, as
//!   the C sample's array): to the *second*, four 1 KiB chunks of `A`, `B`, `C`, `D`
//!   written directly through the mapping (so the server's DMA dirty log shows the page),
//!   read back 2 KiB at a time and compared; to the *first*, the same with DMA_WRITE and
//!   DMA_READ messages to the client (which then knows the page is dirty) even though
//!   that mapping was made with an fd. A client advertising a 1 KiB transfer limit, as
//!   libvfio-user's sample client does, sees exactly four DMA_WRITE then four DMA_READ.
//! * **Migration** (v2, PRE_COPY supported): the save stream is BAR1 in PRE_COPY, BAR1
//!   then BAR0's 8 bytes in STOP_COPY; the load stream (RESUMING) is BAR1 then BAR0, the
//!   C sample's byte layout, so that C and Rust instances migrate to each other. Arcs
//!   into PRE_COPY, STOP_COPY and RESUMING restart the stream; entering STOP_COPY disarms
//!   the timer; RESUMING → STOP refuses a load that is not exactly `0x3008` bytes; going
//!   to RUNNING arms the timer again from BAR0 (so the destination raises the interrupt
//!   the source had scheduled).
//!
//! Where this device is stricter than the C sample, the C sample would abort or corrupt
//! state: a read of BAR1 at an offset reads at that offset (the C sample copies from
//! BAR1's start whatever the offset); going to RUNNING with a BAR0 time already past
//! leaves the timer disarmed (the C sample fails the transition, or asserts on the
//! stream position); DMA that cannot be done (fewer than two mappings, a mapping too
//! small, a direct mapping without fd) is reported through
//! [`SampleServer::dma_failures`] and the failure hook instead of exiting the process,
//! which the `server` binary does, with status 1, as the C sample would.

mod cli;
mod device;
mod timer;

use std::os::fd::OwnedFd;
use std::sync::Arc;

use vfio_user_server::{Bar, DeviceDescription, Server, ServerLimits};

pub use cli::{run, Options, USAGE};
pub use device::SampleServer;

/// PCI vendor ID.
pub const VENDOR_ID: u16 = 0xdead;
/// PCI device ID.
pub const DEVICE_ID: u16 = 0xbeef;
/// PCI subsystem vendor ID.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0xcafe;
/// PCI subsystem ID.
pub const SUBSYSTEM_ID: u16 = 0xbabe;
/// Size of BAR0 (a `time_t`).
pub const BAR0_SIZE: u64 = 8;
/// Size of BAR1 (16 KiB, a power of two).
pub const BAR1_SIZE: u64 = 0x4000;
/// Bytes of BAR1 the C sample has (`0x3000`): the part that migrates.
pub const BAR1_USED: u64 = 0x3000;
/// BAR1's mmappable areas, `(offset, size)`.
pub const BAR1_MMAP_AREAS: [(u64, u64); 2] = [(0, 0x1000), (0x2000, 0x1000)];
/// Bytes of the PRE_COPY save stream: BAR1's first [`BAR1_USED`] bytes.
pub const PRE_COPY_STREAM_SIZE: u64 = BAR1_USED;
/// Bytes of the STOP_COPY save stream and of the load stream: BAR1's used bytes, then BAR0.
pub const STOP_COPY_STREAM_SIZE: u64 = BAR1_USED + BAR0_SIZE;
/// DMA mappings the device keeps track of (the C sample's array size); more are refused
/// with `ENOSPC`.
pub const DMA_SLOTS: usize = 96;
/// Bytes of each chunk the device writes by DMA.
pub const DMA_CHUNK: usize = 1024;
/// Chunks written per DMA run (and read back two at a time).
pub const DMA_CHUNKS: usize = 4;

/// The protocol limits of libvfio-user's server: 8 fds per message (the C client maps
/// twice as many DMA regions as that), 1 MiB transfers, 4 KiB pages; `max_dma_maps` is the
/// [`DMA_SLOTS`] the device can track (it advertised 4096 and refused the 97th).
pub fn limits() -> ServerLimits {
    ServerLimits { max_msg_fds: 8, max_dma_maps: DMA_SLOTS as u32, ..ServerLimits::default() }
}

/// The sample's description, with BAR1 backed by `bar1` (a file of at least
/// [`BAR1_SIZE`] bytes).
pub fn description(bar1: Arc<OwnedFd>) -> vfio_user_server::Result<DeviceDescription> {
    DeviceDescription::builder(VENDOR_ID, DEVICE_ID)
        .subsystem(SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID)
        .bar(0, Bar::memory32(BAR0_SIZE))
        .bar(1, Bar::memory32(BAR1_SIZE).mmap(bar1, 0).sparse(&BAR1_MMAP_AREAS))
        .intx()
        .build()
}

/// A [`Server`] for a new sample device, its BAR1 in a fresh memfd, with the
/// [`limits`] of libvfio-user. Give it an endpoint and run it.
pub fn new_server() -> vfio_user_server::Result<Server<SampleServer>> {
    let fd = rustix::fs::memfd_create("vfio-user-sample-bar1", rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, BAR1_SIZE)?;
    let fd = Arc::new(fd);
    let desc = description(fd.clone())?;
    Server::with_handles(desc, limits(), |irq, dma| SampleServer::new(irq, dma, fd))
}
