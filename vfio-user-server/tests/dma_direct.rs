// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA_READ replies on the main socket received straight into the device's buffer: the
//! request-handling thread hands the socket to the waiting device thread, or receives its
//! own; replies that do not fit that path are refused or routed as messages.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::wire::*;
use vm_memory::ByteValued;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

/// A device thread reading `len` bytes at `iova`: the data or the errno.
fn device_read(h: &Harness, iova: u64, len: usize) -> std::thread::JoinHandle<Result<Vec<u8>, i32>> {
    let dma = h.dma.clone();
    std::thread::spawn(move || {
        let mut b = vec![0u8; len];
        dma.read(iova, &mut b).map(|()| b).map_err(|e| e.errno())
    })
}

#[test]
fn a_large_reply_trickling_in_lands_in_the_device_buffer() {
    let mut h = spawn();
    h.client.dma_map(0x100000, 0x200000, None).unwrap();
    let worker = device_read(&h, 0x100000, (1 << 20) + 5000);
    let mut expect = Vec::new();
    for seed in 0..2u8 {
        let req = h.client.recv();
        assert_eq!(req.header.command, Command::DmaRead as u16);
        let a: DmaAccess = read_at(&req.payload, 0).unwrap();
        let data = pattern(a.count as usize, seed);
        let mut bytes = req.header.reply(16 + data.len()).as_slice().to_vec();
        bytes.extend_from_slice(a.as_slice());
        bytes.extend_from_slice(&data);
        // The header and part of the data first, the rest in pieces.
        h.client.raw.write_all(&bytes[..20]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        for c in bytes[20..].chunks(100_000) {
            h.client.raw.write_all(c).unwrap();
        }
        expect.extend_from_slice(&data);
    }
    assert!(worker.join().unwrap().unwrap() == expect);
    h.client.assert_alive();
}

#[test]
fn a_reply_with_an_fd_is_refused_and_the_fd_closed() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    let worker = device_read(&h, 0x10000, 4);
    let req = h.client.recv();
    let a: DmaAccess = read_at(&req.payload, 0).unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    h.client.conn.send(req.header.reply(0), &[a.as_slice(), b"data"], &[theirs.as_fd()]).unwrap();
    drop(theirs);
    assert_eq!(worker.join().unwrap(), Err(libc::EINVAL));
    h.client.assert_alive();
    // The server closed its copy: the other end sees EOF instead of waiting.
    ours.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!((&ours).read(&mut [0u8; 1]).unwrap(), 0, "the fd was not closed");
}

#[test]
fn a_reply_of_another_size_or_an_error_reply_is_routed_as_a_message() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    // Shorter than asked: refused.
    let worker = device_read(&h, 0x10000, 8);
    let req = h.client.recv();
    let a: DmaAccess = read_at(&req.payload, 0).unwrap();
    h.client.conn.send(req.header.reply(0), &[a.as_slice(), b"four"], &[]).unwrap();
    assert_eq!(worker.join().unwrap(), Err(libc::EINVAL));
    // An error reply: its errno.
    let worker = device_read(&h, 0x10000, 8);
    let req = h.client.recv();
    h.client.conn.send(req.header.error_reply(libc::EFAULT), &[], &[]).unwrap();
    assert_eq!(worker.join().unwrap(), Err(libc::EFAULT));
    h.client.assert_alive();
}

#[test]
fn a_device_threads_reply_met_while_a_handler_waits_for_its_own() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    let worker = device_read(&h, 0x10800, 64);
    let from_device = h.client.recv();
    assert_eq!(from_device.header.command, Command::DmaRead as u16);
    // A region 9 read: its handler reads guest memory itself and waits for the reply.
    let rd = h.client.send(Command::RegionRead, RegionAccess { offset: 0x20, region: 9, count: 8 }.as_slice(), &[]);
    let from_handler = h.client.recv();
    assert_eq!(from_handler.header.command, Command::DmaRead as u16);
    // The device thread's reply first: the handler's thread hands it over and goes on.
    let a: DmaAccess = read_at(&from_device.payload, 0).unwrap();
    h.client.conn.send(from_device.header.reply(0), &[a.as_slice(), &pattern(64, 1)], &[]).unwrap();
    assert_eq!(worker.join().unwrap().unwrap(), pattern(64, 1));
    let a: DmaAccess = read_at(&from_handler.payload, 0).unwrap();
    assert_eq!((a.addr, a.count), (0x10020, 8));
    h.client.conn.send(from_handler.header.reply(0), &[a.as_slice(), b"handler!"], &[]).unwrap();
    let r = h.client.reply_to(rd, Command::RegionRead);
    assert_eq!(&r.payload[16..], b"handler!");
    h.client.assert_alive();
}

#[test]
fn the_client_going_away_while_a_device_thread_receives_its_reply() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x10000, None).unwrap();
    let worker = device_read(&h, 0x10000, 0x10000);
    let req = h.client.recv();
    let a: DmaAccess = read_at(&req.payload, 0).unwrap();
    let mut bytes = req.header.reply(16 + 0x10000).as_slice().to_vec();
    bytes.extend_from_slice(a.as_slice());
    bytes.extend_from_slice(&[7; 1000]);
    h.client.raw.write_all(&bytes).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    h.client.raw.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(worker.join().unwrap().is_err());
    // The server dropped the client and its run() ended (a single-stream endpoint).
    h.thread.take().unwrap().join().unwrap();
}
