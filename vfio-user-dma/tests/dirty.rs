// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Dirty page logging: reports checked bit by bit against a model, for
//! ranges inside, across and outside regions, at several page sizes.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::*;
use vfio_user_dma::{DmaConfig, DmaProt, DmaSpace, Error, MapRequest};
use vm_memory::Bytes;

/// Tracks what the device wrote, at 4 KiB granularity per region.
struct Model {
    /// (iova, size) of each region.
    regions: Vec<(u64, u64)>,
    /// (region iova, tracked page index)
    dirty: BTreeSet<(u64, u64)>,
    /// Logged windows [start, end); empty = all.
    windows: Vec<(u64, u64)>,
}

impl Model {
    fn write(&mut self, s: &DmaSpace, addr: u64, len: usize) {
        s.write(addr, &pattern(addr, len)).unwrap();
        for &(ri, rs) in &self.regions {
            let (lo, hi) = (addr.max(ri), (addr + len as u64).min(ri + rs));
            if lo < hi {
                for t in (lo - ri) / PAGE..=(hi - 1 - ri) / PAGE {
                    self.dirty.insert((ri, t));
                }
            }
        }
    }

    fn windows(&self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        if self.windows.is_empty() {
            vec![(lo, hi)]
        } else {
            self.windows.iter().map(|&(s, e)| (s.max(lo), e.min(hi))).filter(|(s, e)| s < e).collect()
        }
    }

    /// Expected report; clears pages entirely inside a reported window.
    fn report(&mut self, iova: u64, len: u64, psize: u64) -> Vec<u64> {
        let end = iova + len;
        let bits = len.div_ceil(psize);
        let mut out = vec![0u64; bits.div_ceil(64) as usize];
        let mut clear = Vec::new();
        for &(ri, t) in &self.dirty {
            let rs = self.regions.iter().find(|r| r.0 == ri).unwrap().1;
            let (ps, pe) = (ri + t * PAGE, (ri + (t + 1) * PAGE).min(ri + rs));
            for (a, b) in self.windows(iova, end) {
                let (lo, hi) = (ps.max(a), pe.min(b));
                if lo >= hi {
                    continue;
                }
                for p in (lo - iova) / psize..=(hi - 1 - iova) / psize {
                    out[(p / 64) as usize] |= 1 << (p % 64);
                }
                let (wlo, whi) = (iova.max(ri), end.min(ri + rs));
                if ps >= wlo && pe <= whi {
                    clear.push((ri, t));
                }
            }
        }
        for c in clear {
            self.dirty.remove(&c);
        }
        out
    }
}

fn bits_of(words: &[u64]) -> Vec<u64> {
    (0..words.len() as u64 * 64).filter(|&p| words[(p / 64) as usize] & (1 << (p % 64)) != 0).collect()
}

const A: u64 = 0x100000; // memfd, 64 pages
const B: u64 = A + 64 * PAGE; // message region, 32 pages, adjacent to A
const C: u64 = 0x200000; // memfd FILE_IO, 16 pages, after a hole

fn setup(windows: &[(u64, u64)]) -> (DmaSpace, Model, Mem, Mem) {
    let a = Mem::new(64 * PAGE);
    let c = Mem::new(16 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&a, A, 64 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.map(msg_req(B, 32 * PAGE, DmaProt::READ_WRITE)).unwrap();
    s.set_transport(Some(FakeClient::new(B, 32 * PAGE as usize, 1 << 16)));
    s.map(MapRequest { file_io: true, ..req(&c, C, 16 * PAGE, 0, DmaProt::READ_WRITE) }).unwrap();
    s.start_logging(PAGE, &windows.iter().map(|&(s, e)| (s, e - s)).collect::<Vec<_>>()).unwrap();
    let model = Model {
        regions: vec![(A, 64 * PAGE), (B, 32 * PAGE), (C, 16 * PAGE)],
        dirty: BTreeSet::new(),
        windows: windows.to_vec(),
    };
    (s, model, a, c)
}

fn scatter_writes(s: &DmaSpace, m: &mut Model, seed: u64) {
    let mut x = seed;
    for _ in 0..12 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let region = [(A, 64), (B, 32), (C, 16)][(x >> 60) as usize % 3];
        let off = (x >> 20) % (region.1 * PAGE);
        let len = 1 + ((x >> 8) % 3000).min(region.1 * PAGE - off - 1) as usize;
        m.write(s, region.0 + off, len);
    }
    // Across the A/B boundary.
    m.write(s, B - 10, 20);
}

fn check_all(windows: &[(u64, u64)]) {
    let (s, mut m, _a, _c) = setup(windows);
    let ranges: [(u64, u64); 9] = [
        (A, 64 * PAGE),              // exactly A
        (A + 3 * PAGE, 5 * PAGE),    // inside A
        (A + 0x1800, 70 * PAGE),     // unaligned, across A and B
        (A - 16 * PAGE, 200 * PAGE), // starts in a hole, covers all of A, B
        (0x180000, 0x80000),         // hole then C
        (0x300000, 64 * PAGE),       // only a hole
        (C + PAGE + 7, 3 * PAGE),    // inside C, unaligned
        (0, 0x400000),               // everything
        (B + 31 * PAGE, PAGE),       // last page of B
    ];
    let sizes = [PAGE, 512, 2 * PAGE, 16 * PAGE, 1 << 21, 1 << 30];
    let mut round = 0;
    for &(iova, len) in &ranges {
        for &ps in &sizes {
            round += 1;
            scatter_writes(&s, &mut m, round * 7919);
            let got = s.report(iova, len, ps).unwrap();
            let want = m.report(iova, len, ps);
            assert_eq!(got.len() as u64, len.div_ceil(ps).div_ceil(64), "bitmap length");
            assert_eq!(bits_of(&got), bits_of(&want), "report({iova:#x}, {len:#x}, {ps:#x}) windows {windows:x?}");
        }
    }
    // Everything reported twice with nothing written in between: the second
    // report only shows pages that straddled a report edge, never new ones.
    let got = s.report(0, 0x400000, PAGE).unwrap();
    assert_eq!(bits_of(&got), bits_of(&m.report(0, 0x400000, PAGE)));
    assert!(s.report(0, 0x400000, PAGE).unwrap().iter().all(|&w| w == 0));
}

#[test]
fn reports_match_model_everything_logged() {
    check_all(&[]);
}

#[test]
fn reports_match_model_with_logging_ranges() {
    check_all(&[(A + 2 * PAGE, A + 40 * PAGE), (B + 5 * PAGE + 0x800, C + 4 * PAGE)]);
}

#[test]
fn bit_layout_is_linux_iova_bitmap() {
    let mem = Mem::new(256 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&mem, 0, 256 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.start_logging(PAGE, &[]).unwrap();
    assert_eq!(s.logging_page_size(), Some(PAGE));
    for p in [0u64, 65, 130] {
        s.write(p * PAGE + 5, &[1]).unwrap();
    }
    assert_eq!(s.report(0, 256 * PAGE, PAGE).unwrap(), vec![1, 2, 4, 0]);
    for p in [0u64, 65, 130] {
        s.write(p * PAGE, &[1]).unwrap();
    }
    // 8 KiB pages: 0 -> 0, 65 -> 32, 130 -> 65.
    assert_eq!(s.report(0, 256 * PAGE, 2 * PAGE).unwrap(), vec![1 | (1 << 32), 2]);
    // Reports start at the given iova, not at the region.
    s.write(130 * PAGE, &[1]).unwrap();
    assert_eq!(s.report(128 * PAGE, 4 * PAGE, PAGE).unwrap(), vec![0b100]);
}

#[test]
fn zero_copy_writes_are_logged() {
    let mem = Mem::new(16 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&mem, 0, 16 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.start_logging(PAGE, &[]).unwrap();
    // Read translations and reads do not dirty.
    drop(s.translate(0, 4 * PAGE as usize, false).unwrap());
    s.read(0, &mut [0; 100]).unwrap();
    assert_eq!(s.report(0, 16 * PAGE, PAGE).unwrap(), vec![0]);
    // A write translation dirties the whole range when dropped.
    let g = s.translate(5 * PAGE + 1, 2 * PAGE as usize, true).unwrap();
    drop(g);
    assert_eq!(s.report(0, 16 * PAGE, PAGE).unwrap(), vec![0b111 << 5]);
    // Writes through VolatileSlice mark pages by themselves (vm-memory bitmap).
    let g = s.translate(9 * PAGE, PAGE as usize, false).unwrap();
    g.slices().next().unwrap().write_obj(7u32, 0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.report(0, 16 * PAGE, PAGE).unwrap(), vec![1 << 9]);
    drop(g);
}

#[test]
fn concurrent_writes_are_never_lost() {
    let mem = Mem::new(512 * PAGE);
    let s = Arc::new(DmaSpace::default());
    s.map(req(&mem, 0, 512 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.start_logging(PAGE, &[]).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, done) = (s.clone(), done.clone());
        thread::spawn(move || {
            for round in 0..20u64 {
                for p in 0..512u64 {
                    s.write_obj(p * PAGE + (round % 8) * 8, &round).unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut seen = vec![0u32; 512];
    let mut count = |w: &[u64]| {
        for p in bits_of(w) {
            seen[p as usize] += 1;
        }
    };
    while !done.load(Ordering::SeqCst) {
        // Overlapping reports of halves with odd edges.
        count(&s.report(0, 512 * PAGE, PAGE).unwrap());
    }
    writer.join().unwrap();
    count(&s.report(0, 512 * PAGE, PAGE).unwrap());
    // Every page was written after the start, so it shows up at least once,
    // and the final report took everything out.
    assert!(seen.iter().all(|&n| n >= 1));
    assert!(s.report(0, 512 * PAGE, PAGE).unwrap().iter().all(|&w| w == 0));
}

#[test]
fn regions_mapped_while_logging_are_tracked() {
    let s = DmaSpace::default();
    s.start_logging(PAGE, &[]).unwrap();
    let mem = Mem::new(8 * PAGE);
    s.map(req(&mem, 0x10000, 8 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.write(0x10000 + 3 * PAGE, &[1]).unwrap();
    assert_eq!(s.report(0x10000, 8 * PAGE, PAGE).unwrap(), vec![1 << 3]);
    // Unmapping and remapping starts clean.
    s.write(0x10000, &[1]).unwrap();
    s.unmap(0x10000, 8 * PAGE).unwrap();
    s.map(req(&mem, 0x10000, 8 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.report(0x10000, 8 * PAGE, PAGE).unwrap(), vec![0]);
    // Stop and start again: writes in between are not logged.
    s.stop_logging();
    assert_eq!(s.logging_page_size(), None);
    s.write(0x10000, &[1]).unwrap();
    s.start_logging(1 << 16, &[]).unwrap();
    assert_eq!(s.logging_page_size(), Some(1 << 16));
    assert_eq!(s.report(0x10000, 8 * PAGE, PAGE).unwrap(), vec![0]);
}

#[test]
fn unmap_with_dirty_bitmap() {
    let mem = Mem::new(128 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&mem, 0, 100 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.unmap_with_dirty_bitmap(0, 100 * PAGE, PAGE).unwrap_err().errno(), libc::EINVAL);
    s.start_logging(PAGE, &[]).unwrap();
    s.write(0, &[1]).unwrap();
    s.write(9 * PAGE, &[1]).unwrap();
    s.write(99 * PAGE, &[1]).unwrap();
    assert_eq!(s.unmap_with_dirty_bitmap(0, 99 * PAGE, PAGE).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(s.unmap_with_dirty_bitmap(0, 100 * PAGE, 3).unwrap_err().errno(), libc::EINVAL);
    let bytes = s.unmap_with_dirty_bitmap(0, 100 * PAGE, PAGE).unwrap();
    assert_eq!(bytes.len(), 13); // ceil(100 / 8)
    let mut want = vec![0u8; 13];
    want[0] = 1;
    want[1] = 1 << 1;
    want[12] = 1 << 3;
    assert_eq!(bytes, want);
    assert!(s.is_empty());
}

#[test]
fn bitmap_size_limits() {
    let s = DmaSpace::new(DmaConfig { max_bitmap_bytes: 64, ..Default::default() });
    // 512 pages need exactly 64 bytes of tracking.
    s.map(msg_req(0, 512 * PAGE, DmaProt::READ_WRITE)).unwrap();
    s.start_logging(PAGE, &[]).unwrap();
    assert_eq!(s.report(0, 512 * PAGE, PAGE).unwrap().len(), 8);
    let e = s.report(0, 513 * PAGE, PAGE).unwrap_err();
    assert!(matches!(e, Error::BitmapTooLarge { bytes: 72, limit: 64 }), "{e:?}");
    assert_eq!(e.errno(), libc::E2BIG);
    // Huge ranges are refused without allocating.
    assert_eq!(s.report(0, u64::MAX, 1).unwrap_err().errno(), libc::E2BIG);
    // A region mapped during logging that would exceed the tracking budget.
    assert_eq!(s.map(msg_req(1 << 40, PAGE, DmaProt::READ_WRITE)).unwrap_err().errno(), libc::E2BIG);
    s.stop_logging();
    // A huge message region is fine to map (nothing allocated) but cannot be logged.
    s.map(msg_req(1 << 40, 1 << 40, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.start_logging(PAGE, &[]).unwrap_err().errno(), libc::E2BIG);
    assert_eq!(s.logging_page_size(), None);
    assert_eq!(s.report(0, PAGE, PAGE).unwrap_err().errno(), libc::EINVAL);
}

#[test]
fn logging_argument_validation() {
    let s = DmaSpace::default();
    s.map(msg_req(0, 16 * PAGE, DmaProt::READ_WRITE)).unwrap();
    let einval = |r: vfio_user_dma::Result<()>| assert_eq!(r.unwrap_err().errno(), libc::EINVAL);
    einval(s.start_logging(0, &[]));
    einval(s.start_logging(3 * PAGE, &[]));
    einval(s.start_logging(2048, &[]));
    einval(s.start_logging(PAGE, &[(0, 0)]));
    einval(s.start_logging(PAGE, &[(u64::MAX, 2)]));
    einval(s.start_logging(PAGE, &[(0, 2 * PAGE), (PAGE, PAGE)]));
    assert_eq!(s.report(0, PAGE, PAGE).unwrap_err().errno(), libc::EINVAL, "not logging");
    s.start_logging(PAGE, &[(8 * PAGE, PAGE), (0, PAGE)]).unwrap();
    assert_eq!(s.start_logging(PAGE, &[]).unwrap_err().errno(), libc::EBUSY);
    assert_eq!(s.report(0, 0, PAGE).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(s.report(0, PAGE, 0).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(s.report(0, PAGE, 3).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(s.report(u64::MAX, 2, PAGE).unwrap_err().errno(), libc::EINVAL);
    // Largest valid range with the largest page size: one bit.
    assert_eq!(s.report(0, u64::MAX, 1 << 63).unwrap(), vec![0]);
}

#[test]
fn sixty_four_gib_sparse() {
    // 16 regions of 4 GiB backed by sparse memfds: nothing is touched but
    // the pages written.
    let s = DmaSpace::default();
    let mems: Vec<Mem> = (0..16).map(|_| Mem::new(4 << 30)).collect();
    for (i, m) in mems.iter().enumerate() {
        s.map(req(m, (i as u64) << 32, 4 << 30, 0, DmaProt::READ_WRITE)).unwrap();
    }
    s.start_logging(PAGE, &[]).unwrap();
    let pages = [0u64, 1, 1 << 20, (3 << 20) + 17, (16 << 20) - 1];
    for p in pages {
        s.write(p * PAGE, &[0xff]).unwrap();
    }
    let bm = s.report(0, 64 << 30, PAGE).unwrap();
    assert_eq!(bm.len(), (16 << 20) / 64);
    assert_eq!(bits_of(&bm), pages);
    assert!(s.report(0, 64 << 30, PAGE).unwrap().iter().all(|&w| w == 0));
    // At 2 MiB pages.
    for p in pages {
        s.write(p * PAGE, &[0xff]).unwrap();
    }
    let bm = s.report(0, 64 << 30, 2 << 20).unwrap();
    let want: Vec<u64> = pages.iter().map(|p| p / 512).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(bits_of(&bm), want);
}

#[test]
fn sub_4k_pgsizes_at_the_top_of_the_address_space() {
    // 512-byte DMA pages: a region whose size is not a multiple of the 4 KiB
    // tracking granularity, ending just below 2^64.
    let s = DmaSpace::new(DmaConfig { pgsizes: 512, ..Default::default() });
    let iova = u64::MAX - 8191;
    let size = 4096 + 1536;
    s.map(msg_req(iova, size, DmaProt::READ_WRITE)).unwrap();
    s.set_transport(Some(FakeClient::new(iova, size as usize, 4096)));
    s.start_logging(PAGE, &[]).unwrap();
    s.write(iova + size - 1, &[1]).unwrap();
    // Tracked page 1 is [iova + 4096, iova + 5632): 512-byte report bits 8, 9, 10.
    assert_eq!(bits_of(&s.report(iova, size, 512).unwrap()), vec![8, 9, 10]);
    s.write(iova + size - 1, &[1]).unwrap();
    assert_eq!(bits_of(&s.report(iova, size, PAGE).unwrap()), vec![1]);
    s.write(iova + size - 1, &[1]).unwrap();
    // A report reaching the very top of the address space.
    assert_eq!(bits_of(&s.report(iova, u64::MAX - iova, 1 << 12).unwrap()), vec![1]);
}
