// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`VirtioBlk`]: a virtio-blk device (virtio 1.x, 5.2) backed by a raw image file.
//!
//! Capacity is the file's size in 512-byte sectors (a partial last sector is not
//! exposed). Requests: IN, OUT, FLUSH (`fdatasync`), GET_ID (the serial number),
//! DISCARD (punches a hole, where the file system can) and WRITE_ZEROES (zeroes the
//! range); `--read-only` offers `VIRTIO_BLK_F_RO` and fails every modifying request with
//! IOERR. Multiple queues (`VIRTIO_BLK_F_MQ`), each served by its own worker thread with
//! positioned reads and writes on the shared file. Interrupts are moderated by default
//! ([`Moderation`](crate::Moderation); [`BlkConfig::interrupt_moderation`]): a guest
//! bound by its own CPU, as under TCG, does more I/O with fewer interrupts.
//!
//! Anything the driver sends is checked: a chain that loops, is longer than the queue,
//! points outside every DMA mapping or lacks a header gets IOERR (when its status byte
//! is reachable; otherwise it is returned with length 0); sectors past the end get
//! IOERR; unknown request types and flags get UNSUPP.

pub mod config;
mod io;
mod request;

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Mutex;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::DescriptorChain;
use vm_memory::GuestMemory;

use crate::device::VirtioDevice;
use crate::error::{Error, Result};
use crate::transport::layout::MAX_QUEUES;

pub use request::{STATUS_IOERR, STATUS_OK, STATUS_UNSUPP};

/// Largest piece WRITE_ZEROES writes at once where the file system cannot zero a range
/// itself (so a range of any length needs no more memory).
pub const CHUNK: usize = 1 << 20;

/// How to serve an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlkConfig {
    /// Number of request queues (1 to [`MAX_QUEUES`]).
    pub queues: u16,
    /// Maximum size of each queue (a power of two).
    pub queue_size: u16,
    /// Refuse every write.
    pub read_only: bool,
    /// Serial number returned by GET_ID (at most 20 bytes are used).
    pub serial: String,
    /// Interrupt moderation ([`VirtioDevice::interrupt_moderation`]); on by default.
    pub interrupt_moderation: bool,
}

impl Default for BlkConfig {
    fn default() -> Self {
        BlkConfig {
            queues: 1,
            queue_size: 256,
            read_only: false,
            serial: "vfio-user-blk".into(),
            interrupt_moderation: true,
        }
    }
}

/// A virtio-blk device over a raw image (see the module documentation).
#[derive(Debug)]
pub struct VirtioBlk {
    file: File,
    capacity: u64,
    cfg: BlkConfig,
    config: [u8; config::CONFIG_SIZE],
    /// One zeroing buffer per queue (each used only by its queue's worker).
    buffers: Vec<Mutex<Vec<u8>>>,
}

impl VirtioBlk {
    /// Opens `path` (read-write unless `cfg.read_only`) and serves it.
    pub fn open(path: &Path, cfg: BlkConfig) -> Result<Self> {
        let file = OpenOptions::new().read(true).write(!cfg.read_only).open(path).map_err(Error::Backing)?;
        Self::new(file, cfg)
    }

    /// Serves an open image file.
    pub fn new(file: File, cfg: BlkConfig) -> Result<Self> {
        if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
            return Err(Error::InvalidConfig(format!("{} queues (1 to {MAX_QUEUES})", cfg.queues)));
        }
        if !cfg.queue_size.is_power_of_two() || cfg.queue_size < 4 || cfg.queue_size > 32768 {
            return Err(Error::InvalidConfig(format!("queue size {}", cfg.queue_size)));
        }
        let bytes = file.metadata().map_err(Error::Backing)?.len();
        let capacity = bytes / config::SECTOR_SIZE;
        let config = config::encode(capacity, cfg.queue_size, cfg.queues);
        let buffers = (0..cfg.queues).map(|_| Mutex::new(Vec::new())).collect();
        Ok(VirtioBlk { file, capacity, cfg, config, buffers })
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The GET_ID answer: the serial number, NUL-padded to 20 bytes.
    pub fn id(&self) -> [u8; VIRTIO_BLK_ID_BYTES as usize] {
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let s = self.cfg.serial.as_bytes();
        let n = s.len().min(id.len());
        id[..n].copy_from_slice(&s[..n]);
        id
    }
}

impl VirtioDevice for VirtioBlk {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_BLOCK as u16
    }

    fn class_code(&self) -> u32 {
        0x01_8000 // mass storage, other
    }

    fn num_queues(&self) -> u16 {
        self.cfg.queues
    }

    fn queue_max_size(&self) -> u16 {
        self.cfg.queue_size
    }

    fn interrupt_moderation(&self) -> bool {
        self.cfg.interrupt_moderation
    }

    fn features(&self) -> u64 {
        let mut f = (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_BLK_SIZE)
            | (1 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_BLK_F_MQ);
        if self.cfg.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        } else {
            f |= (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES);
        }
        f
    }

    fn config_size(&self) -> usize {
        config::CONFIG_SIZE
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.config.get(offset + i).copied().unwrap_or(0);
        }
    }

    fn handle<M: GuestMemory>(&self, queue: u16, mem: &M, chain: DescriptorChain<&M>) -> u32 {
        let mut buf = self.buffers[usize::from(queue) % self.buffers.len()].lock().unwrap_or_else(|e| e.into_inner());
        request::serve(self, mem, chain, &mut buf)
    }

    fn save(&self) -> Vec<u8> {
        let mut v = self.capacity.to_le_bytes().to_vec();
        v.push(self.cfg.read_only.into());
        v
    }

    fn restore(&self, state: &[u8]) -> Result<()> {
        let mut want = self.capacity.to_le_bytes().to_vec();
        want.push(self.cfg.read_only.into());
        if state != want.as_slice() {
            return Err(Error::Migration("the destination's image has another size or mode".into()));
        }
        Ok(())
    }
}
