// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! 4-byte REGION_READ round trips against an in-process responder and against our
//! `vfio-user-server` (on a thread, over a socketpair), compared with a raw socketpair
//! ping-pong of the same sizes (32-byte request, 36-byte reply) in the same round.
//!
//! `cargo bench -p vfio-user-client --bench region_read` (ops count: `BENCH_OPS`, default
//! 100000; see `main` for `BENCH_MODE`, `BENCH_THREADS`, `BENCH_ROUNDS`).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use vfio_user_client::{Client, Config, RegionReadOp};
use vfio_user_proto::request::VersionWire;
use vfio_user_proto::wire::{read_at, DeviceInfo, RegionAccess, RegionInfo, DEVICE_FLAGS_PCI};
use vfio_user_proto::{Capabilities, Command, Connection, Header};
use vm_memory::ByteValued;

/// Raw ping-pong: ops per second.
fn raw(ops: u64) -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let h = std::thread::spawn(move || {
        let mut req = [0u8; 32];
        let rep = [0u8; 36];
        while b.read_exact(&mut req).is_ok() {
            b.write_all(&rep).unwrap();
        }
    });
    let req = [0u8; 32];
    let mut rep = [0u8; 36];
    let t = Instant::now();
    for _ in 0..ops {
        a.write_all(&req).unwrap();
        a.read_exact(&mut rep).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    drop(a);
    h.join().unwrap();
    ops as f64 / secs
}

/// A minimal vfio-user responder: VERSION, DEVICE_GET_INFO, then REGION_READ replies.
fn responder(sock: UnixStream) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut c = Connection::new(sock);
        let m = c.recv().unwrap();
        let caps = Capabilities { write_multiple: true, ..Default::default() }.to_json();
        c.send(m.header.reply(0), &[VersionWire { major: 0, minor: 0 }.as_slice(), &caps], &[]).unwrap();
        let m = c.recv().unwrap();
        let info = DeviceInfo { argsz: 16, flags: DEVICE_FLAGS_PCI, num_regions: 9, num_irqs: 5 };
        c.send(m.header.reply(0), &[info.as_slice()], &[]).unwrap();
        while let Ok(m) = c.recv() {
            if m.header.command == Command::DeviceGetRegionInfo as u16 {
                // For rust-vmm's client, which reads every region's info at connect time.
                let i: RegionInfo = read_at(&m.payload, 0).unwrap();
                let r = RegionInfo { argsz: 32, flags: 3, index: i.index, cap_offset: 0, size: 0x1000, offset: 0 };
                c.send(m.header.reply(0), &[r.as_slice()], &[]).unwrap();
                continue;
            }
            if m.header.command != Command::RegionRead as u16 {
                continue;
            }
            let a: RegionAccess = read_at(&m.payload, 0).unwrap();
            c.send(m.header.reply(0), &[a.as_slice(), &[1, 2, 3, 4]], &[]).unwrap();
        }
    })
}

/// The same exchange with bare vfio-user-proto framing on both sides (no client): what the
/// framing itself costs compared with `raw`.
fn framing(ops: u64) -> f64 {
    let (a, b) = UnixStream::pair().unwrap();
    let h = responder(b);
    if std::env::var("BENCH_RCVTIMEO").is_ok() {
        a.set_read_timeout(Some(std::time::Duration::from_millis(20))).unwrap();
    }
    let mut c = Connection::new(a);
    c.send(Header::command(0, Command::Version, 0), &[VersionWire { major: 0, minor: 0 }.as_slice()], &[]).unwrap();
    c.recv().unwrap();
    c.send(Header::command(1, Command::DeviceGetInfo, 0), &[DeviceInfo::default().as_slice()], &[]).unwrap();
    c.recv().unwrap();
    let t = Instant::now();
    for i in 0..ops {
        let a = RegionAccess { offset: i % 1024, region: 0, count: 4 };
        c.send(Header::command(i as u16, Command::RegionRead, 0), &[a.as_slice()], &[]).unwrap();
        c.recv().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    drop(c);
    h.join().unwrap();
    ops as f64 / secs
}

/// Which peer the client talks to.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    /// The minimal responder above; reads of region 0.
    Responder,
    /// Our `vfio-user-server` (`Server::run()` on a thread); reads of configuration space
    /// (region 7, the vendor and device ID).
    Server,
}

struct Nothing;
impl vfio_user_server::DeviceMut for Nothing {}

fn server(sock: UnixStream) -> JoinHandle<()> {
    let desc = vfio_user_server::DeviceDescription::builder(0x1af4, 0x10f0).build().unwrap();
    let mut server = vfio_user_server::Server::new(desc, std::sync::Mutex::new(Nothing)).unwrap();
    server.set_endpoint(vfio_user_server::Endpoint::Stream(sock));
    std::thread::spawn(move || server.run().unwrap())
}

/// A client of `peer`, and the region and offsets to read.
fn client(peer: Peer) -> (Arc<Client>, JoinHandle<()>, u32, u64) {
    let (a, b) = UnixStream::pair().unwrap();
    let (h, region, span) = match peer {
        Peer::Responder => (responder(b), 0, 1024),
        Peer::Server => (server(b), 7, 64),
    };
    let c = Client::from_fd(OwnedFd::from(a), Config::default().twin_socket(false)).unwrap();
    (Arc::new(c), h, region, span)
}

/// Lock-step 4-byte reads from one thread: ops per second.
fn lockstep(ops: u64, peer: Peer) -> f64 {
    let (c, h, region, span) = client(peer);
    let mut b = [0u8; 4];
    let t = Instant::now();
    for i in 0..ops {
        c.region_read(region, (i % span) & !3, &mut b).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    c.shutdown().unwrap();
    h.join().unwrap();
    ops as f64 / secs
}

/// rust-vmm's `vfio_user::Client` 0.1.7 against the same responder, lock-step (it needs
/// `&mut self`, so no concurrency without a mutex around it).
fn rust_vmm(ops: u64) -> f64 {
    let path = std::env::temp_dir().join(format!("vfio-user-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let h = std::thread::spawn(move || responder(listener.accept().unwrap().0).join().unwrap());
    let mut c = vfio_user::Client::new(&path).unwrap();
    let mut b = [0u8; 4];
    let t = Instant::now();
    for i in 0..ops {
        c.region_read(0, i % 1024, &mut b).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    c.shutdown().unwrap();
    drop(c);
    h.join().unwrap();
    let _ = std::fs::remove_file(&path);
    ops as f64 / secs
}

/// `threads` threads reading at once: total ops per second.
fn concurrent(ops: u64, threads: u64, peer: Peer) -> f64 {
    let (c, h, region, span) = client(peer);
    let per = ops / threads;
    let t = Instant::now();
    let ts: Vec<_> = (0..threads)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 4];
                for i in 0..per {
                    c.region_read(region, (i % span) & !3, &mut b).unwrap();
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    c.shutdown().unwrap();
    h.join().unwrap();
    (per * threads) as f64 / secs
}

/// One thread keeping `depth` reads in flight with `region_read_batch`: ops per second.
fn pipelined(ops: u64, depth: u64, peer: Peer) -> f64 {
    let (c, h, region, span) = client(peer);
    let mut bufs = vec![[0u8; 4]; depth as usize];
    let rounds = ops / depth;
    let t = Instant::now();
    for r in 0..rounds {
        let mut batch: Vec<RegionReadOp<'_>> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| RegionReadOp { region, offset: ((r + i as u64) % span) & !3, data: b })
            .collect();
        c.region_read_batch(&mut batch).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    c.shutdown().unwrap();
    h.join().unwrap();
    (rounds * depth) as f64 / secs
}

/// `threads` threads each posting 4-byte writes (NO_REPLY), then one read each to make sure
/// the server has taken them all: posted writes per second, and the REGION_WRITE_MULTI
/// messages they were coalesced into.
fn posted(ops: u64, threads: u64) -> (f64, u64, u64) {
    let (c, h, _, _) = client(Peer::Responder);
    let per = ops / threads;
    let t = Instant::now();
    let ts: Vec<_> = (0..threads)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    c.region_write_posted(0, i % 1024, &[1, 2, 3, 4]).unwrap();
                }
                c.region_read(0, 0, &mut [0; 4]).unwrap();
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let st = c.stats();
    c.shutdown().unwrap();
    h.join().unwrap();
    ((per * threads) as f64 / secs, st.write_multi_messages, st.write_multi_entries)
}

/// What `threads` threads sharing one socket reach with none of vfio-user's work, woken
/// the way the client wakes its callers: 32-byte requests (the thread's index in byte 0)
/// to an echo thread that answers everything one `read` brought with one `write` of
/// 36-byte replies; a dedicated reader thread marks the replies' threads done and wakes
/// them all with one `FUTEX_WAKE_BITSET` on a shared word (each thread sleeps with bit
/// `index % 32`); a thread woken with its reply queues its next request while other woken
/// threads have not run yet, and the last one writes the queue (the client's deferred
/// sends). With `socket` false, no socket at all: the requests are handed to the echo
/// thread through a queue (the cost of the thread hand-offs alone). With `per_thread`,
/// each thread is unparked on its own (`Thread::unpark`, one system call per thread, as
/// the client did before `wake.rs`).
fn ceiling(ops: u64, threads: usize, socket: bool, per_thread: bool) -> f64 {
    use rustix::thread::futex;
    use std::num::NonZeroU32;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::thread::Thread;

    struct Slot {
        done: AtomicBool,
        thread: Mutex<Option<Thread>>,
    }
    struct Shared {
        slots: Vec<Slot>,
        /// The futex word threads sleep on (a generation counter).
        gen: AtomicU32,
        per_thread: bool,
        /// Threads woken with their reply that have not run yet.
        woken: AtomicUsize,
        /// Requests not written yet (socket), or not answered yet (no socket).
        queue: Mutex<Vec<u8>>,
        echo: Mutex<Option<Thread>>,
        stop: AtomicBool,
    }
    impl Shared {
        fn answer(&self, ids: &[u8]) {
            self.woken.fetch_add(ids.len(), Ordering::SeqCst);
            let mut mask = 0u32;
            for &i in ids {
                let s = &self.slots[i as usize];
                s.done.store(true, Ordering::SeqCst);
                if self.per_thread {
                    if let Some(t) = s.thread.lock().unwrap().as_ref() {
                        t.unpark();
                    }
                }
                mask |= 1 << (i % 32);
            }
            if !self.per_thread {
                self.gen.fetch_add(1, Ordering::SeqCst);
                let mask = NonZeroU32::new(mask).unwrap();
                let _ = futex::wake_bitset(&self.gen, futex::Flags::PRIVATE, i32::MAX as u32, mask);
            }
        }
        fn wait(&self, i: usize) {
            let bit = NonZeroU32::new(1 << (i % 32)).unwrap();
            loop {
                let seen = self.gen.load(Ordering::SeqCst);
                if self.slots[i].done.load(Ordering::SeqCst) {
                    return;
                }
                if self.per_thread {
                    std::thread::park();
                } else {
                    let _ = futex::wait_bitset(&self.gen, futex::Flags::PRIVATE, seen, None, bit);
                }
            }
        }
    }
    let sh = Arc::new(Shared {
        slots: (0..threads).map(|_| Slot { done: AtomicBool::new(false), thread: Mutex::new(None) }).collect(),
        gen: AtomicU32::new(0),
        per_thread,
        woken: AtomicUsize::new(0),
        queue: Mutex::new(Vec::new()),
        echo: Mutex::new(None),
        stop: AtomicBool::new(false),
    });
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut helpers = Vec::new();
    if socket {
        helpers.push(std::thread::spawn(move || {
            let (mut buf, mut have, mut out) = (vec![0u8; 65536], 0, Vec::new());
            while let Ok(n @ 1..) = b.read(&mut buf[have..]) {
                have += n;
                let whole = have / 32 * 32;
                out.clear();
                for req in buf[..whole].chunks(32) {
                    out.extend_from_slice(&[req[0]; 36]);
                }
                buf.copy_within(whole..have, 0);
                have -= whole;
                if b.write_all(&out).is_err() {
                    return;
                }
            }
        }));
        let (sh, mut rd) = (sh.clone(), a.try_clone().unwrap());
        helpers.push(std::thread::spawn(move || {
            let (mut buf, mut have, mut ids) = (vec![0u8; 65536], 0, Vec::new());
            while let Ok(n @ 1..) = rd.read(&mut buf[have..]) {
                have += n;
                let whole = have / 36 * 36;
                ids.clear();
                ids.extend(buf[..whole].chunks(36).map(|r| r[0]));
                sh.answer(&ids);
                buf.copy_within(whole..have, 0);
                have -= whole;
            }
        }));
    } else {
        let sh2 = sh.clone();
        helpers.push(std::thread::spawn(move || {
            *sh2.echo.lock().unwrap() = Some(std::thread::current());
            let mut ids = Vec::new();
            while !sh2.stop.load(Ordering::SeqCst) {
                std::mem::swap(&mut ids, &mut *sh2.queue.lock().unwrap());
                if ids.is_empty() {
                    std::thread::park();
                    continue;
                }
                sh2.answer(&ids);
                ids.clear();
            }
        }));
        while sh.echo.lock().unwrap().is_none() {
            std::thread::yield_now();
        }
    }
    let writer = Arc::new(Mutex::new(a));
    let per = ops / threads as u64;
    let t = Instant::now();
    let ts: Vec<_> = (0..threads)
        .map(|i| {
            let (sh, writer) = (sh.clone(), writer.clone());
            std::thread::spawn(move || {
                *sh.slots[i].thread.lock().unwrap() = Some(std::thread::current());
                let mut local = Vec::new();
                for k in 0..per {
                    sh.slots[i].done.store(false, Ordering::SeqCst);
                    let mut q = sh.queue.lock().unwrap();
                    let left = if k == 0 { 0 } else { sh.woken.fetch_sub(1, Ordering::SeqCst) - 1 };
                    if socket {
                        q.extend_from_slice(&[i as u8; 32]);
                        if left == 0 {
                            std::mem::swap(&mut local, &mut *q);
                            drop(q);
                            writer.lock().unwrap().write_all(&local).unwrap();
                            local.clear();
                        } else {
                            drop(q);
                        }
                    } else {
                        q.push(i as u8);
                        drop(q);
                        sh.echo.lock().unwrap().as_ref().unwrap().unpark();
                    }
                    sh.wait(i);
                }
                // Whatever the others deferred to this thread.
                sh.woken.fetch_sub(1, Ordering::SeqCst);
                if socket {
                    let rest = std::mem::take(&mut *sh.queue.lock().unwrap());
                    if !rest.is_empty() {
                        writer.lock().unwrap().write_all(&rest).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    let rate = (per * threads as u64) as f64 / t.elapsed().as_secs_f64();
    sh.stop.store(true, Ordering::SeqCst);
    if let Some(e) = sh.echo.lock().unwrap().as_ref() {
        e.unpark();
    }
    let _ = writer.lock().unwrap().shutdown(std::net::Shutdown::Both);
    for h in helpers {
        h.join().unwrap();
    }
    rate
}

/// Median, minimum and maximum.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let ops: u64 = std::env::var("BENCH_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run a smoke round.
    let ops = if std::env::args().any(|a| a == "--bench") { ops } else { 1000 };
    // BENCH_MODE=raw|framing|lockstep|concurrent|pipelined|rustvmm|posted|server runs one
    // mode only (`server`: lock-step, threads and pipelined against our vfio-user-server;
    // `srv-lock`, `srv-conc`, `srv-pipe`: one of them, with the lock-step reference;
    // `ceiling`: what threads sharing a socket reach at best on this machine, see `ceiling`);
    // BENCH_THREADS sets the thread count of `concurrent` (default 16); BENCH_ROUNDS the
    // number of interleaved rounds (default 5); BENCH_RCVTIMEO=1 gives the `framing` mode's
    // client socket the client's 20 ms receive timeout (the cost of that kernel timer).
    let mode = std::env::var("BENCH_MODE").unwrap_or_default();
    let threads: u64 = std::env::var("BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let on = |m: &str| mode.is_empty() || mode == m;
    // Every measurement of a round, by name; ratios are taken within a round.
    let mut res: Vec<Vec<f64>> = vec![Vec::new(); 12];
    for _ in 0..rounds {
        let mut round = [f64::NAN; 12];
        if on("raw") || on("framing") || on("lockstep") || on("server") || on("srv-lock") || on("ceiling") {
            round[0] = raw(ops);
        }
        if on("framing") {
            round[1] = framing(ops);
        }
        if on("lockstep") || on("concurrent") || on("pipelined") {
            round[2] = lockstep(ops, Peer::Responder);
        }
        if on("concurrent") {
            round[3] = concurrent(ops, threads, Peer::Responder);
        }
        if on("pipelined") {
            round[4] = pipelined(ops, 16, Peer::Responder);
        }
        if on("rustvmm") {
            round[5] = rust_vmm(ops);
        }
        if on("server") || on("srv-lock") || on("srv-conc") || on("srv-pipe") {
            round[6] = lockstep(ops, Peer::Server);
        }
        if on("server") || on("srv-conc") {
            round[7] = concurrent(ops, threads, Peer::Server);
        }
        if on("server") || on("srv-pipe") {
            round[8] = pipelined(ops, 16, Peer::Server);
        }
        if on("ceiling") {
            round[9] = ceiling(ops, threads as usize, true, false);
            round[10] = ceiling(ops, threads as usize, false, false);
            round[11] = ceiling(ops, threads as usize, true, true);
        }
        for (r, v) in res.iter_mut().zip(round) {
            r.push(v);
        }
    }
    let ratio = |a: usize, b: usize| -> Vec<f64> { res[a].iter().zip(&res[b]).map(|(x, y)| x / y).collect() };
    let line = |label: &str, i: usize, base: Option<(usize, &str)>| {
        let (m, lo, hi) = stats(&res[i]);
        if m.is_nan() {
            return;
        }
        let mut out = format!("{label:<44}{m:>10.0} ops/s [{lo:.0}–{hi:.0}]");
        if let Some((b, name)) = base {
            let (r, rlo, rhi) = stats(&ratio(i, b));
            if !r.is_nan() {
                out += &format!("  {r:.2}x {name} [{rlo:.2}–{rhi:.2}]");
            }
        }
        println!("{out}");
    };
    println!("ops per round: {ops}, rounds: {rounds}; median [min–max], ratios within each round");
    line("raw socketpair ping-pong (32 B / 36 B):", 0, None);
    line("bare proto framing, lock-step:", 1, Some((0, "raw")));
    line("client lock-step 4-byte REGION_READ:", 2, Some((0, "raw")));
    line(&format!("client {threads} threads 4-byte REGION_READ:"), 3, Some((2, "lock-step")));
    line("client 16 pipelined (region_read_batch):", 4, Some((2, "lock-step")));
    line("rust-vmm vfio_user::Client lock-step:", 5, Some((0, "raw")));
    line("our server, client lock-step (config 4 B):", 6, Some((0, "raw")));
    line(&format!("our server, client {threads} threads:"), 7, Some((6, "lock-step")));
    line("our server, client 16 pipelined:", 8, Some((6, "lock-step")));
    line(&format!("ceiling: {threads} threads, echo over a socket:"), 9, Some((0, "raw")));
    line(&format!("ceiling: {threads} threads, no socket:"), 10, Some((0, "raw")));
    line(&format!("ceiling: {threads} threads, unpark each:"), 11, Some((0, "raw")));
    if on("posted") {
        let (mut w1, mut w16, mut multi) = (Vec::new(), Vec::new(), (0, 0));
        for _ in 0..rounds {
            w1.push(posted(ops, 1).0);
            let (ops_s, msgs, entries) = posted(ops, threads);
            w16.push(ops_s);
            multi = (msgs, entries);
        }
        println!("posted 4-byte writes, 1 thread:             {:>10.0} writes/s", stats(&w1).0);
        let label = format!("posted 4-byte writes, {threads} threads:");
        println!(
            "{label:<44}{:>10.0} writes/s  (last round: {} REGION_WRITE_MULTI carrying {} writes)",
            stats(&w16).0,
            multi.0,
            multi.1
        );
    }
}
