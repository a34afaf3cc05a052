// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Sample vfio-user devices built on `vfio-user-server`, behaviourally compatible with
//! libvfio-user's samples, so that libvfio-user's own sample clients run against them.
//!
//! * [`server`]: libvfio-user's `samples/server.c` — a BAR0 timer that raises INTx and
//!   does DMA when it fires, BAR1 memory with sparse mmap areas, device reset, and
//!   migration v2 with PRE_COPY. The `server` binary of this crate runs it as
//!   `server [-v] <socketpath>`, the C sample's command line.
//! * [`gpio`]: an ACCES PCI-IDIO-16 GPIO card as Linux's `pci-idio-16` driver programs it,
//!   with a control socket that drives its inputs; the smallest complete device; the `gpio`
//!   binary serves it.
//!
//! [`signals`] is what their binaries (and `vfio-user serve`) share: serving until SIGTERM
//! or SIGINT.

#![deny(missing_docs)]

pub mod gpio;
pub mod server;
pub mod signals;
