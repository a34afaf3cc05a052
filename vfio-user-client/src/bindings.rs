// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Conversions of the client's own info types into the structs of the vfio-bindings
//! versions VMMs use, each behind a feature of its own (`vfio-bindings-0-6`,
//! `vfio-bindings-0-7`), so that the public API ties a VMM to none of them and a VMM
//! with either version in its tree gets the structs of its own copy.

/// Implements `From<our type>` for the `vfio_device_info`, `vfio_region_info`,
/// `vfio_irq_info` and `vfio_region_sparse_mmap_area` of one vfio-bindings crate.
macro_rules! vfio_bindings_conversions {
    ($krate:ident) => {
        use vfio_user_proto::wire::REGION_FLAG_CAPS;
        use $krate::bindings::vfio::{vfio_device_info, vfio_irq_info, vfio_region_info, vfio_region_sparse_mmap_area};

        use crate::{DeviceSummary, IrqIndexInfo, Region, SparseMmapArea};

        impl From<DeviceSummary> for vfio_device_info {
            fn from(d: DeviceSummary) -> Self {
                vfio_device_info {
                    argsz: std::mem::size_of::<Self>() as u32,
                    flags: d.flags,
                    num_regions: d.num_regions,
                    num_irqs: d.num_irqs,
                    ..Default::default()
                }
            }
        }

        /// The fixed part of the info; capabilities are not chained (`cap_offset` 0, the
        /// CAPS flag cleared): they are in [`Region::caps`].
        impl From<&Region> for vfio_region_info {
            fn from(r: &Region) -> Self {
                vfio_region_info {
                    argsz: std::mem::size_of::<Self>() as u32,
                    flags: r.flags & !REGION_FLAG_CAPS,
                    index: r.index,
                    cap_offset: 0,
                    size: r.size,
                    offset: r.offset,
                }
            }
        }

        impl From<IrqIndexInfo> for vfio_irq_info {
            fn from(i: IrqIndexInfo) -> Self {
                vfio_irq_info {
                    argsz: std::mem::size_of::<Self>() as u32,
                    flags: i.flags,
                    index: i.index,
                    count: i.count,
                }
            }
        }

        impl From<SparseMmapArea> for vfio_region_sparse_mmap_area {
            fn from(a: SparseMmapArea) -> Self {
                vfio_region_sparse_mmap_area { offset: a.offset, size: a.size }
            }
        }

        impl From<vfio_region_sparse_mmap_area> for SparseMmapArea {
            fn from(a: vfio_region_sparse_mmap_area) -> Self {
                SparseMmapArea { offset: a.offset, size: a.size }
            }
        }
    };
}

/// vfio-bindings 0.6 (Cloud Hypervisor's pin through vfio-ioctls 0.8).
#[cfg(feature = "vfio-bindings-0-6")]
mod v0_6 {
    vfio_bindings_conversions!(vfio_bindings_0_6);
}

/// vfio-bindings 0.7 (rust-vmm's vfio_user 0.1.7).
#[cfg(feature = "vfio-bindings-0-7")]
mod v0_7 {
    vfio_bindings_conversions!(vfio_bindings_0_7);
}
