// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Malformed commands: each gets an error reply with the right errno, descriptors that came
//! with it are closed, and the next valid command is answered correctly.

mod common;

use std::os::fd::AsFd;

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::header::FLAGS_TYPE_COMMAND;
use vfio_user_proto::wire::*;
use vm_memory::ByteValued;

fn expect_errno(c: &mut Client, cmd: u16, payload: &[u8], errno: i32) {
    let id = c.send_raw(cmd, FLAGS_TYPE_COMMAND, &[payload], &[]);
    let m = c.recv();
    assert_eq!((m.header.msg_id, m.header.command), (id, cmd));
    assert!(m.header.is_reply() && m.header.is_error(), "command {cmd}: {:?}", m.header);
    assert_eq!(m.header.error as i32, errno, "command {cmd}");
    assert_eq!(m.header.msg_size, 16);
    c.assert_alive();
}

#[test]
fn truncated_and_oversized_payloads() {
    let mut h = spawn();
    for cmd in Command::ALL {
        expect_errno(&mut h.client, cmd as u16, &[1, 2, 3], libc::EINVAL);
        if cmd != Command::DeviceReset && cmd != Command::Version && cmd != Command::DeviceFeature {
            expect_errno(&mut h.client, cmd as u16, &[0u8; 200], libc::EINVAL);
        }
    }
    expect_errno(&mut h.client, Command::DeviceReset as u16, &[0], libc::EINVAL);
}

#[test]
fn unknown_and_removed_commands() {
    let mut h = spawn();
    expect_errno(&mut h.client, 0, &[], libc::EINVAL);
    expect_errno(&mut h.client, 14, &[0; 16], libc::ENOTSUP);
    expect_errno(&mut h.client, 19, &[], libc::EINVAL);
    expect_errno(&mut h.client, u16::MAX, &[0; 64], libc::EINVAL);
}

#[test]
fn hostile_field_values() {
    let mut h = spawn();
    let c = &mut h.client;
    // REGION_WRITE whose count disagrees with the payload.
    let a = RegionAccess { offset: 0, region: 0, count: 100 };
    expect_errno(c, Command::RegionWrite as u16, &[a.as_slice(), &[0; 4]].concat(), libc::EINVAL);
    // A count over max_data_xfer_size.
    let a = RegionAccess { offset: 0, region: 0, count: u32::MAX };
    expect_errno(c, Command::RegionRead as u16, a.as_slice(), libc::E2BIG);
    // An offset that wraps.
    let a = RegionAccess { offset: u64::MAX, region: 0, count: 4 };
    expect_errno(c, Command::RegionRead as u16, a.as_slice(), libc::EINVAL);
    // REGION_WRITE_MULTI with a huge wr_cnt, zero entries, a 9-byte entry.
    expect_errno(c, Command::RegionWriteMulti as u16, &u64::MAX.to_ne_bytes(), libc::EINVAL);
    expect_errno(c, Command::RegionWriteMulti as u16, &0u64.to_ne_bytes(), libc::EINVAL);
    let e = WriteMultiEntry { offset: 0, region: 0, count: 9, data: [0; 8] };
    expect_errno(c, Command::RegionWriteMulti as u16, &[&1u64.to_ne_bytes()[..], e.as_slice()].concat(), libc::EINVAL);
    // SET_IRQS claiming u32::MAX booleans.
    let s =
        IrqSet { argsz: 20, flags: IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, index: 2, start: 0, count: u32::MAX };
    expect_errno(c, Command::DeviceSetIrqs as u16, s.as_slice(), libc::EINVAL);
    let s =
        IrqSet { argsz: 20, flags: IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, index: 2, start: u32::MAX, count: 2 };
    expect_errno(c, Command::DeviceSetIrqs as u16, s.as_slice(), libc::EINVAL);
    // DMA_MAP with unknown flags, bad argsz, a wrapping range.
    let m = DmaMap { argsz: 32, flags: 1 << 9, offset: 0, addr: 0, size: 0x1000 };
    expect_errno(c, Command::DmaMap as u16, m.as_slice(), libc::EINVAL);
    let m = DmaMap { argsz: 16, flags: 3, offset: 0, addr: 0, size: 0x1000 };
    expect_errno(c, Command::DmaMap as u16, m.as_slice(), libc::EINVAL);
    let m = DmaMap { argsz: 32, flags: 3, offset: 0, addr: u64::MAX - 0xfff, size: 0x2000 };
    expect_errno(c, Command::DmaMap as u16, m.as_slice(), libc::EINVAL);
    // DMA_UNMAP with the legacy dirty bitmap, of no mapping.
    let u = DmaUnmap { argsz: 4096, flags: DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, addr: 0, size: 0x1000 };
    let b = DmaBitmap { pgsize: 4096, size: 8 };
    expect_errno(c, Command::DmaUnmap as u16, &[u.as_slice(), b.as_slice()].concat(), libc::ENOENT);
    // Region info / irq info with a tiny argsz.
    let r = RegionInfo { argsz: 8, index: 0, ..Default::default() };
    expect_errno(c, Command::DeviceGetRegionInfo as u16, r.as_slice(), libc::EINVAL);
    // DEVICE_FEATURE with GET and SET together.
    let f = DeviceFeature { argsz: 16, flags: 1 | DEVICE_FEATURE_GET | DEVICE_FEATURE_SET };
    expect_errno(c, Command::DeviceFeature as u16, f.as_slice(), libc::EINVAL);
    // VERSION JSON with an interior NUL.
    expect_errno(c, Command::Version as u16, b"\0\0\0\0{}\0{}\0", libc::EINVAL);
}

#[test]
fn stray_fds_are_closed() {
    let mut h = spawn();
    let (mut rd, wr) = std::os::unix::net::UnixStream::pair().unwrap();
    let a = RegionAccess { offset: 0, region: 7, count: 4 };
    assert_eq!(h.client.errno(Command::RegionRead, a.as_slice(), &[wr.as_fd()]), libc::EINVAL);
    drop(wr);
    h.client.assert_alive();
    // The server closed its copy of the other end: this end reads EOF.
    let mut b = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut rd, &mut b).unwrap(), 0);
    // The same for a SET_IRQS that fails validation.
    let (mut rd, wr) = std::os::unix::net::UnixStream::pair().unwrap();
    let s = IrqSet { argsz: 20, flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, index: 9, start: 0, count: 1 };
    assert_eq!(h.client.errno(Command::DeviceSetIrqs, s.as_slice(), &[wr.as_fd()]), libc::EINVAL);
    drop(wr);
    h.client.assert_alive();
    assert_eq!(std::io::Read::read(&mut rd, &mut b).unwrap(), 0);
}

#[test]
fn a_blocking_socket_as_trigger_fd_keeps_its_flags_and_never_blocks_the_server() {
    let mut h = spawn();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = std::os::fd::OwnedFd::from(a);
    assert!(!rustix::fs::fcntl_getfl(&fd).unwrap().contains(rustix::fs::OFlags::NONBLOCK));
    h.client.set_irqs(IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, 0, 0, 1, &[], &[&fd]).unwrap();
    // The open file is shared with the client: its flags are not the server's to change.
    assert!(!rustix::fs::fcntl_getfl(&fd).unwrap().contains(rustix::fs::OFlags::NONBLOCK));
    // Raising it until the socket buffer is full, and far beyond, never blocks.
    for _ in 0..100_000 {
        h.irq.trigger_intx().unwrap();
    }
    h.client.assert_alive();
}

#[test]
fn flooding_while_the_server_waits_for_dma_is_bounded() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    let rd = RegionAccess { offset: 0, region: 9, count: 4 };
    h.client.send(Command::RegionRead, rd.as_slice(), &[]);
    let m = h.client.recv();
    assert_eq!(m.header.command, Command::DmaRead as u16);
    // Never answer; send more commands than the server will set aside.
    let reset = vfio_user_proto::Header::command(1, Command::DeviceReset, 0);
    let flood: Vec<u8> = (0..5000).flat_map(|_| reset.as_slice().to_vec()).collect();
    let _ = std::io::Write::write_all(&mut h.client.raw, &flood);
    assert!(h.client.conn.recv().is_err(), "the server dropped the connection");
}

/// Regression (issue 16, item 1): a client mapped a 1 MiB memfd, truncated it to 0 and let
/// the device DMA into it: the server died with SIGBUS, and every device it served with
/// it. The device now gets EFAULT and the server goes on serving.
#[test]
fn a_client_shrinking_mapped_memory_does_not_kill_the_server() {
    let mut h = spawn();
    let mem = unsealed_memfd(1 << 20);
    h.client.dma_map(0x10_0000, 1 << 20, Some(&mem)).unwrap();
    rustix::fs::ftruncate(&mem, 0).unwrap();
    let dma = h.dma.clone();
    let e = dma.read_obj::<u64>(0x10_0000).unwrap_err();
    assert_eq!(e.errno(), libc::EFAULT, "{e}");
    let mut buf = vec![0u8; 64 << 10];
    assert_eq!(dma.read(0x10_0000, &mut buf).unwrap_err().errno(), libc::EFAULT);
    // No host mapping a device could fault on.
    assert_eq!(dma.translate(0x10_0000, 4096, true).unwrap_err().errno(), libc::ENOTSUP);
    h.client.assert_alive();
    h.client.dma_unmap(0, 0x10_0000, 1 << 20).unwrap();
    h.client.assert_alive();
}
