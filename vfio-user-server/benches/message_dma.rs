// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Message DMA bandwidth: a device thread doing 1 MiB `DmaHandle` writes and reads to a
//! mapping without fd (DMA_WRITE / DMA_READ over the main socket, replies routed by the
//! server's `run()` thread), answered by a minimal client responder (a vfio-user-proto
//! `Connection`), against a raw socket-pair stream of 1 MiB chunks in the same run.
//!
//! `cargo bench -p vfio-user-server --bench message_dma`

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vfio_user_proto::command::Command;
use vfio_user_proto::connection::Connection;
use vfio_user_proto::wire::{read_at, DmaAccess, DmaMap, DMA_MAP_FLAG_READ, DMA_MAP_FLAG_WRITE};
use vfio_user_proto::Header;
use vfio_user_server::{DeviceDescription, DeviceMut, DmaHandle, Endpoint, Server};
use vm_memory::ByteValued;

const MIB: usize = 1 << 20;
const RUN: Duration = Duration::from_millis(300);
const ROUNDS: usize = 9;
const IOVA: u64 = 0x1_0000_0000;

struct Nothing;
impl DeviceMut for Nothing {}

/// Bytes per second of a raw stream of 1 MiB writes, read in 1 MiB `read_exact`s.
fn raw() -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let buf = vec![0x5au8; MIB];
        while b.write_all(&buf).is_ok() {}
    });
    let mut buf = vec![0u8; MIB];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        a.read_exact(&mut buf).unwrap();
        n += 1;
    }
    let rate = (n * MIB as u64) as f64 / start.elapsed().as_secs_f64();
    drop(a);
    t.join().unwrap();
    rate
}

fn call(c: &mut Connection, id: u16, cmd: Command, parts: &[&[u8]]) {
    c.send(Header::command(id, cmd, 0), parts, &[]).unwrap();
    let m = c.recv().unwrap();
    assert!(m.header.is_reply() && !m.header.is_error(), "{cmd}: {:?}", m.header);
}

/// A server with a 64 MiB fd-less mapping at `IOVA`, its client answering DMA requests
/// from a 64 MiB buffer on its own thread.
fn setup() -> (DmaHandle, std::thread::JoinHandle<()>, vfio_user_server::ShutdownHandle) {
    let (a, b) = UnixStream::pair().unwrap();
    let desc = DeviceDescription::builder(0x1af4, 0x10f0).build().unwrap();
    let mut server = Server::new(desc, std::sync::Mutex::new(Nothing)).unwrap();
    server.set_endpoint(Endpoint::Stream(b));
    let (dma, stop) = (server.dma_handle(), server.shutdown_handle());
    std::thread::spawn(move || server.run().unwrap());
    let mut c = Connection::new(a);
    let json = b"{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576}}\0";
    call(&mut c, 1, Command::Version, &[&[0, 0, 2, 0], json]);
    let size = 64 * MIB as u64;
    let map = DmaMap { argsz: 32, flags: DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE, offset: 0, addr: IOVA, size };
    call(&mut c, 2, Command::DmaMap, &[map.as_slice()]);
    let responder = std::thread::spawn(move || {
        let mut mem = vec![0u8; size as usize];
        while let Ok(m) = c.recv() {
            let a: DmaAccess = read_at(&m.payload, 0).unwrap();
            let off = (a.addr - IOVA) as usize;
            let n = a.count as usize;
            let r = match m.header.cmd() {
                Ok(Command::DmaRead) => c.send(m.header.reply(0), &[a.as_slice(), &mem[off..off + n]], &[]),
                Ok(Command::DmaWrite) => {
                    mem[off..off + n].copy_from_slice(&m.payload[16..]);
                    c.send(m.header.reply(0), &[a.as_slice()], &[])
                }
                _ => panic!("unexpected {:?}", m.header),
            };
            if r.is_err() {
                return;
            }
        }
    });
    (dma, responder, stop)
}

/// Bytes per second of 1 MiB device DMA (writes or reads), cycling over the mapping.
fn dma(h: &DmaHandle, write: bool) -> f64 {
    let mut buf = vec![0xa5u8; MIB];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        let iova = IOVA + (n % 64) * MIB as u64;
        if write {
            h.write(iova, &buf).unwrap();
        } else {
            h.read(iova, &mut buf).unwrap();
        }
        n += 1;
    }
    (n * MIB as u64) as f64 / start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let (h, responder, stop) = setup();
    let (mut raws, mut writes, mut reads, mut wr, mut rr) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let r = raw();
        let w = dma(&h, true);
        let d = dma(&h, false);
        raws.push(r);
        writes.push(w);
        reads.push(d);
        wr.push(w / r);
        rr.push(d / r);
    }
    stop.shutdown();
    responder.join().unwrap();
    let g = |x: f64| x / (1u64 << 30) as f64;
    println!("median of {ROUNDS} rounds of {RUN:?} each (ratios within a round):");
    println!("raw socketpair stream, 1 MiB chunks:      {:7.2} GiB/s", g(median(&mut raws)));
    println!("message DMA_WRITE, 1 MiB (DmaHandle):     {:7.2} GiB/s", g(median(&mut writes)));
    println!("message DMA_READ, 1 MiB (DmaHandle):      {:7.2} GiB/s", g(median(&mut reads)));
    println!("DMA_WRITE / raw:                          {:7.2}   (target >= 0.5)", median(&mut wr));
    println!("DMA_READ / raw:                           {:7.2}   (target >= 0.5)", median(&mut rr));
}
