// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `DmaSpace` against a model. The input is a config byte, then up to 64 operations
//! (map / unmap / unmap_all / read / write / translate / start_logging / report /
//! stop_logging / unmap_with_dirty_bitmap / shrink), each an opcode byte and its fields
//! (see the `match` in the code and `examples/gen_corpus.rs`).
//!
//! Mappings with an fd come sealed against shrinking (mmapped) or not (FILE_IO, and an
//! unsealed fd: pread/pwrite). The shrink operation truncates a mapping's file as a hostile
//! client would: a sealed file refuses (`EPERM`), an unsealed one shrinks and the model
//! expects `EFAULT` for device reads past its new end (writes grow it again) instead of a
//! crash.
//!
//! The model is a `BTreeMap` of mappings, a byte shadow of the memory every mapping shows
//! (memfds are filled with a pattern of their file offset, message regions reach an
//! in-memory "client RAM" through a fake `DmaTransport`), and the set of 4 KiB pages written
//! while logging is active. Every result (Ok or errno) must be the one the crate documents,
//! reads must return the shadow, and dirty reports must be exactly the documented bitmap
//! (the crate tracks at 4 KiB and converts; bits are exact for the pages written).

#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use common::{memfd, unsealed_memfd, Input};
use libfuzzer_sys::fuzz_target;
use vfio_user_dma::{DmaConfig, DmaSpace, DmaTransport, MapRequest, DmaProt, RegionKind, Result};

const PAGE: u64 = 4096;
/// Mappings start in the first 32 pages and are at most 4 pages long.
const SLOTS: u64 = 32;
const MEM: u64 = (SLOTS + 4) * PAGE;
const MAX_OPS: usize = 64;

/// The client's RAM for message regions.
struct Ram {
    mem: Mutex<Vec<u8>>,
    max: usize,
}

impl DmaTransport for Ram {
    fn max_data_xfer_size(&self) -> usize {
        self.max
    }
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        assert!(buf.len() <= self.max.max(1), "chunk larger than max_data_xfer_size");
        let m = self.mem.lock().unwrap();
        let a = iova as usize;
        buf.copy_from_slice(&m[a..a + buf.len()]);
        Ok(())
    }
    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()> {
        assert!(data.len() <= self.max.max(1), "chunk larger than max_data_xfer_size");
        let mut m = self.mem.lock().unwrap();
        let a = iova as usize;
        m[a..a + data.len()].copy_from_slice(data);
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Map {
    size: u64,
    prot: DmaProt,
    kind: RegionKind,
    /// The client's copy of the fd, its offset and the file's current length.
    file: Option<(Arc<std::fs::File>, u64, u64)>,
}

struct Model {
    maps: BTreeMap<u64, Map>,
    shadow: Vec<u8>,
    /// Dirty 4 KiB pages (absolute page numbers), while logging is active.
    dirty: BTreeSet<u64>,
    /// Logged windows, `Some(empty)` = everything.
    logging: Option<Vec<(u64, u64)>>,
}

impl Model {
    /// Expected outcome of a device access: Ok or the errno of the first bad byte.
    fn access(&self, addr: u64, len: u64, write: bool) -> std::result::Result<(), i32> {
        let Some(end) = addr.checked_add(len) else { return Err(libc::EFAULT) };
        let mut a = addr;
        while a < end {
            let Some((&ri, m)) = self.maps.range(..=a).next_back().filter(|(&ri, m)| a < ri + m.size) else {
                return Err(libc::EFAULT);
            };
            if (write && !m.prot.write()) || (!write && !m.prot.read()) {
                return Err(libc::EACCES);
            }
            a = ri + m.size;
        }
        Ok(())
    }

    /// Whether a read of `[addr, addr + len)` reaches past the end of a mapping's file.
    fn past_eof(&self, addr: u64, len: u64) -> bool {
        let end = addr + len;
        self.maps.range(..end).filter(|(&ri, m)| ri + m.size > addr).any(|(&ri, m)| match &m.file {
            Some((_, off, flen)) => off + (end.min(ri + m.size) - ri) > *flen,
            None => false,
        })
    }

    /// A write of `[addr, addr + len)` grows the files it reaches past their end.
    fn grow(&mut self, addr: u64, len: u64) {
        let end = addr + len;
        for (&ri, m) in self.maps.range_mut(..end) {
            if let Some((_, off, flen)) = m.file.as_mut() {
                if ri + m.size > addr {
                    *flen = (*flen).max(*off + (end.min(ri + m.size) - ri));
                }
            }
        }
    }

    fn kinds(&self, addr: u64, len: u64) -> impl Iterator<Item = RegionKind> + '_ {
        self.maps.range(..addr.saturating_add(len)).filter(move |(&ri, m)| ri + m.size > addr).map(|(_, m)| m.kind)
    }

    fn mark(&mut self, addr: u64, len: u64) {
        if self.logging.is_some() && len > 0 {
            for p in addr / PAGE..=(addr + len - 1) / PAGE {
                self.dirty.insert(p);
            }
        }
    }

    fn forget(&mut self, iova: u64, size: u64) {
        let pages: Vec<u64> = self.dirty.range(iova / PAGE..(iova + size) / PAGE).copied().collect();
        for p in pages {
            self.dirty.remove(&p);
        }
    }

    /// The documented report of `[iova, iova + len)` at `psize` (bits as u64 words), and the
    /// pages it clears.
    fn report(&self, iova: u64, len: u64, psize: u64) -> (Vec<u64>, Vec<u64>) {
        let end = iova + len;
        let bits = (len - 1) / psize + 1;
        let mut words = vec![0u64; bits.div_ceil(64) as usize];
        let all = [(0, u64::MAX)];
        let windows: &[(u64, u64)] = match &self.logging {
            Some(w) if !w.is_empty() => w,
            _ => &all,
        };
        let mut cleared = Vec::new();
        for &t in self.dirty.iter() {
            let (ps, pe) = (t * PAGE, (t + 1) * PAGE);
            let mut seen = false;
            for &(ws, we) in windows {
                let (a, b) = (ps.max(ws).max(iova), pe.min(we).min(end));
                if a < b {
                    seen = true;
                    for bit in (a - iova) / psize..=(b - 1 - iova) / psize {
                        words[(bit / 64) as usize] |= 1 << (bit % 64);
                    }
                }
            }
            if seen && ps >= iova && pe <= end {
                cleared.push(t);
            }
        }
        (words, cleared)
    }
}

fn pattern(salt: u8, off: u64) -> u8 {
    (off as u8).wrapping_mul(31) ^ ((off >> 8) as u8) ^ salt
}

fn errno<T>(r: Result<T>) -> std::result::Result<T, i32> {
    r.map_err(|e| e.errno())
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = inp.u8();
    let max_maps = 1 + usize::from(cfg % 8);
    let xfer = [1usize, 7, 512, 4096, 5000, 1 << 20][usize::from(cfg >> 3) % 6];
    let ram = Arc::new(Ram { mem: Mutex::new((0..MEM).map(|o| pattern(0x5a, o)).collect()), max: xfer });
    let space = DmaSpace::new(DmaConfig { max_maps, ..Default::default() });
    space.set_transport(Some(ram.clone()));
    let mut m = Model { maps: BTreeMap::new(), shadow: vec![0; MEM as usize], dirty: BTreeSet::new(), logging: None };
    let prots = [DmaProt::READ_ONLY, DmaProt::WRITE_ONLY, DmaProt::READ_WRITE, DmaProt::default()];

    for step in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 11 {
            // map
            0 => {
                let mut iova = u64::from(inp.u8()) % SLOTS * PAGE;
                let mut size = (1 + u64::from(inp.u8() % 4)) * PAGE;
                // 0: sealed fd (mmapped), 1: FILE_IO flag, 2: no fd, 3: unsealed fd (pread/pwrite).
                let how = inp.u8() % 4;
                let kind = match how {
                    0 => RegionKind::Mmap,
                    1 | 3 => RegionKind::FileIo,
                    _ => RegionKind::Message,
                };
                let prot = prots[usize::from(inp.u8() % 4)];
                let file_offset = u64::from(inp.u8() % 4) * PAGE;
                let salt = inp.u8();
                let mut file_len = file_offset + size;
                match inp.u8() % 16 {
                    0 => iova += 1 + u64::from(inp.u8()),
                    1 => size = 0,
                    2 => iova = u64::MAX - PAGE + 1,
                    3 => size = u64::from(inp.u8()) + 1,
                    4 => file_len = file_len.saturating_sub(PAGE).max(1),
                    _ => {}
                }
                let with_fd = kind != RegionKind::Message;
                let mut client_copy = None;
                let fd = with_fd.then(|| {
                    let fd = if how == 0 { memfd(file_len) } else { unsealed_memfd(file_len) };
                    let f = std::fs::File::from(fd);
                    let buf: Vec<u8> = (0..file_len).map(|o| pattern(salt, o)).collect();
                    f.write_all_at(&buf, 0).unwrap();
                    client_copy = Some(Arc::new(f.try_clone().unwrap()));
                    std::os::fd::OwnedFd::from(f)
                });
                let expect = if size == 0
                    || iova.checked_add(size).is_none()
                    || iova % PAGE != 0
                    || size % PAGE != 0
                    || prot == DmaProt::default()
                {
                    Err(libc::EINVAL)
                } else if m.maps.len() >= max_maps {
                    Err(libc::ENOSPC)
                } else if m.maps.range(..iova + size).next_back().is_some_and(|(&ri, r)| ri + r.size > iova) {
                    Err(libc::EEXIST)
                } else if with_fd && file_len < file_offset + size {
                    // Documented for every fd-backed mapping (map(): "an fd smaller than
                    // file_offset + size"). The generator never makes a file of size 0,
                    // which FILE_IO takes as "size unknown" (procfs).
                    Err(libc::EINVAL)
                } else {
                    Ok(())
                };
                let r = errno(space.map(MapRequest { iova, size, file_offset, prot, fd, file_io: how == 1 }));
                assert_eq!(r, expect, "step {step}: map {iova:#x}+{size:#x} {kind:?} {prot:?} file_len {file_len:#x}");
                if r.is_ok() {
                    let file = client_copy.map(|f| (f, file_offset, file_len));
                    m.maps.insert(iova, Map { size, prot, kind, file });
                    let (a, b) = (iova as usize, (iova + size) as usize);
                    if with_fd {
                        for (i, s) in m.shadow[a..b].iter_mut().enumerate() {
                            *s = pattern(salt, file_offset + i as u64);
                        }
                    } else {
                        m.shadow[a..b].copy_from_slice(&ram.mem.lock().unwrap()[a..b]);
                    }
                }
            }
            // unmap (an existing mapping or a near miss)
            1 => {
                let pick = inp.u8();
                let how = inp.u8() % 4;
                let (iova, size) = match m.maps.iter().nth(usize::from(pick) % (m.maps.len() + 1)) {
                    Some((&i, r)) if how != 0 => (i, r.size),
                    Some((&i, r)) => (i, r.size + PAGE),
                    None => (u64::from(pick) * PAGE, PAGE),
                };
                let expect = match m.maps.get(&iova) {
                    Some(r) if r.size == size => Ok(()),
                    _ => Err(libc::ENOENT),
                };
                assert_eq!(errno(space.unmap(iova, size)), expect, "step {step}: unmap {iova:#x}+{size:#x}");
                if expect.is_ok() {
                    m.maps.remove(&iova);
                    m.forget(iova, size);
                }
            }
            2 => {
                assert_eq!(errno(space.unmap_all()), Ok(()), "step {step}: unmap_all");
                m.maps.clear();
                m.dirty.clear();
            }
            // read / write / translate
            op @ 3..=5 => {
                let addr = u64::from(inp.u32()) % (MEM + PAGE);
                let len = u64::from(inp.u16()) % (3 * PAGE);
                let write = inp.u8() & 1 != 0;
                let salt = inp.u8();
                let (write, translate) = match op {
                    3 => (false, false),
                    4 => (true, false),
                    _ => (write, true),
                };
                let mut expect = m.access(addr, len, write);
                if translate && len > 0 && expect.is_ok() && m.kinds(addr, len).any(|k| k != RegionKind::Mmap) {
                    expect = Err(libc::ENOTSUP);
                }
                // A read past the end of a shrunk file: EFAULT, not SIGBUS.
                if !translate && !write && len > 0 && expect.is_ok() && m.past_eof(addr, len) {
                    expect = Err(libc::EFAULT);
                }
                let data: Vec<u8> = (0..len).map(|o| pattern(salt, o)).collect();
                let r = if translate {
                    errno(space.translate(addr, len as usize, write)).map(|g| {
                        let mut off = 0usize;
                        for s in g.slices() {
                            let n = s.len();
                            if write {
                                s.copy_from(&data[off..off + n]);
                            } else {
                                let mut got = vec![0u8; n];
                                s.copy_to(&mut got);
                                let a = addr as usize + off;
                                assert_eq!(got, m.shadow[a..a + n], "step {step}: translated data at {a:#x}");
                            }
                            off += n;
                        }
                        assert_eq!(off as u64, len, "step {step}: translate covers the range");
                    })
                } else if write {
                    errno(space.write(addr, &data))
                } else {
                    let mut buf = vec![0u8; len as usize];
                    errno(space.read(addr, &mut buf)).map(|()| {
                        let a = (addr as usize).min(m.shadow.len());
                        assert_eq!(buf, m.shadow[a..a + len as usize], "step {step}: read {addr:#x}+{len:#x}");
                    })
                };
                assert_eq!(r, expect, "step {step}: op {op} write {write} {addr:#x}+{len:#x}");
                if r.is_ok() && write && len > 0 {
                    let a = addr as usize;
                    m.shadow[a..a + len as usize].copy_from_slice(&data);
                    m.mark(addr, len);
                    m.grow(addr, len);
                }
            }
            // start_logging
            6 => {
                let psize = 1u64 << (10 + inp.u8() % 6);
                let n = usize::from(inp.u8() % 4);
                let ranges: Vec<(u64, u64)> = (0..n)
                    .map(|_| {
                        let start = u64::from(inp.u8() % 40) * PAGE + u64::from(inp.u8() % 4) * 1000;
                        let len = match inp.u8() % 8 {
                            0 => 0,
                            1 => start.wrapping_neg(),
                            _ => u64::from(inp.u16()) % (8 * PAGE) + 1,
                        };
                        (start, len)
                    })
                    .collect();
                let mut windows: Vec<(u64, u64)> = Vec::new();
                let mut bad = psize < PAGE;
                for &(s, l) in &ranges {
                    match s.checked_add(l) {
                        Some(e) if l > 0 => windows.push((s, e)),
                        _ => bad = true,
                    }
                }
                windows.sort_unstable();
                bad |= windows.windows(2).any(|w| w[0].1 > w[1].0);
                let expect = if bad {
                    Err(libc::EINVAL)
                } else if m.logging.is_some() {
                    Err(libc::EBUSY)
                } else {
                    Ok(())
                };
                assert_eq!(
                    errno(space.start_logging(psize, &ranges)),
                    expect,
                    "step {step}: start {psize} {ranges:x?}"
                );
                if expect.is_ok() {
                    m.logging = Some(windows);
                    m.dirty.clear();
                }
            }
            // report
            7 => {
                let iova = u64::from(inp.u32()) % (MEM + PAGE);
                let sel = inp.u8();
                let length = match sel % 8 {
                    0 => u64::MAX - iova,
                    1 => u64::MAX,
                    _ => u64::from(inp.u32()) % (2 * MEM + 1),
                };
                // Any power of two from 32 bytes (below the 4 KiB tracking granularity a dirty
                // tracked page sets every report bit it overlaps), and a non-power of two.
                let psize = match sel >> 6 {
                    2 | 3 => 3 * PAGE,
                    1 => 1u64 << (5 + inp.u8() % 7),
                    _ => 1u64 << (12 + inp.u8() % 8),
                };
                let expect = if !psize.is_power_of_two() || length == 0 || iova.checked_add(length).is_none() {
                    Err(libc::EINVAL)
                } else if m.logging.is_none() {
                    Err(libc::EINVAL)
                } else if ((length - 1) / psize + 1).div_ceil(64) * 8 > vfio_user_dma::DEFAULT_MAX_BITMAP_BYTES as u64 {
                    Err(libc::E2BIG)
                } else {
                    Ok(())
                };
                let r = errno(space.report(iova, length, psize));
                assert_eq!(
                    r.as_ref().map(|_| ()).map_err(|e| *e),
                    expect,
                    "step {step}: report {iova:#x}+{length:#x}/{psize}"
                );
                if let Ok(words) = r {
                    let (want, cleared) = m.report(iova, length, psize);
                    assert_eq!(
                        words,
                        want,
                        "step {step}: report {iova:#x}+{length:#x}/{psize}, dirty {:?}, logged {:x?}, maps {:x?}",
                        m.dirty,
                        m.logging,
                        m.maps.iter().map(|(i, r)| (*i, r.size)).collect::<Vec<_>>()
                    );
                    for t in cleared {
                        m.dirty.remove(&t);
                    }
                }
            }
            8 => {
                space.stop_logging();
                m.logging = None;
                m.dirty.clear();
            }
            // shrink: the client truncates a mapping's file
            10 => {
                let pick = inp.u8();
                let cut = u64::from(inp.u16()) % (5 * PAGE);
                let n = m.maps.len();
                let Some((&iova, map)) = m.maps.iter_mut().nth(usize::from(pick) % (n + 1)) else {
                    continue;
                };
                let Some((file, off, flen)) = map.file.as_mut() else { continue };
                let new_len = (*off + cut).min(*flen);
                let r = file.set_len(new_len).map_err(|e| e.raw_os_error());
                if map.kind == RegionKind::Mmap {
                    // Sealed: the kernel refuses to shrink (the same size is no shrink), the
                    // mapping stays whole.
                    let expect = if new_len < *flen { Err(Some(libc::EPERM)) } else { Ok(()) };
                    assert_eq!(r, expect, "step {step}: shrink of a sealed file");
                } else {
                    assert_eq!(r, Ok(()), "step {step}: shrink of an unsealed file");
                    let gone = new_len.saturating_sub(*off).min(map.size);
                    *flen = new_len;
                    // Bytes past the new end read as zeros once a write grows the file again.
                    let (a, b) = ((iova + gone) as usize, (iova + map.size) as usize);
                    m.shadow[a..b].fill(0);
                }
            }
            // unmap_with_dirty_bitmap
            _ => {
                let pick = inp.u8();
                let how = inp.u8();
                let psize = if how & 0x80 != 0 { 3 * PAGE } else { 1u64 << (12 + how % 4) };
                let (iova, size) = match m.maps.iter().nth(usize::from(pick) % (m.maps.len() + 1)) {
                    Some((&i, r)) if how & 0x40 == 0 => (i, r.size),
                    Some((&i, r)) => (i, r.size + PAGE),
                    None => (u64::from(pick) * PAGE, PAGE),
                };
                let expect = if !psize.is_power_of_two() || m.logging.is_none() {
                    Err(libc::EINVAL)
                } else if !m.maps.get(&iova).is_some_and(|r| r.size == size) {
                    Err(libc::ENOENT)
                } else {
                    Ok(())
                };
                let r = errno(space.unmap_with_dirty_bitmap(iova, size, psize));
                assert_eq!(
                    r.as_ref().map(|_| ()).map_err(|e| *e),
                    expect,
                    "step {step}: unmap_with_dirty_bitmap {iova:#x}+{size:#x}"
                );
                if let Ok(bytes) = r {
                    let (want, _) = m.report(iova, size, psize);
                    let bits = (size - 1) / psize + 1;
                    let mut want: Vec<u8> = want.iter().flat_map(|w| w.to_ne_bytes()).collect();
                    want.truncate(bits.div_ceil(8) as usize);
                    assert_eq!(bytes, want, "step {step}: unmap bitmap {iova:#x}+{size:#x}/{psize}");
                    m.maps.remove(&iova);
                    m.forget(iova, size);
                }
            }
        }
        assert_eq!(space.len(), m.maps.len(), "step {step}: mapping count");
    }
    assert_eq!(errno(space.clear()), Ok(()));
});
