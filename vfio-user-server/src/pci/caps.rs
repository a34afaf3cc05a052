// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The capability list (PM, MSI, MSI-X, PCI Express, vendor-specific) and the extended
//! capability list (Device Serial Number), with their read-only, writable and
//! write-1-to-clear bits.

use crate::description::DeviceDescription;
use crate::error::{Error, Result};
use crate::pci::Image;

/// Capability ID: power management.
pub const CAP_ID_PM: u8 = 0x01;
/// Capability ID: MSI.
pub const CAP_ID_MSI: u8 = 0x05;
/// Capability ID: vendor-specific.
pub const CAP_ID_VENDOR: u8 = 0x09;
/// Capability ID: PCI Express.
pub const CAP_ID_PCIE: u8 = 0x10;
/// Capability ID: MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;
/// Extended capability ID: Device Serial Number.
pub const EXT_CAP_ID_DSN: u16 = 0x0003;

/// Offset of the first capability.
pub const CAP_START: usize = 0x40;
/// Offset of the first extended capability.
pub const EXT_CAP_START: usize = 0x100;

/// MSI control: enable.
pub const MSI_CTRL_ENABLE: u16 = 1 << 0;
/// MSI-X control: function mask.
pub const MSIX_CTRL_MASK: u16 = 1 << 14;
/// MSI-X control: enable.
pub const MSIX_CTRL_ENABLE: u16 = 1 << 15;
/// PCIe Device Capabilities: Function Level Reset capable.
pub const PCIE_DEVCAP_FLR: u32 = 1 << 28;
/// PCIe Device Control: initiate Function Level Reset.
pub const PCIE_DEVCTL_FLR: u16 = 1 << 15;
/// Offset of the MSI mask bits register (64-bit capability with per-vector masking).
pub const MSI_MASK_OFFSET: usize = 16;
/// Offset of the MSI pending bits register.
pub const MSI_PENDING_OFFSET: usize = 20;

/// Where each emulated capability ended up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapLayout {
    /// Power management.
    pub pm: Option<usize>,
    /// MSI.
    pub msi: Option<usize>,
    /// MSI-X.
    pub msix: Option<usize>,
    /// PCI Express.
    pub pcie: Option<usize>,
    /// Device Serial Number (extended).
    pub dsn: Option<usize>,
}

/// Lays the capabilities of `desc` out from 0x40 and the extended ones from 0x100.
pub(crate) fn build(desc: &DeviceDescription, img: &mut Image) -> Result<CapLayout> {
    let mut layout = CapLayout::default();
    let mut caps: Vec<(u8, usize)> = Vec::new();
    let mut at = CAP_START;
    let mut place = |len: usize, id: u8, caps: &mut Vec<(u8, usize)>| -> Result<usize> {
        let off = at;
        if off + len > 0x100 {
            return Err(Error::Description("capabilities do not fit in the 192 bytes from 0x40".into()));
        }
        at = (off + len + 3) & !3;
        caps.push((id, off));
        Ok(off)
    };
    if desc.pm {
        let o = place(8, CAP_ID_PM, &mut caps)?;
        layout.pm = Some(o);
        img.set_u16(o + 2, 0x0003, 0); // PMC: version 3
        img.set_u16(o + 4, 1 << 3, 0x0103); // PMCSR: NoSoftReset, power state + PME_En writable
        img.set_w1c_u16(o + 4, 0x8000); // PME status
    }
    if let Some(m) = desc.msi {
        let len = if m.per_vector_mask { 24 } else { 14 };
        let o = place(len, CAP_ID_MSI, &mut caps)?;
        layout.msi = Some(o);
        let mmc = m.vectors.trailing_zeros() as u16;
        let ctrl = (mmc << 1) | (1 << 7) | (u16::from(m.per_vector_mask) << 8);
        img.set_u16(o + 2, ctrl, 0x0071);
        img.set_u32(o + 4, 0, 0xffff_fffc);
        img.set_u32(o + 8, 0, 0xffff_ffff);
        img.set_u16(o + 12, 0, 0xffff);
        if m.per_vector_mask {
            let bits = if m.vectors >= 32 { u32::MAX } else { (1u32 << m.vectors) - 1 };
            img.set_u32(o + MSI_MASK_OFFSET, 0, bits);
        }
    }
    if let Some(x) = desc.msix {
        let o = place(12, CAP_ID_MSIX, &mut caps)?;
        layout.msix = Some(o);
        img.set_u16(o + 2, x.vectors - 1, MSIX_CTRL_MASK | MSIX_CTRL_ENABLE);
        img.set_u32(o + 4, x.table_offset | u32::from(x.table_bar), 0);
        img.set_u32(o + 8, x.pba_offset | u32::from(x.pba_bar), 0);
    }
    if let Some(p) = desc.pcie {
        let o = place(60, CAP_ID_PCIE, &mut caps)?;
        layout.pcie = Some(o);
        img.set_u16(o + 2, 0x0002, 0); // version 2, PCI Express endpoint
        let devcap = (1 << 15) | if p.flr { PCIE_DEVCAP_FLR } else { 0 };
        img.set_u32(o + 4, devcap, 0);
        img.set_u16(o + 8, 0x2810, 0x7fff); // Device Control; bit 15 (FLR) reads as 0
        img.set_w1c_u16(o + 10, 0x000f); // Device Status error bits
        img.set_u32(o + 12, 0x0000_0011, 0); // Link Capabilities: 2.5 GT/s, x1
        img.set_u16(o + 16, 0, 0x01fb); // Link Control
        img.set_u16(o + 18, 0x0011, 0); // Link Status: 2.5 GT/s, x1
        img.set_u16(o + 40, 0, 0x041f); // Device Control 2
        img.set_u32(o + 44, 0x0000_0002, 0); // Link Capabilities 2: 2.5 GT/s
        img.set_u16(o + 48, 0x0001, 0); // Link Control 2: target 2.5 GT/s
    }
    for v in &desc.vendor_caps {
        let o = place(3 + v.len(), CAP_ID_VENDOR, &mut caps)?;
        img.set_u8(o + 2, (3 + v.len()) as u8, 0);
        img.data[o + 3..o + 3 + v.len()].copy_from_slice(v);
    }
    // Chain them: ID and next pointer of each, the list head at 0x34, status bit 4.
    for (i, &(id, off)) in caps.iter().enumerate() {
        let next = caps.get(i + 1).map_or(0, |c| c.1 as u8);
        img.set_u8(off, id, 0);
        img.set_u8(off + 1, next, 0);
    }
    if let Some(&(_, first)) = caps.first() {
        img.set_u8(0x34, first as u8, 0);
        img.data[0x06] |= 1 << 4;
    }
    if let Some(dsn) = desc.dsn {
        let o = EXT_CAP_START;
        layout.dsn = Some(o);
        img.set_u32(o, u32::from(EXT_CAP_ID_DSN) | (1 << 16), 0);
        img.set_u32(o + 4, dsn as u32, 0);
        img.set_u32(o + 8, (dsn >> 32) as u32, 0);
    }
    Ok(layout)
}
