// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Benchmarks of vfio-user-dma with plain `std::time::Instant`.
//!
//! Run: `cargo bench -p vfio-user-dma --bench dma` (optionally `-- quick`; the 1 MiB copies
//! run `BENCH_ROUNDS` interleaved rounds, default 31).

use std::fs::File;
use std::hint::black_box;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use vfio_user_dma::{DmaProt, DmaSpace, DmaTransport, MapRequest, Result};

const PAGE: u64 = 4096;

/// A memfd sealed against shrinking, as a VMM passes it for full speed: mapped.
fn memfd(size: u64) -> File {
    let f = unsealed_memfd(size);
    fcntl_add_seals(&f, SealFlags::SHRINK).unwrap();
    f
}

/// A memfd that may shrink: reached with pread/pwrite.
fn unsealed_memfd(size: u64) -> File {
    let f = File::from(memfd_create("vfio-user-dma-bench", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap());
    f.set_len(size).unwrap();
    f
}

fn fd_req(f: &File, iova: u64, size: u64) -> MapRequest {
    MapRequest {
        iova,
        size,
        file_offset: 0,
        prot: DmaProt::READ_WRITE,
        fd: Some(OwnedFd::from(f.try_clone().unwrap())),
        file_io: false,
    }
}

fn msg_req(iova: u64, size: u64) -> MapRequest {
    MapRequest { iova, size, prot: DmaProt::READ_WRITE, ..Default::default() }
}

/// Runs `f` `iters` times and returns the time per iteration (best of 3 runs).
fn per_iter(iters: u32, mut f: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed() / iters
        })
        .min()
        .unwrap()
}

/// Median, minimum and maximum.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn copy_bench() {
    const MIB: usize = 1 << 20;
    // Rounds of `ITERS` copies of each kind, interleaved, so that every kind sees the same
    // load; ratios are taken within a round (`BENCH_ROUNDS`, default 31).
    const ITERS: u32 = 200;
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(31);
    let f = memfd(MIB as u64);
    let s = DmaSpace::default();
    s.map(fd_req(&f, 0x1000_0000, MIB as u64)).unwrap();
    // The same size, unsealed: file I/O (pread/pwrite), for comparison.
    let loose = unsealed_memfd(MIB as u64);
    s.map(fd_req(&loose, 0x3000_0000, MIB as u64)).unwrap();
    let mut buf = vec![0u8; MIB];
    let src = vec![0x5au8; MIB];
    s.write(0x1000_0000, &src).unwrap(); // fault the pages in
    buf.copy_from_slice(&src);
    // `memcpy` speed depends a little on where source and destination sit in their pages:
    // the mapping is page-aligned, a heap buffer usually is not. A second plain copy reads
    // from a page-aligned source into the same destination as the DMA copies, for scale.
    let mut src_store = vec![0x5au8; MIB + 4096];
    let skew = src_store.as_ptr().align_offset(4096);
    let aligned = &mut src_store[skew..skew + MIB];
    aligned.fill(0x5a);
    let aligned = &*aligned;
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..ITERS {
            f();
        }
        t.elapsed() / ITERS
    };
    let names = [
        "memcpy (Vec -> Vec)",
        "DmaSpace::read (mmap -> Vec)",
        "DmaSpace::write (Vec -> mmap)",
        "DmaSpace::write, logging on",
        "translate + copy_to",
        "memcpy (page-aligned -> Vec)",
        "read, unsealed fd (pread)",
        "write, unsealed fd (pwrite)",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        let mut round = [Duration::ZERO; 8];
        round[0] = time(&mut || {
            buf.copy_from_slice(black_box(&src));
            black_box(&buf);
        });
        round[5] = time(&mut || {
            buf.copy_from_slice(black_box(aligned));
            black_box(&buf);
        });
        round[1] = time(&mut || {
            s.read(0x1000_0000, black_box(&mut buf)).unwrap();
            black_box(&buf);
        });
        round[2] = time(&mut || {
            s.write(0x1000_0000, black_box(&src)).unwrap();
        });
        s.start_logging(PAGE, &[]).unwrap();
        round[3] = time(&mut || {
            s.write(0x1000_0000, black_box(&src)).unwrap();
        });
        s.stop_logging();
        round[4] = time(&mut || {
            let g = s.translate(0x1000_0000, MIB, false).unwrap();
            for sl in g.slices() {
                sl.copy_to(black_box(&mut buf[..]));
            }
            black_box(&buf);
        });
        round[6] = time(&mut || {
            s.read(0x3000_0000, black_box(&mut buf)).unwrap();
            black_box(&buf);
        });
        round[7] = time(&mut || {
            s.write(0x3000_0000, black_box(&src)).unwrap();
        });
        for (t, d) in times.iter_mut().zip(round) {
            t.push(d.as_secs_f64());
        }
    }
    let gbs = |secs: f64| MIB as f64 / secs / 1e9;
    println!("## copy of 1 MiB ({rounds} interleaved rounds of {ITERS} copies each; median [min-max])");
    println!("{:<30} {:>9} {:>10}  {:>6}  memcpy time / time (same round)", "", "time", "", "");
    for (i, name) in names.iter().enumerate() {
        let (m, lo, hi) = stats(&times[i]);
        let ratios: Vec<f64> = times[0].iter().zip(&times[i]).map(|(b, t)| b / t).collect();
        let (r, rlo, rhi) = stats(&ratios);
        println!(
            "{name:<30} {:>7.1} us {:>6.2} GB/s  [{:.1}-{:.1} us]  {r:.2}x memcpy [{rlo:.2}-{rhi:.2}]",
            m * 1e6,
            gbs(m),
            lo * 1e6,
            hi * 1e6
        );
    }
    // Small accesses: the cost of lookup + permission check, 1 and 4096 regions mapped.
    let small = per_iter(1_000_000, || {
        black_box(s.read_obj::<u64>(black_box(0x1000_0000 + 64)).unwrap());
    });
    // The same through the vm-memory view: taking it, and a read on a held one.
    let view_take = per_iter(1_000_000, || {
        black_box(s.memory().read_obj::<u64>(GuestAddress(black_box(0x1000_0000 + 64))).unwrap());
    });
    let mem = s.memory();
    let view_held = per_iter(1_000_000, || {
        black_box(mem.read_obj::<u64>(GuestAddress(black_box(0x1000_0000 + 64))).unwrap());
    });
    drop(mem);
    for i in 0..4095u64 {
        s.map(msg_req(0x2000_0000 + i * 2 * PAGE, PAGE)).unwrap();
    }
    let small_many = per_iter(1_000_000, || {
        black_box(s.read_obj::<u64>(black_box(0x1000_0000 + 64)).unwrap());
    });
    let view_take_many = per_iter(1_000_000, || {
        black_box(s.memory().read_obj::<u64>(GuestAddress(black_box(0x1000_0000 + 64))).unwrap());
    });
    let mem = s.memory();
    let view_held_many = per_iter(1_000_000, || {
        black_box(mem.read_obj::<u64>(GuestAddress(black_box(0x1000_0000 + 64))).unwrap());
    });
    drop(mem);
    println!("read_obj::<u64>               {small:>9.1?} (1 region), {small_many:.1?} (4096 regions)");
    println!("memory() + Bytes::read_obj    {view_take:>9.1?} (1 region), {view_take_many:.1?} (4096 regions)");
    println!("Bytes::read_obj, held view    {view_held:>9.1?} (1 region), {view_held_many:.1?} (4096 regions)");
}

fn map_bench(quick: bool) {
    println!("## map + unmap (total for n regions: n DMA_MAPs then n DMA_UNMAPs)");
    let counts: &[u64] = if quick { &[1, 1024] } else { &[1, 1024, 65535] };
    for &n in counts {
        let s = DmaSpace::default();
        let t = Instant::now();
        for i in 0..n {
            s.map(msg_req(i * 2 * PAGE, PAGE)).unwrap();
        }
        let mapped = t.elapsed();
        for i in 0..n {
            s.unmap(i * 2 * PAGE, PAGE).unwrap();
        }
        let total = t.elapsed();
        println!(
            "no fd (bookkeeping only), n = {n:>5}: total {total:>10.2?} (map {mapped:.2?}, {:.2?}/op)",
            total / (2 * n as u32)
        );
    }
    // fd-backed, sealed: each map also mmaps (and closes the fd); vm.max_map_count bounds
    // n on this machine.
    let f = memfd(PAGE);
    for n in [1u64, 1024, 16384] {
        let s = DmaSpace::default();
        let t = Instant::now();
        let mut ok = 0;
        for i in 0..n {
            if s.map(fd_req(&f, i * 2 * PAGE, PAGE)).is_err() {
                break;
            }
            ok += 1;
        }
        for i in 0..ok {
            s.unmap(i * 2 * PAGE, PAGE).unwrap();
        }
        let total = t.elapsed();
        println!(
            "memfd mmap,                n = {ok:>5}: total {total:>10.2?} ({:.2?}/op){}",
            total / (2 * ok as u32).max(1),
            if ok < n { " (stopped at the fd/map limit)" } else { "" }
        );
    }
    // For comparison: rebuilding a vm-memory GuestMemoryMmap on every map
    // (insert_region copies and re-sorts the region vector): O(n) per map.
    let naive: &[u64] = if quick { &[1024] } else { &[1024, 8192] };
    for &n in naive {
        let regions: Vec<_> = (0..n)
            .map(|i| {
                Arc::new(
                    GuestRegionMmap::new(MmapRegion::<()>::new(PAGE as usize).unwrap(), GuestAddress(i * 2 * PAGE))
                        .unwrap(),
                )
            })
            .collect();
        let t = Instant::now();
        let mut gm = GuestMemoryMmap::<()>::new();
        for r in &regions {
            gm = gm.insert_region(r.clone()).unwrap();
        }
        for i in 0..n {
            gm = gm.remove_region(GuestAddress(i * 2 * PAGE), PAGE).unwrap().0;
        }
        println!("(naive GuestMemoryMmap::insert/remove_region rebuild, n = {n:>5}: {:.2?})", t.elapsed());
    }
}

/// A transport that discards everything (for marking pages of message regions).
struct Sink;

impl DmaTransport for Sink {
    fn max_data_xfer_size(&self) -> usize {
        1 << 20
    }
    fn dma_read(&self, _iova: u64, _buf: &mut [u8]) -> Result<()> {
        Ok(())
    }
    fn dma_write(&self, _iova: u64, _data: &[u8]) -> Result<()> {
        Ok(())
    }
}

fn report_bench() {
    println!("## dirty report over 64 GiB (16 x 4 GiB sparse memfd regions), 4 KiB pages");
    let s = DmaSpace::default();
    let files: Vec<File> = (0..16).map(|_| memfd(4 << 30)).collect();
    for (i, f) in files.iter().enumerate() {
        s.map(fd_req(f, (i as u64) << 32, 4 << 30)).unwrap();
    }
    s.start_logging(PAGE, &[]).unwrap();
    let clean = per_iter(20, || {
        black_box(s.report(0, 64 << 30, PAGE).unwrap());
    });
    let sparse = per_iter(20, || {
        for i in 0..1000u64 {
            s.write(i * 0x1000_1000 % (64 << 30), &[1]).unwrap();
        }
        black_box(s.report(0, 64 << 30, PAGE).unwrap());
    });
    let big_pages = per_iter(20, || {
        black_box(s.report(0, 64 << 30, 2 << 20).unwrap());
    });
    println!("clean                         {clean:>9.2?}");
    println!("1000 dirty pages (incl. 1000 writes) {sparse:>9.2?}");
    println!("clean, 2 MiB report pages     {big_pages:>9.2?}");
    s.clear().unwrap();
    drop(files);

    // Dense: every page of a 4 GiB message region dirty (no memory behind it).
    let s = DmaSpace::default();
    s.set_transport(Some(Arc::new(Sink)));
    s.map(msg_req(0, 4 << 30)).unwrap();
    s.start_logging(PAGE, &[]).unwrap();
    let fill = |s: &DmaSpace| {
        for p in 0..(4u64 << 30) / PAGE {
            s.write(p * PAGE, &[1]).unwrap();
        }
    };
    fill(&s);
    let t = Instant::now();
    let bm = s.report(0, 4 << 30, PAGE).unwrap();
    let dense_aligned = t.elapsed();
    assert!(bm.iter().all(|&w| w == !0));
    fill(&s);
    let t = Instant::now();
    let bm = s.report(0x800, 4 << 30, 1 << 16).unwrap();
    let dense_generic = t.elapsed();
    assert!(bm.iter().all(|&w| w == !0));
    println!("4 GiB fully dirty, 4 KiB pages (word copy)      {dense_aligned:>9.2?}");
    println!("4 GiB fully dirty, 64 KiB pages, unaligned iova {dense_generic:>9.2?}");
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    copy_bench();
    map_bench(quick);
    report_bench();
}
