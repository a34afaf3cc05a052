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

const RUN: Duration = Duration::from_millis(300);
const ROUNDS: usize = 15;
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

/// The same ping-pong with the server side using `recvmsg`/`sendmsg` with an SCM_RIGHTS-sized
/// control buffer, as any vfio-user server must (for analysis: the cost of the syscall
/// flavour alone).
fn raw_msg() -> f64 {
    use std::io::{IoSlice, IoSliceMut};
    use std::mem::MaybeUninit;
    use std::os::fd::AsFd;

    use rustix::net::{recvmsg, sendmsg, RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendFlags};

    let (mut a, b) = UnixStream::pair().unwrap();
    let t = std::thread::Builder::new()
        .name("rawmsg".into())
        .spawn(move || {
            let mut req = vec![0u8; 65536];
            let reply = [0u8; 36];
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(253))];
            loop {
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let mut iov = [IoSliceMut::new(&mut req)];
                match recvmsg(b.as_fd(), &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
                    Ok(r) if r.bytes > 0 => {}
                    _ => break,
                }
                let mut none = SendAncillaryBuffer::default();
                if sendmsg(b.as_fd(), &[IoSlice::new(&reply)], &mut none, SendFlags::NOSIGNAL).is_err() {
                    break;
                }
            }
        })
        .unwrap();
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
    let t = std::thread::Builder::new().name("srv".into()).spawn(move || server.run().unwrap()).unwrap();
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // The machine is shared: measure in short interleaved rounds, so that each lock-step
    // run is compared with the raw run next to it under the same load, and report medians.
    let (mut r, mut m, mut l, mut p) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut lr, mut lm, mut pl) = (Vec::new(), Vec::new(), Vec::new());
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("raw") => return println!("raw {:.0}", raw()),
        Ok("lockstep") => return println!("lockstep {:.0}", lockstep()),
        Ok("rawmsg") => return println!("rawmsg {:.0}", raw_msg()),
        _ => {}
    }
    for _ in 0..ROUNDS {
        let (rr, mm, ll, pp) = (raw(), raw_msg(), lockstep(), pipelined());
        r.push(rr);
        m.push(mm);
        lm.push(ll / mm);
        l.push(ll);
        p.push(pp);
        lr.push(ll / rr);
        pl.push(pp / ll);
    }
    println!("{ROUNDS} interleaved rounds of {} ms each; medians:", RUN.as_millis());
    println!("raw socketpair ping-pong (32 B / 36 B):  {:>9.0} ops/s", median(r));
    println!("same, server on recvmsg/sendmsg:          {:>9.0} ops/s", median(m));
    println!("REGION_READ config 4 B, lock-step:       {:>9.0} ops/s", median(l));
    println!("REGION_READ config 4 B, {DEPTH} in flight:    {:>9.0} ops/s", median(p));
    println!("lock-step / raw (same round):            {:>9.2}   (target >= 0.90)", median(lr));
    println!("lock-step / recvmsg-sendmsg ping-pong:   {:>9.2}", median(lm));
    println!("{DEPTH} in flight / lock-step (same round):   {:>9.2}   (target >= 2)", median(pl));
}
