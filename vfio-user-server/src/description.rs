// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The static description of a device: PCI identity, regions, interrupts and capabilities,
//! put together with [`DescriptionBuilder`] and checked once by
//! [`DescriptionBuilder::build`].

use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use vfio_user_proto::wire::{SparseArea, PCI_NUM_IRQS, PCI_NUM_REGIONS};

use crate::error::{Error, Result};

/// The largest configuration space (PCI Express).
pub const PCIE_CONFIG_SPACE_SIZE: u16 = 4096;
/// The configuration space of a conventional PCI function.
pub const PCI_CONFIG_SPACE_SIZE: u16 = 256;
/// Most MSI-X vectors a function may have.
pub const MSIX_MAX_VECTORS: u16 = 2048;
/// Highest region index accepted for device-specific regions (keeps `num_regions` small).
pub const MAX_REGION_INDEX: u32 = 63;
const PAGE_SIZE: u64 = 4096;

/// What kind of BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR.
    Memory32,
    /// 64-bit memory BAR (takes this BAR and the next).
    Memory64,
    /// I/O-space BAR.
    Io,
}

/// An fd the client may `mmap` to reach (parts of) a region directly.
#[derive(Clone, Debug)]
pub struct Mmap {
    /// The file (typically a memfd) backing the region.
    pub fd: Arc<OwnedFd>,
    /// Offset of the region's first byte in `fd`.
    pub offset: u64,
    /// Mappable areas, relative to the region start; `None` = the whole region.
    pub areas: Option<Vec<SparseArea>>,
}

/// A base address register.
#[derive(Clone, Debug)]
pub struct Bar {
    pub(crate) size: u64,
    pub(crate) kind: BarKind,
    pub(crate) prefetchable: bool,
    pub(crate) mmap: Option<Mmap>,
    sparse_without_mmap: bool,
}

impl Bar {
    /// A 32-bit memory BAR of `size` bytes (a power of two: PCI decodes nothing else, and
    /// QEMU aborts on any other size).
    pub fn memory32(size: u64) -> Self {
        Bar { size, kind: BarKind::Memory32, prefetchable: false, mmap: None, sparse_without_mmap: false }
    }

    /// A 64-bit memory BAR of `size` bytes (a power of two); it also occupies the next BAR
    /// slot.
    pub fn memory64(size: u64) -> Self {
        Bar { size, kind: BarKind::Memory64, prefetchable: false, mmap: None, sparse_without_mmap: false }
    }

    /// An I/O BAR of `size` bytes (a power of two, 1 to 256).
    pub fn io(size: u64) -> Self {
        Bar { size, kind: BarKind::Io, prefetchable: false, mmap: None, sparse_without_mmap: false }
    }

    /// Marks a memory BAR prefetchable.
    pub fn prefetchable(mut self) -> Self {
        self.prefetchable = true;
        self
    }

    /// Lets the client mmap the whole BAR from `fd` at `offset`.
    pub fn mmap(mut self, fd: Arc<OwnedFd>, offset: u64) -> Self {
        self.mmap = Some(Mmap { fd, offset, areas: None });
        self
    }

    /// Restricts mmap to `areas` (relative to the BAR start); the rest goes through
    /// REGION_READ/WRITE. Needs [`Bar::mmap`] first.
    pub fn sparse(mut self, areas: &[(u64, u64)]) -> Self {
        match self.mmap.as_mut() {
            Some(m) => m.areas = Some(areas.iter().map(|&(offset, size)| SparseArea { offset, size }).collect()),
            None => self.sparse_without_mmap = true,
        }
        self
    }

    /// Size in bytes of the region (what REGION_INFO reports; accesses beyond it are
    /// refused).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The smallest size a BAR of this kind decodes: 4 bytes of I/O space, 16 of memory.
    pub fn min_decoded_size(&self) -> u64 {
        if self.kind == BarKind::Io {
            4
        } else {
            16
        }
    }

    /// The size the BAR decodes in configuration space (what BAR sizing reports): the
    /// region size, or [`min_decoded_size`](Self::min_decoded_size) if that is larger (a
    /// memory BAR of 8 bytes decodes 16). A size that is not a power of two is refused by
    /// [`DescriptionBuilder::build`]; for one, this is the next power of two (`None` when
    /// no 64-bit power of two is large enough).
    pub fn decoded_size(&self) -> Option<u64> {
        self.size.max(self.min_decoded_size()).checked_next_power_of_two()
    }

    /// The kind of BAR.
    pub fn kind(&self) -> BarKind {
        self.kind
    }
}

/// A device-specific region (index 9 and up), announced with a TYPE capability.
#[derive(Clone, Debug)]
pub struct DeviceRegion {
    pub(crate) size: u64,
    pub(crate) type_: u32,
    pub(crate) subtype: u32,
    pub(crate) writable: bool,
    pub(crate) mmap: Option<Mmap>,
}

impl DeviceRegion {
    /// A readable and writable region of `size` bytes with the given TYPE capability.
    pub fn new(size: u64, type_: u32, subtype: u32) -> Self {
        DeviceRegion { size, type_, subtype, writable: true, mmap: None }
    }

    /// Makes the region read-only.
    pub fn read_only(mut self) -> Self {
        self.writable = false;
        self
    }

    /// Lets the client mmap the region from `fd` at `offset`.
    pub fn mmap(mut self, fd: Arc<OwnedFd>, offset: u64) -> Self {
        self.mmap = Some(Mmap { fd, offset, areas: None });
        self
    }
}

/// Where the MSI-X table and PBA live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixConfig {
    /// Number of vectors (1 to 2048).
    pub vectors: u16,
    /// BAR holding the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the PBA in that BAR (8-byte aligned).
    pub pba_offset: u32,
}

impl MsixConfig {
    /// Bytes of the table.
    pub fn table_size(&self) -> u64 {
        u64::from(self.vectors) * 16
    }

    /// Bytes of the PBA.
    pub fn pba_size(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }
}

/// MSI capability parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiConfig {
    /// Number of vectors (1, 2, 4, 8, 16 or 32).
    pub vectors: u8,
    /// Per-vector masking (Mask and Pending Bits registers).
    pub per_vector_mask: bool,
}

/// PCI Express capability parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PcieConfig {
    /// Function Level Reset supported (Device Control bit 15 resets the device).
    pub flr: bool,
}

/// The complete, validated description of a device. Made by [`DescriptionBuilder`].
#[derive(Clone, Debug)]
pub struct DeviceDescription {
    pub(crate) vendor_id: u16,
    pub(crate) device_id: u16,
    pub(crate) subsystem_vendor_id: u16,
    pub(crate) subsystem_id: u16,
    pub(crate) class_code: u32,
    pub(crate) revision: u8,
    pub(crate) bars: [Option<Bar>; 6],
    pub(crate) rom_size: u64,
    pub(crate) regions: Vec<(u32, DeviceRegion)>,
    pub(crate) intx: bool,
    pub(crate) msi: Option<MsiConfig>,
    pub(crate) msix: Option<MsixConfig>,
    pub(crate) err_irq: bool,
    pub(crate) req_irq: bool,
    pub(crate) reset: bool,
    pub(crate) pm: bool,
    pub(crate) pcie: Option<PcieConfig>,
    pub(crate) vendor_caps: Vec<Vec<u8>>,
    pub(crate) dsn: Option<u64>,
    pub(crate) config_size: u16,
    pub(crate) config_callbacks: Vec<Range<u16>>,
}

impl DeviceDescription {
    /// Starts a description of a PCI function with these vendor and device IDs.
    pub fn builder(vendor_id: u16, device_id: u16) -> DescriptionBuilder {
        DescriptionBuilder {
            d: DeviceDescription {
                vendor_id,
                device_id,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
                class_code: 0,
                revision: 0,
                bars: Default::default(),
                rom_size: 0,
                regions: Vec::new(),
                intx: false,
                msi: None,
                msix: None,
                err_irq: false,
                req_irq: false,
                reset: true,
                pm: false,
                pcie: None,
                vendor_caps: Vec::new(),
                dsn: None,
                config_size: 0,
                config_callbacks: Vec::new(),
            },
            errors: Vec::new(),
        }
    }

    /// Number of regions announced by DEVICE_GET_INFO (at least 9).
    pub fn num_regions(&self) -> u32 {
        self.regions.iter().map(|(i, _)| i + 1).max().unwrap_or(0).max(PCI_NUM_REGIONS)
    }

    /// Number of vectors of an IRQ index (0 INTx, 1 MSI, 2 MSI-X, 3 ERR, 4 REQ).
    pub fn irq_count(&self, index: u32) -> u32 {
        match index {
            0 => self.intx.into(),
            1 => self.msi.map_or(0, |m| m.vectors.into()),
            2 => self.msix.map_or(0, |m| m.vectors.into()),
            3 => self.err_irq.into(),
            4 => self.req_irq.into(),
            _ => 0,
        }
    }

    /// Number of IRQ indexes (always 5 for PCI).
    pub fn num_irqs(&self) -> u32 {
        PCI_NUM_IRQS
    }

    /// Whether DEVICE_RESET is supported.
    pub fn reset_supported(&self) -> bool {
        self.reset
    }

    /// The BAR at `index` (0..6), if present.
    pub fn bar(&self, index: usize) -> Option<&Bar> {
        self.bars.get(index).and_then(Option::as_ref)
    }

    /// The MSI-X configuration, if any.
    pub fn msix(&self) -> Option<MsixConfig> {
        self.msix
    }

    /// Size of the configuration space (256 or 4096).
    pub fn config_size(&self) -> u16 {
        self.config_size
    }

    /// The device-specific region at `index`.
    pub(crate) fn device_region(&self, index: u32) -> Option<&DeviceRegion> {
        self.regions.iter().find(|(i, _)| *i == index).map(|(_, r)| r)
    }
}

/// Builds a [`DeviceDescription`]. Every method records problems; [`build`](Self::build)
/// reports the first one.
#[derive(Debug)]
pub struct DescriptionBuilder {
    d: DeviceDescription,
    errors: Vec<String>,
}

impl DescriptionBuilder {
    /// Subsystem vendor and subsystem IDs.
    pub fn subsystem(mut self, vendor_id: u16, id: u16) -> Self {
        self.d.subsystem_vendor_id = vendor_id;
        self.d.subsystem_id = id;
        self
    }

    /// The 24-bit class code (base class, subclass, programming interface).
    pub fn class_code(mut self, class_code: u32) -> Self {
        if class_code > 0xff_ffff {
            self.errors.push(format!("class code {class_code:#x} is wider than 24 bits"));
        }
        self.d.class_code = class_code & 0xff_ffff;
        self
    }

    /// Revision ID.
    pub fn revision(mut self, revision: u8) -> Self {
        self.d.revision = revision;
        self
    }

    /// Adds BAR `index` (0..6).
    pub fn bar(mut self, index: usize, bar: Bar) -> Self {
        match self.d.bars.get_mut(index) {
            Some(slot) if slot.is_none() => *slot = Some(bar),
            Some(_) => self.errors.push(format!("BAR{index} given twice")),
            None => self.errors.push(format!("BAR index {index} out of range")),
        }
        self
    }

    /// An expansion ROM of `size` bytes (a power of two, at least 2 KiB); its contents are
    /// read through [`Device::region_read`](crate::Device::region_read) on region 6.
    pub fn rom(mut self, size: u64) -> Self {
        self.d.rom_size = size;
        self
    }

    /// Adds a device-specific region at `index` (9 and up).
    pub fn region(mut self, index: u32, region: DeviceRegion) -> Self {
        if !(PCI_NUM_REGIONS..=MAX_REGION_INDEX).contains(&index) {
            self.errors.push(format!("device region index {index} outside 9..={MAX_REGION_INDEX}"));
        } else if self.d.regions.iter().any(|(i, _)| *i == index) {
            self.errors.push(format!("region {index} given twice"));
        } else {
            self.d.regions.push((index, region));
        }
        self
    }

    /// The function has an INTx pin (INTA#).
    pub fn intx(mut self) -> Self {
        self.d.intx = true;
        self
    }

    /// An MSI capability with `vectors` vectors (1..=32, a power of two).
    pub fn msi(mut self, vectors: u8, per_vector_mask: bool) -> Self {
        if !(vectors.is_power_of_two() && vectors <= 32) {
            self.errors.push(format!("MSI vector count {vectors} is not 1, 2, 4, 8, 16 or 32"));
        }
        self.d.msi = Some(MsiConfig { vectors, per_vector_mask });
        self
    }

    /// An MSI-X capability; the table and PBA are emulated in the given BARs (accesses to
    /// them never reach the device), and the pages holding them are left out of those BARs'
    /// mmap areas.
    pub fn msix(mut self, msix: MsixConfig) -> Self {
        self.d.msix = Some(msix);
        self
    }

    /// The ERR IRQ index has one vector.
    pub fn err_irq(mut self) -> Self {
        self.d.err_irq = true;
        self
    }

    /// The REQ IRQ index has one vector.
    pub fn req_irq(mut self) -> Self {
        self.d.req_irq = true;
        self
    }

    /// Whether DEVICE_RESET is supported (default: yes).
    pub fn reset_supported(mut self, supported: bool) -> Self {
        self.d.reset = supported;
        self
    }

    /// A power-management capability (D0/D3hot).
    pub fn power_management(mut self) -> Self {
        self.d.pm = true;
        self
    }

    /// A PCI Express endpoint capability; makes the configuration space 4 KiB.
    pub fn pcie(mut self, pcie: PcieConfig) -> Self {
        self.d.pcie = Some(pcie);
        self
    }

    /// A vendor-specific capability whose body (after ID, next and length) is `data`
    /// (at most 253 bytes). It reads as given and ignores writes unless a
    /// [`config_callback`](Self::config_callback) covers it.
    pub fn vendor_capability(mut self, data: &[u8]) -> Self {
        if data.len() > 253 {
            self.errors.push("vendor capability longer than 253 bytes".into());
        }
        self.d.vendor_caps.push(data.to_vec());
        self
    }

    /// A Device Serial Number extended capability (needs a 4 KiB configuration space).
    pub fn serial_number(mut self, dsn: u64) -> Self {
        self.d.dsn = Some(dsn);
        self
    }

    /// Forces the configuration space size (256 or 4096). By default it is 4096 with a
    /// PCI Express capability or DSN, else 256.
    pub fn config_space_size(mut self, size: u16) -> Self {
        if size != PCI_CONFIG_SPACE_SIZE && size != PCIE_CONFIG_SPACE_SIZE {
            self.errors.push(format!("configuration space size {size} is not 256 or 4096"));
        }
        self.d.config_size = size;
        self
    }

    /// Hands configuration-space bytes `range` to the device's
    /// [`config_read`](crate::Device::config_read) / [`config_write`](crate::Device::config_write).
    pub fn config_callback(mut self, range: Range<u16>) -> Self {
        if range.start >= range.end {
            self.errors.push(format!("empty configuration callback range {range:?}"));
        }
        self.d.config_callbacks.push(range);
        self
    }

    /// Checks everything and returns the description.
    pub fn build(mut self) -> Result<DeviceDescription> {
        self.check_bars();
        self.check_rom_and_regions();
        self.check_msix();
        self.check_config();
        match self.errors.into_iter().next() {
            Some(e) => Err(Error::Description(e)),
            None => Ok(self.d),
        }
    }

    fn check_bars(&mut self) {
        for i in 0..6 {
            let Some(bar) = self.d.bars[i].clone() else { continue };
            // PCI BARs decode a power of two, and a client builds its BARs from the region
            // size: QEMU asserts that size is a power of two (pci_register_bar) and aborts.
            let decoded = bar.decoded_size().unwrap_or(u64::MAX);
            if bar.size == 0 {
                self.errors.push(format!("BAR{i} has size 0"));
            } else if !bar.size.is_power_of_two() {
                self.errors.push(format!(
                    "BAR{i} size {:#x} is not a power of two (PCI and QEMU require one; use {:#x})",
                    bar.size,
                    bar.size.checked_next_power_of_two().unwrap_or(u64::MAX)
                ));
            }
            match bar.kind {
                BarKind::Io if decoded > 256 => self.errors.push(format!("I/O BAR{i} larger than 256 bytes")),
                BarKind::Io if bar.prefetchable || bar.mmap.is_some() => {
                    self.errors.push(format!("I/O BAR{i} cannot be prefetchable or mmapped"))
                }
                BarKind::Memory32 if decoded > 1 << 31 => self.errors.push(format!("32-bit BAR{i} larger than 2 GiB")),
                BarKind::Memory64 if i == 5 || self.d.bars[i + 1].is_some() => {
                    self.errors.push(format!("64-bit BAR{i} needs BAR{} free", i + 1))
                }
                BarKind::Memory64 if bar.decoded_size().is_none() => self.errors.push(format!("BAR{i} too large")),
                _ => {}
            }
            if i > 0 && matches!(&self.d.bars[i - 1], Some(b) if b.kind == BarKind::Memory64) {
                self.errors.push(format!("BAR{i} is the upper half of 64-bit BAR{}", i - 1));
            }
            if let Some(m) = &bar.mmap {
                check_mmap(&mut self.errors, &format!("BAR{i}"), bar.size, m);
            }
            if bar.sparse_without_mmap {
                self.errors.push(format!("BAR{i}: sparse areas without an mmap fd"));
            }
        }
    }

    fn check_rom_and_regions(&mut self) {
        let rom = self.d.rom_size;
        if rom != 0 && (!rom.is_power_of_two() || !(2048..=1 << 31).contains(&rom)) {
            self.errors.push(format!("ROM size {rom:#x} is not a power of two in 2 KiB..=2 GiB"));
        }
        for (i, r) in self.d.regions.clone() {
            if r.size == 0 {
                self.errors.push(format!("region {i} has size 0"));
            }
            if let Some(m) = &r.mmap {
                check_mmap(&mut self.errors, &format!("region {i}"), r.size, m);
            }
        }
    }

    fn check_msix(&mut self) {
        let Some(x) = self.d.msix else { return };
        if x.vectors == 0 || x.vectors > MSIX_MAX_VECTORS {
            self.errors.push(format!("MSI-X vector count {} outside 1..=2048", x.vectors));
            return;
        }
        let ranges =
            [(x.table_bar, x.table_offset, x.table_size(), "table"), (x.pba_bar, x.pba_offset, x.pba_size(), "PBA")];
        for (bar, off, size, what) in ranges {
            if off % 8 != 0 {
                self.errors.push(format!("MSI-X {what} offset {off:#x} not 8-byte aligned"));
            }
            match self.d.bars.get(usize::from(bar)).and_then(Option::as_ref) {
                Some(b) if b.kind != BarKind::Io && u64::from(off) + size <= b.size => {}
                _ => self.errors.push(format!("MSI-X {what} does not fit in memory BAR{bar}")),
            }
        }
        if x.table_bar == x.pba_bar {
            let t = u64::from(x.table_offset)..u64::from(x.table_offset) + x.table_size();
            let p = u64::from(x.pba_offset)..u64::from(x.pba_offset) + x.pba_size();
            if t.start < p.end && p.start < t.end {
                self.errors.push("MSI-X table and PBA overlap".into());
            }
        }
        // Keep the client from mapping over the emulated structures: derive sparse areas
        // that leave out their pages, or check the ones given.
        for (bar, off, size) in [(x.table_bar, x.table_offset, x.table_size()), (x.pba_bar, x.pba_offset, x.pba_size())]
        {
            let Some(Some(b)) = self.d.bars.get_mut(usize::from(bar)) else { continue };
            let bar_size = b.size;
            let Some(m) = b.mmap.as_mut() else { continue };
            let lo = u64::from(off) & !(PAGE_SIZE - 1);
            let hi = (u64::from(off) + size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
            let areas = m.areas.get_or_insert_with(|| vec![SparseArea { offset: 0, size: bar_size }]);
            let mut out = Vec::new();
            for a in areas.iter() {
                let (s, e) = (a.offset, a.offset + a.size);
                if e <= lo || s >= hi {
                    out.push(*a);
                    continue;
                }
                if s < lo {
                    out.push(SparseArea { offset: s, size: lo - s });
                }
                if e > hi {
                    out.push(SparseArea { offset: hi, size: e - hi });
                }
            }
            *areas = out;
        }
    }

    fn check_config(&mut self) {
        let needs_4k = self.d.pcie.is_some() || self.d.dsn.is_some();
        if self.d.config_size == 0 {
            self.d.config_size = if needs_4k { PCIE_CONFIG_SPACE_SIZE } else { PCI_CONFIG_SPACE_SIZE };
        }
        if self.d.dsn.is_some() && self.d.config_size != PCIE_CONFIG_SPACE_SIZE {
            self.errors.push("a serial number needs a 4 KiB configuration space".into());
        }
        for r in &self.d.config_callbacks {
            if r.end > self.d.config_size {
                self.errors.push(format!("configuration callback range {r:?} outside the configuration space"));
            }
        }
    }
}

fn check_mmap(errors: &mut Vec<String>, what: &str, size: u64, m: &Mmap) {
    if m.offset % PAGE_SIZE != 0 {
        errors.push(format!("{what}: mmap offset {:#x} not page aligned", m.offset));
    }
    if m.offset.checked_add(size).is_none() {
        errors.push(format!("{what}: mmap offset + size overflows"));
    }
    for a in m.areas.iter().flatten() {
        let end = a.offset.checked_add(a.size);
        if a.size == 0 || a.offset % PAGE_SIZE != 0 || end.map_or(true, |e| e > size) {
            errors.push(format!("{what}: sparse area {:#x}+{:#x} invalid", a.offset, a.size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd() -> Arc<OwnedFd> {
        let fd = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 0x10000).unwrap();
        Arc::new(fd)
    }

    #[test]
    fn defaults_and_counts() {
        let d = DeviceDescription::builder(1, 2)
            .bar(0, Bar::memory32(0x1000))
            .intx()
            .msi(4, true)
            .region(10, DeviceRegion::new(0x100, 0x8086_0000, 1))
            .build()
            .unwrap();
        assert_eq!(d.num_regions(), 11);
        assert_eq!((d.irq_count(0), d.irq_count(1), d.irq_count(2), d.irq_count(3)), (1, 4, 0, 0));
        assert_eq!(d.config_size(), 256);
        assert!(d.reset_supported());
    }

    #[test]
    fn bad_descriptions_are_refused() {
        let b = || DeviceDescription::builder(1, 2);
        assert!(b().bar(0, Bar::memory32(0)).build().is_err());
        assert!(b().bar(0, Bar::io(0)).build().is_err());
        assert!(b().bar(0, Bar::memory32((1 << 31) + 1)).build().is_err(), "decodes 4 GiB");
        assert!(b().bar(0, Bar::memory64((1 << 63) + 1)).build().is_err());
        assert!(b().bar(0, Bar::io(257)).build().is_err());
        assert!(b().bar(5, Bar::memory64(0x1000)).build().is_err());
        assert!(b().bar(0, Bar::memory64(0x1000)).bar(1, Bar::io(4)).build().is_err());
        assert!(b().bar(0, Bar::io(512)).build().is_err());
        assert!(b().bar(6, Bar::io(4)).build().is_err());
        assert!(b().rom(100).build().is_err());
        assert!(b().region(8, DeviceRegion::new(16, 0, 0)).build().is_err());
        assert!(b().msi(3, false).build().is_err());
        assert!(b().serial_number(1).config_space_size(256).build().is_err());
        assert!(b().config_callback(0x40..0x200).build().is_err());
        let x = MsixConfig { vectors: 8, table_bar: 0, table_offset: 0, pba_bar: 0, pba_offset: 0x40 };
        assert!(b().msix(x).build().is_err(), "no BAR0");
        assert!(b().bar(0, Bar::memory32(0x40)).msix(x).build().is_err(), "PBA out of the BAR");
        let overlap = MsixConfig { pba_offset: 0x8, ..x };
        assert!(b().bar(0, Bar::memory32(0x1000)).msix(overlap).build().is_err());
        assert!(b().bar(0, Bar::memory32(0x1000).mmap(memfd(), 0).sparse(&[(0, 0x2000)])).build().is_err());
        assert!(b().bar(0, Bar::memory32(0x1000).sparse(&[(0, 0x1000)])).build().is_err());
        assert!(b().bar(0, Bar::memory32(0x2000).mmap(memfd(), 0x10)).build().is_err(), "unaligned offset");
    }

    /// Power-of-two BARs of every kind are accepted; a memory BAR below 16 bytes decodes 16
    /// (an I/O BAR below 4 decodes 4) and keeps its region size.
    #[test]
    fn power_of_two_bars() {
        let d = DeviceDescription::builder(1, 2)
            .bar(0, Bar::memory32(8))
            .bar(1, Bar::memory32(0x4000).mmap(memfd(), 0).sparse(&[(0, 0x1000), (0x2000, 0x1000)]))
            .bar(2, Bar::memory64(0x2000))
            .bar(4, Bar::io(1))
            .bar(5, Bar::memory32(1 << 31))
            .build()
            .unwrap();
        let sizes: Vec<_> = [0, 1, 2, 4, 5].iter().map(|&i| d.bar(i).unwrap().size()).collect();
        assert_eq!(sizes, vec![8, 0x4000, 0x2000, 1, 1 << 31]);
        let decoded: Vec<_> = [0, 1, 2, 4, 5].iter().map(|&i| d.bar(i).unwrap().decoded_size()).collect();
        assert_eq!(decoded, vec![Some(16), Some(0x4000), Some(0x2000), Some(4), Some(1 << 31)]);
        assert_eq!(Bar::memory64(1 << 63).decoded_size(), Some(1 << 63));
        let over = Bar::memory32(0x4000).mmap(memfd(), 0).sparse(&[(0x4000, 0x1000)]);
        assert!(DeviceDescription::builder(1, 2).bar(0, over).build().is_err());
    }

    /// A BAR whose size is not a power of two is refused, with an error naming the BAR: QEMU
    /// would abort on its REGION_INFO (libvfio-user refuses it too).
    #[test]
    fn bars_not_a_power_of_two_are_refused_by_name() {
        for (index, bar) in
            [(1, Bar::memory32(0x3000)), (2, Bar::memory64(0x1001)), (4, Bar::io(12)), (0, Bar::memory32(24))]
        {
            let e = DeviceDescription::builder(1, 2).bar(index, bar).build().unwrap_err().to_string();
            assert!(e.contains(&format!("BAR{index} size")) && e.contains("not a power of two"), "{e}");
        }
        let e = DeviceDescription::builder(1, 2).bar(1, Bar::memory32(0x3000)).build().unwrap_err().to_string();
        assert!(e.contains("0x3000") && e.contains("use 0x4000"), "{e}");
    }

    #[test]
    fn msix_pages_are_cut_out_of_mmap_areas() {
        let x = MsixConfig { vectors: 8, table_bar: 2, table_offset: 0x3000, pba_bar: 2, pba_offset: 0x3800 };
        let d =
            DeviceDescription::builder(1, 2).bar(2, Bar::memory64(0x8000).mmap(memfd(), 0)).msix(x).build().unwrap();
        let areas = d.bar(2).unwrap().mmap.as_ref().unwrap().areas.clone().unwrap();
        assert_eq!(areas, vec![SparseArea { offset: 0, size: 0x3000 }, SparseArea { offset: 0x4000, size: 0x4000 }]);
    }
}
