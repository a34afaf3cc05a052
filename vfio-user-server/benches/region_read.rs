// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! REGION_READ throughput: a 4-byte configuration-space read (32-byte request, 36-byte
//! reply), lock-step and with 16 requests in flight, against a raw socket-pair ping-pong
//! of the same message sizes measured in the same run.
//!
//! `cargo bench -p vfio-user-server --bench region_read`

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vfio_user_proto::command::Command;
use vfio_user_proto::wire::RegionAccess;
use vfio_user_proto::Header;
use vfio_user_server::{DeviceDescription, DeviceMut, Endpoint, Server};
use vm_memory::ByteValued;

const RUN: Duration = Duration::from_millis(1500);
const DEPTH: usize = 16;

struct Nothing;
impl DeviceMut for Nothing {}

fn request(id: u16) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(Header::command(id, Command::RegionRead, 16).as_slice());
    b[16..].copy_from_slice(RegionAccess { offset: 0, region: 7, count: 4 }.as_slice());
    b
}

/// Ops per second of a raw ping-pong: 32 bytes one way, 36 back.
fn raw() -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut req = [0u8; 32];
        let reply = [0u8; 36];
        while b.read_exact(&mut req).is_ok() {
            if b.write_all(&reply).is_err() {
                break;
            }
        }
    });
    let req = request(1);
    let mut reply = [0u8; 36];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..100 {
            a.write_all(&req).unwrap();
            a.read_exact(&mut reply).unwrap();
        }
        n += 100;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(a);
    t.join().unwrap();
    rate
}

fn connect() -> (UnixStream, std::thread::JoinHandle<()>) {
    let (mut a, b) = UnixStream::pair().unwrap();
    let desc = DeviceDescription::builder(0x1234, 0x5678).build().unwrap();
    let mut server = Server::new(desc, std::sync::Mutex::new(Nothing)).unwrap();
    server.set_endpoint(Endpoint::Stream(b));
    let t = std::thread::spawn(move || server.run().unwrap());
    let json = b"{}\0";
    let mut v = Header::command(0, Command::Version, 4 + json.len()).as_slice().to_vec();
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(json);
    a.write_all(&v).unwrap();
    let mut h = [0u8; 16];
    a.read_exact(&mut h).unwrap();
    let size = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let mut rest = vec![0u8; size - 16];
    a.read_exact(&mut rest).unwrap();
    (a, t)
}

/// Ops per second of lock-step 4-byte configuration reads.
fn lockstep() -> f64 {
    let (mut a, t) = connect();
    let req = request(1);
    let mut reply = [0u8; 36];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..100 {
            a.write_all(&req).unwrap();
            a.read_exact(&mut reply).unwrap();
        }
        n += 100;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(&reply[32..], &0x5678_1234u32.to_le_bytes());
    drop(a);
    t.join().unwrap();
    rate
}

/// Ops per second with DEPTH requests in flight.
fn pipelined() -> f64 {
    let (mut a, t) = connect();
    let mut batch = Vec::new();
    for i in 0..DEPTH {
        batch.extend_from_slice(&request(i as u16));
    }
    let mut replies = vec![0u8; 36 * DEPTH];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..10 {
            a.write_all(&batch).unwrap();
            a.read_exact(&mut replies).unwrap();
        }
        n += 10 * DEPTH as u64;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(&replies[36 * DEPTH - 4..], &0x5678_1234u32.to_le_bytes());
    drop(a);
    t.join().unwrap();
    rate
}

fn main() {
    // Alternate the measurements and keep each one's best, to damp noise from other load.
    let (mut r, mut l, mut p) = (0f64, 0f64, 0f64);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for _ in 0..5 {
        match only.as_str() {
            "lockstep" => l = l.max(lockstep()),
            "pipelined" => p = p.max(pipelined()),
            _ => {
                r = r.max(raw());
                l = l.max(lockstep());
                p = p.max(pipelined());
            }
        }
    }
    println!("raw socketpair ping-pong (32 B / 36 B): {r:>10.0} ops/s");
    println!("REGION_READ config 4 B, lock-step:      {l:>10.0} ops/s  ({:.2}x raw, target >= 0.90)", l / r);
    println!("REGION_READ config 4 B, {DEPTH} in flight:   {p:>10.0} ops/s  ({:.2}x lock-step, target >= 2)", p / l);
}
