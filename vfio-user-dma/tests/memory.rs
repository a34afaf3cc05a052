// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The vm-memory view (`DmaSpace::memory`, `DmaMemory`): `Bytes` across
//! regions, which regions it holds, unmap waiting for a held view, and dirty
//! logging of writes through it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use vfio_user_dma::vm_memory::bitmap::Bitmap;
use vfio_user_dma::vm_memory::{
    Address, Bytes, GuestAddress, GuestAddressSpace, GuestMemory, GuestMemoryBackend, GuestMemoryError,
    GuestMemoryRegion, Permissions,
};
use vfio_user_dma::{ByteValued, DmaConfig, DmaMemory, DmaProt, DmaSpace, Error, MapRequest};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}
// SAFETY: `Desc` is `repr(C)` with only integer fields and no padding (16 bytes).
unsafe impl ByteValued for Desc {}

const A: u64 = 0x10_0000;
const B: u64 = A + 4 * PAGE; // adjacent to A

/// Two adjacent mmapped regions from two memfds: [A, A + 4p) and [B, B + 4p).
fn two_regions(s: &DmaSpace) -> (Mem, Mem) {
    let (ma, mb) = (Mem::new(8 * PAGE), Mem::new(4 * PAGE));
    // A maps file offset 2 pages of `ma`.
    s.map(req(&ma, A, 4 * PAGE, 2 * PAGE, DmaProt::READ_WRITE)).unwrap();
    s.map(req(&mb, B, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    (ma, mb)
}

fn starts(m: &DmaMemory) -> Vec<u64> {
    m.iter().map(|r| r.start_addr().raw_value()).collect()
}

#[test]
fn bytes_span_adjacent_regions() {
    let s = DmaSpace::default();
    let (ma, mb) = two_regions(&s);
    let mem = s.memory();
    assert_eq!(mem.num_regions(), 2);

    // An object straddling the boundary: 8 bytes in A, 8 in B.
    let d = Desc { addr: 0x0123_4567_89ab_cdef, len: 0x1000, flags: 1, next: 9 };
    mem.write_obj(d, GuestAddress(B - 8)).unwrap();
    assert_eq!(ma.peek(6 * PAGE - 8, 8), &d.as_slice()[..8]);
    assert_eq!(mb.peek(0, 8), &d.as_slice()[8..]);
    assert_eq!(mem.read_obj::<Desc>(GuestAddress(B - 8)).unwrap(), d);
    assert_eq!(s.read_obj::<Desc>(B - 8).unwrap(), d);

    // A slice over 3 pages of A's end and B's start.
    let data = pattern(7, 3 * PAGE as usize + 5);
    let at = A + 2 * PAGE + 100;
    mem.write_slice(&data, GuestAddress(at)).unwrap();
    let split = (B - at) as usize;
    assert_eq!(ma.peek(4 * PAGE + 100, split), &data[..split]);
    assert_eq!(mb.peek(0, data.len() - split), &data[split..]);
    let mut back = vec![0u8; data.len()];
    mem.read_slice(&mut back, GuestAddress(at)).unwrap();
    assert_eq!(back, data);

    // What the client writes is seen through the view.
    mb.poke(3 * PAGE, &0xfeed_u32.to_ne_bytes());
    assert_eq!(mem.read_obj::<u32>(GuestAddress(B + 3 * PAGE)).unwrap(), 0xfeed);

    // vm-memory's GuestMemory API (as used by crates built on it).
    assert!(GuestMemory::check_range(&*mem, GuestAddress(A), 8 * PAGE as usize, Permissions::ReadWrite));
    assert!(!GuestMemory::check_range(&*mem, GuestAddress(A), 8 * PAGE as usize + 1, Permissions::Read));
    let lens: Vec<usize> = GuestMemory::get_slices(&*mem, GuestAddress(B - 10), 20, Permissions::Read)
        .unwrap()
        .map(|s| s.unwrap().len())
        .collect();
    assert_eq!(lens, vec![10, 10]);
    assert_eq!(mem.last_addr(), GuestAddress(B + 4 * PAGE - 1));

    // Past the end: error, no panic.
    assert!(matches!(mem.read_obj::<u64>(GuestAddress(B + 4 * PAGE - 4)), Err(GuestMemoryError::PartialBuffer { .. })));
    assert!(matches!(mem.write_obj(1u64, GuestAddress(u64::MAX - 3)), Err(GuestMemoryError::InvalidGuestAddress(_))));
}

#[test]
fn regions_follow_maps_and_unmaps() {
    let s = DmaSpace::default();
    let (ma, _mb) = two_regions(&s);
    let f = Mem::new(4 * PAGE);
    // Kinds left out of the view: message, FILE_IO, read-only, write-only.
    s.map(msg_req(0x20_0000, PAGE, DmaProt::READ_WRITE)).unwrap();
    s.map(MapRequest { file_io: true, ..req(&f, 0x30_0000, PAGE, 0, DmaProt::READ_WRITE) }).unwrap();
    s.map(req(&f, 0x40_0000, PAGE, PAGE, DmaProt::READ_ONLY)).unwrap();
    s.map(req(&f, 0x50_0000, PAGE, 2 * PAGE, DmaProt::WRITE_ONLY)).unwrap();
    assert_eq!(s.len(), 6);

    let v1 = s.memory();
    assert_eq!(v1.num_regions(), 2);
    assert_eq!(starts(&v1), vec![A, B]);
    let r = v1.find_region(GuestAddress(A + 5)).unwrap();
    assert_eq!((r.start_addr().raw_value(), r.len()), (A, 4 * PAGE));
    assert_eq!(v1.find_region(GuestAddress(B + 4 * PAGE - 1)).unwrap().start_addr(), GuestAddress(B));
    for hole in [0, A - 1, B + 4 * PAGE, 0x20_0000, 0x30_0000, 0x40_0000, 0x50_0000, u64::MAX] {
        assert!(v1.find_region(GuestAddress(hole)).is_none(), "{hole:#x}");
    }
    // A write through the view to the read-only mapping fails (no SIGSEGV),
    // the DmaSpace API still reads it.
    f.poke(PAGE, &[0x42; 8]);
    assert!(v1.write_obj(7u64, GuestAddress(0x40_0000)).is_err());
    assert!(v1.read_obj::<u64>(GuestAddress(0x40_0000)).is_err());
    assert_eq!(s.read_obj::<u64>(0x40_0000).unwrap(), 0x4242_4242_4242_4242);
    assert!(v1.write_obj(7u64, GuestAddress(0x30_0000)).is_err());
    assert_eq!(f.peek(0, 8), [0; 8]);

    // A later map shows up in new views only.
    let mc = Mem::new(PAGE);
    s.map(req(&mc, 0x1000, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(v1.num_regions(), 2);
    let v2 = s.memory();
    assert_eq!(starts(&v2), vec![0x1000, A, B]);
    assert_eq!(v2.num_regions(), 3);
    assert!(format!("{v2:?}").contains("mappings: 7"));
    drop((v1, v2));

    // Unmaps.
    s.unmap(A, 4 * PAGE).unwrap();
    s.unmap(0x40_0000, PAGE).unwrap();
    let v3 = s.memory();
    assert_eq!(starts(&v3), vec![0x1000, B]);
    assert_eq!(v3.num_regions(), 2);
    assert!(v3.find_region(GuestAddress(A)).is_none());
    assert!(v3.write_obj(1u8, GuestAddress(A)).is_err());
    drop(v3);
    drop(ma);
    s.unmap_all().unwrap();
    let v4 = s.memory();
    assert_eq!(v4.num_regions(), 0);
    assert_eq!(v4.iter().count(), 0);
    assert!(v4.find_region(GuestAddress(B)).is_none());
}

#[test]
fn many_regions_iterate_in_order() {
    let s = DmaSpace::default();
    let m = Mem::new(PAGE);
    // Enough for a tree of several levels; every other one message-based.
    let n = 300u64;
    for i in (0..n).rev() {
        let r = if i % 2 == 0 {
            req(&m, i * 2 * PAGE, PAGE, 0, DmaProt::READ_WRITE)
        } else {
            msg_req(i * 2 * PAGE, PAGE, DmaProt::READ_WRITE)
        };
        s.map(r).unwrap();
    }
    let v = s.memory();
    assert_eq!(v.num_regions(), n as usize / 2);
    let want: Vec<u64> = (0..n).step_by(2).map(|i| i * 2 * PAGE).collect();
    assert_eq!(starts(&v), want);
    for i in 0..n {
        let found = v.find_region(GuestAddress(i * 2 * PAGE + 8)).is_some();
        assert_eq!(found, i % 2 == 0, "region {i}");
    }
}

#[test]
fn held_view_makes_unmap_wait() {
    let s = DmaSpace::default();
    let (ma, _mb) = two_regions(&s);
    let view = s.memory();
    let released = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(2));
    let h = {
        let (released, barrier) = (released.clone(), barrier.clone());
        thread::spawn(move || {
            barrier.wait();
            thread::sleep(Duration::from_millis(100));
            // The device still uses the memory while unmap is pending.
            view.write_obj(0x5a5a_5a5a_u32, GuestAddress(A + 16)).unwrap();
            released.store(true, Ordering::SeqCst);
            drop(view);
        })
    };
    barrier.wait();
    s.unmap(A, 4 * PAGE).unwrap();
    assert!(released.load(Ordering::SeqCst), "unmap returned before the view was dropped");
    assert_eq!(ma.peek(2 * PAGE + 16, 4), 0x5a5a_5a5a_u32.to_ne_bytes());
    h.join().unwrap();
}

#[test]
fn view_held_past_the_timeout_is_ebusy() {
    let s = DmaSpace::new(DmaConfig { unmap_timeout: Duration::from_millis(50), ..Default::default() });
    let (ma, _mb) = two_regions(&s);
    let view = s.memory();
    let e = s.unmap(A, 4 * PAGE).unwrap_err();
    assert!(matches!(e, Error::RegionBusy { iova: A, .. }), "{e:?}");
    assert_eq!(e.errno(), libc::EBUSY);
    // Gone for new views and the DmaSpace API ...
    assert!(s.memory().find_region(GuestAddress(A)).is_none());
    assert_eq!(s.read_obj::<u8>(A).unwrap_err().errno(), libc::EFAULT);
    // ... but still mapped for the held one until it is dropped.
    view.write_obj(0x77u8, GuestAddress(A)).unwrap();
    assert_eq!(ma.peek(2 * PAGE, 1), [0x77]);
    drop(view);
    s.unmap(B, 4 * PAGE).unwrap();
}

/// Device code written against vm-memory's traits only.
fn device_fill<AS: GuestAddressSpace>(space: &AS, addr: u64, data: &[u8]) {
    space.memory().write_slice(data, GuestAddress(addr)).unwrap();
}

#[test]
fn writes_through_the_view_are_logged() {
    let s = DmaSpace::default();
    let (_ma, _mb) = two_regions(&s);
    s.start_logging(PAGE, &[]).unwrap();
    let mem = s.memory();
    // Pages 3 of A and 0 of B (report pages 3 and 4).
    mem.write_slice(&[1u8; 16], GuestAddress(B - 8)).unwrap();
    // Page 2 of B (report page 6), through the GuestAddressSpace of Arc<DmaMemory>.
    device_fill(&mem, B + 2 * PAGE + 5, &[2; 3]);
    // Atomic store, page 3 of B (report page 7).
    mem.store(9u32, GuestAddress(B + 3 * PAGE), Ordering::Release).unwrap();
    // Reads do not dirty pages.
    let _: u64 = mem.read_obj(GuestAddress(A)).unwrap();
    drop(mem);
    let words = s.report(A, 8 * PAGE, PAGE).unwrap();
    assert_eq!(words, vec![(1 << 3) | (1 << 4) | (1 << 6) | (1 << 7)]);
    // Reported pages were cleared.
    assert_eq!(s.report(A, 8 * PAGE, PAGE).unwrap(), vec![0]);
    // Pages marked through the view's region bitmap directly also count.
    let mem = s.memory();
    mem.find_region(GuestAddress(A)).unwrap().bitmap().mark_dirty(PAGE as usize, 1);
    drop(mem);
    assert_eq!(s.report(A, 8 * PAGE, PAGE).unwrap(), vec![1 << 1]);
}

#[test]
fn views_are_send_sync_and_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Arc<DmaMemory>>();
    check::<Arc<DmaSpace>>();
    let s = Arc::new(DmaSpace::default());
    let (_ma, _mb) = two_regions(&s);
    let h = {
        let s = Arc::clone(&s);
        thread::spawn(move || {
            s.memory().write_obj(3u16, GuestAddress(B)).unwrap();
        })
    };
    h.join().unwrap();
    assert_eq!(s.read_obj::<u16>(B).unwrap(), 3);
}
