// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The capability chain of DEVICE_GET_REGION_INFO replies: parsing (hostile input) and
//! building.

use vm_memory::ByteValued;

use crate::array::WireArray;
use crate::codec::{read_at, wire_struct};
use crate::command::Command;
use crate::device::{RegionInfo, REGION_FLAG_CAPS};
use crate::error::DecodeError;

/// Region capability ID: sparse mmap areas.
pub const REGION_INFO_CAP_SPARSE_MMAP: u16 = 1;
/// Region capability ID: region type and subtype.
pub const REGION_INFO_CAP_TYPE: u16 = 2;

/// Header of every region capability (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapHeader {
    /// Capability ID.
    pub id: u16,
    /// Capability version.
    pub version: u16,
    /// Offset of the next capability from the start of the region info (0 ends the chain).
    pub next: u32,
}
wire_struct!(CapHeader, 8);

/// The fixed part of the SPARSE_MMAP capability after its [`CapHeader`] (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseMmapCap {
    /// Number of [`SparseArea`]s that follow.
    pub nr_areas: u32,
    /// Reserved.
    pub reserved: u32,
}
wire_struct!(SparseMmapCap, 8);

/// One sparse mmap area (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseArea {
    /// Offset of the area from the region's `offset`.
    pub offset: u64,
    /// Size of the area.
    pub size: u64,
}
wire_struct!(SparseArea, 16);

/// The TYPE capability after its [`CapHeader`] (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionTypeCap {
    /// Region type.
    pub type_: u32,
    /// Region subtype.
    pub subtype: u32,
}
wire_struct!(RegionTypeCap, 8);

/// One region capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionCap {
    /// SPARSE_MMAP: the areas of the region that may be mmapped.
    SparseMmap(Vec<SparseArea>),
    /// TYPE: the region's type and subtype (device-specific regions).
    Type(RegionTypeCap),
    /// A capability this crate does not know.
    Unknown {
        /// Capability ID.
        id: u16,
        /// Capability version.
        version: u16,
    },
}

const CMD: Command = Command::DeviceGetRegionInfo;

/// Walks the capability chain of a region-info reply payload. Only the bytes within both
/// the payload and the reply's `argsz` are read; a chain that loops, points outside them or
/// into the fixed part, or has an area count that does not fit is an error. Allocation is
/// bounded by the payload size.
pub fn parse_region_caps(payload: &[u8]) -> Result<Vec<RegionCap>, DecodeError> {
    let info: RegionInfo =
        read_at(payload, 0).ok_or(DecodeError::Truncated { cmd: CMD, need: 32, got: payload.len() })?;
    let mut caps = Vec::new();
    if info.flags & REGION_FLAG_CAPS == 0 || info.cap_offset == 0 {
        return Ok(caps);
    }
    let limit = payload.len().min(info.argsz as usize);
    let bad = |field| DecodeError::BadField { cmd: CMD, field };
    let mut off = info.cap_offset as usize;
    // One flag per byte offset: loop detection in constant time per capability (a list of
    // visited offsets made hostile chains of ~limit/8 capabilities quadratic).
    let mut visited = vec![false; limit];
    let mut count = 0usize;
    while off != 0 {
        if off < std::mem::size_of::<RegionInfo>() || visited.get(off).copied().unwrap_or(true) {
            return Err(bad("capability offset"));
        }
        // Each capability takes at least 8 bytes, so a valid chain has at most limit / 8.
        if count > limit / 8 {
            return Err(bad("capability chain"));
        }
        visited[off] = true;
        count += 1;
        let body = payload.get(..limit).unwrap_or(payload);
        let h: CapHeader = read_at(body, off).ok_or(bad("capability offset"))?;
        let data = off + 8;
        match h.id {
            REGION_INFO_CAP_SPARSE_MMAP => {
                let s: SparseMmapCap = read_at(body, data).ok_or(bad("sparse mmap capability"))?;
                let n = s.nr_areas as usize;
                let start = data + 8;
                let len = n.checked_mul(16).ok_or(bad("nr_areas"))?;
                let end = start.checked_add(len).ok_or(bad("nr_areas"))?;
                let bytes = body.get(start..end).ok_or(bad("nr_areas"))?;
                let areas = WireArray::<SparseArea>::new(bytes).ok_or(bad("nr_areas"))?;
                caps.push(RegionCap::SparseMmap(areas.iter().collect()));
            }
            REGION_INFO_CAP_TYPE => {
                let t: RegionTypeCap = read_at(body, data).ok_or(bad("type capability"))?;
                caps.push(RegionCap::Type(t));
            }
            id => caps.push(RegionCap::Unknown { id, version: h.version }),
        }
        off = h.next as usize;
    }
    Ok(caps)
}

/// Builds the payload of a region-info reply: `info` (with `argsz`, `cap_offset` and the CAPS
/// flag filled in) followed by `caps`. When the whole reply does not fit in `req_argsz`,
/// only the 32-byte info is returned, with `argsz` saying how much is needed and no CAPS
/// flag or offset (the client retries with a larger `argsz`).
pub fn build_region_info(mut info: RegionInfo, caps: &[RegionCap], req_argsz: u32) -> Vec<u8> {
    let mut chain: Vec<u8> = Vec::new();
    let base = std::mem::size_of::<RegionInfo>();
    let mut prev_next: Option<usize> = None;
    for cap in caps {
        let here = base + chain.len();
        if let Some(p) = prev_next {
            chain[p..p + 4].copy_from_slice(&(here as u32).to_ne_bytes());
        }
        let (id, version) = match cap {
            RegionCap::SparseMmap(_) => (REGION_INFO_CAP_SPARSE_MMAP, 1),
            RegionCap::Type(_) => (REGION_INFO_CAP_TYPE, 1),
            RegionCap::Unknown { id, version } => (*id, *version),
        };
        prev_next = Some(chain.len() + 4);
        chain.extend_from_slice(CapHeader { id, version, next: 0 }.as_slice());
        match cap {
            RegionCap::SparseMmap(areas) => {
                chain.extend_from_slice(SparseMmapCap { nr_areas: areas.len() as u32, reserved: 0 }.as_slice());
                for a in areas {
                    chain.extend_from_slice(a.as_slice());
                }
            }
            RegionCap::Type(t) => chain.extend_from_slice(t.as_slice()),
            RegionCap::Unknown { .. } => {}
        }
    }
    let full = base + chain.len();
    info.argsz = full as u32;
    if chain.is_empty() {
        info.flags &= !REGION_FLAG_CAPS;
        info.cap_offset = 0;
        return info.as_slice().to_vec();
    }
    if full > req_argsz as usize {
        info.flags &= !REGION_FLAG_CAPS;
        info.cap_offset = 0;
        return info.as_slice().to_vec();
    }
    info.flags |= REGION_FLAG_CAPS;
    info.cap_offset = base as u32;
    let mut out = info.as_slice().to_vec();
    out.extend_from_slice(&chain);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{REGION_FLAG_MMAP, REGION_FLAG_READ};

    fn info() -> RegionInfo {
        RegionInfo {
            argsz: 32,
            flags: REGION_FLAG_READ | REGION_FLAG_MMAP,
            index: 1,
            cap_offset: 0,
            size: 0x10000,
            offset: 0,
        }
    }

    #[test]
    fn build_then_parse() {
        let caps = vec![
            RegionCap::SparseMmap(vec![
                SparseArea { offset: 0, size: 0x1000 },
                SparseArea { offset: 0x8000, size: 0x8000 },
            ]),
            RegionCap::Type(RegionTypeCap { type_: 0x8086_0000, subtype: 3 }),
        ];
        let p = build_region_info(info(), &caps, 4096);
        // 32 info + (8 + 8 + 32) sparse + (8 + 8) type.
        assert_eq!(p.len(), 96);
        let i: RegionInfo = read_at(&p, 0).unwrap();
        assert_eq!((i.argsz, i.cap_offset), (96, 32));
        assert_ne!(i.flags & REGION_FLAG_CAPS, 0);
        // The second capability's header sits at 32 + 48 = 80.
        let h: CapHeader = read_at(&p, 32).unwrap();
        assert_eq!((h.id, h.version, h.next), (1, 1, 80));
        assert_eq!(parse_region_caps(&p).unwrap(), caps);
    }

    #[test]
    fn truncated_to_argsz_asks_for_more() {
        let caps = vec![RegionCap::SparseMmap(vec![SparseArea { offset: 0, size: 0x1000 }])];
        let p = build_region_info(info(), &caps, 32);
        assert_eq!(p.len(), 32);
        let i: RegionInfo = read_at(&p, 0).unwrap();
        assert_eq!((i.argsz, i.cap_offset, i.flags & REGION_FLAG_CAPS), (64, 0, 0));
        assert!(parse_region_caps(&p).unwrap().is_empty());
    }

    fn with_chain(chain: &[(u32, CapHeader, Vec<u8>)], argsz: u32) -> Vec<u8> {
        let mut p = vec![0u8; 256];
        let mut i = info();
        i.flags |= REGION_FLAG_CAPS;
        i.cap_offset = chain.first().map_or(0, |c| c.0);
        i.argsz = argsz;
        p[..32].copy_from_slice(i.as_slice());
        for (off, h, data) in chain {
            let o = *off as usize;
            p[o..o + 8].copy_from_slice(h.as_slice());
            p[o + 8..o + 8 + data.len()].copy_from_slice(data);
        }
        p
    }

    #[test]
    fn hostile_chains_are_errors() {
        // A loop.
        let p = with_chain(&[(32, CapHeader { id: 2, version: 1, next: 32 }, vec![0; 8])], 256);
        assert!(parse_region_caps(&p).is_err());
        // A two-element loop.
        let p = with_chain(
            &[
                (32, CapHeader { id: 2, version: 1, next: 48 }, vec![0; 8]),
                (48, CapHeader { id: 2, version: 1, next: 32 }, vec![0; 8]),
            ],
            256,
        );
        assert!(parse_region_caps(&p).is_err());
        // Pointing into the fixed part.
        let p = with_chain(&[(32, CapHeader { id: 2, version: 1, next: 8 }, vec![0; 8])], 256);
        assert!(parse_region_caps(&p).is_err());
        // Pointing past argsz.
        let p = with_chain(&[(32, CapHeader { id: 2, version: 1, next: 200 }, vec![0; 8])], 100);
        assert!(parse_region_caps(&p).is_err());
        // Too many sparse areas for the bytes present.
        let mut data = u32::MAX.to_ne_bytes().to_vec();
        data.extend_from_slice(&[0; 4]);
        let p = with_chain(&[(32, CapHeader { id: 1, version: 1, next: 0 }, data)], 256);
        assert!(parse_region_caps(&p).is_err());
        // Unknown capabilities are reported, not errors.
        let p = with_chain(&[(40, CapHeader { id: 77, version: 3, next: 0 }, vec![])], 256);
        assert_eq!(parse_region_caps(&p).unwrap(), vec![RegionCap::Unknown { id: 77, version: 3 }]);
    }
}
