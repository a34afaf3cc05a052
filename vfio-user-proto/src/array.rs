// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A borrowed array of wire structs inside a payload, read without copying the whole array
//! and without alignment requirements.

use std::marker::PhantomData;

use vm_memory::ByteValued;

use crate::codec::read_at;

/// `len` consecutive `T`s stored in a byte slice (any alignment).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WireArray<'a, T> {
    bytes: &'a [u8],
    _t: PhantomData<T>,
}

impl<'a, T: ByteValued + Default> WireArray<'a, T> {
    /// Wraps `bytes`, which must hold a whole number of `T`s; `None` otherwise.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        let size = std::mem::size_of::<T>();
        (size != 0 && bytes.len() % size == 0).then_some(WireArray { bytes, _t: PhantomData })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bytes.len() / std::mem::size_of::<T>()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        read_at(self.bytes, i.checked_mul(std::mem::size_of::<T>())?)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterates over the elements (copies of them).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = T> + 'a {
        let bytes = self.bytes;
        let size = std::mem::size_of::<T>();
        (0..self.len()).map(move |i| read_at(bytes, i * size).unwrap_or_default())
    }
}

impl<T: ByteValued + Default + std::fmt::Debug> std::fmt::Debug for WireArray<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
