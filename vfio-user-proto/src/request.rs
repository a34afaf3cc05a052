// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Commands (requests): the typed form [`Request`], and the dispatch of decoding and encoding
//! to each command's family (`version`, `dma`, `device`, `irq`, `region_access`, `feature`).
//!
//! [`decode_request`] is the single entry point from bytes to a typed command. It checks the
//! header's size and the fd budget, then the family's decoder checks, for its command, the
//! payload size against the fixed part and the variable parts the fields announce, `argsz`,
//! the flag bits, ranges that would wrap, transfer counts against the receiver's
//! `max_data_xfer_size`, and the number of fds. Whatever it returns has passed those checks;
//! semantic checks that need device state (region index in range, ...) are the receiver's.

use crate::array::WireArray;
use crate::codec::Payload;
use crate::command::Command;
use crate::device::{DeviceInfo, RegionInfo, RegionIoFds};
use crate::dma::{DmaAccess, DmaMap, DmaUnmapRequest};
use crate::error::DecodeError;
use crate::feature::{DeviceFeature, MigData};
use crate::header::Header;
use crate::irq::IrqSet;
use crate::region_access::{RegionAccess, WriteMultiEntry};
use crate::{device, dma, feature, irq, region_access, version};

pub use crate::feature::{decode_feature, FeatureRequest};
pub use crate::irq::{IrqAction, IrqData};
pub use crate::version::{Version, VersionWire};

/// Limits the receiver of a command enforces, from its own VERSION capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest transfer count accepted (REGION/DMA READ/WRITE, MIG_DATA).
    pub max_data_xfer_size: u32,
    /// Most fds accepted with one message.
    pub max_msg_fds: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_data_xfer_size: crate::version::DEFAULT_MAX_DATA_XFER_SIZE,
            max_msg_fds: crate::version::DEFAULT_MAX_MSG_FDS,
        }
    }
}

impl DecodeLimits {
    /// The largest `msg_size` a peer obeying these limits can send: the largest fixed part
    /// (REGION_WRITE / DMA_WRITE: 16 bytes) plus `max_data_xfer_size`, plus the header.
    /// REGION_WRITE_MULTI and DMA_LOGGING_START are bounded by the same figure.
    pub fn max_msg_size(&self) -> usize {
        crate::header::HEADER_SIZE + std::mem::size_of::<RegionAccess>() + self.max_data_xfer_size as usize
    }

    /// The largest reply a peer answering this side's requests within these limits can
    /// send: the largest fixed part of a reply that carries data (DEVICE_GET_REGION_INFO's
    /// 32 bytes) followed by up to `max_data_xfer_size` bytes of data, or by a query reply
    /// of up to `max_query_argsz` bytes (the largest `argsz` this side asks with), plus the
    /// header.
    pub fn max_reply_size(&self, max_query_argsz: u32) -> usize {
        crate::header::HEADER_SIZE
            + std::mem::size_of::<RegionInfo>()
            + (self.max_data_xfer_size as usize).max(max_query_argsz as usize)
    }
}

/// A decoded command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// VERSION.
    Version(Version<'a>),
    /// DMA_MAP; `fd` tells whether an fd is attached.
    DmaMap {
        /// The body.
        map: DmaMap,
        /// One fd is attached.
        fd: bool,
    },
    /// DMA_UNMAP: one mapping, all of them, or one with its dirty bitmap (2021 protocol).
    DmaUnmap(DmaUnmapRequest),
    /// DEVICE_GET_INFO.
    DeviceGetInfo(DeviceInfo),
    /// DEVICE_GET_REGION_INFO.
    DeviceGetRegionInfo(RegionInfo),
    /// DEVICE_GET_REGION_IO_FDS.
    DeviceGetRegionIoFds(RegionIoFds),
    /// DEVICE_GET_IRQ_INFO.
    DeviceGetIrqInfo(crate::irq::IrqInfo),
    /// DEVICE_SET_IRQS.
    DeviceSetIrqs {
        /// The fixed part.
        set: IrqSet,
        /// Decoded action.
        action: IrqAction,
        /// Decoded data.
        data: IrqData<'a>,
    },
    /// REGION_READ.
    RegionRead(RegionAccess),
    /// REGION_WRITE.
    RegionWrite(RegionAccess, &'a [u8]),
    /// DMA_READ (server to client).
    DmaRead(DmaAccess),
    /// DMA_WRITE (server to client).
    DmaWrite(DmaAccess, &'a [u8]),
    /// DEVICE_RESET.
    DeviceReset,
    /// REGION_WRITE_MULTI; every entry has `count <= 8` and a range that does not wrap.
    RegionWriteMulti(WireArray<'a, WriteMultiEntry>),
    /// DEVICE_FEATURE.
    DeviceFeature(DeviceFeature, FeatureRequest<'a>),
    /// MIG_DATA_READ.
    MigDataRead(MigData),
    /// MIG_DATA_WRITE.
    MigDataWrite(MigData, &'a [u8]),
}

/// Decodes a command. `hdr` is the message header, `payload` the bytes after it (exactly
/// `msg_size - 16` of them) and `nfds` the number of fds that came with the message.
pub fn decode_request<'a>(
    hdr: &Header,
    payload: &'a [u8],
    nfds: usize,
    limits: &DecodeLimits,
) -> Result<Request<'a>, DecodeError> {
    let cmd = hdr.cmd()?;
    if hdr.payload_len() != Some(payload.len()) {
        return Err(DecodeError::SizeMismatch { cmd, expect: hdr.payload_len().unwrap_or(0), got: payload.len() });
    }
    if nfds > limits.max_msg_fds as usize {
        return Err(DecodeError::BadFdCount { cmd, got: nfds, expect: "at most max_msg_fds" });
    }
    let (p, max) = (payload, limits.max_data_xfer_size);
    Ok(match cmd {
        Command::Version => Request::Version(version::decode_request(p, nfds)?),
        Command::DmaMap => {
            let (map, fd) = dma::decode_map_request(p, nfds)?;
            Request::DmaMap { map, fd }
        }
        Command::DmaUnmap => Request::DmaUnmap(dma::decode_unmap_request(p, nfds)?),
        Command::DeviceGetInfo => Request::DeviceGetInfo(device::decode_info_request(p, nfds)?),
        Command::DeviceGetRegionInfo => Request::DeviceGetRegionInfo(device::decode_region_info_request(p, nfds)?),
        Command::DeviceGetRegionIoFds => Request::DeviceGetRegionIoFds(device::decode_io_fds_request(p, nfds)?),
        Command::DeviceGetIrqInfo => Request::DeviceGetIrqInfo(irq::decode_info_request(p, nfds)?),
        Command::DeviceSetIrqs => {
            let (set, action, data) = irq::decode_set_request(p, nfds)?;
            Request::DeviceSetIrqs { set, action, data }
        }
        Command::RegionRead => Request::RegionRead(region_access::decode_read_request(p, nfds, max)?),
        Command::RegionWrite => {
            let (a, data) = region_access::decode_write_request(p, nfds, max)?;
            Request::RegionWrite(a, data)
        }
        Command::DmaRead => Request::DmaRead(dma::decode_read_request(p, nfds, max)?),
        Command::DmaWrite => {
            let (a, data) = dma::decode_write_request(p, nfds, max)?;
            Request::DmaWrite(a, data)
        }
        Command::DeviceReset => {
            device::decode_reset_request(p, nfds)?;
            Request::DeviceReset
        }
        Command::RegionWriteMulti => Request::RegionWriteMulti(region_access::decode_write_multi_request(p, nfds)?),
        Command::DeviceFeature => {
            let (f, feature) = feature::decode_request(p, nfds)?;
            Request::DeviceFeature(f, feature)
        }
        Command::MigDataRead => Request::MigDataRead(feature::decode_mig_read_request(p, nfds, max)?),
        Command::MigDataWrite => {
            let (m, data) = feature::decode_mig_write_request(p, nfds, max)?;
            Request::MigDataWrite(m, data)
        }
    })
}

impl<'a> Request<'a> {
    /// The command code.
    pub fn command(&self) -> Command {
        self.payload().command()
    }

    /// The payload (everything after the header), encoded by the command's family, as
    /// borrowed parts: see [`Payload`]. Decoding it yields `self` again.
    pub fn payload(&self) -> Payload<'a> {
        match *self {
            Request::Version(v) => v.payload(),
            Request::DmaMap { map, .. } => map.request(),
            Request::DmaUnmap(r) => r.payload(),
            Request::DeviceGetInfo(i) => i.payload(),
            Request::DeviceGetRegionInfo(i) => i.request(),
            Request::DeviceGetRegionIoFds(r) => r.request(),
            Request::DeviceGetIrqInfo(i) => i.payload(),
            Request::DeviceSetIrqs { set, data, .. } => set.payload(&data),
            Request::RegionRead(a) => a.read_request(),
            Request::RegionWrite(a, d) => a.write_request(d),
            Request::DmaRead(a) => a.read_request(),
            Request::DmaWrite(a, d) => a.write_request(d),
            Request::DeviceReset => Payload::empty(Command::DeviceReset),
            Request::RegionWriteMulti(e) => WriteMultiEntry::multi_request(&e),
            Request::DeviceFeature(f, feat) => f.request_payload(&feat),
            Request::MigDataRead(m) => m.read_request(),
            Request::MigDataWrite(m, d) => m.write_request(d),
        }
    }

    /// The payload as a new buffer: see [`payload`](Self::payload).
    pub fn to_payload(&self) -> Vec<u8> {
        self.payload().to_vec()
    }

    /// Appends the payload to `out`: see [`payload`](Self::payload).
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        self.payload().append_to(out)
    }
}
