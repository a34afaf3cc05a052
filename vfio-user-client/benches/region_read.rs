// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! 4-byte REGION_READ round trips against an in-process responder, compared with a raw
//! socketpair ping-pong of the same sizes (32-byte request, 36-byte reply).
//!
//! `cargo bench -p vfio-user-client --bench region_read` (ops count: `BENCH_OPS`, default
//! 100000).

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

fn client() -> (Arc<Client>, JoinHandle<()>) {
    let (a, b) = UnixStream::pair().unwrap();
    let h = responder(b);
    let c = Client::from_fd(OwnedFd::from(a), Config::default().twin_socket(false)).unwrap();
    (Arc::new(c), h)
}

/// Lock-step 4-byte reads from one thread: ops per second.
fn lockstep(ops: u64) -> f64 {
    let (c, h) = client();
    let mut b = [0u8; 4];
    let t = Instant::now();
    for i in 0..ops {
        c.region_read(0, i % 1024, &mut b).unwrap();
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
fn concurrent(ops: u64, threads: u64) -> f64 {
    let (c, h) = client();
    let per = ops / threads;
    let t = Instant::now();
    let ts: Vec<_> = (0..threads)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 4];
                for i in 0..per {
                    c.region_read(0, i % 1024, &mut b).unwrap();
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
fn pipelined(ops: u64, depth: u64) -> f64 {
    let (c, h) = client();
    let mut bufs = vec![[0u8; 4]; depth as usize];
    let rounds = ops / depth;
    let t = Instant::now();
    for r in 0..rounds {
        let mut batch: Vec<RegionReadOp<'_>> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| RegionReadOp { region: 0, offset: (r + i as u64) % 1024, data: b })
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
    let (c, h) = client();
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let ops: u64 = std::env::var("BENCH_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run a smoke round.
    let ops = if std::env::args().any(|a| a == "--bench") { ops } else { 1000 };
    // BENCH_MODE=raw|framing|lockstep|concurrent|pipelined|rustvmm|posted runs one mode only;
    // BENCH_THREADS sets the thread count of `concurrent` (default 16).
    let mode = std::env::var("BENCH_MODE").unwrap_or_default();
    let threads: u64 = std::env::var("BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let on = |m: &str| mode.is_empty() || mode == m;
    let rounds = 5;
    let (mut r, mut f, mut l, mut c, mut p, mut v) =
        (vec![f64::NAN], vec![f64::NAN], vec![f64::NAN], vec![f64::NAN], vec![f64::NAN], vec![f64::NAN]);
    for i in 0..rounds {
        if on("raw") {
            r.insert(i, raw(ops));
        }
        if on("framing") {
            f.insert(i, framing(ops));
        }
        if on("lockstep") {
            l.insert(i, lockstep(ops));
        }
        if on("concurrent") {
            c.insert(i, concurrent(ops, threads));
        }
        if on("pipelined") {
            p.insert(i, pipelined(ops, 16));
        }
        if on("rustvmm") {
            v.insert(i, rust_vmm(ops));
        }
    }
    let (r, f, l, c, p, v) = (median(r), median(f), median(l), median(c), median(p), median(v));
    let (mut w1, mut w16, mut multi) = (Vec::new(), Vec::new(), (0, 0));
    if on("posted") {
        for _ in 0..rounds {
            w1.push(posted(ops, 1).0);
            let (ops_s, msgs, entries) = posted(ops, threads);
            w16.push(ops_s);
            multi = (msgs, entries);
        }
    }
    println!("ops per round: {ops}, rounds: {rounds} (medians)");
    println!("raw socketpair ping-pong (32 B / 36 B): {:>10.0} ops/s", r);
    println!("bare proto framing, lock-step:          {:>10.0} ops/s  ({:.2}x raw)", f, f / r);
    println!("client lock-step 4-byte REGION_READ:    {:>10.0} ops/s  ({:.2}x raw)", l, l / r);
    let label = format!("client {threads} threads 4-byte REGION_READ:");
    println!("{label:<40}{c:>10.0} ops/s  ({:.2}x lock-step)", c / l);
    println!("client 16 pipelined (region_read_batch):{:>10.0} ops/s  ({:.2}x lock-step)", p, p / l);
    println!("rust-vmm vfio_user::Client lock-step:   {:>10.0} ops/s  ({:.2}x raw)", v, v / r);
    if !w1.is_empty() {
        println!("posted 4-byte writes, 1 thread:         {:>10.0} writes/s", median(w1));
        let label = format!("posted 4-byte writes, {threads} threads:");
        println!(
            "{label:<40}{:>10.0} writes/s  (last round: {} REGION_WRITE_MULTI carrying {} writes)",
            median(w16),
            multi.0,
            multi.1
        );
    }
}
