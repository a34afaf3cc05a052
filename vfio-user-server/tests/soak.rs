// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Soak: many clients connect to one in-process server and leave, holding DMA maps
//! (memfds) and IRQ eventfds, some in the middle of a message (half a header, half a
//! payload, a DMA_MAP whose fd arrived with its first bytes). The server's open fds
//! (`/proc/self/fd`) must return exactly to the baseline and its RSS (`/proc/self/statm`)
//! must stay within a generous bound.
//!
//! `VFIO_USER_SOAK_CYCLES` sets the number of clients (default 10,000; e.g. 100000 for a
//! long run). This file holds one test, so no other test opens fds meanwhile.

mod common;

use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use common::{eventfd, memfd, Client};
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use vfio_user_proto::command::Command;
use vfio_user_proto::header::FLAGS_TYPE_COMMAND;
use vfio_user_proto::wire::*;
use vfio_user_proto::Header;
use vfio_user_server::{Bar, Device, DeviceDescription, Endpoint, Listener, Server};
use vm_memory::ByteValued;

const DEFAULT_CYCLES: usize = 10_000;
const RSS_BOUND: u64 = 64 << 20;

struct Quiet;

impl Device for Quiet {
    fn region_read(&self, _region: u32, _offset: u64, data: &mut [u8]) -> std::io::Result<()> {
        data.fill(0x5a);
        Ok(())
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * rustix::param::page_size() as u64
}

fn call(c: &mut Client, cmd: Command, payload: &[u8], fds: &[BorrowedFd<'_>]) {
    let id = c.send_raw(cmd as u16, FLAGS_TYPE_COMMAND, &[payload], fds);
    let m = c.recv();
    assert!(m.header.is_reply() && !m.header.is_error(), "{cmd}: {:?}", m.header);
    assert_eq!(m.header.msg_id, id);
}

fn version(c: &mut Client) {
    let mut p = vec![0u8, 0, 2, 0];
    p.extend_from_slice(br#"{"capabilities":{"max_msg_fds":8}}"#);
    p.push(0);
    call(c, Command::Version, &p, &[]);
}

fn dma_map(c: &mut Client, iova: u64, fd: Option<&OwnedFd>) {
    let m = DmaMap { argsz: 32, flags: DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE, offset: 0, addr: iova, size: 0x1000 };
    let fds: Vec<_> = fd.iter().map(|f| f.as_fd()).collect();
    call(c, Command::DmaMap, m.as_slice(), &fds);
}

fn set_irq(c: &mut Client, index: u32, efds: &[OwnedFd]) {
    let s = IrqSet {
        argsz: 20,
        flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
        index,
        start: 0,
        count: efds.len() as u32,
    };
    let fds: Vec<_> = efds.iter().map(|f| f.as_fd()).collect();
    call(c, Command::DeviceSetIrqs, s.as_slice(), &fds);
}

/// Sends `bytes` (part of a message) with `fd` attached, then nothing more.
fn send_partial_with_fd(sock: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    sendmsg(sock, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL).unwrap();
}

/// One client's life; which one depends on `i`.
fn client_cycle(path: &std::path::Path, i: usize) {
    let mut c = Client::new(UnixStream::connect(path).unwrap());
    if i % 7 == 6 {
        return; // leaves before VERSION
    }
    version(&mut c);
    let iova = 0x10_0000 + (i as u64 % 16) * 0x1000;
    match i % 7 {
        0 => {
            // A full session left without any cleanup: two maps, eventfds on INTx and MSI.
            dma_map(&mut c, iova, Some(&memfd(0x1000)));
            dma_map(&mut c, 0x80_0000, None);
            set_irq(&mut c, 0, &[eventfd()]);
            set_irq(&mut c, 1, &[eventfd(), eventfd()]);
        }
        1 => {
            dma_map(&mut c, iova, Some(&memfd(0x1000)));
            // Half a header.
            let h = Header { msg_id: 1, command: Command::DeviceGetInfo as u16, msg_size: 32, flags: 0, error: 0 };
            c.raw.write_all(&h.as_slice()[..7]).unwrap();
        }
        2 => {
            set_irq(&mut c, 0, &[eventfd()]);
            // A REGION_WRITE header and half its payload.
            let h =
                Header { msg_id: 2, command: Command::RegionWrite as u16, msg_size: 16 + 16 + 64, flags: 0, error: 0 };
            let a = RegionAccess { offset: 0, region: 0, count: 64 };
            c.raw.write_all(&[h.as_slice(), a.as_slice(), &[1; 20]].concat()).unwrap();
        }
        3 => {
            // A DMA_MAP whose fd came with its first bytes; the rest never comes.
            let m = DmaMap { argsz: 32, flags: 3, offset: 0, addr: iova, size: 0x1000 };
            let h = Header { msg_id: 3, command: Command::DmaMap as u16, msg_size: 48, flags: 0, error: 0 };
            send_partial_with_fd(&c.raw, &[h.as_slice(), &m.as_slice()[..10]].concat(), memfd(0x1000).as_fd());
        }
        4 => {
            // A SET_IRQS with its eventfds refused (wrong count), then a valid one.
            let s = IrqSet {
                argsz: 20,
                flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
                index: 1,
                start: 0,
                count: 2,
            };
            let e = eventfd();
            let id = c.send_raw(Command::DeviceSetIrqs as u16, 0, &[s.as_slice()], &[e.as_fd()]);
            let m = c.recv();
            assert!(m.header.is_error() && m.header.msg_id == id);
            set_irq(&mut c, 1, &[eventfd(), eventfd()]);
        }
        _ => {
            // A framing error: the server hangs up on us.
            dma_map(&mut c, iova, Some(&memfd(0x1000)));
            let h = Header { msg_id: 5, command: 4, msg_size: 8, flags: 0, error: 0 };
            c.raw.write_all(h.as_slice()).unwrap();
            assert!(c.conn.recv().is_err());
        }
    }
}

/// A client that negotiates, proving every earlier client's disconnect was handled (one
/// client is served at a time), and stays connected while fds are counted.
fn probe(path: &std::path::Path) -> Client {
    let mut c = Client::new(UnixStream::connect(path).unwrap());
    version(&mut c);
    call(&mut c, Command::DeviceGetInfo, DeviceInfo { argsz: 16, ..Default::default() }.as_slice(), &[]);
    c
}

#[test]
fn connect_disconnect_soak_leaks_nothing() {
    let cycles = std::env::var("VFIO_USER_SOAK_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_CYCLES);
    let path = std::env::temp_dir().join(format!("vfio-user-soak-{}.sock", std::process::id()));
    let desc =
        DeviceDescription::builder(0x1af4, 0x10f0).bar(0, Bar::memory32(0x1000)).intx().msi(2, false).build().unwrap();
    let mut server = Server::new(desc, Quiet).unwrap();
    server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run().unwrap());

    // Warm up (allocator pools, lazily created state), then take the baselines.
    for i in 0..200 {
        client_cycle(&path, i);
    }
    let p = probe(&path);
    let (fds0, rss0) = (open_fds(), rss_bytes());
    drop(p);

    for i in 0..cycles {
        client_cycle(&path, i);
    }

    let p = probe(&path);
    let (fds1, rss1) = (open_fds(), rss_bytes());
    drop(p);
    stop.shutdown();
    thread.join().unwrap();
    assert_eq!(fds1, fds0, "open fds after {cycles} clients: {fds1}, baseline {fds0}");
    assert!(rss1 < rss0 + RSS_BOUND, "RSS grew from {} KiB to {} KiB over {cycles} clients", rss0 >> 10, rss1 >> 10);
}
