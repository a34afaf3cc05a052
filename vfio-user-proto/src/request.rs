// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Commands (requests): typed forms, the I/O-free decoder and the encoder.
//!
//! [`decode_request`] is the single entry point from bytes to a typed command. It checks, for
//! every command, the payload size against the fixed part and the variable parts the fields
//! announce, `argsz`, the flag bits, ranges that would wrap, transfer counts against the
//! receiver's `max_data_xfer_size`, and the number of fds. Whatever it returns has passed
//! those checks; semantic checks that need device state (region index in range, ...) are the
//! receiver's.

use vm_memory::ByteValued;

use crate::array::WireArray;
use crate::command::Command;
use crate::error::DecodeError;
use crate::header::Header;
use crate::migration::MigState;
use crate::wire::*;

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
        crate::header::HEADER_SIZE + 16 + self.max_data_xfer_size as usize
    }
}

/// VERSION body (request and reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// The capability JSON without its NUL terminator (may be empty).
    pub json: &'a [u8],
}

/// The data of a SET_IRQS request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqData<'a> {
    /// DATA_NONE.
    None,
    /// DATA_BOOL: one byte per vector.
    Bool(&'a [u8]),
    /// DATA_EVENTFD: this many fds are attached (0 = de-assign).
    Eventfd(usize),
}

/// The action of a SET_IRQS request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqAction {
    /// ACTION_MASK.
    Mask,
    /// ACTION_UNMASK.
    Unmask,
    /// ACTION_TRIGGER.
    Trigger,
}

/// A DEVICE_FEATURE request, decoded by feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureRequest<'a> {
    /// PROBE: are the GET and/or SET operations supported for `feature`?
    Probe {
        /// Feature index.
        feature: u16,
        /// GET asked about.
        get: bool,
        /// SET asked about.
        set: bool,
    },
    /// GET MIGRATION: the migration flags.
    MigrationGet,
    /// GET MIG_DEVICE_STATE.
    MigStateGet,
    /// SET MIG_DEVICE_STATE.
    MigStateSet(MigState),
    /// SET DMA_LOGGING_START.
    DmaLoggingStart {
        /// Page size and range count.
        control: DmaLoggingControl,
        /// The ranges (empty: everything).
        ranges: WireArray<'a, DmaLoggingRange>,
    },
    /// SET DMA_LOGGING_STOP.
    DmaLoggingStop,
    /// GET DMA_LOGGING_REPORT.
    DmaLoggingReport(DmaLoggingReport),
    /// A feature index this crate does not know, with its operation flags and data.
    Unknown {
        /// Feature index.
        feature: u16,
        /// The GET/SET/PROBE bits.
        ops: u32,
        /// The data.
        data: &'a [u8],
    },
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
    DeviceGetIrqInfo(IrqInfo),
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

/// The fixed part of a payload, or `Truncated`. Shared with the reply decoder.
pub(crate) fn fixed<T: ByteValued + Default>(cmd: Command, p: &[u8]) -> Result<T, DecodeError> {
    read_at(p, 0).ok_or(DecodeError::Truncated { cmd, need: std::mem::size_of::<T>(), got: p.len() })
}

/// Exactly `expect` bytes: fewer is `Truncated`, more is `SizeMismatch`. Shared with the
/// reply decoder.
pub(crate) fn exact(cmd: Command, p: &[u8], expect: usize) -> Result<(), DecodeError> {
    match p.len() {
        n if n < expect => Err(DecodeError::Truncated { cmd, need: expect, got: n }),
        n if n > expect => Err(DecodeError::SizeMismatch { cmd, expect, got: n }),
        _ => Ok(()),
    }
}

fn no_fds(cmd: Command, nfds: usize) -> Result<(), DecodeError> {
    if nfds == 0 {
        Ok(())
    } else {
        Err(DecodeError::BadFdCount { cmd, got: nfds, expect: "none" })
    }
}

fn argsz_at_least(cmd: Command, argsz: u32, min: usize) -> Result<(), DecodeError> {
    if (argsz as usize) < min {
        Err(DecodeError::BadArgsz { cmd, argsz })
    } else {
        Ok(())
    }
}

/// Size rule of the query commands (GET_INFO, GET_REGION_INFO, GET_REGION_IO_FDS,
/// GET_IRQ_INFO), whose `argsz` is the largest reply the client accepts: `argsz` must cover
/// the fixed part, and the payload is the fixed part possibly followed by up to `argsz` bytes
/// in all. libvfio-user's client sends its whole argsz-sized buffer (as the VFIO ioctl
/// takes it) when it retries GET_REGION_INFO for the capabilities; the extra bytes carry no
/// request data and are ignored.
fn query_size(cmd: Command, p: &[u8], fixed: usize, argsz: u32) -> Result<(), DecodeError> {
    argsz_at_least(cmd, argsz, fixed)?;
    if p.len() > argsz as usize {
        return Err(DecodeError::SizeMismatch { cmd, expect: argsz as usize, got: p.len() });
    }
    Ok(())
}

fn no_wrap(cmd: Command, field: &'static str, base: u64, len: u64) -> Result<(), DecodeError> {
    base.checked_add(len).map(|_| ()).ok_or(DecodeError::BadField { cmd, field })
}

fn xfer(cmd: Command, count: u64, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if count > u64::from(limits.max_data_xfer_size) {
        Err(DecodeError::TooBig { cmd, count, max: limits.max_data_xfer_size.into() })
    } else {
        Ok(())
    }
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
    let p = payload;
    match cmd {
        Command::Version => decode_version(cmd, p, nfds),
        Command::DmaMap => decode_dma_map(cmd, p, nfds),
        Command::DmaUnmap => decode_dma_unmap(cmd, p, nfds),
        Command::DeviceGetInfo => decode_device_get_info(cmd, p, nfds),
        Command::DeviceGetRegionInfo => decode_device_get_region_info(cmd, p, nfds),
        Command::DeviceGetRegionIoFds => decode_device_get_region_io_fds(cmd, p, nfds),
        Command::DeviceGetIrqInfo => decode_device_get_irq_info(cmd, p, nfds),
        Command::DeviceSetIrqs => decode_set_irqs(p, nfds),
        Command::RegionRead => decode_region_read(cmd, p, nfds, limits),
        Command::RegionWrite => decode_region_write(cmd, p, nfds, limits),
        Command::DmaRead => decode_dma_read(cmd, p, nfds, limits),
        Command::DmaWrite => decode_dma_write(cmd, p, nfds, limits),
        Command::DeviceReset => decode_device_reset(cmd, p, nfds),
        Command::RegionWriteMulti => decode_region_write_multi(cmd, p, nfds),
        Command::DeviceFeature => decode_device_feature(cmd, p, nfds),
        Command::MigDataRead => decode_mig_data_read(cmd, p, nfds, limits),
        Command::MigDataWrite => decode_mig_data_write(cmd, p, nfds, limits),
    }
}

// ---- VERSION ----

/// Decodes a VERSION request.
fn decode_version<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let v: VersionWire = fixed(cmd, p)?;
    let json = version_json(&p[4..])?;
    Ok(Request::Version(Version { major: v.major, minor: v.minor, json }))
}

// ---- DMA: DMA_MAP, DMA_UNMAP, and the server-to-client DMA_READ / DMA_WRITE ----

/// Decodes a DMA_MAP request.
fn decode_dma_map<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    let map: DmaMap = fixed(cmd, p)?;
    exact(cmd, p, 32)?;
    if map.argsz != 32 {
        return Err(DecodeError::BadArgsz { cmd, argsz: map.argsz });
    }
    let fd = match nfds {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::BadFdCount { cmd, got: nfds, expect: "0 or 1" }),
    };
    let f = map.flags;
    let both = DMA_MAP_FLAG_MMAP | DMA_MAP_FLAG_FILE_IO;
    if f & !DMA_MAP_FLAGS_KNOWN != 0 || f & both == both || (f & both != 0 && !fd) {
        return Err(DecodeError::BadFlags { cmd, flags: f });
    }
    if map.size == 0 {
        return Err(DecodeError::BadField { cmd, field: "size" });
    }
    no_wrap(cmd, "address + size", map.addr, map.size)?;
    if fd {
        no_wrap(cmd, "offset + size", map.offset, map.size)?;
    }
    Ok(Request::DmaMap { map, fd })
}

/// Decodes a DMA_UNMAP request.
fn decode_dma_unmap<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let unmap: DmaUnmap = fixed(cmd, p)?;
    let f = unmap.flags;
    if f & !DMA_UNMAP_FLAGS_KNOWN != 0 || f == DMA_UNMAP_FLAGS_KNOWN {
        return Err(DecodeError::BadFlags { cmd, flags: f });
    }
    let argsz = unmap.argsz;
    if f & DMA_UNMAP_FLAG_ALL != 0 {
        exact(cmd, p, 24)?;
        argsz_at_least(cmd, argsz, 24)?;
        if unmap.addr != 0 || unmap.size != 0 {
            return Err(DecodeError::BadField { cmd, field: "address/size with UNMAP_ALL" });
        }
        return Ok(Request::DmaUnmap(DmaUnmapRequest { argsz, op: DmaUnmapOp::All }));
    }
    if unmap.size == 0 {
        return Err(DecodeError::BadField { cmd, field: "size" });
    }
    no_wrap(cmd, "address + size", unmap.addr, unmap.size)?;
    let (addr, size) = (unmap.addr, unmap.size);
    if f & DMA_UNMAP_FLAG_GET_DIRTY_BITMAP == 0 {
        exact(cmd, p, 24)?;
        argsz_at_least(cmd, argsz, 24)?;
        return Ok(Request::DmaUnmap(DmaUnmapRequest { argsz, op: DmaUnmapOp::One { addr, size } }));
    }
    exact(cmd, p, 40)?;
    let bm: DmaBitmap = read_at(p, 24).ok_or(DecodeError::Truncated { cmd, need: 40, got: p.len() })?;
    if !bm.pgsize.is_power_of_two() || size % bm.pgsize != 0 {
        return Err(DecodeError::BadField { cmd, field: "bitmap pgsize" });
    }
    if bm.size < DmaBitmap::bytes_for(size, bm.pgsize) {
        return Err(DecodeError::BadField { cmd, field: "bitmap size" });
    }
    // The reply carries entry + bitmap header + bitmap; argsz must allow it.
    if u64::from(argsz) < 40u64.saturating_add(bm.size) {
        return Err(DecodeError::BadArgsz { cmd, argsz });
    }
    let op = DmaUnmapOp::WithDirtyBitmap { addr, size, bitmap: bm };
    Ok(Request::DmaUnmap(DmaUnmapRequest { argsz, op }))
}

/// Decodes a DMA_READ request.
fn decode_dma_read<'a>(
    cmd: Command,
    p: &'a [u8],
    nfds: usize,
    limits: &DecodeLimits,
) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let a: DmaAccess = fixed(cmd, p)?;
    exact(cmd, p, 16)?;
    xfer(cmd, a.count, limits)?;
    no_wrap(cmd, "address + count", a.addr, a.count)?;
    Ok(Request::DmaRead(a))
}

/// Decodes a DMA_WRITE request.
fn decode_dma_write<'a>(
    cmd: Command,
    p: &'a [u8],
    nfds: usize,
    limits: &DecodeLimits,
) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let a: DmaAccess = fixed(cmd, p)?;
    xfer(cmd, a.count, limits)?;
    exact(cmd, p, 16 + a.count as usize)?;
    no_wrap(cmd, "address + count", a.addr, a.count)?;
    Ok(Request::DmaWrite(a, &p[16..]))
}

// ---- Device and region queries, DEVICE_RESET ----

/// Decodes a DEVICE_GET_INFO request.
fn decode_device_get_info<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let info: DeviceInfo = fixed(cmd, p)?;
    query_size(cmd, p, 16, info.argsz)?;
    Ok(Request::DeviceGetInfo(info))
}

/// Decodes a DEVICE_GET_REGION_INFO request.
fn decode_device_get_region_info<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let info: RegionInfo = fixed(cmd, p)?;
    query_size(cmd, p, 32, info.argsz)?;
    Ok(Request::DeviceGetRegionInfo(info))
}

/// Decodes a DEVICE_GET_REGION_IO_FDS request.
fn decode_device_get_region_io_fds<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let r: RegionIoFds = fixed(cmd, p)?;
    query_size(cmd, p, 16, r.argsz)?;
    if r.flags != 0 {
        return Err(DecodeError::BadFlags { cmd, flags: r.flags });
    }
    Ok(Request::DeviceGetRegionIoFds(r))
}

/// Decodes a DEVICE_GET_IRQ_INFO request.
fn decode_device_get_irq_info<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let info: IrqInfo = fixed(cmd, p)?;
    query_size(cmd, p, 16, info.argsz)?;
    Ok(Request::DeviceGetIrqInfo(info))
}

/// Decodes a DEVICE_RESET request.
fn decode_device_reset<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    exact(cmd, p, 0)?;
    Ok(Request::DeviceReset)
}

// ---- Region access ----

/// Decodes a REGION_READ request.
fn decode_region_read<'a>(
    cmd: Command,
    p: &'a [u8],
    nfds: usize,
    limits: &DecodeLimits,
) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let a: RegionAccess = fixed(cmd, p)?;
    exact(cmd, p, 16)?;
    xfer(cmd, a.count.into(), limits)?;
    no_wrap(cmd, "offset + count", a.offset, a.count.into())?;
    Ok(Request::RegionRead(a))
}

/// Decodes a REGION_WRITE request.
fn decode_region_write<'a>(
    cmd: Command,
    p: &'a [u8],
    nfds: usize,
    limits: &DecodeLimits,
) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let a: RegionAccess = fixed(cmd, p)?;
    xfer(cmd, a.count.into(), limits)?;
    exact(cmd, p, 16 + a.count as usize)?;
    no_wrap(cmd, "offset + count", a.offset, a.count.into())?;
    Ok(Request::RegionWrite(a, &p[16..]))
}

/// Decodes a REGION_WRITE_MULTI request.
fn decode_region_write_multi<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let w: WriteMulti = fixed(cmd, p)?;
    let n = usize::try_from(w.wr_cnt).map_err(|_| DecodeError::BadField { cmd, field: "wr_cnt" })?;
    let len = n
        .checked_mul(std::mem::size_of::<WriteMultiEntry>())
        .and_then(|l| l.checked_add(8))
        .ok_or(DecodeError::BadField { cmd, field: "wr_cnt" })?;
    exact(cmd, p, len)?;
    if n == 0 {
        return Err(DecodeError::BadField { cmd, field: "wr_cnt" });
    }
    let entries = WireArray::<WriteMultiEntry>::new(&p[8..]).ok_or(DecodeError::BadField { cmd, field: "wr_cnt" })?;
    for e in entries.iter() {
        if e.count == 0 || e.count as usize > WRITE_MULTI_DATA_MAX {
            return Err(DecodeError::BadField { cmd, field: "entry count" });
        }
        no_wrap(cmd, "entry offset + count", e.offset, e.count.into())?;
    }
    Ok(Request::RegionWriteMulti(entries))
}

// ---- DEVICE_FEATURE and migration data ----

/// Decodes a DEVICE_FEATURE request.
fn decode_device_feature<'a>(cmd: Command, p: &'a [u8], nfds: usize) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let f: DeviceFeature = fixed(cmd, p)?;
    argsz_at_least(cmd, f.argsz, 8)?;
    let feature = decode_feature(&f, &p[8..])?;
    Ok(Request::DeviceFeature(f, feature))
}

/// Decodes a MIG_DATA_READ request.
fn decode_mig_data_read<'a>(
    cmd: Command,
    p: &'a [u8],
    nfds: usize,
    limits: &DecodeLimits,
) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let m: MigData = fixed(cmd, p)?;
    exact(cmd, p, 8)?;
    xfer(cmd, m.size.into(), limits)?;
    // argsz is the largest reply payload accepted: it must hold `size` bytes of data
    // (libvfio-user refuses less too).
    argsz_at_least(cmd, m.argsz, 8 + m.size as usize)?;
    Ok(Request::MigDataRead(m))
}

/// Decodes a MIG_DATA_WRITE request.
fn decode_mig_data_write<'a>(
    cmd: Command,
    p: &'a [u8],
    nfds: usize,
    limits: &DecodeLimits,
) -> Result<Request<'a>, DecodeError> {
    no_fds(cmd, nfds)?;
    let m: MigData = fixed(cmd, p)?;
    xfer(cmd, m.size.into(), limits)?;
    exact(cmd, p, 8 + m.size as usize)?;
    argsz_at_least(cmd, m.argsz, 8 + m.size as usize)?;
    Ok(Request::MigDataWrite(m, &p[8..]))
}

fn decode_set_irqs(p: &[u8], nfds: usize) -> Result<Request<'_>, DecodeError> {
    let cmd = Command::DeviceSetIrqs;
    let set: IrqSet = fixed(cmd, p)?;
    argsz_at_least(cmd, set.argsz, 20)?;
    let f = set.flags;
    let data_bits = f & IRQ_SET_DATA_MASK;
    let action_bits = f & IRQ_SET_ACTION_MASK_BITS;
    if f & !(IRQ_SET_DATA_MASK | IRQ_SET_ACTION_MASK_BITS) != 0
        || data_bits.count_ones() != 1
        || action_bits.count_ones() != 1
    {
        return Err(DecodeError::BadFlags { cmd, flags: f });
    }
    if set.start.checked_add(set.count).is_none() {
        return Err(DecodeError::BadField { cmd, field: "start + count" });
    }
    let action = match action_bits {
        IRQ_SET_ACTION_MASK => IrqAction::Mask,
        IRQ_SET_ACTION_UNMASK => IrqAction::Unmask,
        _ => IrqAction::Trigger,
    };
    let data = match data_bits {
        IRQ_SET_DATA_NONE => {
            no_fds(cmd, nfds)?;
            exact(cmd, p, 20)?;
            IrqData::None
        }
        IRQ_SET_DATA_BOOL => {
            no_fds(cmd, nfds)?;
            exact(cmd, p, 20 + set.count as usize)?;
            IrqData::Bool(&p[20..])
        }
        _ => {
            exact(cmd, p, 20)?;
            if nfds != 0 && nfds != set.count as usize {
                return Err(DecodeError::BadFdCount { cmd, got: nfds, expect: "0 or count" });
            }
            IrqData::Eventfd(nfds)
        }
    };
    Ok(Request::DeviceSetIrqs { set, action, data })
}

/// The JSON of a VERSION payload (the bytes after major/minor), without its terminator.
///
/// The version data is optional, but when present it is a NUL-terminated, non-empty string:
/// data without the NUL, a bare NUL or a NUL inside the JSON are refused. (libvfio-user and
/// QEMU refuse a missing NUL too.) This keeps [`Version`] an exact picture of the wire bytes.
pub(crate) fn version_json(data: &[u8]) -> Result<&[u8], DecodeError> {
    if data.is_empty() {
        return Ok(data);
    }
    match data.split_last() {
        Some((&0, json)) if !json.is_empty() && !json.contains(&0) => Ok(json),
        Some((&0, [])) => Err(DecodeError::BadJson("empty JSON string".into())),
        Some((&0, _)) => Err(DecodeError::BadJson("NUL inside the JSON".into())),
        _ => Err(DecodeError::BadJson("JSON not NUL-terminated".into())),
    }
}

/// Decodes the data of a DEVICE_FEATURE request for the features this crate knows.
pub fn decode_feature<'a>(f: &DeviceFeature, data: &'a [u8]) -> Result<FeatureRequest<'a>, DecodeError> {
    let cmd = Command::DeviceFeature;
    let flags = f.flags;
    if flags & !DEVICE_FEATURE_FLAGS_KNOWN != 0 {
        return Err(DecodeError::BadFlags { cmd, flags });
    }
    let feature = (flags & DEVICE_FEATURE_MASK) as u16;
    let get = flags & DEVICE_FEATURE_GET != 0;
    let set = flags & DEVICE_FEATURE_SET != 0;
    let probe = flags & DEVICE_FEATURE_PROBE != 0;
    let none = !(get || set || probe);
    if (get && set && !probe) || none {
        return Err(DecodeError::BadFlags { cmd, flags });
    }
    // Requests that carry no data must not carry any: the typed value could not represent
    // it, and the spec says PROBE data is unused and MIGRATION GET has none.
    // PROBE, the GETs and DMA_LOGGING_STOP take no request data. Trailing bytes are ignored:
    // as with the VFIO ioctl, a client may send the buffer the reply will fill (a GET), and
    // libvfio-user's client sends DMA_LOGGING_STOP with the 16-byte START control block.
    if probe {
        return Ok(FeatureRequest::Probe { feature, get, set });
    }
    let bad = || DecodeError::BadFlags { cmd, flags };
    match feature {
        FEATURE_MIGRATION => {
            if !get {
                return Err(bad());
            }
            Ok(FeatureRequest::MigrationGet)
        }
        FEATURE_MIG_DEVICE_STATE => {
            if get {
                return Ok(FeatureRequest::MigStateGet);
            }
            let s: FeatureMigState =
                read_at(data, 0).ok_or(DecodeError::Truncated { cmd, need: 16, got: data.len() + 8 })?;
            exact(cmd, data, 8).map_err(|e| bump(e, 8))?;
            let state =
                MigState::try_from(s.device_state).map_err(|_| DecodeError::BadField { cmd, field: "device_state" })?;
            // data_fd is unused in vfio-user (the data travels in MIG_DATA_*); libvfio-user's
            // client sends -1 there. Any value is accepted and ignored.
            Ok(FeatureRequest::MigStateSet(state))
        }
        FEATURE_DMA_LOGGING_START => {
            if !set {
                return Err(bad());
            }
            let control: DmaLoggingControl =
                read_at(data, 0).ok_or(DecodeError::Truncated { cmd, need: 24, got: data.len() + 8 })?;
            let n = control.num_ranges as usize;
            exact(cmd, data, 16 + n * 16).map_err(|e| bump(e, 8))?;
            if !control.page_size.is_power_of_two() {
                return Err(DecodeError::BadField { cmd, field: "page_size" });
            }
            let ranges = WireArray::<DmaLoggingRange>::new(&data[16..])
                .ok_or(DecodeError::BadField { cmd, field: "num_ranges" })?;
            for r in ranges.iter() {
                if r.length == 0 {
                    return Err(DecodeError::BadField { cmd, field: "range length" });
                }
                no_wrap(cmd, "range iova + length", r.iova, r.length)?;
            }
            Ok(FeatureRequest::DmaLoggingStart { control, ranges })
        }
        FEATURE_DMA_LOGGING_STOP => {
            if !set {
                return Err(bad());
            }
            Ok(FeatureRequest::DmaLoggingStop)
        }
        FEATURE_DMA_LOGGING_REPORT => {
            if !get {
                return Err(bad());
            }
            let r: DmaLoggingReport =
                read_at(data, 0).ok_or(DecodeError::Truncated { cmd, need: 32, got: data.len() + 8 })?;
            exact(cmd, data, 24).map_err(|e| bump(e, 8))?;
            if !r.page_size.is_power_of_two() {
                return Err(DecodeError::BadField { cmd, field: "page_size" });
            }
            if r.length == 0 {
                return Err(DecodeError::BadField { cmd, field: "length" });
            }
            no_wrap(cmd, "iova + length", r.iova, r.length)?;
            // The bitmap must fit in the reply the client accepts.
            if u64::from(f.argsz) < 32u64.saturating_add(r.bitmap_bytes()) {
                return Err(DecodeError::BadArgsz { cmd, argsz: f.argsz });
            }
            Ok(FeatureRequest::DmaLoggingReport(r))
        }
        _ => Ok(FeatureRequest::Unknown { feature, ops: flags & !DEVICE_FEATURE_MASK, data }),
    }
}

/// Makes sizes in a feature-data error count the 8-byte DEVICE_FEATURE header too.
fn bump(e: DecodeError, by: usize) -> DecodeError {
    match e {
        DecodeError::Truncated { cmd, need, got } => DecodeError::Truncated { cmd, need: need + by, got: got + by },
        DecodeError::SizeMismatch { cmd, expect, got } => {
            DecodeError::SizeMismatch { cmd, expect: expect + by, got: got + by }
        }
        e => e,
    }
}

/// The fixed part of VERSION.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionWire {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}
wire_struct!(VersionWire, 4);

impl Request<'_> {
    /// The command code.
    pub fn command(&self) -> Command {
        match self {
            Request::Version(_) => Command::Version,
            Request::DmaMap { .. } => Command::DmaMap,
            Request::DmaUnmap(_) => Command::DmaUnmap,
            Request::DeviceGetInfo(_) => Command::DeviceGetInfo,
            Request::DeviceGetRegionInfo(_) => Command::DeviceGetRegionInfo,
            Request::DeviceGetRegionIoFds(_) => Command::DeviceGetRegionIoFds,
            Request::DeviceGetIrqInfo(_) => Command::DeviceGetIrqInfo,
            Request::DeviceSetIrqs { .. } => Command::DeviceSetIrqs,
            Request::RegionRead(_) => Command::RegionRead,
            Request::RegionWrite(..) => Command::RegionWrite,
            Request::DmaRead(_) => Command::DmaRead,
            Request::DmaWrite(..) => Command::DmaWrite,
            Request::DeviceReset => Command::DeviceReset,
            Request::RegionWriteMulti(_) => Command::RegionWriteMulti,
            Request::DeviceFeature(..) => Command::DeviceFeature,
            Request::MigDataRead(_) => Command::MigDataRead,
            Request::MigDataWrite(..) => Command::MigDataWrite,
        }
    }

    /// The payload (everything after the header) as a new buffer: see
    /// [`encode_payload`](Self::encode_payload).
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_payload(&mut out);
        out
    }

    /// Appends the payload (everything after the header) to `out`. Decoding the result
    /// yields `self` again.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Request::Version(v) => {
                out.extend_from_slice(VersionWire { major: v.major, minor: v.minor }.as_slice());
                if !v.json.is_empty() {
                    out.extend_from_slice(v.json);
                    out.push(0);
                }
            }
            Request::DmaMap { map, .. } => out.extend_from_slice(map.as_slice()),
            Request::DmaUnmap(r) => {
                let (unmap, bitmap) = r.to_wire();
                out.extend_from_slice(unmap.as_slice());
                if let Some(b) = bitmap {
                    out.extend_from_slice(b.as_slice());
                }
            }
            Request::DeviceGetInfo(i) => out.extend_from_slice(i.as_slice()),
            Request::DeviceGetRegionInfo(i) => out.extend_from_slice(i.as_slice()),
            Request::DeviceGetRegionIoFds(i) => out.extend_from_slice(i.as_slice()),
            Request::DeviceGetIrqInfo(i) => out.extend_from_slice(i.as_slice()),
            Request::DeviceSetIrqs { set, data, .. } => {
                out.extend_from_slice(set.as_slice());
                if let IrqData::Bool(b) = data {
                    out.extend_from_slice(b);
                }
            }
            Request::RegionRead(a) => out.extend_from_slice(a.as_slice()),
            Request::RegionWrite(a, d) => {
                out.extend_from_slice(a.as_slice());
                out.extend_from_slice(d);
            }
            Request::DmaRead(a) => out.extend_from_slice(a.as_slice()),
            Request::DmaWrite(a, d) => {
                out.extend_from_slice(a.as_slice());
                out.extend_from_slice(d);
            }
            Request::DeviceReset => {}
            Request::RegionWriteMulti(e) => {
                out.extend_from_slice(WriteMulti { wr_cnt: e.len() as u64 }.as_slice());
                out.extend_from_slice(e.as_bytes());
            }
            Request::DeviceFeature(f, feat) => {
                out.extend_from_slice(f.as_slice());
                match feat {
                    FeatureRequest::MigStateSet(s) => {
                        out.extend_from_slice(FeatureMigState { device_state: *s as u32, data_fd: 0 }.as_slice())
                    }
                    FeatureRequest::DmaLoggingStart { control, ranges } => {
                        out.extend_from_slice(control.as_slice());
                        out.extend_from_slice(ranges.as_bytes());
                    }
                    FeatureRequest::DmaLoggingReport(r) => out.extend_from_slice(r.as_slice()),
                    FeatureRequest::Unknown { data, .. } => out.extend_from_slice(data),
                    FeatureRequest::Probe { .. }
                    | FeatureRequest::MigrationGet
                    | FeatureRequest::MigStateGet
                    | FeatureRequest::DmaLoggingStop => {}
                }
            }
            Request::MigDataRead(m) => out.extend_from_slice(m.as_slice()),
            Request::MigDataWrite(m, d) => {
                out.extend_from_slice(m.as_slice());
                out.extend_from_slice(d);
            }
        }
    }
}
