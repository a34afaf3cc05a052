// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Every argument of map / unmap / logging / report comes from a possibly
//! malicious client: sweep boundary values through all of them and check
//! that nothing panics, every failure carries an errno, and the space stays
//! consistent.

mod common;

use common::*;
use vfio_user_dma::vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vfio_user_dma::{DmaConfig, DmaProt, DmaSpace, MapRequest, Result};

const ADDRS: [u64; 9] =
    [0, 1, PAGE, 0x1000_0000, 1 << 63, u64::MAX - 2 * PAGE + 1, u64::MAX - PAGE + 1, u64::MAX - 1, u64::MAX];
const SIZES: [u64; 9] = [0, 1, PAGE, 2 * PAGE, 16 * PAGE, 1 << 40, 1 << 63, u64::MAX - PAGE + 1, u64::MAX];
const PROTS: [DmaProt; 4] = [DmaProt::READ_WRITE, DmaProt::READ_ONLY, DmaProt::WRITE_ONLY, DmaProt::empty()];

/// The call failed with a real errno or succeeded.
fn sane<T>(r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let errno = e.errno();
            assert!(errno > 0, "{e:?} has no errno");
            assert!(!e.to_string().is_empty());
            None
        }
    }
}

fn consistent(s: &DmaSpace) {
    let regions = s.regions();
    assert_eq!(regions.len(), s.len());
    for w in regions.windows(2) {
        assert!(w[0].iova.checked_add(w[0].size).unwrap() <= w[1].iova, "{w:?}");
    }
    let view = s.memory();
    assert_eq!(view.num_regions(), view.iter().count());
    for r in view.iter() {
        assert_eq!(view.find_region(r.start_addr()).map(|x| x.start_addr()), Some(r.start_addr()));
        assert_eq!(view.find_region(r.last_addr()).map(|x| x.start_addr()), Some(r.start_addr()));
    }
}

/// Device accesses at both ends of a mapping; results do not matter, only
/// that they return.
fn poke_around(s: &DmaSpace, iova: u64, size: u64) {
    let last = iova + (size - 1);
    for a in [iova, last, last.saturating_sub(3), iova.wrapping_sub(1)] {
        let _ = sane(s.read_obj::<u64>(a));
        let _ = sane(s.write(a, &[0x5a; 9]));
        let _ = sane(s.translate(a, 16, true));
        let view = s.memory();
        let _ = view.write_obj(7u32, GuestAddress(a));
        let _ = view.read_obj::<u64>(GuestAddress(a));
    }
}

fn sweep(logging: bool) {
    let mem = Mem::new(16 * PAGE);
    let s = DmaSpace::new(DmaConfig { max_bitmap_bytes: 1 << 20, max_maps: 64, ..Default::default() });
    if logging {
        s.start_logging(PAGE, &[]).unwrap();
    }
    let mut mapped = 0;
    for iova in ADDRS {
        for size in SIZES {
            for (k, prot) in PROTS.into_iter().enumerate() {
                // Vary the backing and the file offset with the protection.
                let off = [0, PAGE, u64::MAX - PAGE + 1, i64::MAX as u64 + 1 - PAGE][k];
                let reqs = [
                    msg_req(iova, size, prot),
                    req(&mem, iova, size, off % (32 * PAGE), prot),
                    req(&mem, iova, size, off, prot),
                    MapRequest { file_io: true, ..req(&mem, iova, size, off, prot) },
                    MapRequest { file_io: true, ..msg_req(iova, size, prot) },
                ];
                for r in reqs {
                    if sane(s.map(r)).is_some() {
                        mapped += 1;
                        poke_around(&s, iova, size);
                        // Near misses first, then the exact unmap.
                        for (a, b) in [(iova, size.wrapping_add(PAGE)), (iova.wrapping_add(PAGE), size), (iova, 0)] {
                            assert!(sane(s.unmap(a, b)).is_none());
                        }
                        if logging {
                            let _ = sane(s.report(iova, size, PAGE));
                            sane(s.unmap_with_dirty_bitmap(iova, size, PAGE)).unwrap();
                        } else {
                            sane(s.unmap(iova, size)).unwrap();
                        }
                    }
                    consistent(&s);
                }
            }
        }
    }
    assert!(mapped > 20, "the sweep mapped only {mapped} regions");
    // Leave a few mapped for the report and logging sweeps.
    s.map(msg_req(0, 4 * PAGE, DmaProt::READ_WRITE)).unwrap();
    s.map(req(&mem, 8 * PAGE, 8 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.map(msg_req(u64::MAX - 2 * PAGE + 1, PAGE, DmaProt::READ_ONLY)).unwrap();
    s.write(8 * PAGE, &[1; 100]).unwrap();
    for iova in ADDRS {
        for len in SIZES {
            for psize in [0, 1, 3, 512, PAGE, 1 << 21, 1 << 63, u64::MAX] {
                let _ = sane(s.report(iova, len, psize));
                let _ = sane(s.unmap_with_dirty_bitmap(iova, len, psize));
            }
        }
    }
    consistent(&s);
    // Logging windows.
    s.stop_logging();
    for psize in [0, 1, PAGE - 1, PAGE, 1 << 63, u64::MAX] {
        for ranges in [
            vec![],
            vec![(0, 0)],
            vec![(u64::MAX, 1)],
            vec![(u64::MAX, 2)],
            vec![(0, u64::MAX)],
            vec![(PAGE, PAGE), (0, 2 * PAGE)],
            vec![(PAGE, PAGE), (2 * PAGE, PAGE), (u64::MAX - PAGE, PAGE)],
        ] {
            if sane(s.start_logging(psize, &ranges)).is_some() {
                s.write(8 * PAGE, &[2; 100]).unwrap();
                let _ = sane(s.report(0, u64::MAX, 1 << 40));
                let _ = sane(s.report(PAGE, 15 * PAGE, 512));
                s.stop_logging();
            }
        }
    }
    s.clear().unwrap();
    assert!(s.is_empty());
}

#[test]
fn boundary_arguments_without_logging() {
    sweep(false);
}

#[test]
fn boundary_arguments_with_logging() {
    sweep(true);
}

/// Regression (issue 16, item 1): a client that maps a 1 MiB memfd, then truncates it,
/// killed the server with SIGBUS at the device's next access. An fd that is not sealed
/// against shrinking is now reached with pread/pwrite: the device gets EFAULT and the
/// process goes on.
#[test]
fn shrinking_an_unsealed_mapped_file_gives_efault_not_sigbus() {
    const MIB: u64 = 1 << 20;
    let mem = Mem::unsealed(MIB);
    let s = DmaSpace::default();
    s.map(req(&mem, 0x10_0000, MIB, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.regions()[0].kind, vfio_user_dma::RegionKind::FileIo);
    s.write(0x10_0000, &[7; 64]).unwrap();
    mem.file.set_len(0).unwrap();
    for iova in [0x10_0000, 0x10_0000 + MIB - 8] {
        let e = s.read_obj::<u64>(iova).unwrap_err();
        assert_eq!(e.errno(), libc::EFAULT, "{e}");
        let mut buf = vec![0u8; 4096];
        assert_eq!(s.read(0x10_0000, &mut buf).unwrap_err().errno(), libc::EFAULT);
    }
    // No pointer into it exists to fault on: no zero-copy, not in the vm-memory view.
    assert_eq!(s.translate(0x10_0000, 8, false).unwrap_err().errno(), libc::ENOTSUP);
    assert_eq!(s.memory().num_regions(), 0);
    assert!(s.memory().read_obj::<u64>(GuestAddress(0x10_0000)).is_err());
    // A write past the end grows the client's file again (its business), no fault either.
    s.write(0x10_0000 + 8192, &[9; 16]).unwrap();
    assert_eq!(s.read_obj::<u8>(0x10_0000 + 8192).unwrap(), 9);
    s.unmap(0x10_0000, MIB).unwrap();
}

/// The sealed fd that is mapped cannot be shrunk at all: the seal refuses the truncate.
#[test]
fn a_sealed_mapped_file_cannot_shrink() {
    let mem = Mem::new(16 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&mem, 0, 16 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.regions()[0].kind, vfio_user_dma::RegionKind::Mmap);
    assert_eq!(s.memory().num_regions(), 1);
    let e = mem.file.set_len(0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    s.write_obj(15 * PAGE, &0x1234u64).unwrap();
    assert_eq!(s.read_obj::<u64>(15 * PAGE).unwrap(), 0x1234);
}
