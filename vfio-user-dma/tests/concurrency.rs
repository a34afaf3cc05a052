// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Device DMA running concurrently with map/unmap, and unmap waiting for
//! device guards.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use vfio_user_dma::{DmaConfig, DmaProt, DmaSpace, Error};

#[test]
fn device_dma_while_client_maps_and_unmaps() {
    let stable = Mem::new(16 * PAGE);
    let churn = Mem::new(16 * PAGE);
    let s = Arc::new(DmaSpace::default());
    s.map(req(&stable, 0, 16 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.start_logging(PAGE, &[]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok_churn = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..3u64 {
        let (s, stop, ok_churn) = (s.clone(), stop.clone(), ok_churn.clone());
        threads.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 200 {
                n += 1;
                // Stable memory: every access must succeed and read back.
                let off = (t * 4 + n % 4) * PAGE;
                s.write_obj(off, &n).unwrap();
                assert_eq!(s.read_obj::<u64>(off).unwrap(), n);
                // Churning memory: either it works or it is unmapped.
                let addr = 0x100000 + (n % 16) * PAGE;
                match s.write_obj(addr, &n) {
                    Ok(()) => {
                        ok_churn.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => assert_eq!(e.errno(), libc::EFAULT, "{e}"),
                }
                match s.translate(addr, 64, false) {
                    Ok(g) => assert_eq!(g.slices().map(|x| x.len()).sum::<usize>(), 64),
                    Err(e) => assert_eq!(e.errno(), libc::EFAULT),
                }
                let _ = s.report(0, 16 * PAGE, PAGE).unwrap();
            }
            n
        }));
    }
    for i in 0..300u64 {
        let size = (1 + i % 16) * PAGE;
        s.map(req(&churn, 0x100000, size, 0, DmaProt::READ_WRITE)).unwrap();
        thread::yield_now();
        s.unmap(0x100000, size).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        assert!(t.join().unwrap() >= 200);
    }
    assert_eq!(s.len(), 1);
}

#[test]
fn unmap_waits_for_guards() {
    let mem = Mem::new(4 * PAGE);
    let s = Arc::new(DmaSpace::default());
    s.map(req(&mem, 0, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    let guard = s.translate(0, 64, true).unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(2));
    let h = {
        let (released, barrier) = (released.clone(), barrier.clone());
        thread::spawn(move || {
            barrier.wait();
            thread::sleep(Duration::from_millis(100));
            // The device still uses the memory while unmap is pending.
            guard.slices().next().unwrap().copy_from(&[0x5au8; 64][..]);
            released.store(true, Ordering::SeqCst);
            drop(guard);
        })
    };
    barrier.wait();
    s.unmap(0, 4 * PAGE).unwrap();
    assert!(released.load(Ordering::SeqCst), "unmap returned before the guard was dropped");
    assert_eq!(mem.peek(0, 64), vec![0x5a; 64]);
    h.join().unwrap();
}

#[test]
fn guard_held_past_the_timeout_is_ebusy_and_mapping_is_gone() {
    let mem = Mem::new(4 * PAGE);
    let s = DmaSpace::new(DmaConfig { unmap_timeout: Duration::from_millis(50), ..Default::default() });
    s.map(req(&mem, 0, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.map(msg_req(8 * PAGE, PAGE, DmaProt::READ_WRITE)).unwrap();
    let guard = s.translate(PAGE, 16, true).unwrap();
    let e = s.unmap(0, 4 * PAGE).unwrap_err();
    assert!(matches!(e, Error::RegionBusy { iova: 0, size } if size == 4 * PAGE), "{e:?}");
    assert_eq!(e.errno(), libc::EBUSY);
    // No stale mapping ...
    assert_eq!(s.region_at(0), None);
    assert_eq!(s.len(), 1);
    assert_eq!(s.read_obj::<u8>(PAGE).unwrap_err().errno(), libc::EFAULT);
    s.map(req(&mem, 0, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    // ... yet the memory behind the guard is still valid until it is dropped.
    guard.slices().next().unwrap().copy_from(&[0x77u8; 16][..]);
    assert_eq!(mem.peek(PAGE, 16), vec![0x77; 16]);
    drop(guard);
    // unmap_all with a busy region also reports EBUSY and empties the space.
    let g2 = s.translate(0, 8, false).unwrap();
    assert_eq!(s.unmap_all().unwrap_err().errno(), libc::EBUSY);
    assert!(s.is_empty());
    drop(g2);
}
