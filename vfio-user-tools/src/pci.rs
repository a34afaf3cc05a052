// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Reading a PCI configuration space dump: `lspci -x` hex format and a decoded summary.

use std::fmt::Write;

/// How much of configuration space `-x`, `-xxx` and `-xxxx` show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpLevel {
    /// `-x`: the standard header (64 bytes).
    Header,
    /// `-xxx`: the whole conventional space (256 bytes).
    Conventional,
    /// `-xxxx`: the extended space (4096 bytes).
    Extended,
}

impl DumpLevel {
    /// From the number of `x`s given.
    pub fn from_count(n: u8) -> Option<Self> {
        match n {
            0 => None,
            1 | 2 => Some(DumpLevel::Header),
            3 => Some(DumpLevel::Conventional),
            _ => Some(DumpLevel::Extended),
        }
    }

    fn bytes(self) -> usize {
        match self {
            DumpLevel::Header => 64,
            DumpLevel::Conventional => 256,
            DumpLevel::Extended => 4096,
        }
    }
}

/// Hex lines as `lspci -x` prints them (`00: 86 80 ...`, 16 bytes a line); bytes past the
/// end of `config` are shown as `ff`, as for an absent register.
pub fn hex_lines(config: &[u8], level: DumpLevel) -> String {
    let mut out = String::new();
    for line in 0..level.bytes() / 16 {
        let base = line * 16;
        // lspci prints the offset with at least two digits: "00:", ..., "f0:", "100:".
        let _ = write!(out, "{:02x}:", base);
        for i in 0..16 {
            let _ = write!(out, " {:02x}", config.get(base + i).copied().unwrap_or(0xff));
        }
        out.push('\n');
    }
    out
}

/// A whole `lspci -x` style record: the slot line, then the hex lines, then a blank line.
/// `lspci -F FILE` reads this back.
pub fn dump(slot: &str, config: &[u8], level: DumpLevel) -> String {
    let class = u32::from(rd8(config, 0x0b)) << 8 | u32::from(rd8(config, 0x0a));
    format!(
        "{slot} {}: Device {:04x}:{:04x}\n{}\n",
        class_name(class),
        rd16(config, 0),
        rd16(config, 2),
        hex_lines(config, level)
    )
}

fn rd8(c: &[u8], off: usize) -> u8 {
    c.get(off).copied().unwrap_or(0xff)
}

fn rd16(c: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([rd8(c, off), rd8(c, off + 1)])
}

fn rd32(c: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([rd8(c, off), rd8(c, off + 1), rd8(c, off + 2), rd8(c, off + 3)])
}

/// A generic name for a base class / subclass pair.
pub fn class_name(class: u32) -> &'static str {
    match class >> 8 {
        0x00 => "Non-VGA unclassified device",
        0x01 => "Mass storage controller",
        0x02 => "Network controller",
        0x03 => "Display controller",
        0x04 => "Multimedia controller",
        0x05 => "Memory controller",
        0x06 => "Bridge",
        0x07 => "Communication controller",
        0x08 => "Generic system peripheral",
        0x09 => "Input device controller",
        0x0c => "Serial bus controller",
        0x11 => "Signal processing controller",
        0x12 => "Processing accelerators",
        0xff => "Unassigned class",
        _ => "Unclassified device",
    }
}

/// Name of a standard capability ID.
pub fn cap_name(id: u8) -> &'static str {
    match id {
        0x01 => "Power Management",
        0x05 => "MSI",
        0x09 => "Vendor Specific",
        0x10 => "Express",
        0x11 => "MSI-X",
        0x12 => "SATA",
        0x13 => "PCI Advanced Features",
        _ => "Unknown",
    }
}

/// Name of an extended capability ID.
pub fn ext_cap_name(id: u16) -> &'static str {
    match id {
        0x0001 => "Advanced Error Reporting",
        0x0003 => "Device Serial Number",
        0x000b => "Vendor Specific",
        0x0010 => "SR-IOV",
        _ => "Unknown",
    }
}

/// The standard capability list: `(offset, id)` in chain order. Loops and pointers into the
/// header end the walk.
pub fn capabilities(c: &[u8]) -> Vec<(u8, u8)> {
    let mut caps = Vec::new();
    if rd16(c, 0x06) & 0x10 == 0 {
        return caps;
    }
    let mut off = rd8(c, 0x34) & 0xfc;
    while off >= 0x40 && caps.len() < 48 && !caps.iter().any(|&(o, _)| o == off) {
        caps.push((off, rd8(c, off as usize)));
        off = rd8(c, off as usize + 1) & 0xfc;
    }
    caps
}

/// The extended capability list: `(offset, id, version)`, when the space is 4 KiB.
pub fn ext_capabilities(c: &[u8]) -> Vec<(u16, u16, u8)> {
    let mut caps = Vec::new();
    if c.len() < 4096 {
        return caps;
    }
    let mut off: u16 = 0x100;
    while off >= 0x100 && caps.len() < 960 && !caps.iter().any(|&(o, _, _)| o == off) {
        let h = rd32(c, off as usize);
        if h == 0 || h == u32::MAX {
            break;
        }
        caps.push((off, (h & 0xffff) as u16, ((h >> 16) & 0xf) as u8));
        off = ((h >> 20) & 0xffc) as u16;
    }
    caps
}

/// A decoded summary of a configuration space: IDs, class, command/status, BAR registers and
/// the capability lists.
pub fn summary(c: &[u8]) -> String {
    let mut s = String::new();
    let class = rd32(c, 0x08) >> 8;
    let _ = writeln!(
        s,
        "  IDs: vendor {:04x} device {:04x}, subsystem {:04x}:{:04x}, class {:06x} ({}), revision {:02x}",
        rd16(c, 0),
        rd16(c, 2),
        rd16(c, 0x2c),
        rd16(c, 0x2e),
        class,
        class_name(class >> 8),
        rd8(c, 0x08)
    );
    let _ = writeln!(s, "  Command {:04x}, Status {:04x}, Header type {:02x}", rd16(c, 4), rd16(c, 6), rd8(c, 0x0e));
    let pin = rd8(c, 0x3d);
    if pin != 0 {
        let _ = writeln!(s, "  Interrupt: pin {}", (b'A' + pin.saturating_sub(1).min(3)) as char);
    }
    for (off, id) in capabilities(c) {
        let _ = writeln!(s, "  Capabilities: [{off:02x}] {}", cap_name(id));
    }
    for (off, id, ver) in ext_capabilities(c) {
        let _ = writeln!(s, "  Capabilities: [{off:03x} v{ver}] {}", ext_cap_name(id));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut c = vec![0u8; 4096];
        c[0..4].copy_from_slice(&[0x4f, 0x49, 0xc8, 0x0d]);
        c[0x06] = 0x10; // capability list
        c[0x08] = 0x01;
        c[0x0b] = 0x11;
        c[0x34] = 0x40;
        c[0x40] = 0x01; // PM -> 0x50
        c[0x41] = 0x50;
        c[0x50] = 0x11; // MSI-X, end
        c[0x100..0x104].copy_from_slice(&0x0001_0003u32.to_le_bytes()); // DSN v1, end
        c
    }

    #[test]
    fn hex_lines_match_lspci_format() {
        let c = sample();
        let h = hex_lines(&c, DumpLevel::Header);
        assert_eq!(h.lines().count(), 4);
        assert!(h.starts_with("00: 4f 49 c8 0d 00 00 10 00 01 00 00 11 00 00 00 00\n"));
        assert_eq!(hex_lines(&c, DumpLevel::Conventional).lines().count(), 16);
        let x = hex_lines(&c, DumpLevel::Extended);
        assert_eq!(x.lines().count(), 256);
        assert!(x.lines().nth(16).unwrap().starts_with("100: 03 00 01 00"));
        // Short spaces read as all-ones beyond their end.
        assert!(hex_lines(&c[..8], DumpLevel::Header).starts_with("00: 4f 49 c8 0d 00 00 10 00 ff ff"));
    }

    #[test]
    fn capability_walks_stop_on_loops() {
        let mut c = sample();
        assert_eq!(capabilities(&c), vec![(0x40, 0x01), (0x50, 0x11)]);
        assert_eq!(ext_capabilities(&c), vec![(0x100, 3, 1)]);
        c[0x51] = 0x40; // loop back
        assert_eq!(capabilities(&c).len(), 2);
        c[0x102] = 0x01;
        c[0x103] = 0x10; // next = 0x100: loop
        assert_eq!(ext_capabilities(&c).len(), 1);
        let s = summary(&c);
        assert!(
            s.contains("vendor 494f device 0dc8") && s.contains("[50] MSI-X") && s.contains("Device Serial Number")
        );
    }
}
