// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VIRTIO_PCI_CAP_PCI_CFG window: the driver picks a BAR, an offset and a length (1,
//! 2 or 4) in the capability, and `pci_cfg_data` then reads or writes those BAR bytes
//! through configuration space.

use super::layout::{BAR, PCI_CFG_FIELDS};

/// The window's registers (`bar`, `offset`, `length`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Window {
    bar: u8,
    offset: u32,
    length: u32,
}

const DATA: usize = 12;

impl Window {
    fn image(&self) -> [u8; 16] {
        let mut m = [0u8; 16];
        m[0] = self.bar;
        m[4..8].copy_from_slice(&self.offset.to_le_bytes());
        m[8..12].copy_from_slice(&self.length.to_le_bytes());
        m
    }

    /// The BAR access the window selects, if it is a valid one.
    fn target(&self) -> Option<(u64, usize)> {
        let n = self.length as usize;
        (u32::from(self.bar) == BAR && matches!(n, 1 | 2 | 4)).then_some((u64::from(self.offset), n))
    }

    /// Reads configuration bytes at `offset` (absolute) of the handed-over fields; reading
    /// `pci_cfg_data` reads the BAR through `bar_read`.
    pub(crate) fn read(&self, offset: u64, data: &mut [u8], bar_read: impl FnOnce(u64, &mut [u8])) {
        let mut m = self.image();
        let base = u64::from(PCI_CFG_FIELDS.start);
        let rel = offset.saturating_sub(base) as usize;
        if rel + data.len() > DATA {
            if let Some((o, n)) = self.target() {
                bar_read(o, &mut m[DATA..DATA + n]);
            }
        }
        for (i, b) in data.iter_mut().enumerate() {
            *b = m.get(rel + i).copied().unwrap_or(0);
        }
    }

    /// Writes configuration bytes; a write to `pci_cfg_data` returns the BAR write to do
    /// (offset, bytes, length).
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> Option<(u64, [u8; 4], usize)> {
        let mut m = self.image();
        let base = u64::from(PCI_CFG_FIELDS.start);
        let rel = offset.saturating_sub(base) as usize;
        for (i, &b) in data.iter().enumerate() {
            if let Some(slot) = m.get_mut(rel + i) {
                *slot = b;
            }
        }
        self.bar = m[0];
        self.offset = u32::from_le_bytes([m[4], m[5], m[6], m[7]]);
        self.length = u32::from_le_bytes([m[8], m[9], m[10], m[11]]);
        if rel + data.len() > DATA {
            let (o, n) = self.target()?;
            return Some((o, [m[12], m[13], m[14], m[15]], n));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_reads_and_writes_the_bar() {
        let base = u64::from(PCI_CFG_FIELDS.start);
        let mut w = Window::default();
        assert_eq!(w.write(base + 4, &0x14u32.to_le_bytes()), None);
        assert_eq!(w.write(base + 8, &2u32.to_le_bytes()), None);
        let mut out = [0u8; 4];
        w.read(base + 12, &mut out, |o, d| {
            assert_eq!((o, d.len()), (0x14, 2));
            d.copy_from_slice(&[0xaa, 0xbb]);
        });
        assert_eq!(out, [0xaa, 0xbb, 0, 0]);
        assert_eq!(w.write(base + 12, &[1, 2, 3, 4]), Some((0x14, [1, 2, 3, 4], 2)));
        let mut f = [0u8; 4];
        w.read(base + 4, &mut f, |_, _| panic!("not a data read"));
        assert_eq!(u32::from_le_bytes(f), 0x14);
        // Another BAR or length: nothing is accessed.
        w.write(base, &[3]);
        assert_eq!(w.write(base + 12, &[1]), None);
        w.write(base, &[0]);
        w.write(base + 8, &3u32.to_le_bytes());
        assert_eq!(w.write(base + 12, &[1]), None);
        w.read(base + 12, &mut out, |_, _| panic!("length 3 is not valid"));
        assert_eq!(out, [0; 4]);
    }
}
