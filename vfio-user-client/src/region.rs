// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Regions: the `Client` calls for region info (cached), mappings of mmappable areas and
//! DEVICE_GET_REGION_IO_FDS (the types are in `region_info.rs`).

use crate::client::Client;
use crate::config::MAX_INFO_ARGSZ;
use crate::error::{Error, Result};
use crate::region_info::*;
use crate::sync::lock;
use crate::transport::decode;
use crate::transport::Transport;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use vfio_user_proto::wire::{self, RegionIoFds, REGION_FLAG_CAPS, REGION_FLAG_MMAP};
use vfio_user_proto::{parse_region_caps, RegionCap, Reply};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::FileOffset;

/// The `argsz` of the first region-info request: enough for typical capability chains, so
/// that one round trip usually suffices.
const FIRST_REGION_ARGSZ: u32 = 1024;
/// Entries asked for in the first IO-fds request.
const FIRST_IO_FDS: u32 = 16;

impl Client {
    /// The info of region `index`, from the cache or with DEVICE_GET_REGION_INFO (asking
    /// again with the `argsz` the server needs when its capabilities did not fit).
    pub fn region_info(&self, index: u32) -> Result<Arc<Region>> {
        if index >= self.device.num_regions {
            return Err(Error::InvalidInput("region index out of range"));
        }
        if let Some(r) = lock(&self.regions).get(&index) {
            return Ok(r.clone());
        }
        let r = Arc::new(self.fetch_region_info(&self.transport(), index)?);
        lock(&self.regions).insert(index, r.clone());
        Ok(r)
    }

    /// The info of every region, in index order (rust-vmm `Client::region` looks into this).
    pub fn regions(&self) -> Result<Vec<Arc<Region>>> {
        (0..self.device.num_regions).map(|i| self.region_info(i)).collect()
    }

    /// DEVICE_GET_REGION_INFO of `index` on connection `t`.
    pub(crate) fn fetch_region_info(&self, t: &Transport, index: u32) -> Result<Region> {
        let mut argsz = FIRST_REGION_ARGSZ;
        for _ in 0..3 {
            let p = wire::RegionInfo::query(index, argsz).request();
            let mut msg = t.request(p.command(), &p.parts(), &[], self.config.timeout)?;
            let info = match decode(t, &msg)? {
                Reply::DeviceGetRegionInfo(info, _) => info,
                _ => return Err(t.violation("DEVICE_GET_REGION_INFO reply of another kind".into())),
            };
            let got = msg.payload.len();
            if got > argsz as usize || info.index != index {
                return Err(t.violation(format!(
                    "region info reply of {got} bytes for index {} (asked {argsz} bytes for index {index})",
                    info.index
                )));
            }
            if info.argsz as usize > got {
                if info.argsz <= argsz || info.argsz > MAX_INFO_ARGSZ {
                    return Err(t.violation(format!("region {index}: unusable argsz {} in reply", info.argsz)));
                }
                argsz = info.argsz;
                continue;
            }
            let caps = if info.flags & REGION_FLAG_CAPS != 0 {
                parse_region_caps(&msg.payload).map_err(|e| t.violation(format!("region {index}: {e}")))?
            } else {
                Vec::new()
            };
            for c in &caps {
                if let RegionCap::SparseMmap(areas) = c {
                    for a in areas {
                        if !a.offset.checked_add(a.size).is_some_and(|end| end <= info.size)
                            || info.offset.checked_add(a.offset).is_none()
                        {
                            return Err(t.violation(format!("region {index}: sparse area {a:?} outside the region")));
                        }
                    }
                }
            }
            let mut flags = info.flags;
            let fd = msg.fds.pop();
            if fd.is_some() && flags & REGION_FLAG_MMAP == 0 {
                return Err(t.violation(format!("region {index}: fd sent for a region without MMAP")));
            }
            if fd.is_none() && flags & REGION_FLAG_MMAP != 0 {
                log::warn!("region {index}: MMAP set but no fd sent; the region is used through messages only");
                flags &= !REGION_FLAG_MMAP;
            }
            return Ok(Region {
                index,
                flags,
                size: info.size,
                offset: info.offset,
                caps,
                fd: fd.map(|f| Arc::new(File::from(f))),
            });
        }
        Err(t.violation(format!("region {index}: argsz keeps growing")))
    }

    /// Maps every mmappable area of region `index` (shared, with the region's READ/WRITE
    /// access). The mappings are unmapped when the returned handle is dropped. A regular file
    /// (memfd) shorter than the areas is refused, as accesses past its end would raise
    /// SIGBUS; see [`Region::sealed_against_shrink`] for a server that shrinks it later.
    pub fn map_region(&self, index: u32) -> Result<RegionMapping> {
        let r = self.region_info(index)?;
        let file = r.checked_mmap_fd()?;
        let prot = r.prot();
        let mut areas = Vec::new();
        for a in r.mmap_areas() {
            let size = usize::try_from(a.size).map_err(|_| Error::InvalidInput("area too large"))?;
            let mmap = MmapRegionBuilder::new(size)
                .with_file_offset(FileOffset::from_arc(file.clone(), r.offset + a.offset))
                .with_mmap_prot(prot)
                .with_mmap_flags(libc::MAP_SHARED)
                .build()
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
            areas.push(MappedArea { offset: a.offset, mmap });
        }
        let inner = Arc::new(MappedRegion { index, prot, areas });
        let mut live = lock(&self.mappings);
        live.retain(|m| m.strong_count() > 0);
        live.push(Arc::downgrade(&inner));
        Ok(RegionMapping { inner })
    }

    /// The ioeventfds the server offers for region `index` (DEVICE_GET_REGION_IO_FDS),
    /// validated: known types, access sizes 0/1/2/4/8, ranges inside the region, fd
    /// indexes within the fds sent.
    pub fn region_io_fds(&self, index: u32) -> Result<Vec<IoRegionFd>> {
        let region = self.region_info(index)?;
        let mut argsz = RegionIoFds::query(index, FIRST_IO_FDS as usize).argsz;
        for _ in 0..3 {
            let (t, msg) = self.call(&RegionIoFds::query_argsz(index, argsz).request(), &[], None)?;
            let (r, entries) = match decode(&t, &msg)? {
                Reply::DeviceGetRegionIoFds(r, e) => (r, e.to_vec()),
                _ => return Err(t.violation("DEVICE_GET_REGION_IO_FDS reply of another kind".into())),
            };
            if msg.payload.len() > argsz as usize || r.index != index {
                return Err(t.violation(format!("IO fds reply for index {} larger than asked", r.index)));
            }
            if msg.fds.len() > t.negotiated.local.max_msg_fds as usize {
                return Err(t.violation(format!("{} fds with one message", msg.fds.len())));
            }
            if entries.is_empty() && r.count > 0 {
                if r.argsz <= argsz || r.argsz > MAX_INFO_ARGSZ {
                    return Err(t.violation(format!("region {index}: unusable IO fds argsz {}", r.argsz)));
                }
                argsz = r.argsz;
                continue;
            }
            let fds: Vec<Arc<OwnedFd>> = msg.fds.into_iter().map(Arc::new).collect();
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                let inside = e.offset.checked_add(e.size).is_some_and(|end| end <= region.size);
                if e.type_ > wire::IO_FD_TYPE_IOEVENTFD_SHADOW || !matches!(e.size, 0 | 1 | 2 | 4 | 8) || !inside {
                    return Err(t.violation(format!("region {index}: invalid IO fd entry {e:?}")));
                }
                out.push(IoRegionFd {
                    offset: e.offset,
                    size: e.size,
                    kind: e.type_,
                    flags: e.flags,
                    datamatch: e.datamatch,
                    fd: match fds.get(e.fd_index as usize) {
                        Some(fd) => fd.clone(),
                        None => {
                            return Err(t.violation(format!("region {index}: fd_index {} out of range", e.fd_index)))
                        }
                    },
                });
            }
            return Ok(out);
        }
        Err(self.transport().violation(format!("region {index}: IO fds argsz keeps growing")))
    }
}
