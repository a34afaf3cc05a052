// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A stand-in for Cloud Hypervisor's vfio-user PCI device (`pci/src/vfio_user.rs`) and its
//! DMA mapping hook (`vmm/src/device_manager.rs`), built on `vfio-user-client` instead of
//! rust-vmm's `vfio_user`, with Cloud Hypervisor's pinned versions of vfio-bindings (0.6.2),
//! vm-memory (0.18, `AtomicBitmap`, `GuestMemoryAtomic`) and vmm-sys-util (0.15 `EventFd`).
//!
//! Every call Cloud Hypervisor makes on its client is made here, in the same shape, and
//! the `Vfio` hooks Cloud Hypervisor's common VFIO code calls (config space, IRQs, and the
//! migration and dirty-logging hooks its vfio-user device leaves unimplemented today) are
//! implemented through our client. The tests run it against `vfio-user serve demo`.
//!
//! It is written from Cloud Hypervisor's public interfaces, not copied from its code; the
//! types that come from crates it does not pin here (`VfioIrq` of vfio-ioctls,
//! `DmaLoggingRange`, a dirty-range table) are stood in for by small local ones.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod device;
mod dma;
mod vfio;

pub use device::{VfioUserClientWrapper, VfioUserPciDevice};
pub use dma::VfioUserDmaMapping;
pub use vfio::{dirty_ranges, DmaLoggingRange, Vfio, VfioError, VfioIrq, VfioMigrationState};
