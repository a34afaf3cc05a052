// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Regions: what DEVICE_GET_REGION_INFO says about each index (the static facts of the
//! device description). Reads and writes are routed in `region_access`.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use vfio_user_proto::region_caps::RegionCap;
use vfio_user_proto::wire::{
    RegionInfo, RegionTypeCap, SparseArea, PCI_CONFIG_REGION_INDEX, PCI_NUM_REGIONS, PCI_ROM_REGION_INDEX,
    REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE,
};

use crate::description::{DeviceDescription, Mmap};

/// The static facts about one region.
#[derive(Clone, Debug, Default)]
pub(crate) struct RegionFacts {
    pub(crate) size: u64,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    pub(crate) mmap: Option<Mmap>,
    pub(crate) type_cap: Option<RegionTypeCap>,
}

impl RegionFacts {
    /// The region-info reply body (before capabilities) and its capabilities.
    pub(crate) fn info(&self, index: u32) -> (RegionInfo, Vec<RegionCap>, Option<Arc<OwnedFd>>) {
        let mut flags = 0;
        if self.readable {
            flags |= REGION_FLAG_READ;
        }
        if self.writable {
            flags |= REGION_FLAG_WRITE;
        }
        let mut caps = Vec::new();
        let mut offset = 0;
        let mut fd = None;
        if let Some(m) = &self.mmap {
            if m.areas.as_ref().map_or(true, |a| !a.is_empty()) {
                flags |= REGION_FLAG_MMAP;
                offset = m.offset;
                fd = Some(m.fd.clone());
                if let Some(a) = &m.areas {
                    caps.push(RegionCap::SparseMmap(
                        a.iter().map(|a| SparseArea { offset: a.offset, size: a.size }).collect(),
                    ));
                }
            }
        }
        if let Some(t) = self.type_cap {
            caps.push(RegionCap::Type(t));
        }
        (RegionInfo::new(index, flags, self.size, offset), caps, fd)
    }
}

/// The facts of every region index of `desc`.
pub(crate) fn region_table(desc: &DeviceDescription) -> Vec<RegionFacts> {
    (0..desc.num_regions())
        .map(|i| match i {
            0..=5 => match desc.bar(i as usize) {
                Some(b) => {
                    RegionFacts { size: b.size, readable: true, writable: true, mmap: b.mmap.clone(), type_cap: None }
                }
                None => RegionFacts::default(),
            },
            PCI_ROM_REGION_INDEX if desc.rom_size != 0 => {
                RegionFacts { size: desc.rom_size, readable: true, ..Default::default() }
            }
            PCI_CONFIG_REGION_INDEX => {
                RegionFacts { size: desc.config_size.into(), readable: true, writable: true, ..Default::default() }
            }
            i if i >= PCI_NUM_REGIONS => match desc.device_region(i) {
                Some(r) => RegionFacts {
                    size: r.size,
                    readable: true,
                    writable: r.writable,
                    mmap: r.mmap.clone(),
                    type_cap: Some(RegionTypeCap { type_: r.type_, subtype: r.subtype }),
                },
                None => RegionFacts::default(),
            },
            _ => RegionFacts::default(),
        })
        .collect()
}
