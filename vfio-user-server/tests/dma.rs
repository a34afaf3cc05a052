// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA_MAP / DMA_UNMAP bookkeeping, and device access to guest memory: through the
//! region's fd, or with DMA_READ / DMA_WRITE messages on the main or the twin socket.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::connection::{Connection, Message};
use vfio_user_proto::version::Capabilities;
use vfio_user_proto::wire::*;
use vfio_user_proto::Header;
use vfio_user_server::ServerLimits;
use vm_memory::ByteValued;

#[test]
fn map_unmap_rules() {
    let mut h = spawn_with(ServerLimits { max_dma_maps: 3, ..Default::default() });
    h.client.version_ok();
    let c = &mut h.client;
    let mem = memfd(0x4000);
    c.dma_map(0x10000, 0x4000, Some(&mem)).unwrap();
    assert_eq!(c.dma_map(0x12000, 0x1000, None).unwrap_err(), libc::EEXIST);
    assert_eq!(c.dma_map(0xf000, 0x2000, None).unwrap_err(), libc::EEXIST);
    assert_eq!(c.dma_map(0x20001, 0x1000, None).unwrap_err(), libc::EINVAL, "unaligned");
    assert_eq!(c.dma_map(0x20000, 0, None).unwrap_err(), libc::EINVAL, "empty");
    assert_eq!(c.dma_map(0xdead_0000, 0x1000, None).unwrap_err(), libc::EFAULT, "the device refused");
    c.dma_map(0x20000, 0x1000, None).unwrap();
    c.dma_map(0x30000, 0x1000, None).unwrap();
    assert_eq!(c.dma_map(0x40000, 0x1000, None).unwrap_err(), libc::ENOSPC);
    assert_eq!(c.dma_unmap(0, 0x10000, 0x1000).unwrap_err(), libc::ENOENT, "not exact");
    assert_eq!(c.dma_unmap(0, 0x50000, 0x1000).unwrap_err(), libc::ENOENT);
    let m = c.dma_unmap(0, 0x20000, 0x1000).unwrap();
    assert_eq!(m.payload, DmaUnmap { argsz: 24, flags: 0, addr: 0x20000, size: 0x1000 }.as_slice(), "entry echoed");
    assert_eq!(c.dma_unmap(DMA_UNMAP_FLAG_ALL, 1, 0).unwrap_err(), libc::EINVAL);
    c.dma_unmap(DMA_UNMAP_FLAG_ALL, 0, 0).unwrap();
    c.dma_map(0x40000, 0x1000, None).unwrap();
    let seen: Vec<_> = h.dev.seen().into_iter().filter(|s| matches!(s, Seen::Map(..) | Seen::Unmap(..))).collect();
    assert_eq!(
        seen,
        vec![
            Seen::Map(0x10000, 0x4000, true),
            Seen::Map(0xdead_0000, 0x1000, false),
            Seen::Map(0x20000, 0x1000, false),
            Seen::Map(0x30000, 0x1000, false),
            Seen::Unmap(0x20000, 0x1000),
            Seen::Unmap(0x10000, 0x4000),
            Seen::Unmap(0x30000, 0x1000),
            Seen::Map(0x40000, 0x1000, false),
        ]
    );
    // Two fds with DMA_MAP: EINVAL, both closed, stream in sync.
    let m = DmaMap { argsz: 32, flags: 3, offset: 0, addr: 0x80000, size: 0x1000 };
    let (a, b) = (memfd(0x1000), memfd(0x1000));
    use std::os::fd::AsFd;
    assert_eq!(c.errno(Command::DmaMap, m.as_slice(), &[a.as_fd(), b.as_fd()]), libc::EINVAL);
    c.assert_alive();
}

#[test]
fn fd_backed_regions_are_accessed_directly() {
    let mut h = spawn();
    let mem = memfd(0x2000);
    h.client.dma_map(0x10000, 0x2000, Some(&mem)).unwrap();
    h.dma.write(0x10ffe, b"abcd").unwrap();
    let mut back = [0u8; 4];
    rustix::io::pread(&mem, &mut back, 0xffe).unwrap();
    assert_eq!(&back, b"abcd");
    let mut buf = [0u8; 2];
    h.dma.read(0x11000, &mut buf).unwrap();
    assert_eq!(&buf, b"cd");
    h.dma.write_obj(0x10100, &DmaAccess { addr: 1, count: 2 }).unwrap();
    assert_eq!(h.dma.read_obj::<DmaAccess>(0x10100).unwrap(), DmaAccess { addr: 1, count: 2 });
    assert!(h.dma.read(0x11fff, &mut buf).is_err(), "beyond the region");
    assert!(h.dma.read(0x50000, &mut buf).is_err(), "unmapped");
    h.client.dma_unmap(0, 0x10000, 0x2000).unwrap();
    assert!(h.dma.read(0x10000, &mut buf).is_err());
}

/// Answers DMA_READ / DMA_WRITE from a fake guest memory starting at 0x10000.
fn serve_dma(conn: &mut Connection, m: &Message, mem: &mut [u8]) {
    let a: DmaAccess = read_at(&m.payload, 0).unwrap();
    let off = (a.addr - 0x10000) as usize;
    let n = a.count as usize;
    match m.header.cmd().unwrap() {
        Command::DmaRead => {
            conn.send(m.header.reply(0), &[a.as_slice(), &mem[off..off + n]], &[]).unwrap();
        }
        Command::DmaWrite => {
            mem[off..off + n].copy_from_slice(&m.payload[16..]);
            conn.send(m.header.reply(0), &[a.as_slice()], &[]).unwrap();
        }
        c => panic!("unexpected {c}"),
    }
}

#[test]
fn message_dma_from_a_device_thread_is_split_and_routed() {
    let mut h = spawn_with(ServerLimits::default());
    let json = r#"{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":4096}}"#;
    h.client.version(json).unwrap();
    h.client.dma_map(0x10000, 0x10000, None).unwrap();
    let dma = h.dma.clone();
    let worker = std::thread::spawn(move || {
        let data: Vec<u8> = (0..10000u32).map(|i| i as u8).collect();
        dma.write(0x10000, &data).unwrap();
        let mut back = vec![0u8; 10000];
        dma.read(0x10000, &mut back).unwrap();
        assert_eq!(back, data);
    });
    let mut mem = vec![0u8; 0x10000];
    let mut sizes = Vec::new();
    // Serve the 3 writes + 3 reads while also issuing commands of our own: DMA requests
    // and replies to our commands arrive interleaved, in any order.
    let info = DeviceInfo { argsz: 16, ..Default::default() };
    let mut waiting = vec![h.client.send(Command::DeviceGetInfo, info.as_slice(), &[])];
    while sizes.len() < 6 || !waiting.is_empty() {
        let m = h.client.recv();
        if m.header.is_command() {
            let a: DmaAccess = read_at(&m.payload, 0).unwrap();
            sizes.push(a.count);
            serve_dma(&mut h.client.conn, &m, &mut mem);
            if sizes.len() < 6 {
                waiting.push(h.client.send(Command::DeviceGetInfo, info.as_slice(), &[]));
            }
        } else {
            assert_eq!(m.header.msg_id, waiting.remove(0), "replies in order");
        }
    }
    worker.join().unwrap();
    assert_eq!(sizes, vec![4096, 4096, 1808, 4096, 4096, 1808]);
    assert_eq!(mem[9999], (9999u32) as u8);
    h.client.assert_alive();
}

#[test]
fn message_dma_inside_a_handler_queues_client_commands() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    // Region 9 reads are served from guest memory with DMA_READ by the handler itself.
    let rd = h.client.send(Command::RegionRead, RegionAccess { offset: 0x10, region: 9, count: 8 }.as_slice(), &[]);
    // A pipelined command that arrives while the handler waits for our DMA reply.
    let info = h.client.send(Command::DeviceGetInfo, DeviceInfo { argsz: 16, ..Default::default() }.as_slice(), &[]);
    let m = h.client.recv();
    assert!(m.header.is_command() && m.header.command == Command::DmaRead as u16);
    let a: DmaAccess = read_at(&m.payload, 0).unwrap();
    assert_eq!((a.addr, a.count), (0x10010, 8));
    h.client.conn.send(m.header.reply(0), &[a.as_slice(), b"guestmem"], &[]).unwrap();
    let r = h.client.reply_to(rd, Command::RegionRead);
    assert_eq!(&r.payload[16..], b"guestmem");
    h.client.reply_to(info, Command::DeviceGetInfo);
    // An error reply from the client fails the region read with its errno.
    let rd = h.client.send(Command::RegionRead, RegionAccess { offset: 0, region: 9, count: 4 }.as_slice(), &[]);
    let m = h.client.recv();
    h.client.conn.send(m.header.error_reply(libc::EFAULT), &[], &[]).unwrap();
    let r = h.client.reply_to(rd, Command::RegionRead);
    assert_eq!(r.header.error as i32, libc::EFAULT);
    h.client.assert_alive();
}

#[test]
fn an_unsolicited_reply_closes_the_connection() {
    let mut h = spawn();
    let hdr = Header::command(7, Command::DmaRead, 0).reply(0);
    h.client.conn.send(hdr, &[DmaAccess { addr: 0, count: 0 }.as_slice()], &[]).unwrap();
    assert!(h.client.conn.recv().is_err());
}

#[test]
fn twin_socket_carries_server_requests() {
    let mut h = spawn_with(ServerLimits::default());
    let json = r#"{"capabilities":{"max_msg_fds":8,"twin_socket":{"supported":true}}}"#;
    let mut m = h.client.version(json).unwrap();
    let caps = Capabilities::from_json(&m.payload[4..m.payload.len() - 1]).unwrap();
    let twin = caps.twin_socket.unwrap();
    assert!(twin.supported);
    assert_eq!(twin.fd_index, Some(0));
    let fd: OwnedFd = m.fds.remove(0);
    let mut twin = Connection::new(UnixStream::from(fd));
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    let dma = h.dma.clone();
    let worker = std::thread::spawn(move || {
        dma.write(0x10100, b"twin").unwrap();
        let mut b = [0u8; 4];
        dma.read(0x10100, &mut b).unwrap();
        b
    });
    let mut mem = vec![0u8; 0x1000];
    for _ in 0..2 {
        let m = twin.recv().unwrap();
        serve_dma(&mut twin, &m, &mut mem);
    }
    assert_eq!(&worker.join().unwrap(), b"twin");
    // A handler's own DMA goes to the twin socket too; the main socket only carries the
    // reply to our command.
    let rd = h.client.send(Command::RegionRead, RegionAccess { offset: 0x100, region: 9, count: 4 }.as_slice(), &[]);
    let m = twin.recv().unwrap();
    serve_dma(&mut twin, &m, &mut mem);
    assert_eq!(&h.client.reply_to(rd, Command::RegionRead).payload[16..], b"twin");
    h.client.assert_alive();
}

#[test]
fn dma_without_a_client_fails() {
    let h = spawn();
    let mut b = [0u8; 4];
    assert!(h.dma.read(0x10000, &mut b).is_err());
}

#[test]
fn malformed_dma_replies_and_short_files() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    // A DMA_READ reply for another address fails the device's read.
    let rd = h.client.send(Command::RegionRead, RegionAccess { offset: 0, region: 9, count: 4 }.as_slice(), &[]);
    let m = h.client.recv();
    let bad = DmaAccess { addr: 0x20000, count: 4 };
    h.client.conn.send(m.header.reply(0), &[bad.as_slice(), b"nope"], &[]).unwrap();
    let r = h.client.reply_to(rd, Command::RegionRead);
    assert_eq!(r.header.error as i32, libc::EINVAL);
    // A bare-header DMA_WRITE reply (what QEMU sends) is accepted.
    let wr = h.client.send_raw(
        Command::RegionWrite as u16,
        0,
        &[RegionAccess { offset: 0, region: 9, count: 2 }.as_slice(), b"ok"],
        &[],
    );
    let m = h.client.recv();
    assert_eq!(m.header.command, Command::DmaWrite as u16);
    assert_eq!(&m.payload[16..], b"ok");
    h.client.conn.send(m.header.reply(0), &[], &[]).unwrap();
    assert!(!h.client.reply_to(wr, Command::RegionWrite).header.is_error());
    // A mapping larger than its file is refused (it would fault with SIGBUS past the end).
    let small = memfd(0x1000);
    assert_eq!(h.client.dma_map(0x40000, 0x2000, Some(&small)).unwrap_err(), libc::EINVAL);
    h.client.assert_alive();
}

#[test]
fn twin_socket_protocol_violation() {
    let mut h = spawn_with(ServerLimits::default());
    let mut m = h.client.version(r#"{"capabilities":{"twin_socket":{"supported":true}}}"#).unwrap();
    let mut twin = Connection::new(UnixStream::from(m.fds.remove(0)));
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    let dma = h.dma.clone();
    let worker = std::thread::spawn(move || dma.read(0x10000, &mut [0u8; 4]).map_err(|e| e.errno()));
    let req = twin.recv().unwrap();
    // Answer with a reply to some other id.
    let mut hdr = req.header.reply(0);
    hdr.msg_id = hdr.msg_id.wrapping_add(1);
    twin.send(hdr, &[&req.payload[..16], b"abcd"], &[]).unwrap();
    assert_eq!(worker.join().unwrap(), Err(libc::EINVAL));
}

#[test]
fn a_dma_reply_read_together_with_a_command_does_not_hold_back_its_reply() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    let dma = h.dma.clone();
    let worker = std::thread::spawn(move || {
        let mut b = [0u8; 4];
        dma.read(0x10000, &mut b).map(|()| b)
    });
    let req = h.client.recv();
    assert_eq!(req.header.command, Command::DmaRead as u16);
    // One write holding a command and the DMA reply: the server reads both at once.
    let mut bytes = Header::command(77, Command::DeviceGetInfo, 16).as_slice().to_vec();
    bytes.extend_from_slice(DeviceInfo { argsz: 16, ..Default::default() }.as_slice());
    let a: DmaAccess = read_at(&req.payload, 0).unwrap();
    let mut rh = req.header.reply(0);
    rh.msg_size = 36;
    bytes.extend_from_slice(rh.as_slice());
    bytes.extend_from_slice(a.as_slice());
    bytes.extend_from_slice(b"data");
    std::io::Write::write_all(&mut h.client.raw, &bytes).unwrap();
    // The reply to the command must come without anything else arriving.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut conn = Connection::new(h.client.raw.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = tx.send(conn.recv().map(|m| (m.header.msg_id, m.header.command)).ok());
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the reply was held back");
    assert_eq!(got, Some((77, Command::DeviceGetInfo as u16)));
    assert_eq!(&worker.join().unwrap().unwrap(), b"data");
}
