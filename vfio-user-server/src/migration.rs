// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Migration v2 on the server side: the MIGRATION and MIG_DEVICE_STATE features, the
//! state machine that walks a requested transition arc by arc through the device's
//! [`migration_transition`](crate::Device::migration_transition) hook, the MIG_DATA_READ /
//! MIG_DATA_WRITE streams, and which commands a stopped device refuses.
//!
//! The state starts as RUNNING and survives a client's disconnect (a VMM that reconnects
//! finds the device where it left it). A failed arc leaves the device in ERROR, from which
//! only DEVICE_RESET (back to RUNNING) leads out.

use vfio_user_proto::migration::transition_path;
use vfio_user_proto::request::Request;
use vfio_user_proto::wire::{
    append_with_room, DeviceFeature, FeatureMigState, FeatureMigration, MigData, MIGRATION_PRE_COPY,
    MIGRATION_STOP_COPY,
};
use vfio_user_proto::{MigState, Reply};
use vm_memory::ByteValued;

use crate::answer::Answer;
use crate::core::Core;
use crate::device::{Device, MigrationSupport};
use crate::error::{Error, Result};

/// `data_fd` in a GET MIG_DEVICE_STATE reply: unused by vfio-user, so "no fd" as in VFIO.
const NO_FD: u32 = u32::MAX;

/// Which commands a device in `state` refuses, and why; `None` if it takes `req`.
///
/// A device in STOP or STOP_COPY must not change (the spec's "does not change the internal
/// or external state"), so, as libvfio-user does, it refuses DMA_MAP, DMA_UNMAP,
/// SET_IRQS and DEVICE_RESET; in STOP_COPY, where its state is being read out, region
/// accesses too. Queries (device, region and IRQ info) stay allowed — libvfio-user refuses
/// them as well, but they change nothing. RESUMING allows everything: the destination VMM
/// may set up DMA and interrupts while the state loads.
pub(crate) fn refused_in(state: MigState, req: &Request<'_>) -> Option<&'static str> {
    let stopped = matches!(state, MigState::Stop | MigState::StopCopy);
    match req {
        Request::DmaMap { .. } | Request::DmaUnmap { .. } | Request::DeviceSetIrqs { .. } | Request::DeviceReset
            if stopped =>
        {
            Some("the device is stopped for migration")
        }
        Request::RegionRead(_) | Request::RegionWrite(..) | Request::RegionWriteMulti(_)
            if state == MigState::StopCopy =>
        {
            Some("the device's state is being saved (STOP_COPY)")
        }
        _ => None,
    }
}

impl<D: Device> Core<D> {
    fn migration_support(&self) -> Result<MigrationSupport> {
        self.device.migration().ok_or(Error::NotSupported)
    }

    /// GET MIGRATION: the flags, appended to the request's feature header.
    pub(crate) fn migration_get(&mut self, head: DeviceFeature) -> Result<Answer> {
        let support = self.migration_support()?;
        let mut flags = MIGRATION_STOP_COPY;
        if support.pre_copy {
            flags |= MIGRATION_PRE_COPY;
        }
        let data = FeatureMigration { flags };
        Ok(self.answer(&Reply::DeviceFeature(head.with_data(data.as_slice().len()), data.as_slice())))
    }

    /// GET MIG_DEVICE_STATE.
    pub(crate) fn mig_state_get(&mut self, head: DeviceFeature) -> Result<Answer> {
        self.migration_support()?;
        let data = FeatureMigState { device_state: self.mig_state as u32, data_fd: NO_FD };
        Ok(self.answer(&Reply::DeviceFeature(head.with_data(data.as_slice().len()), data.as_slice())))
    }

    /// SET MIG_DEVICE_STATE: walks the path arc by arc; the reply (the request echoed)
    /// goes out only once the whole transition is done. A refused transition changes
    /// nothing (`EINVAL`); a failed arc leaves the device in ERROR with the arc's errno.
    pub(crate) fn mig_state_set(&mut self, to: MigState, payload: &[u8]) -> Result<Answer> {
        let support = self.migration_support()?;
        let from = self.mig_state;
        let path = transition_path(from, to, support.pre_copy)
            .ok_or(Error::InvalidArgument("migration transition not allowed"))?;
        let mut at = from;
        for next in path {
            if let Err(e) = self.device.migration_transition(at, next) {
                log::warn!("migration arc {at} -> {next} failed: {e}; device now in ERROR");
                self.mig_state = MigState::Error;
                return Err(e.into());
            }
            log::debug!("migration: {at} -> {next}");
            at = next;
            self.mig_state = at;
        }
        Ok(self.echo(payload))
    }

    /// MIG_DATA_READ: up to `size` bytes of the save stream, in PRE_COPY or STOP_COPY.
    pub(crate) fn mig_data_read(&mut self, req: MigData) -> Result<Answer> {
        if !self.mig_state.is_saving() {
            return Err(Error::InvalidArgument("MIG_DATA_READ outside PRE_COPY and STOP_COPY"));
        }
        let want = req.size as usize;
        let mut buf = self.reply_buf();
        let out = buf.payload();
        let head_at = out.len();
        let room = append_with_room(out, &MigData::new(0), want);
        let n = self.device.migration_read(&mut out[room.clone()])?;
        if n > want {
            return Err(Error::Io(std::io::Error::other("device returned more migration data than asked")));
        }
        // The reply keeps the requested length, zero-padded past the `n` bytes that `argsz`
        // and `size` announce, as libvfio-user sends it: its client reads exactly that many
        // bytes and takes a shorter reply for a broken connection. (Our decoder, like the
        // spec's readers, goes by `size`.)
        out[room.start + n..].fill(0);
        out[head_at..room.start].copy_from_slice(MigData::new(n as u32).as_slice());
        Ok(Answer::reply(buf))
    }

    /// MIG_DATA_WRITE: the next bytes of the load stream, in RESUMING.
    pub(crate) fn mig_data_write(&mut self, data: &[u8]) -> Result<Answer> {
        if self.mig_state != MigState::Resuming {
            return Err(Error::InvalidArgument("MIG_DATA_WRITE outside RESUMING"));
        }
        self.device.migration_write(data)?;
        Ok(self.answer(&Reply::MigDataWrite))
    }

    /// DEVICE_RESET also resets the migration state machine to RUNNING (the way out of
    /// ERROR); the device's [`reset`](crate::Device::reset) drops any save or load session.
    pub(crate) fn mig_reset(&mut self) {
        if self.mig_state != MigState::Running {
            log::debug!("migration: {} -> RUNNING by reset", self.mig_state);
        }
        self.mig_state = MigState::Running;
    }
}
