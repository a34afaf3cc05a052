// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PCI configuration-space emulation: the type-0 header ([`config`]), the capability list
//! ([`caps`]) and the MSI-X table and PBA ([`msix`]).

pub mod caps;
pub mod config;
pub mod msix;

/// A configuration space under construction: contents, writable bits and write-1-to-clear
/// bits, byte by byte.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) data: Vec<u8>,
    pub(crate) wmask: Vec<u8>,
    pub(crate) w1c: Vec<u8>,
}

impl Image {
    pub(crate) fn new(size: usize) -> Self {
        Image { data: vec![0; size], wmask: vec![0; size], w1c: vec![0; size] }
    }

    /// Sets `bytes.len()` bytes at `off` and their writable mask.
    pub(crate) fn set(&mut self, off: usize, bytes: &[u8], wmask: &[u8]) {
        self.data[off..off + bytes.len()].copy_from_slice(bytes);
        self.wmask[off..off + wmask.len()].copy_from_slice(wmask);
    }

    pub(crate) fn set_u8(&mut self, off: usize, v: u8, wmask: u8) {
        self.set(off, &[v], &[wmask]);
    }

    pub(crate) fn set_u16(&mut self, off: usize, v: u16, wmask: u16) {
        self.set(off, &v.to_le_bytes(), &wmask.to_le_bytes());
    }

    pub(crate) fn set_u32(&mut self, off: usize, v: u32, wmask: u32) {
        self.set(off, &v.to_le_bytes(), &wmask.to_le_bytes());
    }

    pub(crate) fn set_w1c_u16(&mut self, off: usize, w1c: u16) {
        self.w1c[off..off + 2].copy_from_slice(&w1c.to_le_bytes());
    }
}

/// Reads a little-endian u16 out of `b` at `off` (0 when out of range).
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

/// Reads a little-endian u32 out of `b` at `off` (0 when out of range).
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}
