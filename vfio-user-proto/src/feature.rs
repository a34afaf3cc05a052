// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The feature family: DEVICE_FEATURE (with the migration v2 and DMA-logging features) and
//! MIG_DATA_READ / MIG_DATA_WRITE — their wire structs and flags, typed forms
//! ([`FeatureRequest`]) and constructors, and the decoders and encoders of each command and
//! its reply.

use crate::array::WireArray;
use crate::codec::{
    argsz_at_least, argsz_of, empty, exact, fixed, no_fds, no_wrap, read_at, wire_struct, xfer, Payload,
};
use crate::command::Command;
use crate::error::DecodeError;
use crate::migration::MigState;

bitflags::bitflags! {
    /// The operation bits of DEVICE_FEATURE's flags (the low 16 bits are the feature index).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct FeatureOps: u32 {
        /// Get the feature's data.
        const GET = 1 << 16;
        /// Set the feature's data.
        const SET = 1 << 17;
        /// Only ask whether GET and/or SET are supported.
        const PROBE = 1 << 18;
    }
}

/// DEVICE_FEATURE: mask of the feature index bits.
pub const DEVICE_FEATURE_MASK: u32 = 0xffff;
/// DEVICE_FEATURE: get the feature's data ([`FeatureOps::GET`]).
pub const DEVICE_FEATURE_GET: u32 = FeatureOps::GET.bits();
/// DEVICE_FEATURE: set the feature's data ([`FeatureOps::SET`]).
pub const DEVICE_FEATURE_SET: u32 = FeatureOps::SET.bits();
/// DEVICE_FEATURE: only ask whether GET and/or SET are supported ([`FeatureOps::PROBE`]).
pub const DEVICE_FEATURE_PROBE: u32 = FeatureOps::PROBE.bits();
/// Every DEVICE_FEATURE flag bit the protocol defines.
pub const DEVICE_FEATURE_FLAGS_KNOWN: u32 = DEVICE_FEATURE_MASK | FeatureOps::all().bits();

/// Feature index: migration support (GET, PROBE).
pub const FEATURE_MIGRATION: u16 = 1;
/// Feature index: migration device state (GET, SET, PROBE).
pub const FEATURE_MIG_DEVICE_STATE: u16 = 2;
/// Feature index: start DMA dirty logging (SET, PROBE).
pub const FEATURE_DMA_LOGGING_START: u16 = 6;
/// Feature index: stop DMA dirty logging (SET, PROBE).
pub const FEATURE_DMA_LOGGING_STOP: u16 = 7;
/// Feature index: report and clear the DMA dirty bitmap (GET).
pub const FEATURE_DMA_LOGGING_REPORT: u16 = 8;

/// DEVICE_FEATURE request and reply fixed part (8 bytes); feature data follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceFeature {
    /// Request: largest reply accepted; reply: size of the reply payload.
    pub argsz: u32,
    /// Feature index and `DEVICE_FEATURE_GET/SET/PROBE`.
    pub flags: u32,
}
wire_struct!(DeviceFeature, 8);

bitflags::bitflags! {
    /// The data of the MIGRATION feature: which optional states the device supports. Bits
    /// this crate does not name are kept.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct MigrationFlags: u64 {
        /// STOP_COPY (mandatory).
        const STOP_COPY = 1 << 0;
        /// The P2P states.
        const P2P = 1 << 1;
        /// PRE_COPY.
        const PRE_COPY = 1 << 2;
    }
}

/// Migration flag [`MigrationFlags::STOP_COPY`].
pub const MIGRATION_STOP_COPY: u64 = MigrationFlags::STOP_COPY.bits();
/// Migration flag [`MigrationFlags::P2P`].
pub const MIGRATION_P2P: u64 = MigrationFlags::P2P.bits();
/// Migration flag [`MigrationFlags::PRE_COPY`].
pub const MIGRATION_PRE_COPY: u64 = MigrationFlags::PRE_COPY.bits();

/// Data of the MIGRATION feature (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureMigration {
    /// `MIGRATION_*` flags.
    pub flags: u64,
}
wire_struct!(FeatureMigration, 8);

/// Data of the MIG_DEVICE_STATE feature (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureMigState {
    /// A [`crate::MigState`] value.
    pub device_state: u32,
    /// Unused by vfio-user (the data travels in MIG_DATA_*).
    pub data_fd: u32,
}
wire_struct!(FeatureMigState, 8);

/// Data of DMA_LOGGING_START, before its ranges (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaLoggingControl {
    /// Page size one dirty bit stands for.
    pub page_size: u64,
    /// Number of [`DmaLoggingRange`]s that follow; 0 logs everything.
    pub num_ranges: u32,
    /// Reserved.
    pub reserved: u32,
}
wire_struct!(DmaLoggingControl, 16);

/// One range to log (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaLoggingRange {
    /// Start address.
    pub iova: u64,
    /// Length in bytes.
    pub length: u64,
}
wire_struct!(DmaLoggingRange, 16);

/// Data of DMA_LOGGING_REPORT (24 bytes); in the reply the bitmap follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaLoggingReport {
    /// Start address.
    pub iova: u64,
    /// Length in bytes.
    pub length: u64,
    /// Page size one bit stands for (a power of two).
    pub page_size: u64,
}
wire_struct!(DmaLoggingReport, 24);

/// MIG_DATA_READ / MIG_DATA_WRITE fixed part (8 bytes); data follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigData {
    /// Request: largest reply accepted / payload size; reply: `8 + size`.
    pub argsz: u32,
    /// Number of data bytes asked for or carried.
    pub size: u32,
}
wire_struct!(MigData, 8);

impl FeatureMigration {
    /// The flags, typed (unnamed bits kept).
    pub fn migration_flags(&self) -> MigrationFlags {
        MigrationFlags::from_bits_retain(self.flags)
    }
}

impl DeviceFeature {
    /// A DEVICE_FEATURE request header for `feature` with `ops`, whose message carries or
    /// whose reply may carry up to `data_len` bytes of data (`argsz` covers the header and
    /// them); `None` when that does not fit in `argsz`.
    pub fn request(feature: u16, ops: FeatureOps, data_len: usize) -> Option<Self> {
        let argsz = u32::try_from(std::mem::size_of::<DeviceFeature>().checked_add(data_len)?).ok()?;
        Some(DeviceFeature { argsz, flags: u32::from(feature) | ops.bits() })
    }

    /// The feature header of a reply to this request carrying `data_len` bytes of data
    /// (a GET): `argsz` covers the header and the data.
    pub fn with_data(self, data_len: usize) -> Self {
        DeviceFeature { argsz: argsz_of::<DeviceFeature>(data_len), ..self }
    }

    /// [`with_data`](Self::with_data), or `None` when the header and the data do not fit
    /// in `argsz`.
    pub fn checked_with_data(self, data_len: usize) -> Option<Self> {
        let argsz = u32::try_from(std::mem::size_of::<DeviceFeature>().checked_add(data_len)?).ok()?;
        Some(DeviceFeature { argsz, ..self })
    }

    /// The feature index.
    pub fn feature(&self) -> u16 {
        (self.flags & DEVICE_FEATURE_MASK) as u16
    }

    /// The operation bits, typed; bits this crate does not know are kept (the decoder
    /// refuses them).
    pub fn ops(&self) -> FeatureOps {
        FeatureOps::from_bits_retain(self.flags & !DEVICE_FEATURE_MASK)
    }
}

impl MigData {
    /// The fixed part of a MIG_DATA message carrying `size` bytes (`argsz` covers both): a
    /// MIG_DATA_WRITE, a MIG_DATA_READ reply, or a MIG_DATA_READ asking for that many.
    pub fn new(size: u32) -> Self {
        MigData { argsz: argsz_of::<MigData>(size as usize), size }
    }
}

impl DmaLoggingControl {
    /// The DMA_LOGGING_START control block for `num_ranges` ranges at `page_size`.
    pub fn new(page_size: u64, num_ranges: u32) -> Self {
        DmaLoggingControl { page_size, num_ranges, reserved: 0 }
    }
}

impl DmaLoggingReport {
    /// The bytes of the bitmap that answers this report: one bit per page of `length`,
    /// in whole `u64` words. `page_size` must not be 0 (the decoder refuses it).
    pub fn bitmap_bytes(&self) -> u64 {
        self.length.div_ceil(self.page_size).div_ceil(64).saturating_mul(8)
    }
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
        ops: FeatureOps,
        /// The data.
        data: &'a [u8],
    },
}

impl<'a> FeatureRequest<'a> {
    /// The feature index.
    pub fn feature(&self) -> u16 {
        match *self {
            FeatureRequest::Probe { feature, .. } | FeatureRequest::Unknown { feature, .. } => feature,
            FeatureRequest::MigrationGet => FEATURE_MIGRATION,
            FeatureRequest::MigStateGet | FeatureRequest::MigStateSet(_) => FEATURE_MIG_DEVICE_STATE,
            FeatureRequest::DmaLoggingStart { .. } => FEATURE_DMA_LOGGING_START,
            FeatureRequest::DmaLoggingStop => FEATURE_DMA_LOGGING_STOP,
            FeatureRequest::DmaLoggingReport(_) => FEATURE_DMA_LOGGING_REPORT,
        }
    }

    /// The operation bits.
    pub fn ops(&self) -> FeatureOps {
        match *self {
            FeatureRequest::Probe { get, set, .. } => {
                let mut ops = FeatureOps::PROBE;
                ops.set(FeatureOps::GET, get);
                ops.set(FeatureOps::SET, set);
                ops
            }
            FeatureRequest::Unknown { ops, .. } => ops,
            FeatureRequest::MigrationGet | FeatureRequest::MigStateGet | FeatureRequest::DmaLoggingReport(_) => {
                FeatureOps::GET
            }
            FeatureRequest::MigStateSet(_)
            | FeatureRequest::DmaLoggingStart { .. }
            | FeatureRequest::DmaLoggingStop => FeatureOps::SET,
        }
    }

    /// The DEVICE_FEATURE flags: feature index and operation bits.
    pub fn flags(&self) -> u32 {
        u32::from(self.feature()) | self.ops().bits()
    }

    /// Bytes of feature data the request carries.
    pub fn data_len(&self) -> usize {
        match *self {
            FeatureRequest::MigStateSet(_) => std::mem::size_of::<FeatureMigState>(),
            FeatureRequest::DmaLoggingStart { ranges, .. } => {
                std::mem::size_of::<DmaLoggingControl>() + ranges.as_bytes().len()
            }
            FeatureRequest::DmaLoggingReport(_) => std::mem::size_of::<DmaLoggingReport>(),
            FeatureRequest::Unknown { data, .. } => data.len(),
            FeatureRequest::Probe { .. }
            | FeatureRequest::MigrationGet
            | FeatureRequest::MigStateGet
            | FeatureRequest::DmaLoggingStop => 0,
        }
    }

    /// Bytes of feature data a reply to this request carries: the GETs' data, the SETs'
    /// echo (for a feature this crate does not know, as much as the request carries).
    pub fn reply_len(&self) -> usize {
        match *self {
            FeatureRequest::MigrationGet => std::mem::size_of::<FeatureMigration>(),
            FeatureRequest::MigStateGet | FeatureRequest::MigStateSet(_) => std::mem::size_of::<FeatureMigState>(),
            FeatureRequest::DmaLoggingReport(r) => std::mem::size_of::<DmaLoggingReport>()
                .saturating_add(usize::try_from(r.bitmap_bytes()).unwrap_or(usize::MAX)),
            FeatureRequest::DmaLoggingStart { .. } | FeatureRequest::Unknown { .. } => self.data_len(),
            FeatureRequest::Probe { .. } | FeatureRequest::DmaLoggingStop => 0,
        }
    }

    /// The DEVICE_FEATURE request carrying this, whose reply may carry up to `reply_len`
    /// bytes of data (`argsz` covers the header and the larger of the request's and the
    /// reply's data); `None` when that does not fit in `argsz`.
    pub fn payload(&self, reply_len: usize) -> Option<Payload<'a>> {
        let head = DeviceFeature::request(self.feature(), self.ops(), self.data_len().max(reply_len))?;
        Some(head.request_payload(self))
    }
}

// ---- Decoding ----

/// DEVICE_FEATURE request: the header (`argsz` covering it) and the feature's data.
pub(crate) fn decode_request(p: &[u8], nfds: usize) -> Result<(DeviceFeature, FeatureRequest<'_>), DecodeError> {
    let cmd = Command::DeviceFeature;
    no_fds(cmd, nfds)?;
    let f: DeviceFeature = fixed(cmd, p)?;
    let head = std::mem::size_of::<DeviceFeature>();
    argsz_at_least(cmd, f.argsz, head)?;
    let feature = decode_feature(&f, &p[head..])?;
    Ok((f, feature))
}

/// Decodes the data of a DEVICE_FEATURE request for the features this crate knows.
pub fn decode_feature<'a>(f: &DeviceFeature, data: &'a [u8]) -> Result<FeatureRequest<'a>, DecodeError> {
    let cmd = Command::DeviceFeature;
    let flags = f.flags;
    let bad = || DecodeError::BadFlags { cmd, flags };
    let ops = FeatureOps::from_bits(flags & !DEVICE_FEATURE_MASK).ok_or_else(bad)?;
    let feature = f.feature();
    let get = ops.contains(FeatureOps::GET);
    let set = ops.contains(FeatureOps::SET);
    let probe = ops.contains(FeatureOps::PROBE);
    if (get && set && !probe) || ops.is_empty() {
        return Err(bad());
    }
    // Requests that carry no data must not carry any: the typed value could not represent
    // it, and the spec says PROBE data is unused and MIGRATION GET has none.
    // PROBE, the GETs and DMA_LOGGING_STOP take no request data. Trailing bytes are ignored:
    // as with the VFIO ioctl, a client may send the buffer the reply will fill (a GET), and
    // libvfio-user's client sends DMA_LOGGING_STOP with the 16-byte START control block.
    if probe {
        return Ok(FeatureRequest::Probe { feature, get, set });
    }
    // Sizes in errors count the 8-byte DEVICE_FEATURE header too.
    let head = std::mem::size_of::<DeviceFeature>();
    let truncated = |need: usize| DecodeError::Truncated { cmd, need: need + head, got: data.len() + head };
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
            let s: FeatureMigState = read_at(data, 0).ok_or(truncated(std::mem::size_of::<FeatureMigState>()))?;
            exact(cmd, data, std::mem::size_of::<FeatureMigState>()).map_err(|e| bump(e, head))?;
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
            let ctl = std::mem::size_of::<DmaLoggingControl>();
            let control: DmaLoggingControl = read_at(data, 0).ok_or(truncated(ctl))?;
            let n = control.num_ranges as usize;
            exact(cmd, data, ctl + n * std::mem::size_of::<DmaLoggingRange>()).map_err(|e| bump(e, head))?;
            if !control.page_size.is_power_of_two() {
                return Err(DecodeError::BadField { cmd, field: "page_size" });
            }
            let ranges = WireArray::<DmaLoggingRange>::new(&data[ctl..])
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
            let len = std::mem::size_of::<DmaLoggingReport>();
            let r: DmaLoggingReport = read_at(data, 0).ok_or(truncated(len))?;
            exact(cmd, data, len).map_err(|e| bump(e, head))?;
            if !r.page_size.is_power_of_two() {
                return Err(DecodeError::BadField { cmd, field: "page_size" });
            }
            if r.length == 0 {
                return Err(DecodeError::BadField { cmd, field: "length" });
            }
            no_wrap(cmd, "iova + length", r.iova, r.length)?;
            // The bitmap must fit in the reply the client accepts.
            if u64::from(f.argsz) < ((head + len) as u64).saturating_add(r.bitmap_bytes()) {
                return Err(DecodeError::BadArgsz { cmd, argsz: f.argsz });
            }
            Ok(FeatureRequest::DmaLoggingReport(r))
        }
        _ => Ok(FeatureRequest::Unknown { feature, ops, data }),
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

/// MIG_DATA_READ request: exactly the fixed part, a size within `max`, and an `argsz` that
/// holds a reply of `size` bytes (libvfio-user refuses less too).
pub(crate) fn decode_mig_read_request(p: &[u8], nfds: usize, max: u32) -> Result<MigData, DecodeError> {
    let cmd = Command::MigDataRead;
    no_fds(cmd, nfds)?;
    let m: MigData = fixed(cmd, p)?;
    let head = std::mem::size_of::<MigData>();
    exact(cmd, p, head)?;
    xfer(cmd, m.size.into(), max)?;
    argsz_at_least(cmd, m.argsz, head + m.size as usize)?;
    Ok(m)
}

/// MIG_DATA_WRITE request: the fixed part and `size` bytes (within `max`, `argsz` covering
/// them).
pub(crate) fn decode_mig_write_request(p: &[u8], nfds: usize, max: u32) -> Result<(MigData, &[u8]), DecodeError> {
    let cmd = Command::MigDataWrite;
    no_fds(cmd, nfds)?;
    let m: MigData = fixed(cmd, p)?;
    let head = std::mem::size_of::<MigData>();
    xfer(cmd, m.size.into(), max)?;
    exact(cmd, p, head + m.size as usize)?;
    argsz_at_least(cmd, m.argsz, head + m.size as usize)?;
    Ok((m, &p[head..]))
}

/// DEVICE_FEATURE reply: the header and the feature's data.
pub(crate) fn decode_reply(p: &[u8], nfds: usize) -> Result<(DeviceFeature, &[u8]), DecodeError> {
    let cmd = Command::DeviceFeature;
    no_fds(cmd, nfds)?;
    let f: DeviceFeature = fixed(cmd, p)?;
    Ok((f, &p[std::mem::size_of::<DeviceFeature>()..]))
}

/// MIG_DATA_READ reply: the fixed part and its `size` bytes of data. libvfio-user sends a
/// reply as large as the request asked for, with `size` saying how much of it is data (less
/// at the end of the stream): the rest is padding and is ignored.
pub(crate) fn decode_mig_read_reply(p: &[u8], nfds: usize) -> Result<(MigData, &[u8]), DecodeError> {
    let cmd = Command::MigDataRead;
    no_fds(cmd, nfds)?;
    let m: MigData = fixed(cmd, p)?;
    let head = std::mem::size_of::<MigData>();
    let end = head + m.size as usize;
    if p.len() < end {
        return Err(DecodeError::Truncated { cmd, need: end, got: p.len() });
    }
    Ok((m, &p[head..end]))
}

/// MIG_DATA_WRITE reply: empty.
pub(crate) fn decode_mig_write_reply(p: &[u8], nfds: usize) -> Result<(), DecodeError> {
    empty(Command::MigDataWrite, p, nfds)
}

// ---- Encoding ----

impl DeviceFeature {
    /// A DEVICE_FEATURE request or reply: this header followed by the feature's `data`.
    pub fn payload<'a>(&self, data: &'a [u8]) -> Payload<'a> {
        Payload::of(Command::DeviceFeature, self).data(data)
    }

    /// A DEVICE_FEATURE request or reply: this header followed by `part`, a fixed-size
    /// feature body (MIG_DEVICE_STATE, DMA_LOGGING_REPORT, ...).
    pub fn payload_with<T: vm_memory::ByteValued>(&self, part: &T) -> Payload<'static> {
        Payload::of(Command::DeviceFeature, self).then(part)
    }

    /// The DEVICE_FEATURE request `feature` with this header: its data as the decoder
    /// reads it back.
    pub fn request_payload<'a>(&self, feature: &FeatureRequest<'a>) -> Payload<'a> {
        match *feature {
            FeatureRequest::MigStateSet(s) => {
                self.payload_with(&FeatureMigState { device_state: s as u32, data_fd: 0 })
            }
            FeatureRequest::DmaLoggingStart { control, ranges } => {
                Payload::of(Command::DeviceFeature, self).then(&control).data(ranges.as_bytes())
            }
            FeatureRequest::DmaLoggingReport(r) => self.payload_with(&r),
            FeatureRequest::Unknown { data, .. } => self.payload(data),
            FeatureRequest::Probe { .. }
            | FeatureRequest::MigrationGet
            | FeatureRequest::MigStateGet
            | FeatureRequest::DmaLoggingStop => self.payload(&[]),
        }
    }
}

impl MigData {
    /// The MIG_DATA_READ request asking for `size` bytes.
    pub fn read_request(&self) -> Payload<'static> {
        Payload::of(Command::MigDataRead, self)
    }

    /// The MIG_DATA_WRITE request of `data` (`size` is `data.len()`).
    pub fn write_request<'a>(&self, data: &'a [u8]) -> Payload<'a> {
        Payload::of(Command::MigDataWrite, self).data(data)
    }

    /// The MIG_DATA_READ reply carrying `data`.
    pub fn read_reply<'a>(&self, data: &'a [u8]) -> Payload<'a> {
        Payload::of(Command::MigDataRead, self).data(data)
    }
}
