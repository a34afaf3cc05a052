// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The common configuration structure (`virtio_pci_common_cfg`): feature negotiation,
//! device status, MSI-X vectors and queue set-up, as registers of any access width.
//!
//! Reads and writes go through a 64-byte little-endian image of the registers for the
//! current selectors; a write is merged into the image and every field it touched is
//! applied, so a driver may use any width (Linux writes 64-bit addresses as two 32-bit
//! halves).

use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_F_VERSION_1};

use super::layout::COMMON_LEN;

/// "No vector" for `config_msix_vector` and `queue_msix_vector`.
pub const NO_VECTOR: u16 = 0xffff;

/// What the driver set up for one queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// `queue_size`.
    pub size: u16,
    /// `queue_msix_vector`.
    pub vector: u16,
    /// `queue_enable`.
    pub enabled: bool,
    /// `queue_desc`.
    pub desc: u64,
    /// `queue_driver` (the available ring).
    pub driver: u64,
    /// `queue_device` (the used ring).
    pub device: u64,
}

/// What a register write asks of the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond the register change.
    None,
    /// Status 0: reset the device.
    Reset,
    /// DRIVER_OK was set: start the queues.
    DriverOk,
}

/// The registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    /// Features the device offers.
    pub device_features: u64,
    /// `device_feature_select`.
    pub dfselect: u32,
    /// `driver_feature_select`.
    pub gfselect: u32,
    /// Features the driver accepted.
    pub driver_features: u64,
    /// `config_msix_vector`.
    pub config_vector: u16,
    /// `device_status`.
    pub status: u8,
    /// `config_generation`.
    pub generation: u8,
    /// `queue_select`.
    pub queue_select: u16,
    /// Every queue's set-up.
    pub queues: Vec<QueueConfig>,
    /// Maximum queue size.
    pub max_size: u16,
    /// MSI-X vectors the function has.
    pub vectors: u16,
}

fn overlaps(off: u64, len: u64, field: u64, flen: u64) -> bool {
    off < field + flen && field < off + len
}

impl Common {
    /// Registers at reset for a device offering `device_features` with `queues` queues.
    pub fn new(device_features: u64, queues: u16, max_size: u16, vectors: u16) -> Self {
        Common {
            device_features,
            dfselect: 0,
            gfselect: 0,
            driver_features: 0,
            config_vector: NO_VECTOR,
            status: 0,
            generation: 0,
            queue_select: 0,
            queues: vec![QueueConfig { size: max_size, vector: NO_VECTOR, ..Default::default() }; queues.into()],
            max_size,
            vectors,
        }
    }

    /// Back to the reset state (the generation counter keeps counting).
    pub fn reset(&mut self) {
        let generation = self.generation;
        *self = Common::new(self.device_features, self.queues.len() as u16, self.max_size, self.vectors);
        self.generation = generation;
    }

    /// Whether the driver has set DRIVER_OK.
    pub fn driver_ok(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_DRIVER_OK as u8 != 0
    }

    fn image(&self) -> [u8; COMMON_LEN as usize] {
        let mut m = [0u8; COMMON_LEN as usize];
        let mut put = |at: usize, bytes: &[u8]| m[at..at + bytes.len()].copy_from_slice(bytes);
        let word = |features: u64, select: u32| match select {
            0 => features as u32,
            1 => (features >> 32) as u32,
            _ => 0,
        };
        put(0x00, &self.dfselect.to_le_bytes());
        put(0x04, &word(self.device_features, self.dfselect).to_le_bytes());
        put(0x08, &self.gfselect.to_le_bytes());
        put(0x0c, &word(self.driver_features, self.gfselect).to_le_bytes());
        put(0x10, &self.config_vector.to_le_bytes());
        put(0x12, &(self.queues.len() as u16).to_le_bytes());
        put(0x14, &[self.status, self.generation]);
        put(0x16, &self.queue_select.to_le_bytes());
        if let Some(q) = self.queues.get(usize::from(self.queue_select)) {
            put(0x18, &q.size.to_le_bytes());
            put(0x1a, &q.vector.to_le_bytes());
            put(0x1c, &u16::from(q.enabled).to_le_bytes());
            put(0x1e, &self.queue_select.to_le_bytes());
            put(0x20, &q.desc.to_le_bytes());
            put(0x28, &q.driver.to_le_bytes());
            put(0x30, &q.device.to_le_bytes());
        }
        m
    }

    /// Reads `data.len()` bytes at `offset` (bytes beyond the structure read as zero).
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let m = self.image();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|a| m.get(a))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Writes `data` at `offset` and applies every field it touched.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Effect {
        let mut m = self.image();
        for (i, &b) in data.iter().enumerate() {
            if let Some(slot) = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)).and_then(|a| m.get_mut(a)) {
                *slot = b;
            }
        }
        let len = data.len() as u64;
        let touched = |field: u64, flen: u64| overlaps(offset, len, field, flen);
        let u16_at = |at: usize| u16::from_le_bytes([m[at], m[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
        let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
        let valid_vector = |v: u16| if v < self.vectors { v } else { NO_VECTOR };
        let mut effect = Effect::None;
        if touched(0x00, 4) {
            self.dfselect = u32_at(0x00);
        }
        if touched(0x08, 4) {
            self.gfselect = u32_at(0x08);
        }
        if touched(0x0c, 4) && self.status & VIRTIO_CONFIG_S_FEATURES_OK as u8 == 0 {
            let v = u64::from(u32_at(0x0c));
            match self.gfselect {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                _ => {}
            }
        }
        if touched(0x10, 2) {
            self.config_vector = valid_vector(u16_at(0x10));
        }
        if touched(0x14, 1) {
            effect = self.write_status(m[0x14]);
        }
        if touched(0x16, 2) {
            self.queue_select = u16_at(0x16);
        }
        let live = self.driver_ok();
        let vectors = self.vectors;
        if let Some(q) = self.queues.get_mut(usize::from(self.queue_select)) {
            if touched(0x1a, 2) {
                let v = u16_at(0x1a);
                q.vector = if v < vectors { v } else { NO_VECTOR };
            }
            // The rest of a queue's set-up is frozen once it is enabled or the device runs.
            if !q.enabled && !live {
                if touched(0x18, 2) {
                    q.size = u16_at(0x18);
                }
                if touched(0x20, 8) {
                    q.desc = u64_at(0x20);
                }
                if touched(0x28, 8) {
                    q.driver = u64_at(0x28);
                }
                if touched(0x30, 8) {
                    q.device = u64_at(0x30);
                }
                if touched(0x1c, 2) && u16_at(0x1c) == 1 {
                    q.enabled = true;
                }
            }
        }
        effect
    }

    fn write_status(&mut self, new: u8) -> Effect {
        if new == 0 {
            return Effect::Reset;
        }
        let old = self.status;
        let mut new = new;
        let features_ok = VIRTIO_CONFIG_S_FEATURES_OK as u8;
        if new & features_ok != 0 && old & features_ok == 0 {
            let acceptable = self.driver_features & !self.device_features == 0
                && self.driver_features & (1 << VIRTIO_F_VERSION_1) != 0;
            if !acceptable {
                new &= !features_ok;
            }
        }
        let driver_ok = VIRTIO_CONFIG_S_DRIVER_OK as u8;
        // DRIVER_OK counts only after a successful feature negotiation.
        if new & driver_ok != 0 && new & features_ok == 0 {
            new &= !driver_ok;
        }
        self.status = new;
        if new & driver_ok != 0 && old & driver_ok == 0 {
            Effect::DriverOk
        } else {
            Effect::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURES: u64 = (1 << 32) | (1 << 9) | (1 << 2);

    fn rd(c: &Common, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        c.read(off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    #[test]
    fn features_are_negotiated_by_halves() {
        let mut c = Common::new(FEATURES, 2, 256, 3);
        assert_eq!(rd(&c, 0x04, 4), (1 << 9) | (1 << 2));
        c.write(0x00, &1u32.to_le_bytes());
        assert_eq!(rd(&c, 0x04, 4), 1);
        c.write(0x00, &7u32.to_le_bytes());
        assert_eq!(rd(&c, 0x04, 4), 0, "selectors beyond 1 read zero");
        c.write(0x0c, &(1u32 << 9).to_le_bytes());
        c.write(0x08, &1u32.to_le_bytes());
        c.write(0x0c, &1u32.to_le_bytes());
        assert_eq!(c.driver_features, (1 << 32) | (1 << 9));
        assert_eq!(c.write(0x14, &[1 | 2 | 8]), Effect::None);
        assert_eq!(rd(&c, 0x14, 1), 1 | 2 | 8, "FEATURES_OK accepted");
        c.write(0x0c, &0u32.to_le_bytes());
        assert_eq!(c.driver_features >> 32, 1, "features are frozen after FEATURES_OK");
        assert_eq!(c.write(0x14, &[1 | 2 | 8 | 4]), Effect::DriverOk);
        assert!(c.driver_ok());
        assert_eq!(c.write(0x14, &[0]), Effect::Reset);
    }

    #[test]
    fn bad_feature_sets_are_refused() {
        let mut c = Common::new(FEATURES, 1, 256, 2);
        // Without VERSION_1.
        c.write(0x0c, &(1u32 << 9).to_le_bytes());
        c.write(0x14, &[1 | 2 | 8]);
        assert_eq!(c.status & 8, 0, "FEATURES_OK stays clear without VERSION_1");
        // With a feature the device does not offer.
        c.write(0x08, &1u32.to_le_bytes());
        c.write(0x0c, &3u32.to_le_bytes());
        c.write(0x14, &[1 | 2 | 8]);
        assert_eq!(c.status & 8, 0, "FEATURES_OK stays clear with an unoffered feature");
        assert_eq!(c.write(0x14, &[1 | 2 | 4]), Effect::None, "DRIVER_OK needs FEATURES_OK");
        assert!(!c.driver_ok());
    }

    #[test]
    fn queue_setup_any_width_and_frozen_when_enabled() {
        let mut c = Common::new(FEATURES, 2, 256, 3);
        assert_eq!(rd(&c, 0x12, 2), 2);
        c.write(0x16, &1u16.to_le_bytes());
        assert_eq!(rd(&c, 0x1e, 2), 1, "notify offset is the queue index");
        c.write(0x18, &64u16.to_le_bytes());
        c.write(0x20, &0x1234_5678u32.to_le_bytes());
        c.write(0x24, &0x9u32.to_le_bytes());
        c.write(0x28, &0xabcd_0000_1000u64.to_le_bytes());
        c.write(0x30, &[0x00, 0x20]);
        c.write(0x1a, &2u16.to_le_bytes());
        c.write(0x10, &9u16.to_le_bytes());
        assert_eq!(c.config_vector, NO_VECTOR, "a vector beyond the table reads NO_VECTOR");
        c.write(0x1c, &1u16.to_le_bytes());
        let q = c.queues[1];
        assert_eq!(
            q,
            QueueConfig {
                size: 64,
                vector: 2,
                enabled: true,
                desc: 0x9_1234_5678,
                driver: 0xabcd_0000_1000,
                device: 0x2000
            }
        );
        c.write(0x20, &0u64.to_le_bytes());
        assert_eq!(c.queues[1].desc, 0x9_1234_5678, "an enabled queue's addresses are frozen");
        c.write(0x16, &9u16.to_le_bytes());
        assert_eq!(rd(&c, 0x18, 2), 0, "a queue beyond num_queues reads size 0");
        c.write(0x18, &8u16.to_le_bytes());
        assert_eq!(rd(&c, 0x3c, 8), 0, "beyond the structure reads zero");
        c.reset();
        assert_eq!(c.queues[1], QueueConfig { size: 256, vector: NO_VECTOR, ..Default::default() });
    }
}
