// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The region-access family: REGION_READ, REGION_WRITE and REGION_WRITE_MULTI — their wire
//! structs, constructors, and the decoders and encoders of each command and its reply.

use vm_memory::ByteValued;

use crate::array::WireArray;
use crate::codec::{
    echo, exact, fixed, no_fds, no_wrap, only, read_reply, read_request, wire_struct, write_request, Payload, Transfer,
};
use crate::command::Command;
use crate::error::DecodeError;

/// REGION_READ / REGION_WRITE access header (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionAccess {
    /// Offset within the region.
    pub offset: u64,
    /// Region index.
    pub region: u32,
    /// Number of bytes.
    pub count: u32,
}
wire_struct!(RegionAccess, 16);

/// Most data bytes in one REGION_WRITE_MULTI entry.
pub const WRITE_MULTI_DATA_MAX: usize = 8;

/// One REGION_WRITE_MULTI entry (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteMultiEntry {
    /// Offset within the region.
    pub offset: u64,
    /// Region index.
    pub region: u32,
    /// Number of valid bytes in `data` (at most 8).
    pub count: u32,
    /// The bytes to write.
    pub data: [u8; WRITE_MULTI_DATA_MAX],
}
wire_struct!(WriteMultiEntry, 24);

/// REGION_WRITE_MULTI request fixed part and the whole reply (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteMulti {
    /// Request: number of entries; reply: number of writes completed.
    pub wr_cnt: u64,
}
wire_struct!(WriteMulti, 8);

impl RegionAccess {
    /// Bytes of the access header on the wire.
    pub const SIZE: usize = std::mem::size_of::<RegionAccess>();

    /// An access of `count` bytes at `offset` of region `region`.
    pub fn new(region: u32, offset: u64, count: u32) -> Self {
        RegionAccess { offset, region, count }
    }
}

impl Transfer for RegionAccess {
    const RANGE: &'static str = "offset + count";

    fn base(&self) -> u64 {
        self.offset
    }

    fn count(&self) -> u64 {
        self.count.into()
    }
}

impl WriteMultiEntry {
    /// An entry writing `data` (at most [`WRITE_MULTI_DATA_MAX`] bytes; more are cut) at
    /// `offset` of region `region`.
    pub fn new(region: u32, offset: u64, data: &[u8]) -> Self {
        let n = data.len().min(WRITE_MULTI_DATA_MAX);
        let mut e = WriteMultiEntry { offset, region, count: n as u32, data: [0; WRITE_MULTI_DATA_MAX] };
        e.data[..n].copy_from_slice(&data[..n]);
        e
    }

    /// Most entries one REGION_WRITE_MULTI may carry to a peer whose `max_data_xfer_size`
    /// is `peer_max_xfer`: the message is bounded like a REGION_WRITE of that many bytes
    /// (the access header and the data), and holds the count and the entries.
    pub fn max_per_message(peer_max_xfer: u32) -> usize {
        let bound = std::mem::size_of::<RegionAccess>() + peer_max_xfer as usize;
        bound.saturating_sub(std::mem::size_of::<WriteMulti>()) / std::mem::size_of::<WriteMultiEntry>()
    }

    /// Appends to `out` the body of the writes `run` as one message and returns its command:
    /// REGION_WRITE for a single entry, REGION_WRITE_MULTI for several.
    pub fn append_writes(run: &[WriteMultiEntry], out: &mut Vec<u8>) -> Command {
        if let [e] = run {
            let p = e.access().write_request(e.bytes());
            out.reserve(p.len());
            p.append_to(out);
            return Command::RegionWrite;
        }
        out.reserve(std::mem::size_of::<WriteMulti>() + std::mem::size_of_val(run));
        out.extend_from_slice(WriteMulti { wr_cnt: run.len() as u64 }.as_slice());
        for e in run {
            out.extend_from_slice(e.as_slice());
        }
        Command::RegionWriteMulti
    }

    /// The bytes to write (`count` of them, at most [`WRITE_MULTI_DATA_MAX`]).
    pub fn bytes(&self) -> &[u8] {
        &self.data[..(self.count as usize).min(WRITE_MULTI_DATA_MAX)]
    }

    /// The same write as one REGION_WRITE's access header (its data is [`bytes`](Self::bytes)).
    pub fn access(&self) -> RegionAccess {
        RegionAccess { offset: self.offset, region: self.region, count: self.count }
    }
}

// ---- Decoding ----

/// REGION_READ request: one access, a count within `max`.
pub(crate) fn decode_read_request(p: &[u8], nfds: usize, max: u32) -> Result<RegionAccess, DecodeError> {
    read_request(Command::RegionRead, p, nfds, max)
}

/// REGION_WRITE request: an access and its `count` bytes.
pub(crate) fn decode_write_request(p: &[u8], nfds: usize, max: u32) -> Result<(RegionAccess, &[u8]), DecodeError> {
    write_request(Command::RegionWrite, p, nfds, max)
}

/// REGION_WRITE_MULTI request: `wr_cnt` (at least 1) entries, each of 1 to 8 bytes, over a
/// range that does not wrap.
pub(crate) fn decode_write_multi_request(p: &[u8], nfds: usize) -> Result<WireArray<'_, WriteMultiEntry>, DecodeError> {
    let cmd = Command::RegionWriteMulti;
    no_fds(cmd, nfds)?;
    let w: WriteMulti = fixed(cmd, p)?;
    let bad = || DecodeError::BadField { cmd, field: "wr_cnt" };
    let head = std::mem::size_of::<WriteMulti>();
    let n = usize::try_from(w.wr_cnt).map_err(|_| bad())?;
    let len =
        n.checked_mul(std::mem::size_of::<WriteMultiEntry>()).and_then(|l| l.checked_add(head)).ok_or_else(bad)?;
    exact(cmd, p, len)?;
    if n == 0 {
        return Err(bad());
    }
    let entries = WireArray::<WriteMultiEntry>::new(&p[head..]).ok_or_else(bad)?;
    for e in entries.iter() {
        if e.count == 0 || e.count as usize > WRITE_MULTI_DATA_MAX {
            return Err(DecodeError::BadField { cmd, field: "entry count" });
        }
        no_wrap(cmd, "entry offset + count", e.offset, e.count.into())?;
    }
    Ok(entries)
}

/// REGION_READ reply: the access and its `count` bytes.
pub(crate) fn decode_read_reply(p: &[u8], nfds: usize) -> Result<(RegionAccess, &[u8]), DecodeError> {
    read_reply(Command::RegionRead, p, nfds)
}

/// REGION_WRITE reply: the echoed access, or nothing (lax peers).
pub(crate) fn decode_write_reply(p: &[u8], nfds: usize) -> Result<Option<RegionAccess>, DecodeError> {
    echo(Command::RegionWrite, p, nfds)
}

/// REGION_WRITE_MULTI reply: the number of writes done.
pub(crate) fn decode_write_multi_reply(p: &[u8], nfds: usize) -> Result<WriteMulti, DecodeError> {
    only(Command::RegionWriteMulti, p, nfds)
}

// ---- Encoding ----

impl RegionAccess {
    /// The REGION_READ request for this access.
    pub fn read_request(&self) -> Payload<'static> {
        Payload::of(Command::RegionRead, self)
    }

    /// The REGION_WRITE request of `data` (`count` is `data.len()`).
    pub fn write_request<'a>(&self, data: &'a [u8]) -> Payload<'a> {
        Payload::of(Command::RegionWrite, self).data(data)
    }

    /// The REGION_READ reply: this access echoed and the bytes read.
    pub fn read_reply<'a>(&self, data: &'a [u8]) -> Payload<'a> {
        Payload::of(Command::RegionRead, self).data(data)
    }

    /// The REGION_WRITE reply: this access echoed.
    pub fn write_reply(&self) -> Payload<'static> {
        Payload::of(Command::RegionWrite, self)
    }
}

impl WriteMultiEntry {
    /// The REGION_WRITE_MULTI request of `entries` (their bytes, as laid out on the wire).
    pub fn multi_request<'a>(entries: &WireArray<'a, WriteMultiEntry>) -> Payload<'a> {
        Payload::of(Command::RegionWriteMulti, &WriteMulti { wr_cnt: entries.len() as u64 }).data(entries.as_bytes())
    }
}

impl WriteMulti {
    /// The REGION_WRITE_MULTI reply.
    pub fn reply(&self) -> Payload<'static> {
        Payload::of(Command::RegionWriteMulti, self)
    }
}
