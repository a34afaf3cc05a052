// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DEVICE_FEATURE, migration v2 and DMA-logging bodies, and MIG_DATA_READ / MIG_DATA_WRITE.

use super::wire_struct;

/// DEVICE_FEATURE: mask of the feature index bits.
pub const DEVICE_FEATURE_MASK: u32 = 0xffff;
/// DEVICE_FEATURE: get the feature's data.
pub const DEVICE_FEATURE_GET: u32 = 1 << 16;
/// DEVICE_FEATURE: set the feature's data.
pub const DEVICE_FEATURE_SET: u32 = 1 << 17;
/// DEVICE_FEATURE: only ask whether GET and/or SET are supported.
pub const DEVICE_FEATURE_PROBE: u32 = 1 << 18;
/// Every DEVICE_FEATURE flag bit the protocol defines.
pub const DEVICE_FEATURE_FLAGS_KNOWN: u32 =
    DEVICE_FEATURE_MASK | DEVICE_FEATURE_GET | DEVICE_FEATURE_SET | DEVICE_FEATURE_PROBE;

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

/// Migration flag: the device supports STOP_COPY (mandatory).
pub const MIGRATION_STOP_COPY: u64 = 1 << 0;
/// Migration flag: the device supports the P2P states.
pub const MIGRATION_P2P: u64 = 1 << 1;
/// Migration flag: the device supports PRE_COPY.
pub const MIGRATION_PRE_COPY: u64 = 1 << 2;

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

impl DeviceFeature {
    /// The feature header of a reply to this request carrying `data_len` bytes of data
    /// (a GET): `argsz` covers the header and the data.
    pub fn with_data(self, data_len: usize) -> Self {
        let argsz = u32::try_from(std::mem::size_of::<DeviceFeature>().saturating_add(data_len)).unwrap_or(u32::MAX);
        DeviceFeature { argsz, ..self }
    }
}

impl MigData {
    /// The fixed part of a MIG_DATA message carrying `size` bytes (`argsz` covers both): a
    /// MIG_DATA_WRITE, a MIG_DATA_READ reply, or a MIG_DATA_READ asking for that many.
    pub fn new(size: u32) -> Self {
        MigData { argsz: (std::mem::size_of::<MigData>() as u32).saturating_add(size), size }
    }
}

impl DmaLoggingReport {
    /// The bytes of the bitmap that answers this report: one bit per page of `length`,
    /// in whole `u64` words. `page_size` must not be 0 (the decoder refuses it).
    pub fn bitmap_bytes(&self) -> u64 {
        self.length.div_ceil(self.page_size).div_ceil(64).saturating_mul(8)
    }
}
