// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Where the virtio structures live: BAR0's layout and the virtio vendor-specific
//! capabilities that point at it (virtio 1.x, 4.1.4 "Virtio Structure PCI Capabilities").
//!
//! ```text
//! BAR0 (32 KiB, memory)
//!   0x0000  common configuration (0x40 bytes)
//!   0x1000  ISR status (1 byte, read clears)
//!   0x2000  device-specific configuration
//!   0x3000  notifications: queue n at 0x3000 + 4 * n
//!   0x4000  MSI-X table (emulated by the framework)
//!   0x5000  MSI-X PBA (emulated by the framework)
//! ```

use vfio_user_server::{Bar, DescriptionBuilder, MsixConfig};

/// Capability type: common configuration.
pub const CAP_COMMON_CFG: u8 = 1;
/// Capability type: notifications.
pub const CAP_NOTIFY_CFG: u8 = 2;
/// Capability type: ISR status.
pub const CAP_ISR_CFG: u8 = 3;
/// Capability type: device-specific configuration.
pub const CAP_DEVICE_CFG: u8 = 4;
/// Capability type: PCI configuration access window.
pub const CAP_PCI_CFG: u8 = 5;

/// The BAR holding every virtio structure and the MSI-X table.
pub const BAR: u32 = 0;
/// Size of that BAR.
pub const BAR_SIZE: u64 = 0x8000;
/// Common configuration.
pub const COMMON: u64 = 0x0000;
/// Bytes of the common configuration structure (virtio 1.2, with `queue_reset`).
pub const COMMON_LEN: u64 = 0x40;
/// ISR status.
pub const ISR: u64 = 0x1000;
/// Device-specific configuration.
pub const DEVICE: u64 = 0x2000;
/// Room for the device-specific configuration.
pub const DEVICE_MAX: u64 = 0x1000;
/// Notification area.
pub const NOTIFY: u64 = 0x3000;
/// `notify_off_multiplier`: queue n is notified at `NOTIFY + n * NOTIFY_MULTIPLIER`.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// MSI-X table.
pub const MSIX_TABLE: u32 = 0x4000;
/// MSI-X pending-bit array.
pub const MSIX_PBA: u32 = 0x5000;

/// The most queues a device may have (one MSI-X vector each plus one for configuration
/// changes fit the table's 4 KiB).
pub const MAX_QUEUES: u16 = 64;

/// The framework lays capabilities out from 0x40 in order, each at the next 4-byte
/// boundary; MSI-X (12 bytes) comes first, then the vendor-specific ones in the order
/// given. Offset of the PCI_CFG capability, the last one.
pub const PCI_CFG_CAP: u16 = {
    let mut at = 0x40 + 12;
    at = (at + 16 + 3) & !3; // common
    at = (at + 20 + 3) & !3; // notify
    at = (at + 16 + 3) & !3; // ISR
    at = (at + 16 + 3) & !3; // device
    at
};
/// The PCI_CFG capability's fields handed to the device: `bar` (+4) up to the end of
/// `pci_cfg_data` (+20).
pub const PCI_CFG_FIELDS: std::ops::Range<u16> = PCI_CFG_CAP + 4..PCI_CFG_CAP + 20;

/// The body of a `virtio_pci_cap` after ID, next and length.
fn cap_body(cfg_type: u8, offset: u64, length: u64, extra: Option<u32>) -> Vec<u8> {
    let mut v = vec![cfg_type, BAR as u8, 0, 0, 0];
    v.extend_from_slice(&(offset as u32).to_le_bytes());
    v.extend_from_slice(&(length as u32).to_le_bytes());
    if let Some(x) = extra {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// Adds BAR0, MSI-X (`queues + 1` vectors) and the five virtio capabilities.
pub fn describe(b: DescriptionBuilder, queues: u16, config_size: usize) -> DescriptionBuilder {
    let msix = MsixConfig {
        vectors: queues + 1,
        table_bar: BAR as u8,
        table_offset: MSIX_TABLE,
        pba_bar: BAR as u8,
        pba_offset: MSIX_PBA,
    };
    let notify_len = u64::from(queues) * u64::from(NOTIFY_MULTIPLIER);
    b.bar(BAR as usize, Bar::memory32(BAR_SIZE))
        .msix(msix)
        .vendor_capability(&cap_body(CAP_COMMON_CFG, COMMON, COMMON_LEN, None))
        .vendor_capability(&cap_body(CAP_NOTIFY_CFG, NOTIFY, notify_len, Some(NOTIFY_MULTIPLIER)))
        .vendor_capability(&cap_body(CAP_ISR_CFG, ISR, 1, None))
        .vendor_capability(&cap_body(CAP_DEVICE_CFG, DEVICE, config_size as u64, None))
        .vendor_capability(&[CAP_PCI_CFG, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .config_callback(PCI_CFG_FIELDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bodies() {
        let b = cap_body(CAP_NOTIFY_CFG, NOTIFY, 8, Some(4));
        assert_eq!(b.len(), 17, "a notify capability is 20 bytes with ID, next and length");
        assert_eq!(&b[..5], &[CAP_NOTIFY_CFG, 0, 0, 0, 0]);
        assert_eq!(&b[5..9], &0x3000u32.to_le_bytes());
        assert_eq!(&b[9..13], &8u32.to_le_bytes());
        assert_eq!(&b[13..], &4u32.to_le_bytes());
        assert_eq!(cap_body(CAP_ISR_CFG, ISR, 1, None).len(), 13);
        assert_eq!(PCI_CFG_CAP, 0x90);
    }
}
