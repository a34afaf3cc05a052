// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A BAR mapped through its sysfs `resourceN` file, and volatile accesses to one register.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// Access width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    W8,
    W16,
    W32,
    W64,
}

impl Width {
    /// The width of `bits` bits, if it is one.
    pub fn from_bits(bits: u64) -> Option<Width> {
        Some(match bits {
            8 => Width::W8,
            16 => Width::W16,
            32 => Width::W32,
            64 => Width::W64,
            _ => return None,
        })
    }

    pub fn bits(self) -> u32 {
        match self {
            Width::W8 => 8,
            Width::W16 => 16,
            Width::W32 => 32,
            Width::W64 => 64,
        }
    }

    pub fn bytes(self) -> u64 {
        u64::from(self.bits() / 8)
    }

    /// `v` as busybox devmem prints it: 0x and upper-case hex digits, zero-padded to the width.
    pub fn format(self, v: u64) -> String {
        format!("0x{:0w$X}", v, w = (self.bits() / 4) as usize)
    }
}

/// One BAR, mapped.
pub struct MappedBar {
    base: *mut u8,
    map_len: usize,
    /// Where the BAR starts in the mapping (its address modulo the page size).
    start: usize,
    len: u64,
}

/// The start and length of BAR `bar` from a sysfs `resource` file ("start end flags" per
/// line; an unused BAR is all zeroes).
pub fn bar_range(resource: &str, bar: u32) -> Result<(u64, u64), String> {
    let line = resource.lines().nth(bar as usize).ok_or(format!("no line for BAR{bar} in resource"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("unreadable resource line {line:?}"))?;
    let [start, end, flags] = f[..] else { return Err(format!("unreadable resource line {line:?}")) };
    if end <= start {
        return Err(format!("BAR{bar} is not implemented"));
    }
    if flags & 0x100 != 0 {
        return Err(format!("BAR{bar} is an I/O BAR (cannot be mmapped)"));
    }
    Ok((start, end - start + 1))
}

impl MappedBar {
    /// Maps BAR `bar` of the sysfs device directory `device`.
    pub fn open(device: &str, bar: u32) -> Result<MappedBar, String> {
        let resource =
            std::fs::read_to_string(format!("{device}/resource")).map_err(|e| format!("{device}/resource: {e}"))?;
        let (addr, len) = bar_range(&resource, bar)?;
        let path = format!("{device}/resource{bar}");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_SYNC)
            .open(&path)
            .map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
        let start = addr % page;
        let map_len = (start + len).div_ceil(page) * page;
        let map_len = usize::try_from(map_len).map_err(|_| format!("BAR{bar} too large to map"))?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no address hint), of a file we
        // opened; nothing else in this process refers to that range. The result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(MappedBar { base: base.cast(), map_len, start: start as usize, len })
    }

    /// The register at `offset`, checked against the BAR's size and `width`'s alignment.
    pub fn register(&self, offset: u64, width: Width) -> Result<Register<'_>, String> {
        if offset % width.bytes() != 0 {
            return Err(format!("offset {offset:#x} is not aligned to {} bits", width.bits()));
        }
        match offset.checked_add(width.bytes()) {
            Some(end) if end <= self.len => {}
            _ => return Err(format!("offset {offset:#x} is past the BAR's {:#x} bytes", self.len)),
        }
        // SAFETY: start + offset + width <= start + len <= map_len: inside the mapping.
        let ptr = unsafe { self.base.add(self.start + offset as usize) };
        Ok(Register { ptr, width, _bar: self })
    }
}

impl Drop for MappedBar {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once; no Register outlives the MappedBar.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// One register of a mapped BAR.
pub struct Register<'a> {
    ptr: *mut u8,
    width: Width,
    _bar: &'a MappedBar,
}

impl Register<'_> {
    /// One load of the register's width.
    pub fn read(&self) -> u64 {
        // SAFETY: `ptr` is inside the live mapping and aligned to the width (checked in
        // `MappedBar::register`); volatile, because every access is a device access.
        unsafe {
            match self.width {
                Width::W8 => u64::from(self.ptr.read_volatile()),
                Width::W16 => u64::from(self.ptr.cast::<u16>().read_volatile()),
                Width::W32 => u64::from(self.ptr.cast::<u32>().read_volatile()),
                Width::W64 => self.ptr.cast::<u64>().read_volatile(),
            }
        }
    }

    /// One store of the register's width (`v` truncated to it).
    pub fn write(&self, v: u64) {
        // SAFETY: as in `read`.
        unsafe {
            match self.width {
                Width::W8 => self.ptr.write_volatile(v as u8),
                Width::W16 => self.ptr.cast::<u16>().write_volatile(v as u16),
                Width::W32 => self.ptr.cast::<u32>().write_volatile(v as u32),
                Width::W64 => self.ptr.cast::<u64>().write_volatile(v),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lines() {
        let r = "0x00000000fe800000 0x00000000fe800fff 0x0000000000040200\n\
                 0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                 0x000000000000c000 0x000000000000c01f 0x0000000000040101\n";
        assert_eq!(bar_range(r, 0), Ok((0xfe80_0000, 0x1000)));
        assert!(bar_range(r, 1).unwrap_err().contains("not implemented"));
        assert!(bar_range(r, 2).unwrap_err().contains("I/O BAR"));
        assert!(bar_range(r, 3).is_err());
        assert!(bar_range("0x1 0x2\n", 0).is_err());
        assert!(bar_range("zz 0x2 0x0\n", 0).is_err());
    }

    #[test]
    fn widths() {
        assert_eq!(Width::W8.format(0x5a), "0x5A");
        assert_eq!(Width::W32.format(0x5a), "0x0000005A");
        assert_eq!(Width::from_bits(64).map(Width::bytes), Some(8));
        assert_eq!(Width::from_bits(12), None);
    }
}
