// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The migration state stream of the transport: a little-endian record of the common
//! configuration, every queue's set-up, addresses and indexes, the ISR, and the device's
//! own state ([`VirtioDevice::save`]). Saved in STOP (after the requests in flight were
//! completed), applied on RESUMING → STOP, where anything malformed or not matching this
//! device (type, queue count, features offered) is refused.

use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueState};

use super::common::QueueConfig;
use super::Inner;
use crate::device::VirtioDevice;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"VIOPCI01";
/// The most migration data the destination accepts.
pub(crate) const MAX_STATE: usize = 1 << 20;

/// A save or load in progress.
#[derive(Debug, Default)]
pub(crate) struct Session {
    out: Vec<u8>,
    pos: usize,
    input: Vec<u8>,
}

impl Session {
    pub(crate) fn start_save(&mut self, bytes: Vec<u8>) {
        self.out = bytes;
        self.pos = 0;
    }

    pub(crate) fn read(&mut self, data: &mut [u8]) -> usize {
        let n = data.len().min(self.out.len() - self.pos);
        data[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        n
    }

    pub(crate) fn start_load(&mut self) {
        self.input.clear();
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.input.len() + data.len() > MAX_STATE {
            return Err(Error::Migration("more migration data than any device state".into()));
        }
        self.input.extend_from_slice(data);
        Ok(())
    }

    pub(crate) fn take_load(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.0.len() < N {
            return Err(Error::Migration("truncated".into()));
        }
        let (a, b) = self.0.split_at(N);
        self.0 = b;
        Ok(a.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Migration("bad boolean".into())),
        }
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

/// The transport's and device's state (the device is stopped).
pub(crate) fn save<D: VirtioDevice>(inner: &Inner<D>) -> Vec<u8> {
    let mut w = Writer(MAGIC.to_vec());
    w.u16(inner.device.device_type());
    let queues: Vec<Option<QueueState>> =
        (0..inner.queues.len() as u16).map(|q| inner.lock_queue(q).as_ref().map(|q| q.state())).collect();
    let c = inner.lock_common().clone();
    w.u16(c.queues.len() as u16);
    w.u64(c.device_features);
    w.u64(c.driver_features);
    w.u32(c.dfselect);
    w.u32(c.gfselect);
    w.u16(c.config_vector);
    w.u8(c.status);
    w.u8(c.generation);
    w.u16(c.queue_select);
    w.u8(inner.isr.load(Ordering::Acquire));
    w.u8(inner.live.load(Ordering::Acquire).into());
    for (cfg, st) in c.queues.iter().zip(&queues) {
        w.u16(cfg.size);
        w.u16(cfg.vector);
        w.u8(cfg.enabled.into());
        w.u64(cfg.desc);
        w.u64(cfg.driver);
        w.u64(cfg.device);
        match st {
            None => w.u8(0),
            Some(s) => {
                w.u8(1);
                w.u16(s.next_avail);
                w.u16(s.next_used);
                w.u8(s.event_idx_enabled.into());
            }
        }
    }
    let dev = inner.device.save();
    w.u32(dev.len() as u32);
    w.0.extend_from_slice(&dev);
    w.0
}

/// Applies a saved state (the device is stopped).
pub(crate) fn restore<D: VirtioDevice>(inner: &Inner<D>, bytes: &[u8]) -> Result<()> {
    let mut r = Reader(bytes);
    if &r.take::<8>()? != MAGIC {
        return Err(Error::Migration("not a virtio-pci state".into()));
    }
    if r.u16()? != inner.device.device_type() {
        return Err(Error::Migration("another virtio device type".into()));
    }
    let mut c = inner.lock_common().clone();
    if usize::from(r.u16()?) != c.queues.len() {
        return Err(Error::Migration("another number of queues".into()));
    }
    if r.u64()? != c.device_features {
        return Err(Error::Migration("the destination offers other features".into()));
    }
    c.driver_features = r.u64()?;
    c.dfselect = r.u32()?;
    c.gfselect = r.u32()?;
    c.config_vector = r.u16()?;
    c.status = r.u8()?;
    c.generation = r.u8()?;
    c.queue_select = r.u16()?;
    let isr = r.u8()?;
    let live = r.bool()?;
    let mut queues = Vec::new();
    for cfg in c.queues.iter_mut() {
        *cfg = QueueConfig {
            size: r.u16()?,
            vector: r.u16()?,
            enabled: r.bool()?,
            desc: r.u64()?,
            driver: r.u64()?,
            device: r.u64()?,
        };
        let queue = if r.bool()? {
            let st = QueueState {
                max_size: c.max_size,
                next_avail: r.u16()?,
                next_used: r.u16()?,
                event_idx_enabled: r.bool()?,
                size: cfg.size,
                ready: true,
                desc_table: cfg.desc,
                avail_ring: cfg.driver,
                used_ring: cfg.device,
            };
            Some(Queue::try_from(st).map_err(|e| Error::Migration(format!("queue: {e}")))?)
        } else {
            None
        };
        queues.push(queue);
    }
    let n = r.u32()? as usize;
    if r.0.len() != n {
        return Err(Error::Migration("device state length".into()));
    }
    inner.device.restore(r.0)?;
    // Everything checked: apply.
    for (q, queue) in queues.into_iter().enumerate() {
        *inner.lock_queue(q as u16) = queue;
    }
    let features = c.driver_features;
    *inner.lock_common() = c;
    inner.isr.store(isr, Ordering::Release);
    if live {
        inner.device.activate(features);
    }
    inner.live.store(live, Ordering::Release);
    Ok(())
}
