// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The emulated configuration space (region 7): a type-0 header with read-only, writable
//! and write-1-to-clear bits, BAR sizing, the capability lists of [`super::caps`], and the
//! side effects of writes (MSI / MSI-X / INTx mask state, Function Level Reset).

use std::ops::Range;

use crate::description::{BarKind, DeviceDescription};
use crate::error::Result;
use crate::irq::IrqState;
use crate::pci::caps::{self, CapLayout, MSIX_CTRL_ENABLE, MSIX_CTRL_MASK, MSI_CTRL_ENABLE, PCIE_DEVCTL_FLR};
use crate::pci::{le16, le32, Image};

/// Command register offset.
pub const PCI_COMMAND: usize = 0x04;
/// Status register offset.
pub const PCI_STATUS: usize = 0x06;
/// First BAR register.
pub const PCI_BAR0: usize = 0x10;
/// Expansion ROM BAR register.
pub const PCI_ROM: usize = 0x30;
/// Interrupt line register.
pub const PCI_INTERRUPT_LINE: usize = 0x3c;
/// Command: memory space, I/O space, bus master, parity error response, SERR#, Interrupt
/// Disable are writable.
pub const COMMAND_WMASK: u16 = 0x0547;
/// Command: Interrupt Disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status: the write-1-to-clear error bits.
pub const STATUS_W1C: u16 = 0xf900;

/// What a configuration write asks the framework to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteEffects {
    /// Function Level Reset was initiated.
    pub flr: bool,
    /// A register that gates interrupts changed (command, MSI, MSI-X).
    pub irq: bool,
}

/// The emulated configuration space.
#[derive(Debug, Clone)]
pub struct ConfigSpace {
    img: Image,
    initial: Vec<u8>,
    layout: CapLayout,
    flr: bool,
    msi_pvm: bool,
}

impl ConfigSpace {
    /// Builds the configuration space of `desc`.
    pub fn new(desc: &DeviceDescription) -> Result<Self> {
        let mut img = Image::new(desc.config_size.into());
        img.set_u16(0x00, desc.vendor_id, 0);
        img.set_u16(0x02, desc.device_id, 0);
        img.set_u16(PCI_COMMAND, 0, COMMAND_WMASK);
        img.set_w1c_u16(PCI_STATUS, STATUS_W1C);
        img.set_u8(0x08, desc.revision, 0);
        img.set(0x09, &desc.class_code.to_le_bytes()[..3], &[0; 3]);
        img.set_u8(0x0c, 0, 0xff); // cache line size
        img.set_u8(0x0d, 0, 0xff); // latency timer
        for (i, bar) in desc.bars.iter().enumerate() {
            let Some(bar) = bar else { continue };
            let off = PCI_BAR0 + 4 * i;
            // The BAR decodes a power of two (the region itself may be smaller); a
            // description that built has one.
            let size_mask = !(bar.decoded_size().unwrap_or(1 << 63) - 1);
            match bar.kind {
                BarKind::Io => img.set_u32(off, 1, size_mask as u32 & !0x3),
                BarKind::Memory32 => {
                    let pf = u32::from(bar.prefetchable) << 3;
                    img.set_u32(off, pf, size_mask as u32 & !0xf);
                }
                BarKind::Memory64 => {
                    let pf = u32::from(bar.prefetchable) << 3;
                    img.set_u32(off, pf | 0x4, size_mask as u32 & !0xf);
                    img.set_u32(off + 4, 0, (size_mask >> 32) as u32);
                }
            }
        }
        img.set_u16(0x2c, desc.subsystem_vendor_id, 0);
        img.set_u16(0x2e, desc.subsystem_id, 0);
        if desc.rom_size != 0 {
            img.set_u32(PCI_ROM, 0, (!(desc.rom_size - 1) as u32 & !0x7ff) | 1);
        }
        img.set_u8(PCI_INTERRUPT_LINE, 0, 0xff);
        img.set_u8(0x3d, u8::from(desc.intx), 0);
        let layout = caps::build(desc, &mut img)?;
        let initial = img.data.clone();
        Ok(ConfigSpace {
            img,
            initial,
            layout,
            flr: desc.pcie.is_some_and(|p| p.flr),
            msi_pvm: desc.msi.is_some_and(|m| m.per_vector_mask),
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.img.data.len()
    }

    /// Where the capabilities are.
    pub fn layout(&self) -> CapLayout {
        self.layout
    }

    /// Reads `buf.len()` bytes at `off` (the caller has checked the range). The MSI Pending
    /// Bits register reads `msi_pending()`, which is only called when the access covers it.
    pub(crate) fn read(&self, off: usize, buf: &mut [u8], msi_pending: impl FnOnce() -> u32) {
        buf.copy_from_slice(&self.img.data[off..off + buf.len()]);
        let Some(m) = self.layout.msi.filter(|_| self.msi_pvm) else { return };
        let reg = m + caps::MSI_PENDING_OFFSET;
        if off >= reg + 4 || reg >= off + buf.len() {
            return;
        }
        for (i, b) in msi_pending().to_le_bytes().iter().enumerate() {
            if let Some(slot) = (reg + i).checked_sub(off).and_then(|j| buf.get_mut(j)) {
                *slot = *b;
            }
        }
    }

    /// Writes `data` at `off` through the write masks (the caller has checked the range).
    pub(crate) fn write(&mut self, off: usize, data: &[u8]) -> WriteEffects {
        let mut fx = WriteEffects::default();
        for (i, &v) in data.iter().enumerate() {
            let o = off + i;
            let old = self.img.data[o];
            let wm = self.img.wmask[o];
            self.img.data[o] = ((old & !wm) | (v & wm)) & !(v & self.img.w1c[o]);
        }
        let hit = |r: Range<usize>| off < r.end && r.start < off + data.len();
        if let Some(p) = self.layout.pcie {
            let devctl_hi = p + 9;
            if self.flr && hit(devctl_hi..devctl_hi + 1) && data[devctl_hi - off] & (PCIE_DEVCTL_FLR >> 8) as u8 != 0 {
                fx.flr = true;
            }
        }
        fx.irq = hit(PCI_COMMAND..PCI_COMMAND + 2)
            || self.layout.msi.is_some_and(|m| hit(m..m + 24))
            || self.layout.msix.is_some_and(|m| hit(m..m + 4));
        fx
    }

    /// Copies the interrupt-gating registers into `irq`.
    pub(crate) fn sync_irq(&self, irq: &mut IrqState) {
        irq.intx_disabled = le16(&self.img.data, PCI_COMMAND) & COMMAND_INTX_DISABLE != 0;
        if let Some(m) = self.layout.msi {
            irq.msi_enabled = le16(&self.img.data, m + 2) & MSI_CTRL_ENABLE != 0;
            irq.msi_mask = if irq.msi_per_vector { le32(&self.img.data, m + caps::MSI_MASK_OFFSET) } else { 0 };
        }
        if let Some(m) = self.layout.msix {
            let ctrl = le16(&self.img.data, m + 2);
            irq.msix_enabled = ctrl & MSIX_CTRL_ENABLE != 0;
            irq.msix_function_mask = ctrl & MSIX_CTRL_MASK != 0;
        }
    }

    /// Reset: everything back to its initial value except the BAR, ROM BAR and interrupt
    /// line registers, which keep what the client programmed (as Linux's vfio-pci restores
    /// them around a reset).
    pub fn reset(&mut self) {
        let keep = [PCI_BAR0..PCI_BAR0 + 24, PCI_ROM..PCI_ROM + 4, PCI_INTERRUPT_LINE..PCI_INTERRUPT_LINE + 1];
        for (o, b) in self.img.data.iter_mut().enumerate() {
            if !keep.iter().any(|r| r.contains(&o)) {
                *b = self.initial[o];
            }
        }
    }

    /// Interrupt state the configuration space implies after a reset.
    pub(crate) fn reset_irq(&self, irq: &mut IrqState) {
        irq.reset();
        self.sync_irq(irq);
    }
}

/// Splits `off..off + len` into runs owned by the device (`true`, a configuration callback
/// range) or emulated (`false`), calling `f(run_offset, run_len, device)` for each in order.
pub(crate) fn for_each_run(
    callbacks: &[Range<u16>],
    off: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, bool) -> Result<()>,
) -> Result<()> {
    let end = off + len;
    let mut at = off;
    while at < end {
        let owner = callbacks.iter().find(|r| usize::from(r.start) <= at && at < usize::from(r.end));
        let stop = match owner {
            Some(r) => usize::from(r.end).min(end),
            None => callbacks.iter().map(|r| usize::from(r.start)).filter(|&s| s > at).min().unwrap_or(end).min(end),
        };
        f(at, stop - at, owner.is_some())?;
        at = stop;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{Bar, MsixConfig, PcieConfig};

    fn rd32(c: &ConfigSpace, irq: &IrqState, off: usize) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b, || irq.msi_pending());
        u32::from_le_bytes(b)
    }

    fn desc() -> DeviceDescription {
        DeviceDescription::builder(0x1234, 0x5678)
            .subsystem(0xaaaa, 0xbbbb)
            .class_code(0x020000)
            .revision(3)
            .bar(0, Bar::memory32(0x1000))
            .bar(2, Bar::memory64(0x1_0000_0000).prefetchable())
            .bar(4, Bar::io(0x20))
            .rom(0x8000)
            .intx()
            .power_management()
            .msi(4, true)
            .msix(MsixConfig { vectors: 16, table_bar: 0, table_offset: 0, pba_bar: 0, pba_offset: 0x800 })
            .pcie(PcieConfig { flr: true })
            .vendor_capability(&[1, 2, 3])
            .serial_number(0x1122_3344_5566_7788)
            .build()
            .unwrap()
    }

    #[test]
    fn header_and_bar_sizing() {
        let d = desc();
        let mut c = ConfigSpace::new(&d).unwrap();
        let irq = IrqState::new(&d);
        assert_eq!(c.size(), 4096);
        assert_eq!(rd32(&c, &irq, 0), 0x5678_1234);
        assert_eq!(rd32(&c, &irq, 8), 0x0200_0003);
        assert_eq!(rd32(&c, &irq, 0x2c), 0xbbbb_aaaa);
        assert_eq!(rd32(&c, &irq, 0x3c) >> 8 & 0xff, 1, "INTA#");
        for off in (0x10..0x28).step_by(4) {
            c.write(off, &[0xff; 4]);
        }
        c.write(PCI_ROM, &[0xff; 4]);
        assert_eq!(rd32(&c, &irq, 0x10), 0xffff_f000);
        assert_eq!(rd32(&c, &irq, 0x14), 0, "absent BAR");
        assert_eq!(rd32(&c, &irq, 0x18), 0x0000_000c, "64-bit prefetchable, 4 GiB: low half all address bits RO");
        assert_eq!(rd32(&c, &irq, 0x1c), 0xffff_ffff);
        assert_eq!(rd32(&c, &irq, 0x20), 0xffff_ffe1);
        assert_eq!(rd32(&c, &irq, PCI_ROM), 0xffff_8001);
        c.write(0x10, &0xfebf_0123u32.to_le_bytes());
        assert_eq!(rd32(&c, &irq, 0x10), 0xfebf_0000);
        // Vendor and device IDs are read-only.
        c.write(0, &[0; 4]);
        assert_eq!(rd32(&c, &irq, 0), 0x5678_1234);
        // Reset keeps BARs.
        c.write(PCI_COMMAND, &[0x06, 0]);
        c.reset();
        assert_eq!(rd32(&c, &irq, 0x10), 0xfebf_0000);
        assert_eq!(rd32(&c, &irq, 4) & 0xffff, 0);
    }

    /// BARs smaller than their kind's minimum decode the minimum: 8 bytes of memory size as
    /// 16, 2 bytes of I/O as 4; the others decode their size.
    #[test]
    fn small_bars_size_as_their_kinds_minimum() {
        let d = DeviceDescription::builder(0xdead, 0xbeef)
            .bar(0, Bar::memory32(8))
            .bar(1, Bar::memory32(0x4000))
            .bar(2, Bar::memory64(0x2_0000_0000))
            .bar(4, Bar::io(2))
            .build()
            .unwrap();
        let mut c = ConfigSpace::new(&d).unwrap();
        let irq = IrqState::new(&d);
        for off in (0x10..0x28).step_by(4) {
            c.write(off, &[0xff; 4]);
        }
        assert_eq!(rd32(&c, &irq, 0x10), 0xffff_fff0, "8 bytes decode 16");
        assert_eq!(rd32(&c, &irq, 0x14), 0xffff_c000, "0x4000 bytes");
        assert_eq!(rd32(&c, &irq, 0x18), 0x0000_0004, "64-bit, 8 GiB: low half all address bits RO");
        assert_eq!(rd32(&c, &irq, 0x1c), 0xffff_fffe);
        assert_eq!(rd32(&c, &irq, 0x20), 0xffff_fffd, "2 bytes of I/O decode 4");
        // An address is aligned to the decoded size.
        c.write(0x14, &0xfebf_3000u32.to_le_bytes());
        assert_eq!(rd32(&c, &irq, 0x14), 0xfebf_0000);
    }

    #[test]
    fn command_and_status_semantics() {
        let d = desc();
        let mut c = ConfigSpace::new(&d).unwrap();
        let irq = IrqState::new(&d);
        c.write(PCI_COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(rd32(&c, &irq, 4) & 0xffff, u32::from(COMMAND_WMASK));
        // Status: capability list is set and read-only; error bits are RW1C.
        assert_ne!(rd32(&c, &irq, 4) >> 16 & 0x10, 0);
        c.img.data[PCI_STATUS + 1] |= 0x80;
        c.write(PCI_STATUS, &[0, 0x40]);
        assert_ne!(rd32(&c, &irq, 4) >> 16 & 0x8000, 0, "writing 0 leaves it");
        c.write(PCI_STATUS, &[0xff, 0xff]);
        assert_eq!(rd32(&c, &irq, 4) >> 16, 0x10);
    }

    #[test]
    fn capability_chain() {
        let d = desc();
        let c = ConfigSpace::new(&d).unwrap();
        let irq = IrqState::new(&d);
        let mut ids = Vec::new();
        let mut p = rd32(&c, &irq, 0x34) as usize & 0xff;
        while p != 0 {
            let h = rd32(&c, &irq, p);
            ids.push(h as u8);
            p = (h >> 8 & 0xff) as usize;
        }
        assert_eq!(ids, vec![0x01, 0x05, 0x11, 0x10, 0x09]);
        let l = c.layout();
        assert_eq!(rd32(&c, &irq, l.msix.unwrap()) >> 16, 15);
        assert_eq!(rd32(&c, &irq, l.msix.unwrap() + 8), 0x800);
        assert_ne!(rd32(&c, &irq, l.pcie.unwrap() + 4) & caps::PCIE_DEVCAP_FLR, 0);
        assert_eq!(rd32(&c, &irq, 0x100), 0x0001_0003);
        assert_eq!(rd32(&c, &irq, 0x104), 0x5566_7788);
        assert_eq!(rd32(&c, &irq, 0x108), 0x1122_3344);
    }

    #[test]
    fn flr_and_irq_effects() {
        let d = desc();
        let mut c = ConfigSpace::new(&d).unwrap();
        let mut irq = IrqState::new(&d);
        let l = c.layout();
        let devctl = l.pcie.unwrap() + 8;
        assert_eq!(c.write(devctl, &0x2810u16.to_le_bytes()), WriteEffects::default());
        assert!(c.write(devctl, &0xa810u16.to_le_bytes()).flr);
        assert_eq!(rd32(&c, &irq, devctl) & 0x8000, 0, "FLR bit reads 0");
        let msix = l.msix.unwrap();
        assert!(c.write(msix + 2, &(MSIX_CTRL_ENABLE | MSIX_CTRL_MASK).to_le_bytes()).irq);
        c.sync_irq(&mut irq);
        assert!(irq.msix_enabled && irq.msix_function_mask);
        assert_eq!(rd32(&c, &irq, msix) >> 16 & 0x7ff, 15, "table size stays");
        let msi = l.msi.unwrap();
        c.write(msi + 2, &[1, 0]);
        c.write(msi + caps::MSI_MASK_OFFSET, &0xffu32.to_le_bytes());
        c.sync_irq(&mut irq);
        assert!(irq.msi_enabled);
        assert_eq!(irq.msi_mask, 0xf, "only 4 mask bits exist");
        irq.trigger(crate::irq::MSI, 2).unwrap();
        assert_eq!(rd32(&c, &irq, msi + caps::MSI_PENDING_OFFSET), 0b100);
        c.write(PCI_COMMAND, &COMMAND_INTX_DISABLE.to_le_bytes());
        c.sync_irq(&mut irq);
        assert!(irq.intx_disabled);
        c.reset();
        c.reset_irq(&mut irq);
        assert!(!irq.msix_enabled && !irq.intx_disabled && !irq.msi_enabled);
    }

    #[test]
    fn runs_split_at_callback_ranges() {
        let cbs = [0x48..0x50u16, 0x50..0x54];
        let mut runs = Vec::new();
        for_each_run(&cbs, 0x40, 0x20, |o, l, d| {
            runs.push((o, l, d));
            Ok(())
        })
        .unwrap();
        assert_eq!(runs, vec![(0x40, 8, false), (0x48, 8, true), (0x50, 4, true), (0x54, 0xc, false)]);
    }
}
