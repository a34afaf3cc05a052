// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Randomised operations (as a hostile or buggy client and device would issue
//! them) checked against a simple model: map results and errno, unmap, and
//! device reads/writes over all three region kinds.
//!
//! All kinds share one backing store, a memfd where iova == file offset:
//! mmap and FILE_IO regions use it directly, message regions reach it through
//! a transport doing pread/pwrite. So the model needs a single byte array.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use common::*;
use vfio_user_dma::{DmaConfig, DmaProt, DmaSpace, DmaTransport, MapRequest, Result};

const WINDOW: u64 = 64 * PAGE;
/// Backing store size: the largest in-window mapping ends below it.
const FILE: u64 = WINDOW + 16 * PAGE;

struct FileTransport {
    file: File,
    max: usize,
}

impl DmaTransport for FileTransport {
    fn max_data_xfer_size(&self) -> usize {
        self.max
    }
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        assert!(buf.len() <= self.max);
        Ok(self.file.read_exact_at(buf, iova)?)
    }
    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()> {
        assert!(data.len() <= self.max);
        Ok(self.file.write_all_at(data, iova)?)
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Expected outcome of a device access in the model: `Ok` or the errno of
/// the first offending byte.
fn expect_access(
    model: &BTreeMap<u64, (u64, DmaProt)>,
    addr: u64,
    len: u64,
    write: bool,
) -> std::result::Result<(), i32> {
    let mut a = addr;
    while a < addr + len {
        let Some((&ri, &(rs, prot))) = model.range(..=a).next_back().filter(|(&ri, &(rs, _))| a < ri + rs) else {
            return Err(libc::EFAULT);
        };
        if (write && !prot.write()) || (!write && !prot.read()) {
            return Err(libc::EACCES);
        }
        a = ri + rs;
    }
    Ok(())
}

fn run(seed: u64) {
    let mem = Mem::new(FILE);
    let mut ram = vec![0u8; FILE as usize];
    let s = DmaSpace::new(DmaConfig { max_maps: 12, ..Default::default() });
    s.set_transport(Some(Arc::new(FileTransport { file: mem.file.try_clone().unwrap(), max: 1000 })));
    let mut model: BTreeMap<u64, (u64, DmaProt)> = BTreeMap::new();
    let mut rng = Rng(seed);
    // Outcomes seen, to make sure the run exercised every path.
    let mut seen: BTreeMap<(&str, i32), u32> = BTreeMap::new();
    let prots = [DmaProt::READ_ONLY, DmaProt::WRITE_ONLY, DmaProt::READ_WRITE, DmaProt::default()];
    for step in 0..3000 {
        match rng.below(10) {
            0..=2 => {
                // Map, sometimes misaligned, empty, overlapping or out of the window.
                let mut iova = rng.below(WINDOW / PAGE) * PAGE;
                let mut size = (1 + rng.below(8)) * PAGE;
                match rng.below(20) {
                    0 => iova += 1 + rng.below(PAGE - 1),
                    1 => size = rng.below(PAGE),
                    2 => iova = u64::MAX - PAGE + 1,
                    _ => {}
                }
                let prot = prots[rng.below(4) as usize];
                let kind = rng.below(3);
                let in_window = iova.checked_add(size).is_some_and(|e| e <= FILE);
                let with_fd = kind < 2 && in_window;
                let expected = if size == 0
                    || iova.checked_add(size).is_none()
                    || iova % PAGE != 0
                    || size % PAGE != 0
                    || prot == DmaProt::default()
                {
                    Err(libc::EINVAL)
                } else if model.len() >= 12 {
                    Err(libc::ENOSPC)
                } else if model.range(..iova + size).next_back().is_some_and(|(&ri, &(rs, _))| ri + rs > iova) {
                    Err(libc::EEXIST)
                } else {
                    Ok(())
                };
                let r = s.map(MapRequest {
                    iova,
                    size,
                    file_offset: if with_fd { iova } else { 0 },
                    prot,
                    fd: with_fd.then(|| mem.fd()),
                    file_io: with_fd && kind == 1,
                });
                assert_eq!(r.map_err(|e| e.errno()), expected, "step {step}: map {iova:#x}+{size:#x}");
                *seen.entry(("map", expected.err().unwrap_or(0))).or_default() += 1;
                if expected.is_ok() {
                    model.insert(iova, (size, prot));
                }
            }
            3 => {
                // Unmap: an existing mapping or a near miss.
                let (iova, size) = match model.iter().nth(rng.below(model.len() as u64 + 1) as usize) {
                    Some((&i, &(sz, _))) if rng.below(4) != 0 => (i, sz),
                    Some((&i, &(sz, _))) => (i, sz + PAGE),
                    None => (rng.below(WINDOW), PAGE),
                };
                let expected = match model.get(&iova) {
                    Some(&(sz, _)) if sz == size => Ok(()),
                    _ => Err(libc::ENOENT),
                };
                assert_eq!(s.unmap(iova, size).map_err(|e| e.errno()), expected, "step {step}: unmap");
                *seen.entry(("unmap", expected.err().unwrap_or(0))).or_default() += 1;
                if expected.is_ok() {
                    model.remove(&iova);
                }
            }
            4..=6 => {
                let addr = rng.below(WINDOW + PAGE);
                let len = rng.below(3 * PAGE) as usize;
                let data = pattern(rng.next(), len);
                let expected = expect_access(&model, addr, len as u64, true);
                assert_eq!(
                    s.write(addr, &data).map_err(|e| e.errno()),
                    expected,
                    "step {step}: write {addr:#x}+{len:#x}"
                );
                *seen.entry(("write", expected.err().unwrap_or(0))).or_default() += 1;
                if expected.is_ok() && len > 0 {
                    ram[addr as usize..addr as usize + len].copy_from_slice(&data);
                }
            }
            _ => {
                let addr = rng.below(WINDOW + PAGE);
                let len = rng.below(3 * PAGE) as usize;
                let mut buf = vec![0u8; len];
                let expected = expect_access(&model, addr, len as u64, false);
                assert_eq!(
                    s.read(addr, &mut buf).map_err(|e| e.errno()),
                    expected,
                    "step {step}: read {addr:#x}+{len:#x}"
                );
                *seen.entry(("read", expected.err().unwrap_or(0))).or_default() += 1;
                if expected.is_ok() && len > 0 {
                    assert_eq!(buf, ram[addr as usize..addr as usize + len], "step {step}: data");
                }
            }
        }
        assert_eq!(s.len(), model.len());
    }
    for key in [
        ("map", 0),
        ("map", libc::EINVAL),
        ("map", libc::EEXIST),
        ("map", libc::ENOSPC),
        ("unmap", 0),
        ("unmap", libc::ENOENT),
        ("write", 0),
        ("write", libc::EFAULT),
        ("write", libc::EACCES),
        ("read", 0),
        ("read", libc::EFAULT),
        ("read", libc::EACCES),
    ] {
        assert!(seen.get(&key).copied().unwrap_or(0) >= 5, "seed {seed:#x}: too few {key:?}: {seen:?}");
    }
    // The backing store matches the model byte for byte.
    assert_eq!(mem.peek(0, FILE as usize), ram);
    s.clear().unwrap();
    assert!(s.is_empty());
}

#[test]
fn random_ops_match_model() {
    for seed in [1u64, 0xdead_beef, 0x1234_5678_9abc] {
        run(seed);
    }
}
