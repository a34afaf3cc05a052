// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Replies: typed forms, the I/O-free decoder and the encoder.
//!
//! [`decode_reply`] checks the structure of a successful reply (an error reply is just a
//! header: see [`Header::is_error`]). Whether the reply answers what was asked (a read
//! returning no more than requested, ...) is checked by the requester, which knows the
//! request.

use vm_memory::ByteValued;

use crate::array::WireArray;
use crate::command::Command;
use crate::error::DecodeError;
use crate::header::Header;
use crate::request::{exact, fixed, Version, VersionWire};
use crate::wire::*;

/// The sub-region entries of a DEVICE_GET_REGION_IO_FDS reply, in either layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoFdEntries<'a> {
    /// The spec's 40-byte entries.
    Spec(WireArray<'a, IoFdEntry>),
    /// libvfio-user's 48-byte entries.
    Shadow(WireArray<'a, IoFdEntryShadow>),
}

impl IoFdEntries<'_> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            IoFdEntries::Spec(a) => a.len(),
            IoFdEntries::Shadow(a) => a.len(),
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries in the spec's layout; shadow fields of the 48-byte layout are dropped
    /// (see [`IoFdEntries::Shadow`] to read them).
    pub fn to_vec(&self) -> Vec<IoFdEntry> {
        match self {
            IoFdEntries::Spec(a) => a.iter().collect(),
            IoFdEntries::Shadow(a) => a
                .iter()
                .map(|e| IoFdEntry {
                    offset: e.offset,
                    size: e.size,
                    fd_index: e.fd_index,
                    type_: e.type_,
                    flags: e.flags,
                    padding: 0,
                    datamatch: e.datamatch,
                })
                .collect(),
        }
    }
}

/// A decoded successful reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// VERSION; fds: 0, or 1 for the twin socket.
    Version(Version<'a>),
    /// DMA_MAP.
    DmaMap,
    /// DMA_UNMAP: the echoed entry (absent from peers following the 2021 text), and the dirty
    /// bitmap when it was asked for.
    DmaUnmap(Option<DmaUnmap>, Option<(DmaBitmap, &'a [u8])>),
    /// DEVICE_GET_INFO.
    DeviceGetInfo(DeviceInfo),
    /// DEVICE_GET_REGION_INFO: the info and the whole payload (capabilities are at offsets
    /// relative to its start; see [`crate::region_caps`]).
    DeviceGetRegionInfo(RegionInfo, &'a [u8]),
    /// DEVICE_GET_REGION_IO_FDS. The entries are empty when the reply was truncated to the
    /// request's `argsz` (then `argsz` says how much is needed).
    DeviceGetRegionIoFds(RegionIoFds, IoFdEntries<'a>),
    /// DEVICE_GET_IRQ_INFO.
    DeviceGetIrqInfo(IrqInfo),
    /// DEVICE_SET_IRQS.
    DeviceSetIrqs,
    /// REGION_READ.
    RegionRead(RegionAccess, &'a [u8]),
    /// REGION_WRITE (the echo may be absent from lax peers).
    RegionWrite(Option<RegionAccess>),
    /// DMA_READ reply (client to server).
    DmaRead(DmaAccess, &'a [u8]),
    /// DMA_WRITE reply (the echo may be absent: QEMU sends a bare header).
    DmaWrite(Option<DmaAccess>),
    /// DEVICE_RESET.
    DeviceReset,
    /// REGION_WRITE_MULTI.
    RegionWriteMulti(WriteMulti),
    /// DEVICE_FEATURE and its data.
    DeviceFeature(DeviceFeature, &'a [u8]),
    /// MIG_DATA_READ and its data.
    MigDataRead(MigData, &'a [u8]),
    /// MIG_DATA_WRITE.
    MigDataWrite,
}

fn fds_at_most(cmd: Command, nfds: usize, max: usize, expect: &'static str) -> Result<(), DecodeError> {
    if nfds > max {
        Err(DecodeError::BadFdCount { cmd, got: nfds, expect })
    } else {
        Ok(())
    }
}

/// Decodes a successful reply (ERROR not set) to `hdr.command`.
pub fn decode_reply<'a>(hdr: &Header, payload: &'a [u8], nfds: usize) -> Result<Reply<'a>, DecodeError> {
    let cmd = hdr.cmd()?;
    if hdr.payload_len() != Some(payload.len()) {
        return Err(DecodeError::SizeMismatch { cmd, expect: hdr.payload_len().unwrap_or(0), got: payload.len() });
    }
    let p = payload;
    let none = |n| fds_at_most(cmd, n, 0, "none");
    match cmd {
        Command::Version => {
            fds_at_most(cmd, nfds, 1, "0 or 1")?;
            let v: VersionWire = fixed(cmd, p)?;
            let json = crate::request::version_json(&p[4..])?;
            Ok(Reply::Version(Version { major: v.major, minor: v.minor, json }))
        }
        Command::DmaMap => {
            none(nfds)?;
            exact(cmd, p, 0)?;
            Ok(Reply::DmaMap)
        }
        Command::DmaUnmap => {
            none(nfds)?;
            if p.is_empty() {
                return Ok(Reply::DmaUnmap(None, None));
            }
            let u: DmaUnmap = fixed(cmd, p)?;
            if u.flags & DMA_UNMAP_FLAG_GET_DIRTY_BITMAP == 0 {
                exact(cmd, p, 24)?;
                return Ok(Reply::DmaUnmap(Some(u), None));
            }
            let bm: DmaBitmap = read_at(p, 24).ok_or(DecodeError::Truncated { cmd, need: 40, got: p.len() })?;
            let len = usize::try_from(bm.size)
                .ok()
                .and_then(|s| s.checked_add(40))
                .ok_or(DecodeError::BadField { cmd, field: "bitmap size" })?;
            exact(cmd, p, len)?;
            Ok(Reply::DmaUnmap(Some(u), Some((bm, &p[40..]))))
        }
        Command::DeviceGetInfo => {
            none(nfds)?;
            let i: DeviceInfo = fixed(cmd, p)?;
            exact(cmd, p, 16)?;
            Ok(Reply::DeviceGetInfo(i))
        }
        Command::DeviceGetRegionInfo => {
            fds_at_most(cmd, nfds, 1, "0 or 1")?;
            let i: RegionInfo = fixed(cmd, p)?;
            Ok(Reply::DeviceGetRegionInfo(i, p))
        }
        Command::DeviceGetRegionIoFds => {
            let r: RegionIoFds = fixed(cmd, p)?;
            let rest = &p[16..];
            let n = r.count as usize;
            let entries = if rest.is_empty() || Some(rest.len()) == n.checked_mul(40) {
                IoFdEntries::Spec(WireArray::new(rest).ok_or(DecodeError::BadField { cmd, field: "entries" })?)
            } else if Some(rest.len()) == n.checked_mul(48) {
                IoFdEntries::Shadow(WireArray::new(rest).ok_or(DecodeError::BadField { cmd, field: "entries" })?)
            } else {
                return Err(DecodeError::BadField { cmd, field: "count" });
            };
            if !entries.is_empty() && nfds == 0 {
                return Err(DecodeError::BadFdCount { cmd, got: 0, expect: "at least 1" });
            }
            for e in entries.to_vec() {
                if e.fd_index as usize >= nfds {
                    return Err(DecodeError::BadField { cmd, field: "fd_index" });
                }
            }
            Ok(Reply::DeviceGetRegionIoFds(r, entries))
        }
        Command::DeviceGetIrqInfo => {
            none(nfds)?;
            let i: IrqInfo = fixed(cmd, p)?;
            exact(cmd, p, 16)?;
            Ok(Reply::DeviceGetIrqInfo(i))
        }
        Command::DeviceSetIrqs => {
            none(nfds)?;
            exact(cmd, p, 0)?;
            Ok(Reply::DeviceSetIrqs)
        }
        Command::RegionRead => {
            none(nfds)?;
            let a: RegionAccess = fixed(cmd, p)?;
            exact(cmd, p, 16 + a.count as usize)?;
            Ok(Reply::RegionRead(a, &p[16..]))
        }
        Command::RegionWrite => {
            none(nfds)?;
            if p.is_empty() {
                return Ok(Reply::RegionWrite(None));
            }
            let a: RegionAccess = fixed(cmd, p)?;
            exact(cmd, p, 16)?;
            Ok(Reply::RegionWrite(Some(a)))
        }
        Command::DmaRead => {
            none(nfds)?;
            let a: DmaAccess = fixed(cmd, p)?;
            let len = usize::try_from(a.count)
                .ok()
                .and_then(|c| c.checked_add(16))
                .ok_or(DecodeError::BadField { cmd, field: "count" })?;
            exact(cmd, p, len)?;
            Ok(Reply::DmaRead(a, &p[16..]))
        }
        Command::DmaWrite => {
            none(nfds)?;
            if p.is_empty() {
                return Ok(Reply::DmaWrite(None));
            }
            let a: DmaAccess = fixed(cmd, p)?;
            exact(cmd, p, 16)?;
            Ok(Reply::DmaWrite(Some(a)))
        }
        Command::DeviceReset => {
            none(nfds)?;
            exact(cmd, p, 0)?;
            Ok(Reply::DeviceReset)
        }
        Command::RegionWriteMulti => {
            none(nfds)?;
            let w: WriteMulti = fixed(cmd, p)?;
            exact(cmd, p, 8)?;
            Ok(Reply::RegionWriteMulti(w))
        }
        Command::DeviceFeature => {
            none(nfds)?;
            let f: DeviceFeature = fixed(cmd, p)?;
            Ok(Reply::DeviceFeature(f, &p[8..]))
        }
        Command::MigDataRead => {
            none(nfds)?;
            let m: MigData = fixed(cmd, p)?;
            // libvfio-user sends a reply as large as the request asked for, with `size`
            // saying how much of it is data (less at the end of the stream): the rest is
            // padding and is ignored.
            let end = 8 + m.size as usize;
            if p.len() < end {
                return Err(DecodeError::Truncated { cmd, need: end, got: p.len() });
            }
            Ok(Reply::MigDataRead(m, &p[8..end]))
        }
        Command::MigDataWrite => {
            none(nfds)?;
            exact(cmd, p, 0)?;
            Ok(Reply::MigDataWrite)
        }
    }
}

impl Reply<'_> {
    /// The command this reply answers.
    pub fn command(&self) -> Command {
        match self {
            Reply::Version(_) => Command::Version,
            Reply::DmaMap => Command::DmaMap,
            Reply::DmaUnmap(..) => Command::DmaUnmap,
            Reply::DeviceGetInfo(_) => Command::DeviceGetInfo,
            Reply::DeviceGetRegionInfo(..) => Command::DeviceGetRegionInfo,
            Reply::DeviceGetRegionIoFds(..) => Command::DeviceGetRegionIoFds,
            Reply::DeviceGetIrqInfo(_) => Command::DeviceGetIrqInfo,
            Reply::DeviceSetIrqs => Command::DeviceSetIrqs,
            Reply::RegionRead(..) => Command::RegionRead,
            Reply::RegionWrite(_) => Command::RegionWrite,
            Reply::DmaRead(..) => Command::DmaRead,
            Reply::DmaWrite(_) => Command::DmaWrite,
            Reply::DeviceReset => Command::DeviceReset,
            Reply::RegionWriteMulti(_) => Command::RegionWriteMulti,
            Reply::DeviceFeature(..) => Command::DeviceFeature,
            Reply::MigDataRead(..) => Command::MigDataRead,
            Reply::MigDataWrite => Command::MigDataWrite,
        }
    }

    /// Appends the payload to `out`; decoding it yields `self` again.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Version(v) => {
                out.extend_from_slice(VersionWire { major: v.major, minor: v.minor }.as_slice());
                if !v.json.is_empty() {
                    out.extend_from_slice(v.json);
                    out.push(0);
                }
            }
            Reply::DmaUnmap(u, bm) => {
                if let Some(u) = u {
                    out.extend_from_slice(u.as_slice());
                }
                if let Some((b, bits)) = bm {
                    out.extend_from_slice(b.as_slice());
                    out.extend_from_slice(bits);
                }
            }
            Reply::DeviceGetInfo(i) => out.extend_from_slice(i.as_slice()),
            Reply::DeviceGetRegionInfo(_, whole) => out.extend_from_slice(whole),
            Reply::DeviceGetRegionIoFds(r, e) => {
                out.extend_from_slice(r.as_slice());
                match e {
                    IoFdEntries::Spec(a) => out.extend_from_slice(a.as_bytes()),
                    IoFdEntries::Shadow(a) => out.extend_from_slice(a.as_bytes()),
                }
            }
            Reply::DeviceGetIrqInfo(i) => out.extend_from_slice(i.as_slice()),
            Reply::RegionRead(a, d) => {
                out.extend_from_slice(a.as_slice());
                out.extend_from_slice(d);
            }
            Reply::DmaRead(a, d) => {
                out.extend_from_slice(a.as_slice());
                out.extend_from_slice(d);
            }
            Reply::RegionWrite(a) => {
                if let Some(a) = a {
                    out.extend_from_slice(a.as_slice());
                }
            }
            Reply::DmaWrite(a) => {
                if let Some(a) = a {
                    out.extend_from_slice(a.as_slice());
                }
            }
            Reply::RegionWriteMulti(w) => out.extend_from_slice(w.as_slice()),
            Reply::DeviceFeature(f, d) => {
                out.extend_from_slice(f.as_slice());
                out.extend_from_slice(d);
            }
            Reply::MigDataRead(m, d) => {
                out.extend_from_slice(m.as_slice());
                out.extend_from_slice(d);
            }
            Reply::DmaMap | Reply::DeviceSetIrqs | Reply::DeviceReset | Reply::MigDataWrite => {}
        }
    }
}
