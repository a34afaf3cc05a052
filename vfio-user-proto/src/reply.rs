// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Replies: the typed form [`Reply`], and the dispatch of decoding and encoding to each
//! command's family.
//!
//! [`decode_reply`] checks the structure of a successful reply (an error reply is just a
//! header: see [`Header::is_error`]). Whether the reply answers what was asked (a read
//! returning no more than requested, ...) is checked by the requester, which knows the
//! request.

use crate::codec::Payload;
use crate::command::Command;
use crate::device::{DeviceInfo, RegionInfo, RegionIoFds};
use crate::dma::{DmaAccess, DmaBitmap, DmaUnmap};
use crate::error::DecodeError;
use crate::feature::{DeviceFeature, MigData};
use crate::header::Header;
use crate::irq::IrqInfo;
use crate::region_access::{RegionAccess, WriteMulti};
use crate::version::Version;
use crate::{device, dma, feature, irq, region_access, version};

pub use crate::device::IoFdEntries;

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

/// Decodes a successful reply (ERROR not set) to `hdr.command`.
pub fn decode_reply<'a>(hdr: &Header, payload: &'a [u8], nfds: usize) -> Result<Reply<'a>, DecodeError> {
    let cmd = hdr.cmd()?;
    if hdr.payload_len() != Some(payload.len()) {
        return Err(DecodeError::SizeMismatch { cmd, expect: hdr.payload_len().unwrap_or(0), got: payload.len() });
    }
    let p = payload;
    Ok(match cmd {
        Command::Version => Reply::Version(version::decode_reply(p, nfds)?),
        Command::DmaMap => {
            dma::decode_map_reply(p, nfds)?;
            Reply::DmaMap
        }
        Command::DmaUnmap => {
            let (entry, bitmap) = dma::decode_unmap_reply(p, nfds)?;
            Reply::DmaUnmap(entry, bitmap)
        }
        Command::DeviceGetInfo => Reply::DeviceGetInfo(device::decode_info_reply(p, nfds)?),
        Command::DeviceGetRegionInfo => Reply::DeviceGetRegionInfo(device::decode_region_info_reply(p, nfds)?, p),
        Command::DeviceGetRegionIoFds => {
            let (r, entries) = device::decode_io_fds_reply(p, nfds)?;
            Reply::DeviceGetRegionIoFds(r, entries)
        }
        Command::DeviceGetIrqInfo => Reply::DeviceGetIrqInfo(irq::decode_info_reply(p, nfds)?),
        Command::DeviceSetIrqs => {
            irq::decode_set_reply(p, nfds)?;
            Reply::DeviceSetIrqs
        }
        Command::RegionRead => {
            let (a, data) = region_access::decode_read_reply(p, nfds)?;
            Reply::RegionRead(a, data)
        }
        Command::RegionWrite => Reply::RegionWrite(region_access::decode_write_reply(p, nfds)?),
        Command::DmaRead => {
            let (a, data) = dma::decode_read_reply(p, nfds)?;
            Reply::DmaRead(a, data)
        }
        Command::DmaWrite => Reply::DmaWrite(dma::decode_write_reply(p, nfds)?),
        Command::DeviceReset => {
            device::decode_reset_reply(p, nfds)?;
            Reply::DeviceReset
        }
        Command::RegionWriteMulti => Reply::RegionWriteMulti(region_access::decode_write_multi_reply(p, nfds)?),
        Command::DeviceFeature => {
            let (f, data) = feature::decode_reply(p, nfds)?;
            Reply::DeviceFeature(f, data)
        }
        Command::MigDataRead => {
            let (m, data) = feature::decode_mig_read_reply(p, nfds)?;
            Reply::MigDataRead(m, data)
        }
        Command::MigDataWrite => {
            feature::decode_mig_write_reply(p, nfds)?;
            Reply::MigDataWrite
        }
    })
}

impl<'a> Reply<'a> {
    /// The command this reply answers.
    pub fn command(&self) -> Command {
        self.payload().command()
    }

    /// The payload, encoded by the command's family, as borrowed parts: see [`Payload`].
    /// Decoding it yields `self` again.
    pub fn payload(&self) -> Payload<'a> {
        match *self {
            Reply::Version(v) => v.payload(),
            Reply::DmaMap => Payload::empty(Command::DmaMap),
            Reply::DmaUnmap(u, bitmap) => DmaUnmap::reply(u.as_ref(), bitmap.as_ref().map(|(b, bits)| (b, *bits))),
            Reply::DeviceGetInfo(i) => i.payload(),
            Reply::DeviceGetRegionInfo(_, whole) => RegionInfo::reply(whole),
            Reply::DeviceGetRegionIoFds(r, e) => r.reply_with(&e),
            Reply::DeviceGetIrqInfo(i) => i.payload(),
            Reply::DeviceSetIrqs => Payload::empty(Command::DeviceSetIrqs),
            Reply::RegionRead(a, d) => a.read_reply(d),
            Reply::RegionWrite(Some(a)) => a.write_reply(),
            Reply::RegionWrite(None) => Payload::empty(Command::RegionWrite),
            Reply::DmaRead(a, d) => a.read_reply(d),
            Reply::DmaWrite(Some(a)) => a.write_reply(),
            Reply::DmaWrite(None) => Payload::empty(Command::DmaWrite),
            Reply::DeviceReset => Payload::empty(Command::DeviceReset),
            Reply::RegionWriteMulti(w) => w.reply(),
            Reply::DeviceFeature(f, d) => f.payload(d),
            Reply::MigDataRead(m, d) => m.read_reply(d),
            Reply::MigDataWrite => Payload::empty(Command::MigDataWrite),
        }
    }

    /// Appends the payload to `out`; decoding it yields `self` again.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        self.payload().append_to(out)
    }
}
