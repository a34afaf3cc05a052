// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Virtio devices over vfio-user.
//!
//! * [`VirtioPci`]: the virtio-pci transport (modern, virtio 1.x) as a
//!   [`vfio_user_server::Device`], generic over a [`VirtioDevice`]: capabilities, feature
//!   negotiation, status and reset, queue set-up, one MSI-X vector per queue plus one for
//!   configuration changes, a worker thread per queue fed by ioeventfds or REGION_WRITEs,
//!   migration of the transport state.
//! * [`blk::VirtioBlk`]: a virtio-blk device backed by a raw image file.
//! * [`moderation`]: when a queue worker holds completions back so that a busy driver takes
//!   several in one interrupt.
//! * [`DmaView`]: a vm-memory `GuestMemory` over every kind of DMA mapping (zero-copy for
//!   mmapped memory, bounced for the rest), on which `virtio-queue` runs.
//!
//! ```no_run
//! use vfio_user_server::{Endpoint, Listener};
//! use vfio_user_virtio::blk::{BlkConfig, VirtioBlk};
//! use vfio_user_virtio::VirtioPci;
//!
//! let blk = VirtioBlk::open("disk.img".as_ref(), BlkConfig { queues: 2, ..Default::default() })?;
//! let mut server = VirtioPci::server(blk)?;
//! server.set_endpoint(Endpoint::Listener(Listener::bind("/tmp/blk.sock")?));
//! server.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A new virtio device implements [`VirtioDevice`] (type, queues, features, configuration
//! space, and a `handle` for one descriptor chain) and is served with
//! [`VirtioPci::server`]; see the `blk` module for a complete one.

#![deny(missing_docs)]

pub mod blk;
mod device;
mod error;
mod memory;
pub mod moderation;
mod queue;
pub mod transport;

pub use device::VirtioDevice;
pub use error::{Error, Result};
pub use memory::{DmaView, ViewBitmapSlice, ViewSlices, DEFAULT_BOUNCE_LIMIT};
pub use moderation::Moderation;
pub use queue::{serve_queue, serve_queue_polling, Pacing, QueueOutcome};
pub use transport::layout::MAX_QUEUES;
pub use transport::VirtioPci;
