// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DEVICE_FEATURE (GET / SET / PROBE), migration v2 (MIGRATION, MIG_DEVICE_STATE,
//! MIG_DATA_READ / MIG_DATA_WRITE) and DMA dirty logging (DMA_LOGGING_START / STOP /
//! REPORT), each reply checked against its request.

use std::time::Duration;

use vfio_user_proto::request::decode_feature;
use vfio_user_proto::wire::{
    read_at, read_exact, DeviceFeature, DmaLoggingControl, DmaLoggingRange, DmaLoggingReport, FeatureMigState,
    FeatureMigration, FeatureOps, MigData,
};
use vfio_user_proto::{FeatureRequest, MigState, Reply, WireArray};
use vm_memory::ByteValued;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::transport::decode;

impl Client {
    /// Sends the DEVICE_FEATURE request `req` (encoded by the wire crate), accepting up to
    /// `max_out` bytes of reply data; returns the reply data after checking that the flags
    /// are echoed.
    fn feature(&self, req: &FeatureRequest<'_>, max_out: usize, timeout: Option<Duration>) -> Result<Vec<u8>> {
        let p = req.payload(max_out).ok_or(Error::InvalidInput("feature data too large"))?;
        let (flags, sent) = (req.flags(), req.data_len());
        let (t, msg) = self.call(&p, &[], timeout)?;
        match decode(&t, &msg)? {
            Reply::DeviceFeature(f, d) if f.flags == flags && d.len() <= max_out.max(sent) => Ok(d.to_vec()),
            Reply::DeviceFeature(f, d) => Err(t.violation(format!(
                "DEVICE_FEATURE reply flags {:#x} with {} bytes (asked flags {flags:#x}, at most {max_out} bytes)",
                f.flags,
                d.len()
            ))),
            _ => Err(t.violation("DEVICE_FEATURE reply of another kind".into())),
        }
    }

    /// Sends the typed `req`, accepting the reply data its feature defines.
    fn typed_feature(&self, req: FeatureRequest<'_>, timeout: Option<Duration>) -> Result<Vec<u8>> {
        self.feature(&req, req.reply_len(), timeout)
    }

    /// PROBE: whether `feature` supports GET and/or SET as asked. An error reply means no.
    pub fn device_feature_probe(&self, feature: u16, get: bool, set: bool) -> Result<bool> {
        match self.typed_feature(FeatureRequest::Probe { feature, get, set }, None) {
            Ok(_) => Ok(true),
            Err(Error::Server { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// GET of any feature: sends `data`, returns up to `max_out` bytes.
    pub fn device_feature_get(&self, feature: u16, data: &[u8], max_out: usize) -> Result<Vec<u8>> {
        // Raw data for any feature index goes as `Unknown` (data the wire crate does not
        // interpret).
        self.feature(&FeatureRequest::Unknown { feature, ops: FeatureOps::GET, data }, max_out, None)
    }

    /// SET of any feature; returns what the server echoed.
    pub fn device_feature_set(&self, feature: u16, data: &[u8]) -> Result<Vec<u8>> {
        self.feature(&FeatureRequest::Unknown { feature, ops: FeatureOps::SET, data }, data.len(), None)
    }

    /// The MIGRATION feature's flags (`MIGRATION_STOP_COPY`, `_P2P`, `_PRE_COPY`).
    pub fn migration_flags(&self) -> Result<u64> {
        let d = self.typed_feature(FeatureRequest::MigrationGet, None)?;
        match read_exact::<FeatureMigration>(&d) {
            Some(m) => Ok(m.flags),
            _ => Err(self.transport().violation(format!("MIGRATION data of {} bytes", d.len()))),
        }
    }

    /// The device's migration state (GET MIG_DEVICE_STATE).
    pub fn migration_state(&self) -> Result<MigState> {
        let d = self.typed_feature(FeatureRequest::MigStateGet, None)?;
        match read_exact::<FeatureMigState>(&d) {
            Some(s) => MigState::try_from(s.device_state)
                .map_err(|v| self.transport().violation(format!("device state {v} is not a state"))),
            None => Err(self.transport().violation(format!("MIG_DEVICE_STATE data of {} bytes", d.len()))),
        }
    }

    /// Moves the device to `state` (SET MIG_DEVICE_STATE); the server completes the whole
    /// transition before replying, so this uses the reset timeout.
    pub fn set_migration_state(&self, state: MigState) -> Result<()> {
        self.set_migration_state_with_timeout(state, self.config.reset_timeout)
    }

    /// [`set_migration_state`](Client::set_migration_state) with an explicit timeout.
    pub fn set_migration_state_with_timeout(&self, state: MigState, timeout: Duration) -> Result<()> {
        if matches!(state, MigState::Error) {
            return Err(Error::InvalidInput("ERROR cannot be requested"));
        }
        let d = self.typed_feature(FeatureRequest::MigStateSet(state), Some(timeout))?;
        match read_exact::<FeatureMigState>(&d) {
            Some(s) if s.device_state == state as u32 => Ok(()),
            _ => Err(self.transport().violation("MIG_DEVICE_STATE SET reply does not echo the state".into())),
        }
    }

    /// Reads migration data into `buf` (MIG_DATA_READ, in chunks of the transfer limit).
    /// Returns the number of bytes read: less than `buf.len()` when the device has no more
    /// data for now.
    pub fn read_migration_data(&self, buf: &mut [u8]) -> Result<usize> {
        let t = self.transport();
        let chunk = self.chunk(&t);
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(chunk);
            let p = MigData::new(want as u32).read_request();
            let msg = t.request(p.command(), &p.parts(), &[], self.config.timeout)?;
            let n = match decode(&t, &msg)? {
                Reply::MigDataRead(m, d) if d.len() <= want && m.argsz == MigData::new(d.len() as u32).argsz => {
                    buf[done..done + d.len()].copy_from_slice(d);
                    d.len()
                }
                Reply::MigDataRead(m, _) => {
                    return Err(t.violation(format!("MIG_DATA_READ returned {} bytes, {want} asked", m.size)))
                }
                _ => return Err(t.violation("MIG_DATA_READ reply of another kind".into())),
            };
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }

    /// Writes migration data (MIG_DATA_WRITE, in chunks of the server's transfer limit).
    pub fn write_migration_data(&self, data: &[u8]) -> Result<()> {
        let t = self.transport();
        for part in data.chunks(self.chunk(&t)) {
            let p = MigData::new(part.len() as u32).write_request(part);
            let msg = t.request(p.command(), &p.parts(), &[], self.config.timeout)?;
            if !matches!(decode(&t, &msg)?, Reply::MigDataWrite) {
                return Err(t.violation("MIG_DATA_WRITE reply of another kind".into()));
            }
        }
        Ok(())
    }

    /// DMA_LOGGING_START for `ranges` (`(iova, length)`; empty: everything) at `page_size`.
    /// Returns the page size the device chose.
    pub fn start_dma_logging(&self, page_size: u64, ranges: &[(u64, u64)]) -> Result<u64> {
        if !page_size.is_power_of_two() {
            return Err(Error::InvalidInput("page_size must be a power of two"));
        }
        let control = DmaLoggingControl::new(page_size, ranges.len() as u32);
        let mut bytes = Vec::new();
        for &(iova, length) in ranges {
            if length == 0 || iova.checked_add(length).is_none() {
                return Err(Error::InvalidInput("empty or wrapping logging range"));
            }
            bytes.extend_from_slice(DmaLoggingRange { iova, length }.as_slice());
        }
        let ranges = WireArray::new(&bytes).ok_or(Error::InvalidInput("logging ranges"))?;
        let req = FeatureRequest::DmaLoggingStart { control, ranges };
        if req.data_len() > self.transport().negotiated.peer.max_data_xfer_size as usize {
            return Err(Error::InvalidInput("too many logging ranges for the server's limits"));
        }
        let d = self.typed_feature(req, None)?;
        // The reply echoes the request, with the page size the device chose.
        let echo = DeviceFeature { argsz: 0, flags: req.flags() };
        match decode_feature(&echo, &d) {
            Ok(FeatureRequest::DmaLoggingStart { control: c, ranges: r })
                if c.num_ranges == control.num_ranges && r.as_bytes() == &bytes[..] =>
            {
                Ok(c.page_size)
            }
            _ => Err(self.transport().violation("DMA_LOGGING_START reply does not echo the request".into())),
        }
    }

    /// DMA_LOGGING_STOP.
    pub fn stop_dma_logging(&self) -> Result<()> {
        self.typed_feature(FeatureRequest::DmaLoggingStop, None).map(|_| ())
    }

    /// DMA_LOGGING_REPORT of `[iova, iova + length)`: the dirty bitmap (and it is cleared on
    /// the device), page `p` = bit `p % 64` of word `p / 64`. Split into requests whose
    /// bitmaps fit the transfer limits.
    pub fn report_dma_logging(&self, iova: u64, length: u64, page_size: u64) -> Result<Vec<u64>> {
        if !page_size.is_power_of_two() || length == 0 || iova.checked_add(length).is_none() {
            return Err(Error::InvalidInput("bad logging report range or page size"));
        }
        let t = self.transport();
        let limit = t.negotiated.peer.max_data_xfer_size.min(t.negotiated.local.max_data_xfer_size) as u64;
        let words_per_req = ((limit.saturating_sub(64)) / 8).max(1);
        let span = words_per_req.saturating_mul(64).saturating_mul(page_size);
        let whole = DmaLoggingReport { iova, length, page_size }.bitmap_bytes() / 8;
        let mut out = Vec::with_capacity(usize::try_from(whole).unwrap_or(0).min(1 << 20));
        let mut off = 0u64;
        while off < length {
            let len = (length - off).min(span);
            let req = DmaLoggingReport { iova: iova + off, length: len, page_size };
            let typed = FeatureRequest::DmaLoggingReport(req);
            let d = self.typed_feature(typed, None)?;
            if d.len() != typed.reply_len() || read_at::<DmaLoggingReport>(&d, 0) != Some(req) {
                return Err(t.violation("DMA_LOGGING_REPORT reply does not match the request".into()));
            }
            out.extend(
                d[req.as_slice().len()..]
                    .chunks_exact(8)
                    .map(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])),
            );
            off += len;
        }
        Ok(out)
    }
}
