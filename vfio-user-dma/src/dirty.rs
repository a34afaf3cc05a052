// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Dirty page logging for live migration: DEVICE_FEATURE DMA_LOGGING_START /
//! STOP / REPORT and the legacy DMA_UNMAP `GET_DIRTY_BITMAP` flag.
//!
//! Regions track writes at [`TRACK_PAGE_SIZE`] granularity while logging is
//! active; reports convert to any power-of-two page size for any address
//! range. Only bits of tracked pages that lie entirely inside the reported
//! range (and inside a logged range) are cleared, so nothing written is ever
//! lost: a page straddling the edge of a report is reported and stays dirty.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bitmap::{ReportBitmap, TRACK_PAGE_SIZE};
use crate::error::{Error, Result};
use crate::region::Region;

/// State of an active logging session.
#[derive(Debug)]
pub(crate) struct LogState {
    page_size: u64,
    /// Sorted, disjoint `[start, end)` windows; empty means everything.
    ranges: Vec<(u64, u64)>,
    /// Bytes allocated for tracking bitmaps of all regions.
    tracking_bytes: u64,
}

impl LogState {
    /// Enables tracking for a region mapped while logging is active.
    pub(crate) fn track_new_region(&mut self, region: &Region, limit: usize) -> Result<()> {
        let bytes = region.dirty().tracking_bytes();
        let total = self.tracking_bytes.saturating_add(bytes);
        if total > limit as u64 {
            return Err(Error::BitmapTooLarge { bytes: total, limit });
        }
        region.dirty().enable()?;
        self.tracking_bytes = total;
        Ok(())
    }

    /// Accounts for a removed region.
    pub(crate) fn untrack_region(&mut self, region: &Region) {
        if region.dirty().is_enabled() {
            self.tracking_bytes = self.tracking_bytes.saturating_sub(region.dirty().tracking_bytes());
        }
    }

    /// The parts of `[lo, hi)` that are logged.
    fn windows(&self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        if self.ranges.is_empty() {
            return vec![(lo, hi)];
        }
        let first = self.ranges.partition_point(|&(_, e)| e <= lo);
        self.ranges[first..].iter().take_while(|&&(s, _)| s < hi).map(|&(s, e)| (s.max(lo), e.min(hi))).collect()
    }
}

/// `EINVAL` unless `page_size` is a power of two.
pub(crate) fn check_page_size(page_size: u64) -> Result<()> {
    if page_size.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::InvalidArgument("page size is not a power of two"))
    }
}

/// Reports the dirty pages of `region` inside the logged window `[lo, hi)`
/// into `out`, whose bit `p` is the page `[base + p * psize, base + (p + 1) * psize)`
/// of the report starting at `base` (the window lies inside the report).
///
/// With `clear`, tracked pages that lie entirely inside the window (which
/// lies inside the report range) are taken out. A page straddling the edge of
/// the window is reported but kept: it may be logged in another window too,
/// whose part must be reported as well; [`report_map`] takes such pages out
/// once every window is done.
fn report_region(region: &Region, (lo, hi): (u64, u64), base: u64, psize: u64, clear: bool, out: &mut ReportBitmap) {
    let (lo, hi) = (lo.max(region.iova), hi.min(region.end()));
    if lo >= hi {
        return;
    }
    let g = TRACK_PAGE_SIZE;
    let t0 = (lo - region.iova) / g;
    let t1 = (hi - region.iova).div_ceil(g);
    // Tracked pages entirely inside the window (clipped to the region).
    let full0 = (lo - region.iova).div_ceil(g).max(t0);
    let full1 = if hi >= region.end() { t1 } else { ((hi - region.iova) / g).min(t1) };
    let dirty = region.dirty();
    let aligned = psize == g && (region.iova.wrapping_sub(base)) % g == 0;
    let mut emit = |wi: u64, bits: u64| {
        if aligned {
            // Tracked page t is report bit t + delta: shift whole words.
            let start = i128::from(wi * 64) + (i128::from(region.iova) - i128::from(base)) / i128::from(g);
            if start >= 0 {
                out.or_word_at(start as u64, bits);
            } else if start > -64 {
                out.or_word_at(0, bits >> (-start) as u32);
            }
            return;
        }
        let mut b = bits;
        while b != 0 {
            let t = wi * 64 + u64::from(b.trailing_zeros());
            b &= b - 1;
            // t < pages, so t * g < size and region.iova + t * g < end.
            let ps = (region.iova + t * g).max(lo);
            let pe = region.iova.saturating_add((t + 1).saturating_mul(g)).min(hi);
            if ps < pe {
                out.set_range((ps - base) / psize, (pe - 1 - base) / psize + 1);
            }
        }
    };
    if full0 < full1 {
        if t0 < full0 {
            dirty.scan(t0, full0, false, &mut emit);
        }
        dirty.scan(full0, full1, clear, &mut emit);
        if full1 < t1 {
            dirty.scan(full1, t1, false, &mut emit);
        }
    } else {
        dirty.scan(t0, t1, false, &mut emit);
    }
}

/// Reports (and with `clear` takes out) dirty pages of all regions of `map`
/// in `[iova, end)` that are logged.
fn report_map(
    map: &BTreeMap<u64, Arc<Region>>,
    log: &LogState,
    iova: u64,
    end: u64,
    psize: u64,
    clear: bool,
    out: &mut ReportBitmap,
) {
    let windows = log.windows(iova, end);
    let regions_in = |a: u64, b: u64| {
        let from = map.range(..=a).next_back().map_or(a, |(k, _)| *k);
        map.range(from..b).map(|(_, r)| r)
    };
    for &(a, b) in &windows {
        for region in regions_in(a, b) {
            report_region(region, (a, b), iova, psize, clear, out);
        }
    }
    if !clear {
        return;
    }
    // The pages straddling a window's edge, kept above: every window they touch is
    // reported now, so take out those lying entirely inside the report range. Taking a
    // page out reports it again (an atomic swap), so a write since the pass above is not
    // lost.
    let g = TRACK_PAGE_SIZE;
    for &(a, b) in &windows {
        for edge in [a, b - 1] {
            for region in regions_in(edge, edge + 1) {
                if edge < region.iova || edge >= region.end() {
                    continue;
                }
                let t = (edge - region.iova) / g;
                let ps = region.iova + t * g;
                let pe = ps.saturating_add(g).min(region.end());
                if ps < iova || pe > end {
                    continue; // straddles the report's edge: its other part is unreported
                }
                region.dirty().scan(t, t + 1, true, |_, _| {
                    for (wa, wb) in log.windows(ps, pe) {
                        out.set_range((wa - iova) / psize, (wb - 1 - iova) / psize + 1);
                    }
                });
            }
        }
    }
}

impl LogState {
    /// The logging session a DMA_LOGGING_START asks for, checked: `page_size` a power of two
    /// `>= 4096`, `ranges` (`(iova, length)`, empty for all memory) of non-zero length, not
    /// wrapping and not overlapping (`EINVAL` otherwise). Nothing is tracked yet.
    pub(crate) fn new(page_size: u64, ranges: &[(u64, u64)]) -> Result<LogState> {
        check_page_size(page_size)?;
        if page_size < TRACK_PAGE_SIZE {
            return Err(Error::InvalidArgument("logging page size below 4096"));
        }
        let mut windows = Vec::new();
        windows.try_reserve_exact(ranges.len()).map_err(|_| Error::OutOfMemory)?;
        for &(iova, len) in ranges {
            if len == 0 {
                return Err(Error::InvalidArgument("logging range of length 0"));
            }
            let end = iova.checked_add(len).ok_or(Error::InvalidArgument("logging range wraps"))?;
            windows.push((iova, end));
        }
        windows.sort_unstable();
        if windows.windows(2).any(|w| w[0].1 > w[1].0) {
            return Err(Error::InvalidArgument("logging ranges overlap"));
        }
        Ok(LogState { page_size, ranges: windows, tracking_bytes: 0 })
    }

    /// Starts tracking every region of `map`, within `limit` bytes of bitmaps (`E2BIG`,
    /// and then no region tracks).
    pub(crate) fn track_all(&mut self, map: &BTreeMap<u64, Arc<Region>>, limit: usize) -> Result<()> {
        let mut result = Ok(());
        for region in map.values() {
            result = self.track_new_region(region, limit);
            if result.is_err() {
                break;
            }
        }
        if result.is_err() {
            untrack_all(map);
        }
        result
    }

    /// The page size logging was started with.
    pub(crate) fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The same logged ranges with another page size, for the report of one region
    /// taken out of the map (DMA_UNMAP with a dirty bitmap).
    pub(crate) fn with_page_size(&self, page_size: u64) -> LogState {
        LogState { page_size, ranges: self.ranges.clone(), tracking_bytes: 0 }
    }
}

/// Stops tracking in every region of `map` (frees their tracking bitmaps).
pub(crate) fn untrack_all(map: &BTreeMap<u64, Arc<Region>>) {
    map.values().for_each(|r| r.dirty().disable());
}

/// Checks a DMA_LOGGING_REPORT's range and page size: `EINVAL` for a page size that is
/// not a power of two, a length of 0 or a range that wraps. Returns `(iova, end)`.
pub(crate) fn report_range(iova: u64, length: u64, page_size: u64) -> Result<(u64, u64)> {
    check_page_size(page_size)?;
    if length == 0 {
        return Err(Error::InvalidArgument("report length is 0"));
    }
    let end = iova.checked_add(length).ok_or(Error::InvalidArgument("report range wraps"))?;
    Ok((iova, end))
}

/// The dirty pages of `map` in `[iova, end)` ([`report_range`]) that `log` covers, as
/// `page_size` pages, taken out (DMA_LOGGING_REPORT); `E2BIG` past `limit` bytes.
pub(crate) fn report(
    map: &BTreeMap<u64, Arc<Region>>,
    log: &LogState,
    (iova, end): (u64, u64),
    page_size: u64,
    limit: usize,
) -> Result<Vec<u64>> {
    let mut out = ReportBitmap::new((end - iova - 1) / page_size + 1, limit)?;
    report_map(map, log, iova, end, page_size, true, &mut out);
    Ok(out.words)
}

/// The empty bitmap of a DMA_UNMAP with a dirty bitmap of `size` bytes in `page_size`
/// pages (a power of two, [`check_page_size`]): `E2BIG` past `limit` bytes.
pub(crate) fn unmap_bitmap(size: u64, page_size: u64, limit: usize) -> Result<ReportBitmap> {
    ReportBitmap::new((size - 1) / page_size + 1, limit)
}

/// Reports into `out` the pages of `region` (taken out of the map, which the device no
/// longer uses) that `log` covers: the bitmap of its DMA_UNMAP.
pub(crate) fn report_unmapped(region: &Arc<Region>, log: &LogState, out: &mut ReportBitmap) {
    let mut map = BTreeMap::new();
    map.insert(region.iova, Arc::clone(region));
    report_map(&map, log, region.iova, region.end(), log.page_size, true, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::{DmaProt, MapRequest};
    use crate::DmaSpace;

    fn region(iova: u64, size: u64) -> Region {
        let r = Region::new(MapRequest { iova, size, prot: DmaProt::READ_WRITE, ..Default::default() }).unwrap();
        r.dirty().enable().unwrap();
        r
    }

    fn set_bits(out: &ReportBitmap) -> Vec<u64> {
        (0..out.bits).filter(|&p| out.words[(p / 64) as usize] & (1 << (p % 64)) != 0).collect()
    }

    #[test]
    fn windows_clip_to_logged_ranges() {
        let all = LogState { page_size: 4096, ranges: vec![], tracking_bytes: 0 };
        assert_eq!(all.windows(5, 10), vec![(5, 10)]);
        let some = LogState { ranges: vec![(0, 10), (20, 30), (40, 50)], ..all };
        assert_eq!(some.windows(5, 45), vec![(5, 10), (20, 30), (40, 45)]);
        assert_eq!(some.windows(10, 20), vec![]);
        assert_eq!(some.windows(29, 41), vec![(29, 30), (40, 41)]);
        assert_eq!(some.windows(60, 70), vec![]);
    }

    #[test]
    fn edge_pages_are_reported_but_kept() {
        let r = region(0x10000, 0x10000); // 16 tracked pages
        r.dirty().mark(0, 0x10000);
        // Report [0x10800, 0x13800): pages 0 and 3 straddle the edges.
        let mut out = ReportBitmap::new(3, 1 << 20).unwrap();
        report_region(&r, (0x10800, 0x13800), 0x10800, 4096, true, &mut out);
        assert_eq!(set_bits(&out), vec![0, 1, 2]);
        for (page, dirty) in [(0, true), (1, false), (2, false), (3, true), (4, true)] {
            assert_eq!(r.dirty().is_dirty(page * 4096), dirty, "page {page}");
        }
        // Without `clear` nothing changes.
        let mut out = ReportBitmap::new(16, 1 << 20).unwrap();
        report_region(&r, (0x10000, 0x20000), 0x10000, 4096, false, &mut out);
        assert_eq!(set_bits(&out), [0].into_iter().chain(3..16).collect::<Vec<_>>());
        assert!(r.dirty().is_dirty(0));
    }

    #[test]
    fn region_before_report_start_shifts_words() {
        let r = region(0, 0x100000); // 256 pages
        r.dirty().mark(70 * 4096, 1);
        r.dirty().mark(130 * 4096, 1);
        // Report starts at page 66 of the region: aligned word path with a
        // negative shift.
        let mut out = ReportBitmap::new(128, 1 << 20).unwrap();
        report_region(&r, (66 * 4096, 194 * 4096), 66 * 4096, 4096, true, &mut out);
        assert_eq!(set_bits(&out), vec![4, 64]);
    }

    #[test]
    fn small_report_pages_expand_tracked_pages() {
        let r = region(0, 0x4000);
        r.dirty().mark(0x1000, 1);
        let mut out = ReportBitmap::new(32, 1 << 20).unwrap();
        report_region(&r, (0, 0x4000), 0, 512, true, &mut out);
        assert_eq!(set_bits(&out), (8..16).collect::<Vec<_>>());
    }

    #[test]
    fn report_inside_one_tracked_page_clears_nothing() {
        let r = region(0x10000, 0x2000);
        r.dirty().mark(0, 1);
        let mut out = ReportBitmap::new(2, 1 << 20).unwrap();
        report_region(&r, (0x10100, 0x10300), 0x10100, 256, true, &mut out);
        assert_eq!(set_bits(&out), vec![0, 1]);
        assert!(r.dirty().is_dirty(0), "the page extends beyond the report");
        assert!(format!("{:?}", r.dirty()).contains("enabled: true"));
    }

    #[test]
    fn tracking_budget_follows_unmaps() {
        let s = DmaSpace::new(crate::DmaConfig { max_bitmap_bytes: 16, ..Default::default() });
        let req = |iova| MapRequest {
            iova,
            size: 64 * 4096, // 8 bytes of tracking
            prot: DmaProt::READ_WRITE,
            ..Default::default()
        };
        s.start_logging(4096, &[]).unwrap();
        s.map(req(0)).unwrap();
        s.map(req(1 << 30)).unwrap();
        assert_eq!(s.map(req(2 << 30)).unwrap_err().errno(), libc::E2BIG);
        s.unmap(0, 64 * 4096).unwrap();
        s.map(req(2 << 30)).unwrap();
        s.unmap_all().unwrap();
        s.map(req(0)).unwrap();
        s.map(req(1 << 30)).unwrap();
    }

    /// Found by the dma_space fuzz target: a tracked page logged in two windows (the first
    /// ends inside it, the second starts inside it) must be reported in both parts, not
    /// taken out by the first window before the second is reported.
    #[test]
    fn a_page_split_between_two_windows_is_reported_in_both() {
        let r = Arc::new(region(0x3000, 0x4000)); // tracked pages 0x3000..0x7000
        r.dirty().mark(0x1000, 0x3000); // pages 0x4000, 0x5000, 0x6000
        let mut map = BTreeMap::new();
        map.insert(0x3000, Arc::clone(&r));
        let log = LogState { page_size: 4096, ranges: vec![(0x33e8, 0x63e9), (0x6bb8, 0xebb8)], tracking_bytes: 0 };
        let (iova, end) = (0x2343, 0x2343 + 0x23451);
        let mut out = ReportBitmap::new((end - iova) / 512 + 1, 1 << 20).unwrap();
        report_map(&map, &log, iova, end, 512, true, &mut out);
        // [0x4000, 0x63e9) -> bits 14..=32; [0x6bb8, 0x7000) -> bits 36..=38.
        assert_eq!(set_bits(&out), (14..=32).chain(36..=38).collect::<Vec<_>>());
        // Everything reported was taken out: a second report is empty.
        let mut again = ReportBitmap::new((end - iova) / 512 + 1, 1 << 20).unwrap();
        report_map(&map, &log, iova, end, 512, true, &mut again);
        assert!(set_bits(&again).is_empty());
        // A page straddling the report's edge stays dirty.
        r.dirty().mark(0x3000, 0x1000); // page 0x6000 again
        let mut part = ReportBitmap::new(2, 1 << 20).unwrap();
        report_map(&map, &log, 0x6000, 0x6800, 1024, true, &mut part);
        assert_eq!(set_bits(&part), vec![0]);
        assert!(r.dirty().is_dirty(0x3000));
    }
}
