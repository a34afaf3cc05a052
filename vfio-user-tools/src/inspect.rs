// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What a client can learn about a vfio-user device, as text: negotiated capabilities,
//! device info, regions, IRQ indexes, configuration space (read whole, BARs sized).

use std::fmt::Write;

use vfio_user_client::{Client, Region, RegionCap};
use vfio_user_proto::wire::{
    IRQ_INFO_AUTOMASKED, IRQ_INFO_EVENTFD, IRQ_INFO_MASKABLE, IRQ_INFO_NORESIZE, PCI_CONFIG_REGION_INDEX,
    REGION_FLAG_CAPS, REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE,
};

use crate::pci;

/// The conventional name of a region index of a PCI device.
pub fn region_name(index: u32) -> String {
    match index {
        0..=5 => format!("BAR{index}"),
        6 => "ROM".into(),
        7 => "CONFIG".into(),
        8 => "VGA".into(),
        n => format!("region{n}"),
    }
}

/// The conventional name of an IRQ index of a PCI device.
pub fn irq_name(index: u32) -> &'static str {
    match index {
        0 => "INTx",
        1 => "MSI",
        2 => "MSI-X",
        3 => "ERR",
        4 => "REQ",
        _ => "device-specific",
    }
}

fn flag_words(flags: u32, names: &[(u32, &str)]) -> String {
    let words: Vec<&str> = names.iter().filter(|(b, _)| flags & b != 0).map(|(_, n)| *n).collect();
    if words.is_empty() {
        "-".into()
    } else {
        words.join(",")
    }
}

/// Human-readable size: bytes below 1 KiB, else KiB / MiB / GiB when exact.
pub fn size(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} B")
}

/// The negotiated VERSION: both sides' capabilities.
pub fn negotiated(client: &Client) -> String {
    let n = client.negotiated();
    let p = n.peer;
    let mut s = String::new();
    let _ = writeln!(s, "Negotiated: protocol {}.{}", n.major, n.minor);
    let _ = writeln!(
        s,
        "  server: max_msg_fds {}, max_data_xfer_size {}, max_dma_maps {}, pgsizes {:#x}, twin_socket {}, write_multiple {}",
        p.max_msg_fds,
        p.max_data_xfer_size,
        p.max_dma_maps,
        p.pgsizes,
        if n.twin_socket { "on" } else { "off" },
        p.write_multiple
    );
    s
}

/// Device info line.
pub fn device_info(client: &Client) -> String {
    let d = client.device_info();
    format!(
        "Device: flags {:#x} ({}{}), {} regions, {} IRQ indexes\n",
        d.flags,
        if d.is_pci() { "PCI" } else { "not PCI" },
        if d.resettable() { ", resettable" } else { "" },
        d.num_regions,
        d.num_irqs
    )
}

/// One region, with its flags, size, mmap and sparse areas and capabilities.
pub fn region(r: &Region) -> String {
    let mut s = String::new();
    let flags = flag_words(
        r.flags,
        &[
            (REGION_FLAG_READ, "read"),
            (REGION_FLAG_WRITE, "write"),
            (REGION_FLAG_MMAP, "mmap"),
            (REGION_FLAG_CAPS, "caps"),
        ],
    );
    if r.size == 0 {
        let _ = writeln!(s, "  [{}] {:<7} absent", r.index, region_name(r.index));
        return s;
    }
    let _ =
        write!(s, "  [{}] {:<7} size {:#x} ({}), flags {}", r.index, region_name(r.index), r.size, size(r.size), flags);
    if r.mappable() {
        let areas: Vec<String> = r.mmap_areas().iter().map(|a| format!("{:#x}+{:#x}", a.offset, a.size)).collect();
        let _ = write!(s, ", mmap areas {} (fd offset {:#x})", areas.join(" "), r.offset);
    }
    s.push('\n');
    for c in &r.caps {
        let _ = match c {
            RegionCap::SparseMmap(a) => {
                let areas: Vec<String> = a.iter().map(|a| format!("{:#x}+{:#x}", a.offset, a.size)).collect();
                writeln!(s, "        cap SPARSE_MMAP: {}", areas.join(" "))
            }
            RegionCap::Type(t) => writeln!(s, "        cap TYPE: type {:#x} subtype {:#x}", t.type_, t.subtype),
            RegionCap::Unknown { id, version } => writeln!(s, "        cap unknown: id {id} version {version}"),
        };
    }
    s
}

/// Every region.
pub fn regions(client: &Client) -> Result<String, vfio_user_client::Error> {
    let mut s = format!("Regions ({}):\n", client.device_info().num_regions);
    for r in client.regions()? {
        s.push_str(&region(&r));
    }
    Ok(s)
}

/// Every IRQ index with its count and flags.
pub fn irqs(client: &Client) -> Result<String, vfio_user_client::Error> {
    let mut s = format!("IRQ indexes ({}):\n", client.device_info().num_irqs);
    for i in 0..client.device_info().num_irqs {
        let info = client.irq_info(i)?;
        let flags = flag_words(
            info.flags,
            &[
                (IRQ_INFO_EVENTFD, "eventfd"),
                (IRQ_INFO_MASKABLE, "maskable"),
                (IRQ_INFO_AUTOMASKED, "automasked"),
                (IRQ_INFO_NORESIZE, "noresize"),
            ],
        );
        let _ = writeln!(s, "  [{i}] {:<15} count {:<4} flags {flags}", irq_name(i), info.count);
    }
    Ok(s)
}

/// Reads the whole configuration space (the CONFIG region, at most 4 KiB).
pub fn read_config(client: &Client) -> Result<Vec<u8>, vfio_user_client::Error> {
    let r = client.region_info(PCI_CONFIG_REGION_INDEX)?;
    let mut c = vec![0u8; r.size.min(4096) as usize];
    client.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut c)?;
    Ok(c)
}

/// One sized BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizedBar {
    /// BAR number.
    pub index: usize,
    /// I/O space (else memory).
    pub io: bool,
    /// 64-bit memory BAR (uses the next register too).
    pub is_64: bool,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// The address programmed.
    pub address: u64,
    /// The size found.
    pub size: u64,
}

fn cfg_read32(client: &Client, off: u64) -> Result<u32, vfio_user_client::Error> {
    let mut b = [0u8; 4];
    client.region_read(PCI_CONFIG_REGION_INDEX, off, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn cfg_write32(client: &Client, off: u64, v: u32) -> Result<(), vfio_user_client::Error> {
    client.region_write(PCI_CONFIG_REGION_INDEX, off, &v.to_le_bytes())
}

/// Sizes every BAR the way firmware does: write all-ones to the register, read back the
/// size mask, restore the original value.
pub fn size_bars(client: &Client) -> Result<Vec<SizedBar>, vfio_user_client::Error> {
    let mut bars = Vec::new();
    let mut i = 0;
    while i < 6 {
        let off = 0x10 + 4 * i as u64;
        let orig = cfg_read32(client, off)?;
        cfg_write32(client, off, u32::MAX)?;
        let mask = cfg_read32(client, off)?;
        cfg_write32(client, off, orig)?;
        let io = orig & 1 == 1;
        let is_64 = !io && (orig >> 1) & 3 == 2 && i < 5;
        let (mut full_mask, mut address) = if io {
            (u64::from(mask & !3), u64::from(orig & !3))
        } else {
            (u64::from(mask & !0xf), u64::from(orig & !0xf))
        };
        if is_64 {
            let hi_orig = cfg_read32(client, off + 4)?;
            cfg_write32(client, off + 4, u32::MAX)?;
            let hi_mask = cfg_read32(client, off + 4)?;
            cfg_write32(client, off + 4, hi_orig)?;
            full_mask |= u64::from(hi_mask) << 32;
            address |= u64::from(hi_orig) << 32;
        } else if !io {
            full_mask |= 0xffff_ffff_0000_0000;
        } else {
            full_mask |= 0xffff_ffff_ffff_0000;
        }
        if mask != 0 {
            let size = (!full_mask).wrapping_add(1);
            bars.push(SizedBar { index: i, io, is_64, prefetchable: !io && orig & 8 != 0, address, size });
        }
        i += if is_64 { 2 } else { 1 };
    }
    Ok(bars)
}

/// The configuration space decoded: IDs, class, command/status, sized BARs, capabilities.
pub fn config_summary(config: &[u8], bars: &[SizedBar]) -> String {
    let mut s = String::from("Config space:\n");
    let summary = pci::summary(config);
    let mut lines = summary.lines();
    // IDs and command/status first, then BARs, then interrupt pin and capabilities.
    for l in lines.by_ref().take(2) {
        let _ = writeln!(s, "{l}");
    }
    for b in bars {
        let kind = if b.io {
            "I/O ports".to_string()
        } else {
            format!(
                "Memory, {}-bit, {}",
                if b.is_64 { 64 } else { 32 },
                if b.prefetchable { "prefetchable" } else { "non-prefetchable" }
            )
        };
        let _ = writeln!(
            s,
            "  Region {}: {kind} at {:#x} [size={}] (sized by all-ones write)",
            b.index,
            b.address,
            size(b.size)
        );
    }
    for l in lines {
        let _ = writeln!(s, "{l}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes() {
        assert_eq!(region_name(0), "BAR0");
        assert_eq!(region_name(7), "CONFIG");
        assert_eq!(region_name(9), "region9");
        assert_eq!(irq_name(2), "MSI-X");
        assert_eq!(size(0x1000), "4 KiB");
        assert_eq!(size(0x100), "256 B");
        assert_eq!(size(0x300000), "3 MiB");
        assert_eq!(size(0x1800), "6 KiB");
        assert_eq!(size(0x1801), "6145 B");
        assert_eq!(flag_words(3, &[(1, "read"), (2, "write"), (4, "mmap")]), "read,write");
        assert_eq!(flag_words(0, &[(1, "read")]), "-");
    }
}
