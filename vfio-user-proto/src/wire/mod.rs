// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Message bodies as `#[repr(C)]` structs, one per fixed part of a payload.
//!
//! Every struct here is [`ByteValued`]: its bytes are exactly its wire form (host-endian, as
//! the current specification says), and a compile-time assertion pins its size to the
//! specification's table.

use vm_memory::ByteValued;

mod device;
mod dma;
mod feature;

pub use device::*;
pub use dma::*;
pub use feature::*;

/// Implements [`ByteValued`] for a wire struct and asserts its size.
macro_rules! wire_struct {
    ($t:ty, $size:expr) => {
        // SAFETY: the type is `repr(C)`, consists only of integers and byte arrays laid out
        // without padding (the size assertion below pins the sum of the fields), and every
        // bit pattern is a valid value.
        unsafe impl vm_memory::ByteValued for $t {}
        const _: () = assert!(std::mem::size_of::<$t>() == $size);
    };
}
pub(crate) use wire_struct;

/// Appends `head` followed by `len` zero bytes of room for data to `out`, and returns the
/// range of that room in `out`: for replies whose data is produced in place (REGION_READ,
/// MIG_DATA_READ).
pub fn append_with_room<T: ByteValued>(out: &mut Vec<u8>, head: &T, len: usize) -> std::ops::Range<usize> {
    out.extend_from_slice(head.as_slice());
    let start = out.len();
    out.resize(start + len, 0);
    start..start + len
}

/// Reads a `T` from `buf` at `off`, or `None` if `buf` is too short. Works at any alignment.
pub fn read_at<T: ByteValued + Default>(buf: &[u8], off: usize) -> Option<T> {
    let end = off.checked_add(std::mem::size_of::<T>())?;
    let bytes = buf.get(off..end)?;
    let mut v = T::default();
    v.as_mut_slice().copy_from_slice(bytes);
    Some(v)
}
