// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Message DMA bandwidth: a device thread doing 1 MiB `DmaHandle` writes and reads to a
//! mapping without fd (DMA_WRITE / DMA_READ, one message per transfer), against a raw
//! socket-pair stream of 1 MiB chunks in the same run. Four clients answer:
//!
//! * **responder**: a minimal client (a vfio-user-proto `Connection`) on the main socket,
//!   copying into / out of a 64 MiB buffer (replies routed by the server's `run()` thread);
//! * **responder, zero-copy**: the same receiving a DMA_WRITE's data straight into its
//!   buffer (`Receiver::recv_into_with`), so that only the server's own path is measured;
//! * **client**: our `vfio-user-client` serving a 64 MiB `GuestMemoryMmap`, on the main
//!   socket (its background reader serves the requests);
//! * **client, twin**: the same with the twin socket negotiated (the device thread sends
//!   and receives on it itself; the client serves it on a thread of its own).
//!
//! `cargo bench -p vfio-user-server --bench message_dma`
//! (`BENCH_ROUNDS`, default 9; `BENCH_PEER=responder|zero-copy|client|twin` for one only;
//! `BENCH_SNDBUF=n` sets SO_SNDBUF on every socket, raw included)

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfio_user_client::{Client, Config, DmaProt};
use vfio_user_proto::command::Command;
use vfio_user_proto::connection::Connection;
use vfio_user_proto::wire::{read_at, DmaAccess, DmaMap, DMA_MAP_FLAG_READ, DMA_MAP_FLAG_WRITE};
use vfio_user_proto::Header;
use vfio_user_server::{DeviceDescription, DeviceMut, DmaHandle, Endpoint, Server, ShutdownHandle};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

const MIB: usize = 1 << 20;
const RUN: Duration = Duration::from_millis(300);
const IOVA: u64 = 0x1_0000_0000;
const SIZE: usize = 64 * MIB;

struct Nothing;
impl DeviceMut for Nothing {}

fn sndbuf(s: &UnixStream) {
    if let Some(n) = std::env::var("BENCH_SNDBUF").ok().and_then(|v| v.parse().ok()) {
        rustix::net::sockopt::set_socket_send_buffer_size(s, n).unwrap();
    }
}

/// Bytes per second of a raw stream of 1 MiB writes, read in 1 MiB `read_exact`s.
fn raw() -> f64 {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    sndbuf(&a);
    sndbuf(&b);
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

/// The client side of one setup, stopped on drop.
enum Peer {
    Responder(Option<std::thread::JoinHandle<()>>),
    Client(Box<Client>),
}

/// A server with a device and its client; the device's `DmaHandle` reaches the client's
/// 64 MiB at `IOVA` by message.
struct Setup {
    dma: DmaHandle,
    stop: ShutdownHandle,
    peer: Peer,
}

impl Drop for Setup {
    fn drop(&mut self) {
        match &mut self.peer {
            Peer::Client(c) => c.shutdown().unwrap(),
            Peer::Responder(_) => {}
        }
        self.stop.shutdown();
        if let Peer::Responder(t) = &mut self.peer {
            t.take().unwrap().join().unwrap();
        }
    }
}

fn server() -> (UnixStream, DmaHandle, ShutdownHandle) {
    let (a, b) = UnixStream::pair().unwrap();
    sndbuf(&a);
    sndbuf(&b);
    let desc = DeviceDescription::builder(0x1af4, 0x10f0).build().unwrap();
    let mut server = Server::new(desc, std::sync::Mutex::new(Nothing)).unwrap();
    server.set_endpoint(Endpoint::Stream(b));
    let (dma, stop) = (server.dma_handle(), server.shutdown_handle());
    std::thread::spawn(move || server.run().unwrap());
    (a, dma, stop)
}

/// The minimal responder: copies into / out of a 64 MiB buffer; with `direct`, a
/// DMA_WRITE's data is received straight into that buffer (`Receiver::recv_into_with`)
/// instead of into a message and then copied.
fn with_responder(direct: bool) -> Setup {
    let (a, dma, stop) = server();
    let mut c = Connection::new(a);
    let json = b"{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576}}\0";
    call(&mut c, 1, Command::Version, &[&[0, 0, 2, 0], json]);
    let flags = DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE;
    let map = DmaMap { argsz: 32, flags, offset: 0, addr: IOVA, size: SIZE as u64 };
    call(&mut c, 2, Command::DmaMap, &[map.as_slice()]);
    let responder = std::thread::spawn(move || {
        let mut mem = vec![0u8; SIZE];
        loop {
            if direct {
                let mut access = None;
                let got = c.receiver.recv_into_with(16, |h, p| {
                    let a: DmaAccess = read_at(p, 0)?;
                    access = Some(a);
                    let off = usize::try_from(a.addr.checked_sub(IOVA)?).ok()?;
                    (h.command == Command::DmaWrite as u16).then(|| mem.get_mut(off..off + a.count as usize))?
                });
                match (got, access) {
                    (Ok(Some((h, _))), Some(a)) => {
                        if c.send(h.reply(0), &[a.as_slice()], &[]).is_err() {
                            return;
                        }
                        continue;
                    }
                    (Ok(_), _) => {}
                    (Err(_), _) => return,
                }
            }
            let Ok(m) = c.recv() else { return };
            let a: DmaAccess = read_at(&m.payload, 0).unwrap();
            let off = (a.addr - IOVA) as usize;
            let n = a.count as usize;
            let r = match m.header.cmd() {
                Ok(Command::DmaRead) => c.send(m.header.reply(0), &[a.as_slice(), &mem[off..off + n]], &[]),
                Ok(Command::DmaWrite) => {
                    mem[off..off + n].copy_from_slice(&m.payload[16..]);
                    c.receiver.recycle(m.payload);
                    c.send(m.header.reply(0), &[a.as_slice()], &[])
                }
                _ => panic!("unexpected {:?}", m.header),
            };
            if r.is_err() {
                return;
            }
        }
    });
    Setup { dma, stop, peer: Peer::Responder(Some(responder)) }
}

/// Our client serving a `GuestMemoryMmap`, with or without the twin socket.
fn with_client(twin: bool) -> Setup {
    let (a, dma, stop) = server();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(IOVA), SIZE)]).unwrap();
    let config = Config::default().twin_socket(twin).guest_memory(Arc::new(mem));
    let client = Client::from_fd(OwnedFd::from(a), config).unwrap();
    assert_eq!(client.negotiated().twin_socket, twin);
    client.dma_map(IOVA, SIZE as u64, DmaProt::READ_WRITE).unwrap();
    Setup { dma, stop, peer: Peer::Client(Box::new(client)) }
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

/// A client kind: its `BENCH_PEER` key, its label and how to set it up.
type Kind = (&'static str, &'static str, fn() -> Setup);

/// Median and range.
fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: one short round.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(9)
    } else {
        1
    };
    // BENCH_PEER=responder|zero-copy|client|twin: that client only.
    let only = std::env::var("BENCH_PEER").unwrap_or_default();
    let mut setups = Vec::new();
    let kinds: [Kind; 4] = [
        ("responder", "responder", || with_responder(false)),
        ("zero-copy", "responder, zero-copy", || with_responder(true)),
        ("client", "client", || with_client(false)),
        ("twin", "client, twin", || with_client(true)),
    ];
    for (key, label, make) in kinds {
        if only.is_empty() || only == key {
            setups.push((label, make()));
        }
    }
    let labels: Vec<&str> = setups.iter().map(|(l, _)| *l).collect();
    let mut raws = Vec::new();
    // Per setup: write rates, read rates, write/raw and read/raw of each round.
    let mut rates = vec![[Vec::new(), Vec::new(), Vec::new(), Vec::new()]; setups.len()];
    for _ in 0..rounds {
        let r = raw();
        raws.push(r);
        for (i, (_, s)) in setups.iter().enumerate() {
            let (w, d) = (dma(&s.dma, true), dma(&s.dma, false));
            for (k, v) in [w, d, w / r, d / r].into_iter().enumerate() {
                rates[i][k].push(v);
            }
        }
    }
    drop(setups);
    let g = |x: f64| x / (1u64 << 30) as f64;
    println!("median [min–max] of {rounds} rounds of {RUN:?} each; ratios within a round");
    let (m, lo, hi) = stats(raws);
    println!("raw socketpair stream, 1 MiB chunks:  {:6.2} GiB/s  [{:.2}–{:.2}]", g(m), g(lo), g(hi));
    for (name, r) in labels.into_iter().zip(rates) {
        let [w, d, wr, dr] = r.map(stats);
        for (dir, rate, ratio) in [("DMA_WRITE", w, wr), ("DMA_READ", d, dr)] {
            println!(
                "{dir:<9} 1 MiB, {name:<20} {:6.2} GiB/s  [{:.2}–{:.2}]   {:.2}x raw [{:.2}–{:.2}]",
                g(rate.0),
                g(rate.1),
                g(rate.2),
                ratio.0,
                ratio.1,
                ratio.2
            );
        }
    }
}
