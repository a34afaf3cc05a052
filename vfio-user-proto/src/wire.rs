// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Every wire struct, flag type and constant of every command family in one namespace, for
//! code that builds or reads bodies by hand (tests, tools, fuzzers).
//!
//! Each item lives with its family — [`crate::version`], [`crate::dma`], [`crate::device`],
//! [`crate::irq`], [`crate::region_access`], [`crate::feature`] and [`crate::region_caps`] —
//! beside the decoders and encoders that use it. Every struct is
//! [`ByteValued`](vm_memory::ByteValued): its bytes are exactly its wire form (host-endian,
//! as the current specification says), and a compile-time assertion pins its size to the
//! specification's table.

pub use crate::codec::{append_with_room, put_with_room, read_at, read_exact};
pub use crate::device::*;
pub use crate::dma::*;
pub use crate::feature::*;
pub use crate::irq::*;
pub use crate::region_access::*;
pub use crate::region_caps::{
    CapHeader, RegionTypeCap, SparseArea, SparseMmapCap, REGION_INFO_CAP_SPARSE_MMAP, REGION_INFO_CAP_TYPE,
};
pub use crate::version::VersionWire;
