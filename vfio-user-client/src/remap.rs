// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Restoring region mappings on reconnect: the restarted server's memory is mapped over
//! each live [`RegionMapping`](crate::RegionMapping)'s areas at the same addresses, so that
//! what the VMM registered with its hypervisor (a BAR mapped into the guest) stays valid
//! and now reaches the new server.

use std::fs::File;
use std::sync::{Arc, Weak};

use rustix::mm::{MapFlags, ProtFlags};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::region_info::{MappedArea, MappedRegion};
use crate::transport::Transport;

impl Client {
    /// Maps region memory of the server behind `t` over every live mapping, after checking
    /// that each region has the same mappable areas and access rights as before. Returns
    /// the regions' new info, for the cache.
    pub(crate) fn remap_regions(&self, t: &Transport) -> Result<Vec<crate::Region>> {
        let live: Vec<Arc<MappedRegion>> = crate::sync::lock(&self.mappings).iter().filter_map(Weak::upgrade).collect();
        let mut fresh = Vec::new();
        for m in live {
            let r = self.fetch_region_info(t, m.index)?;
            let now: Vec<(u64, u64)> = r.mmap_areas().iter().map(|a| (a.offset, a.size)).collect();
            let before: Vec<(u64, u64)> = m.areas.iter().map(|a| (a.offset, a.len() as u64)).collect();
            if now != before || r.prot() != m.prot {
                return Err(Error::Protocol(format!(
                    "region {}: its mappable areas or access changed across the restart ({before:x?} -> {now:x?})",
                    m.index
                )));
            }
            let file = r.checked_mmap_fd()?;
            for a in &m.areas {
                let offset = r.offset.checked_add(a.offset).ok_or(Error::InvalidInput("area offset wraps"))?;
                map_over(a, m.prot, &file, offset)?;
            }
            fresh.push(r);
        }
        Ok(fresh)
    }
}

/// Maps `[offset, offset + area.len())` of `file` over `area`, in place.
#[allow(unsafe_code)]
fn map_over(area: &MappedArea, prot: i32, file: &File, offset: u64) -> Result<()> {
    let prot = ProtFlags::from_bits_truncate(prot as u32);
    let ptr = area.as_ptr().cast::<std::ffi::c_void>();
    // SAFETY: `[ptr, ptr + len)` is exactly the mapping `area.mmap` created and owns (and
    // unmaps on drop); MAP_FIXED replaces its pages in one step, so the range never becomes
    // unmapped and stays `len` bytes of shared memory with the same protection. Nothing in
    // this process holds references into it other than volatile accessors (vm-memory's
    // `VolatileSlice`, or the VMM's hypervisor mapping), for which a change of contents is
    // what device memory does anyway. The file was checked to be long enough for the
    // range (`checked_mmap_fd`), so accesses cannot raise SIGBUS.
    let got = unsafe { rustix::mm::mmap(ptr, area.len(), prot, MapFlags::SHARED | MapFlags::FIXED, file, offset) }
        .map_err(std::io::Error::from)?;
    if got != ptr {
        return Err(Error::Io(std::io::Error::other("MAP_FIXED mapped elsewhere")));
    }
    Ok(())
}
