// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-blk configuration space (`struct virtio_blk_config`, virtio 1.x 5.2.4), as
//! the little-endian bytes the driver reads.

/// Bytes of the configuration space up to `write_zeroes_may_unmap` and its padding.
pub const CONFIG_SIZE: usize = 60;
/// Sector size of the protocol.
pub const SECTOR_SIZE: u64 = 512;
/// `max_discard_sectors` and `max_write_zeroes_sectors` (2 GiB per segment).
pub const MAX_RANGE_SECTORS: u32 = 1 << 22;
/// `max_discard_seg` and `max_write_zeroes_seg`.
pub const MAX_RANGE_SEGMENTS: u32 = 1;
/// `discard_sector_alignment` (4 KiB).
pub const DISCARD_ALIGNMENT: u32 = 8;

/// The configuration space of a disk of `capacity` sectors served by `queues` queues of
/// `queue_size` entries.
pub fn encode(capacity: u64, queue_size: u16, queues: u16) -> [u8; CONFIG_SIZE] {
    let mut c = [0u8; CONFIG_SIZE];
    let mut put = |at: usize, b: &[u8]| c[at..at + b.len()].copy_from_slice(b);
    put(0, &capacity.to_le_bytes());
    // size_max (8) unused: no VIRTIO_BLK_F_SIZE_MAX.
    put(12, &u32::from(queue_size.saturating_sub(2).max(1)).to_le_bytes()); // seg_max
    put(20, &(SECTOR_SIZE as u32).to_le_bytes()); // blk_size
    put(34, &queues.to_le_bytes()); // num_queues
    put(36, &MAX_RANGE_SECTORS.to_le_bytes()); // max_discard_sectors
    put(40, &MAX_RANGE_SEGMENTS.to_le_bytes()); // max_discard_seg
    put(44, &DISCARD_ALIGNMENT.to_le_bytes()); // discard_sector_alignment
    put(48, &MAX_RANGE_SECTORS.to_le_bytes()); // max_write_zeroes_sectors
    put(52, &MAX_RANGE_SEGMENTS.to_le_bytes()); // max_write_zeroes_seg
    c[56] = 1; // write_zeroes_may_unmap
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_spec_puts_them() {
        let c = encode(0x1_0000_0002, 256, 4);
        assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), 0x1_0000_0002);
        assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), 254);
        assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 512);
        assert_eq!(u16::from_le_bytes(c[34..36].try_into().unwrap()), 4);
        assert_eq!(u32::from_le_bytes(c[40..44].try_into().unwrap()), 1);
        assert_eq!(c[56], 1);
    }
}
