// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Dirty page bitmaps.
//!
//! [`DirtyBitmap`] is the per-region tracking bitmap: one bit per 4 KiB page
//! ([`TRACK_PAGE_SIZE`]), allocated only while dirty logging is active (a
//! client may map huge message-based regions, so nothing is allocated up
//! front). It implements vm-memory's [`Bitmap`] trait, so every write through a
//! `GuestRegionMmap<DirtyBitmap>` or one of its `VolatileSlice`s marks pages by
//! itself. Reports take bits out with atomic `swap`/`fetch_and` on whole
//! 64-bit words, so a concurrent device write is never lost.
//!
//! [`ReportBitmap`] is the plain output bitmap of a report: page `p` is bit
//! `p % 64` of `u64` word `p / 64`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use vm_memory::bitmap::{Bitmap, RefSlice, WithBitmapSlice};

use crate::error::{Error, Result};

/// Granularity of dirty tracking inside a region, in bytes.
pub const TRACK_PAGE_SIZE: u64 = 4096;
const TRACK_SHIFT: u32 = TRACK_PAGE_SIZE.trailing_zeros();

/// Mask of the bits `[lo, hi)` of a word, `0 <= lo < hi <= 64`.
#[inline]
pub(crate) fn bit_mask(lo: u32, hi: u32) -> u64 {
    debug_assert!(lo < hi && hi <= 64);
    let upper = if hi == 64 { !0u64 } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// Allocates `n` zeroed atomic words without aborting on failure.
fn alloc_words(n: u64) -> Result<Box<[AtomicU64]>> {
    let n = usize::try_from(n).map_err(|_| Error::OutOfMemory)?;
    let mut v: Vec<AtomicU64> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory)?;
    v.resize_with(n, || AtomicU64::new(0));
    Ok(v.into_boxed_slice())
}

struct Words(Box<[AtomicU64]>);

/// Per-region dirty page tracking bitmap (one bit per [`TRACK_PAGE_SIZE`]).
///
/// Marking is a no-op while tracking is disabled (no bitmap allocated).
pub struct DirtyBitmap {
    len: u64,
    words: ArcSwapOption<Words>,
}

impl fmt::Debug for DirtyBitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirtyBitmap").field("len", &self.len).field("enabled", &self.is_enabled()).finish()
    }
}

impl DirtyBitmap {
    /// A disabled bitmap covering `len` bytes.
    pub(crate) fn new(len: u64) -> Self {
        DirtyBitmap { len, words: ArcSwapOption::empty() }
    }

    /// Number of tracked pages.
    pub(crate) fn pages(&self) -> u64 {
        self.len.div_ceil(TRACK_PAGE_SIZE)
    }

    /// Bytes of memory the tracking words need when enabled.
    pub(crate) fn tracking_bytes(&self) -> u64 {
        self.pages().div_ceil(64).saturating_mul(8)
    }

    /// Whether tracking is on.
    pub(crate) fn is_enabled(&self) -> bool {
        self.words.load().is_some()
    }

    /// Turns tracking on with all pages clean (a new, zeroed bitmap).
    pub(crate) fn enable(&self) -> Result<()> {
        let words = alloc_words(self.pages().div_ceil(64))?;
        self.words.store(Some(Arc::new(Words(words))));
        Ok(())
    }

    /// Turns tracking off and frees the bitmap.
    pub(crate) fn disable(&self) {
        self.words.store(None);
    }

    /// Marks every tracked page overlapping `[offset, offset + len)` dirty.
    /// Parts beyond the bitmap are ignored.
    pub(crate) fn mark(&self, offset: u64, len: u64) {
        if len == 0 || offset >= self.len {
            return;
        }
        let guard = self.words.load();
        let Some(words) = guard.as_ref() else {
            return;
        };
        let last = offset.saturating_add(len - 1).min(self.len - 1);
        let (p0, p1) = (offset >> TRACK_SHIFT, (last >> TRACK_SHIFT) + 1);
        for_each_word(p0, p1, |wi, mask| {
            // `wi < pages / 64 + 1 == words.len()` because `p1 <= pages`.
            let w = &words.0[wi as usize];
            if w.load(Ordering::Relaxed) & mask != mask {
                w.fetch_or(mask, Ordering::AcqRel);
            }
        });
    }

    /// Whether the page holding byte `offset` is dirty.
    pub(crate) fn is_dirty(&self, offset: u64) -> bool {
        if offset >= self.len {
            return false;
        }
        let page = offset >> TRACK_SHIFT;
        self.words
            .load()
            .as_ref()
            .is_some_and(|w| w.0[(page / 64) as usize].load(Ordering::Acquire) & (1 << (page % 64)) != 0)
    }

    /// Visits the dirty bits of tracked pages `[p0, p1)`, word by word, as
    /// `f(word_index, bits)` where bit `b` of `bits` is page `word_index * 64 + b`.
    /// With `clear`, the visited bits are atomically taken out of the bitmap.
    /// Clean words cost one relaxed load each.
    pub(crate) fn scan(&self, p0: u64, p1: u64, clear: bool, mut f: impl FnMut(u64, u64)) {
        let p1 = p1.min(self.pages());
        if p0 >= p1 {
            return;
        }
        let guard = self.words.load();
        let Some(words) = guard.as_ref() else {
            return;
        };
        for_each_word(p0, p1, |wi, mask| {
            let w = &words.0[wi as usize];
            if w.load(Ordering::Relaxed) & mask == 0 {
                return;
            }
            let old = if !clear {
                w.load(Ordering::Acquire)
            } else if mask == !0 {
                w.swap(0, Ordering::AcqRel)
            } else {
                w.fetch_and(!mask, Ordering::AcqRel)
            };
            let bits = old & mask;
            if bits != 0 {
                f(wi, bits);
            }
        });
    }
}

/// Calls `f(word_index, mask)` for every word covering bits `[p0, p1)`, `p0 < p1`.
#[inline]
fn for_each_word(p0: u64, p1: u64, mut f: impl FnMut(u64, u64)) {
    let (w0, w1) = (p0 / 64, (p1 - 1) / 64);
    for wi in w0..=w1 {
        let lo = if wi == w0 { (p0 % 64) as u32 } else { 0 };
        let hi = if wi == w1 { ((p1 - 1) % 64) as u32 + 1 } else { 64 };
        f(wi, bit_mask(lo, hi));
    }
}

impl<'a> WithBitmapSlice<'a> for DirtyBitmap {
    type S = RefSlice<'a, Self>;
}

impl Bitmap for DirtyBitmap {
    fn mark_dirty(&self, offset: usize, len: usize) {
        self.mark(offset as u64, len as u64);
    }

    fn dirty_at(&self, offset: usize) -> bool {
        self.is_dirty(offset as u64)
    }

    fn slice_at(&self, offset: usize) -> <Self as WithBitmapSlice<'_>>::S {
        RefSlice::new(self, offset)
    }
}

/// Output bitmap of a dirty report: bit `p % 64` of word `p / 64` is page `p`.
#[derive(Debug)]
pub(crate) struct ReportBitmap {
    pub(crate) words: Vec<u64>,
    pub(crate) bits: u64,
}

impl ReportBitmap {
    /// A zeroed bitmap of `bits` bits; fails with `E2BIG` when its bytes would
    /// exceed `limit`, with `ENOMEM` when the allocation fails.
    pub(crate) fn new(bits: u64, limit: usize) -> Result<Self> {
        let nwords = bits.div_ceil(64);
        let bytes = nwords.saturating_mul(8);
        if bytes > limit as u64 {
            return Err(Error::BitmapTooLarge { bytes, limit });
        }
        let n = usize::try_from(nwords).map_err(|_| Error::OutOfMemory)?;
        let mut words = Vec::new();
        words.try_reserve_exact(n).map_err(|_| Error::OutOfMemory)?;
        words.resize(n, 0);
        Ok(ReportBitmap { words, bits })
    }

    /// Sets bits `[b0, b1)` (clamped to the bitmap).
    pub(crate) fn set_range(&mut self, b0: u64, b1: u64) {
        let b1 = b1.min(self.bits);
        if b0 >= b1 {
            return;
        }
        let words = &mut self.words;
        for_each_word(b0, b1, |wi, mask| words[wi as usize] |= mask);
    }

    /// ORs `bits` into the bitmap starting at bit `at` (bits past the end are dropped).
    pub(crate) fn or_word_at(&mut self, at: u64, bits: u64) {
        if bits == 0 || at >= self.bits {
            return;
        }
        let (wi, sh) = ((at / 64) as usize, (at % 64) as u32);
        let mut bits = bits;
        let room = self.bits - at;
        if room < 64 {
            bits &= (1u64 << room) - 1;
        }
        self.words[wi] |= bits << sh;
        if sh != 0 && wi + 1 < self.words.len() {
            self.words[wi + 1] |= bits >> (64 - sh);
        }
    }

    /// The bitmap as bytes in host order of the `u64` words.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        let nbytes = self.bits.div_ceil(8) as usize;
        let mut out: Vec<u8> = self.words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        out.truncate(nbytes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(bit_mask(0, 64), !0);
        assert_eq!(bit_mask(0, 1), 1);
        assert_eq!(bit_mask(63, 64), 1 << 63);
        assert_eq!(bit_mask(4, 8), 0xf0);
    }

    #[test]
    fn disabled_marks_nothing() {
        let b = DirtyBitmap::new(1 << 20);
        assert!(!b.is_enabled());
        b.mark(0, 4096);
        assert!(!b.is_dirty(0));
        b.enable().unwrap();
        assert!(!b.is_dirty(0));
        b.mark(0, 1);
        assert!(b.is_dirty(0));
        assert!(b.is_dirty(4095));
        assert!(!b.is_dirty(4096));
        b.disable();
        assert!(!b.is_dirty(0));
    }

    #[test]
    fn mark_and_scan() {
        let b = DirtyBitmap::new(200 * TRACK_PAGE_SIZE + 1); // 201 pages
        assert_eq!(b.pages(), 201);
        b.enable().unwrap();
        // Straddles pages 62..=65; spans a word boundary.
        b.mark(62 * 4096 + 100, 3 * 4096);
        b.mark(200 * 4096, 10); // the last partial page
        b.mark(u64::MAX - 1, 10); // out of range, ignored, no overflow
        b.mark(100 * 4096, 0); // empty, ignored
        let mut got = Vec::new();
        b.scan(0, u64::MAX, false, |wi, bits| {
            for i in 0..64 {
                if bits & (1 << i) != 0 {
                    got.push(wi * 64 + i);
                }
            }
        });
        assert_eq!(got, vec![62, 63, 64, 65, 200]);
        // Clear only pages [63, 65): 62 and 65 stay.
        let mut taken = Vec::new();
        b.scan(63, 65, true, |wi, bits| taken.push((wi, bits)));
        assert_eq!(taken, vec![(0, 1 << 63), (1, 1)]);
        assert!(b.is_dirty(62 * 4096));
        assert!(!b.is_dirty(63 * 4096));
        assert!(!b.is_dirty(64 * 4096));
        assert!(b.is_dirty(65 * 4096));
        let mut n = 0;
        b.scan(0, 201, true, |_, bits| n += bits.count_ones());
        assert_eq!(n, 3);
        b.scan(0, 201, false, |_, _| panic!("all clean"));
    }

    #[test]
    fn vm_memory_bitmap_trait() {
        let b = DirtyBitmap::new(8 * 4096);
        b.enable().unwrap();
        let s = b.slice_at(4096);
        s.mark_dirty(4096, 1);
        assert!(b.dirty_at(2 * 4096));
        assert!(s.dirty_at(4096));
        assert!(!b.dirty_at(4096));
    }

    #[test]
    fn report_bitmap() {
        assert!(matches!(ReportBitmap::new(1 << 40, 1 << 20), Err(Error::BitmapTooLarge { .. })));
        let mut r = ReportBitmap::new(130, 1 << 20).unwrap();
        assert_eq!(r.words.len(), 3);
        r.set_range(60, 70);
        r.set_range(129, 1000);
        r.or_word_at(100, 0b101);
        r.or_word_at(127, 0b1111); // bits 127..131 -> only 127..130 fit
        assert_eq!(r.words[0], bit_mask(60, 64));
        assert_eq!(r.words[1], bit_mask(0, 6) | (0b101 << 36) | (1 << 63));
        assert_eq!(r.words[2], 0b11);
        let bytes = r.into_bytes();
        assert_eq!(bytes.len(), 17);
        assert_eq!(bytes[7], 0xf0);
        assert_eq!(bytes[16], 0b11);
    }
}
