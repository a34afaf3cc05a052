// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The MSI-X table and pending-bit array, emulated inside the BAR the description names.

use std::ops::Range;

use crate::description::MsixConfig;

const ENTRY_SIZE: usize = 16;
const VECTOR_CONTROL: usize = 12;
const VECTOR_MASKED: u8 = 1;

/// The MSI-X table contents. Entries are 16 bytes: message address low/high, message data
/// and vector control (bit 0: masked). Every vector starts masked, as after a reset.
#[derive(Debug, Clone)]
pub struct MsixTable {
    bytes: Vec<u8>,
}

impl MsixTable {
    /// A table of `vectors` entries in their reset state.
    pub fn new(vectors: u16) -> Self {
        let mut t = MsixTable { bytes: vec![0; usize::from(vectors) * ENTRY_SIZE] };
        t.reset();
        t
    }

    /// Back to the reset state: zero addresses and data, every vector masked.
    pub fn reset(&mut self) {
        self.bytes.fill(0);
        for e in self.bytes.chunks_exact_mut(ENTRY_SIZE) {
            e[VECTOR_CONTROL] = VECTOR_MASKED;
        }
    }

    /// Number of vectors.
    pub fn vectors(&self) -> usize {
        self.bytes.len() / ENTRY_SIZE
    }

    /// Whether vector `v` has its mask bit set (out-of-range vectors read as masked).
    pub fn vector_masked(&self, v: usize) -> bool {
        self.bytes.get(v * ENTRY_SIZE + VECTOR_CONTROL).map_or(true, |b| b & VECTOR_MASKED != 0)
    }

    /// Message address and data of vector `v`.
    pub fn message(&self, v: usize) -> Option<(u64, u32)> {
        let e = self.bytes.get(v * ENTRY_SIZE..(v + 1) * ENTRY_SIZE)?;
        let lo = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let hi = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let data = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
        Some((u64::from(hi) << 32 | u64::from(lo), data))
    }

    /// Reads table bytes at `off`; bytes past the end read as zero.
    pub fn read(&self, off: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = off.checked_add(i).and_then(|o| self.bytes.get(o)).copied().unwrap_or(0);
        }
    }

    /// Writes table bytes at `off` (reserved vector-control bits stay zero) and returns the
    /// vectors touched.
    pub fn write(&mut self, off: usize, data: &[u8]) -> Range<usize> {
        for (i, &b) in data.iter().enumerate() {
            let Some(o) = off.checked_add(i) else { break };
            let Some(slot) = self.bytes.get_mut(o) else { break };
            *slot = match o % ENTRY_SIZE {
                VECTOR_CONTROL => b & VECTOR_MASKED,
                13..=15 => 0,
                _ => b,
            };
        }
        let first = off / ENTRY_SIZE;
        let last = off.saturating_add(data.len()).div_ceil(ENTRY_SIZE).min(self.vectors());
        first.min(last)..last
    }
}

/// Reads PBA bytes at `off`; `pending(v)` tells whether vector `v` is pending.
pub fn pba_read(vectors: usize, pending: impl Fn(usize) -> bool, off: usize, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let byte = off.saturating_add(i);
        let mut v = 0u8;
        for bit in 0..8 {
            let vec = byte.saturating_mul(8).saturating_add(bit);
            if vec < vectors && pending(vec) {
                v |= 1 << bit;
            }
        }
        *b = v;
    }
}

/// Which emulated MSI-X structure an access to a BAR falls into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixPart {
    /// The table, at this offset within it.
    Table(u64),
    /// The PBA, at this offset within it.
    Pba(u64),
    /// Neither: the device handles it.
    Device,
}

/// Splits an access of `len` bytes at `off` in BAR `bar` into runs that belong to the
/// table, the PBA or the device; returns the first run as `(part, run length)`.
pub fn classify(cfg: &MsixConfig, bar: u8, off: u64, len: u64) -> (MsixPart, u64) {
    let end = off.saturating_add(len);
    let mut runs = [(u64::MAX, 0u64, true); 2];
    if cfg.table_bar == bar {
        runs[0] = (cfg.table_offset.into(), cfg.table_size(), true);
    }
    if cfg.pba_bar == bar {
        runs[1] = (cfg.pba_offset.into(), cfg.pba_size(), false);
    }
    let mut next_start = end;
    for &(start, size, table) in &runs {
        if start == u64::MAX {
            continue;
        }
        let stop = start + size;
        if off >= start && off < stop {
            let part = if table { MsixPart::Table(off - start) } else { MsixPart::Pba(off - start) };
            return (part, stop.min(end) - off);
        }
        if start > off && start < next_start {
            next_start = start;
        }
    }
    (MsixPart::Device, next_start - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_masks_and_messages() {
        let mut t = MsixTable::new(4);
        assert!((0..4).all(|v| t.vector_masked(v)));
        assert!(t.vector_masked(99));
        let mut e = [0u8; 16];
        e[..4].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        e[8..12].copy_from_slice(&0x41u32.to_le_bytes());
        e[12] = 0xff;
        e[15] = 0xff;
        assert_eq!(t.write(16, &e), 1..2);
        assert!(t.vector_masked(1));
        let mut back = [0u8; 16];
        t.read(16, &mut back);
        assert_eq!((back[12], back[15]), (1, 0), "reserved bits stay zero");
        assert_eq!(t.message(1), Some((0xfee0_0000, 0x41)));
        assert_eq!(t.write(28, &[0, 0, 0, 0]), 1..2);
        assert!(!t.vector_masked(1));
        assert_eq!(t.write(60, &[0; 8]), 3..4, "writes past the end are dropped");
        t.reset();
        assert!(t.vector_masked(1));
    }

    #[test]
    fn pba_bits() {
        let mut b = [0u8; 2];
        pba_read(10, |v| v == 1 || v == 9, 0, &mut b);
        assert_eq!(b, [0b10, 0b10]);
        pba_read(10, |_| true, 1, &mut b[..1]);
        assert_eq!(b[0], 0b11);
    }

    #[test]
    fn classify_splits_accesses() {
        let c = MsixConfig { vectors: 4, table_bar: 0, table_offset: 0x100, pba_bar: 0, pba_offset: 0x200 };
        assert_eq!(classify(&c, 0, 0, 0x1000), (MsixPart::Device, 0x100));
        assert_eq!(classify(&c, 0, 0x100, 0x1000), (MsixPart::Table(0), 0x40));
        assert_eq!(classify(&c, 0, 0x13c, 4), (MsixPart::Table(0x3c), 4));
        assert_eq!(classify(&c, 0, 0x140, 0x1000), (MsixPart::Device, 0xc0));
        assert_eq!(classify(&c, 0, 0x204, 8), (MsixPart::Pba(4), 4));
        assert_eq!(classify(&c, 1, 0x100, 8), (MsixPart::Device, 8));
    }
}
