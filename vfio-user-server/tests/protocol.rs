// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Command handling over a real socket pair.

mod common;

use std::os::fd::AsFd;

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::region_caps::{parse_region_caps, RegionCap};
use vfio_user_proto::version::Capabilities;
use vfio_user_proto::wire::*;
use vfio_user_server::{ResetKind, ServerLimits};
use vm_memory::ByteValued;

fn info_req() -> Vec<u8> {
    DeviceInfo { argsz: 16, ..Default::default() }.as_slice().to_vec()
}

#[test]
fn version_comes_first_and_only_once() {
    let mut h = spawn_with(ServerLimits::default());
    assert_eq!(h.client.errno(Command::DeviceGetInfo, &info_req(), &[]), libc::EINVAL);
    let m = h.client.version_ok();
    assert!(m.fds.is_empty());
    let (major, minor) =
        (u16::from_ne_bytes([m.payload[0], m.payload[1]]), u16::from_ne_bytes([m.payload[2], m.payload[3]]));
    assert_eq!((major, minor), (0, 2));
    let json = &m.payload[4..m.payload.len() - 1];
    assert_eq!(m.payload.last(), Some(&0));
    let caps = Capabilities::from_json(json).unwrap();
    assert_eq!((caps.max_msg_fds, caps.max_data_xfer_size, caps.pgsizes), (16, 1 << 20, 4096));
    assert!(caps.write_multiple);
    assert_eq!(caps.twin_socket, None, "not mentioned to a client that did not offer it");
    assert_eq!(h.client.version("").unwrap_err(), libc::EINVAL);
    h.client.assert_alive();
    assert_eq!(h.dev.seen(), vec![Seen::Connected(true)]);
}

#[test]
fn version_minor_is_clamped_and_bad_json_refused() {
    let mut h = spawn_with(ServerLimits::default());
    assert_eq!(h.client.version("{").unwrap_err(), libc::EINVAL);
    assert_eq!(h.client.version(r#"{"capabilities":{"max_data_xfer_size":0}}"#).unwrap_err(), libc::EINVAL);
    // Still waiting for a valid VERSION.
    let mut p = vec![0u8, 0, 0, 0];
    p.extend_from_slice(b"{}\0");
    let m = h.client.call(Command::Version, &p, &[]).unwrap();
    assert_eq!(&m.payload[..4], &[0, 0, 0, 0]);
    h.client.assert_alive();
}

#[test]
fn version_with_another_major_closes() {
    let mut h = spawn_with(ServerLimits::default());
    let p = [1u8, 0, 0, 0];
    assert_eq!(h.client.call(Command::Version, &p, &[]).unwrap_err(), libc::ENOTSUP);
    assert!(h.client.conn.recv().is_err(), "the server hangs up");
}

#[test]
fn device_info() {
    let mut h = spawn();
    let m = h.client.call(Command::DeviceGetInfo, &info_req(), &[]).unwrap();
    let i: DeviceInfo = read_at(&m.payload, 0).unwrap();
    assert_eq!(i, DeviceInfo { argsz: 16, flags: DEVICE_FLAGS_PCI | DEVICE_FLAGS_RESET, num_regions: 10, num_irqs: 5 });
}

fn region_info(c: &mut Client, index: u32, argsz: u32) -> Result<(RegionInfo, Vec<u8>, usize), i32> {
    let req = RegionInfo { argsz, index, ..Default::default() };
    let m = c.call(Command::DeviceGetRegionInfo, req.as_slice(), &[])?;
    Ok((read_at(&m.payload, 0).unwrap(), m.payload.clone(), m.fds.len()))
}

#[test]
fn region_info_all_regions() {
    let mut h = spawn();
    let c = &mut h.client;
    let (cfg, _, nfds) = region_info(c, 7, 32).unwrap();
    assert_eq!((cfg.size, cfg.flags, nfds), (4096, REGION_FLAG_READ | REGION_FLAG_WRITE, 0));
    let (bar0, _, nfds) = region_info(c, 0, 32).unwrap();
    assert_eq!((bar0.size, bar0.flags, bar0.argsz, nfds), (0x1000, REGION_FLAG_READ | REGION_FLAG_WRITE, 32, 0));
    let (bar1, _, _) = region_info(c, 1, 32).unwrap();
    assert_eq!((bar1.size, bar1.flags), (0, 0));
    // BAR4 is mappable as a whole: no capabilities needed, so the fd comes right away.
    let (bar4, _, nfds) = region_info(c, 4, 32).unwrap();
    assert_eq!((bar4.flags & REGION_FLAG_MMAP, bar4.argsz, nfds), (REGION_FLAG_MMAP, 32, 1));
    // BAR2 has sparse areas around the MSI-X table and PBA: argsz retry protocol.
    let (short, body, nfds) = region_info(c, 2, 32).unwrap();
    assert_eq!((body.len(), nfds, short.flags & REGION_FLAG_CAPS), (32, 0, 0));
    assert!(short.argsz > 32);
    let (full, body, nfds) = region_info(c, 2, short.argsz).unwrap();
    assert_eq!((body.len() as u32, nfds), (short.argsz, 1));
    assert_ne!(full.flags & REGION_FLAG_CAPS, 0);
    let caps = parse_region_caps(&body).unwrap();
    assert_eq!(
        caps,
        vec![RegionCap::SparseMmap(vec![SparseArea { offset: 0, size: 0x2000 }])],
        "the table page (0x2000) and PBA page (0x3000) are left out"
    );
    let (rom, _, _) = region_info(c, 6, 32).unwrap();
    assert_eq!((rom.size, rom.flags), (0x800, REGION_FLAG_READ));
    let (_, body, _) = region_info(c, 9, 64).unwrap();
    assert_eq!(
        parse_region_caps(&body).unwrap(),
        vec![RegionCap::Type(RegionTypeCap { type_: 0x8086_0000, subtype: 7 })]
    );
    assert_eq!(region_info(c, 10, 32).unwrap_err(), libc::EINVAL);
    assert_eq!(region_info(c, u32::MAX, 32).unwrap_err(), libc::EINVAL);
    c.assert_alive();
}

#[test]
fn irq_info() {
    let mut h = spawn();
    let expect = [(0, 1), (1, 4), (2, u32::from(MSIX_VECTORS)), (3, 1), (4, 1)];
    for (index, count) in expect {
        let req = IrqInfo { argsz: 16, index, ..Default::default() };
        let m = h.client.call(Command::DeviceGetIrqInfo, req.as_slice(), &[]).unwrap();
        let i: IrqInfo = read_at(&m.payload, 0).unwrap();
        assert_eq!((i.index, i.count), (index, count));
        assert_ne!(i.flags & IRQ_INFO_EVENTFD, 0);
    }
    let req = IrqInfo { argsz: 16, index: 5, ..Default::default() };
    assert_eq!(h.client.errno(Command::DeviceGetIrqInfo, req.as_slice(), &[]), libc::EINVAL);
    h.client.assert_alive();
}

#[test]
fn config_space_over_the_socket() {
    let mut h = spawn();
    let c = &mut h.client;
    assert_eq!(c.read32(7, 0), 0x0001_4e58);
    assert_eq!(c.read32(7, 8) >> 8, 0xff0000);
    // BAR sizing as Cloud Hypervisor does it.
    c.write32(7, 0x10, u32::MAX);
    assert_eq!(c.read32(7, 0x10), 0xffff_f000);
    c.write32(7, 0x18, u32::MAX);
    c.write32(7, 0x1c, u32::MAX);
    assert_eq!(c.read32(7, 0x18), 0xffff_c004);
    assert_eq!(c.read32(7, 0x1c), 0xffff_ffff);
    c.write32(7, 0x20, u32::MAX);
    assert_eq!(c.read32(7, 0x20), 0xffff_f008, "prefetchable 32-bit");
    c.write32(7, 0x30, u32::MAX);
    assert_eq!(c.read32(7, 0x30), 0xffff_f801);
    // Out of range: EINVAL, then the stream is fine.
    assert_eq!(c.read(7, 4094, 4).unwrap_err(), libc::EINVAL);
    assert_eq!(c.write(7, 4096, &[0]).unwrap_err(), libc::EINVAL);
    assert_eq!(c.read(7, u64::MAX - 1, 1).unwrap_err(), libc::EINVAL);
    assert_eq!(c.read32(7, 0x100), 0x0001_0003, "DSN extended capability");
    c.assert_alive();
}

#[test]
fn bar_rom_and_device_region_access() {
    let mut h = spawn();
    let c = &mut h.client;
    c.write(0, 0x10, b"hello").unwrap();
    assert_eq!(c.read(0, 0x10, 5).unwrap(), b"hello");
    assert_eq!(&h.dev.bar0.lock().unwrap()[0x10..0x15], b"hello");
    assert_eq!(c.read(0, 0xffc, 8).unwrap_err(), libc::EINVAL);
    assert_eq!(c.read(6, 0, 4).unwrap(), vec![0xa5; 4]);
    assert_eq!(c.write(6, 0, &[1]).unwrap_err(), libc::EINVAL, "the ROM is read-only");
    assert_eq!(c.read(8, 0, 4).unwrap_err(), libc::EINVAL, "no VGA region");
    assert_eq!(c.read(1, 0, 4).unwrap_err(), libc::EINVAL, "absent BAR");
    assert_eq!(c.read(10, 0, 4).unwrap_err(), libc::EINVAL);
    assert_eq!(c.read(0, 0, 0).unwrap(), Vec::<u8>::new());
    assert_eq!(c.read(0, 0, (1 << 20) + 1).unwrap_err(), libc::E2BIG);
    c.assert_alive();
}

#[test]
fn write_multi_and_no_reply() {
    let mut h = spawn();
    let c = &mut h.client;
    let mut p = WriteMulti { wr_cnt: 2 }.as_slice().to_vec();
    p.extend_from_slice(WriteMultiEntry { offset: 0, region: 0, count: 4, data: *b"abcd\0\0\0\0" }.as_slice());
    p.extend_from_slice(WriteMultiEntry { offset: 8, region: 0, count: 8, data: *b"12345678" }.as_slice());
    let m = c.call(Command::RegionWriteMulti, &p, &[]).unwrap();
    assert_eq!(m.payload, 2u64.to_ne_bytes());
    assert_eq!(c.read(0, 0, 16).unwrap(), b"abcd\x00\x00\x00\x0012345678");
    // An entry out of range fails the whole message before anything is written.
    let mut bad = WriteMulti { wr_cnt: 2 }.as_slice().to_vec();
    bad.extend_from_slice(WriteMultiEntry { offset: 0, region: 0, count: 1, data: *b"Z0000000" }.as_slice());
    bad.extend_from_slice(WriteMultiEntry { offset: 0xfff, region: 0, count: 2, data: [0; 8] }.as_slice());
    assert_eq!(c.errno(Command::RegionWriteMulti, &bad, &[]), libc::EINVAL);
    assert_eq!(c.read(0, 0, 1).unwrap(), b"a");
    // NO_REPLY: posted writes take effect in order, and nothing comes back, not even for
    // a failing one.
    c.send_no_reply(Command::RegionWriteMulti, &p[..32]);
    let a = RegionAccess { offset: 0x20, region: 0, count: 2 };
    let mut w = a.as_slice().to_vec();
    w.extend_from_slice(b"xy");
    c.send_no_reply(Command::RegionWrite, &w);
    c.send_no_reply(Command::RegionRead, RegionAccess { offset: 0, region: 99, count: 4 }.as_slice());
    assert_eq!(c.read(0, 0x20, 2).unwrap(), b"xy");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = spawn();
    let c = &mut h.client;
    let mut ids = Vec::new();
    for i in 0..64u64 {
        let a = RegionAccess { offset: i % 16 * 4, region: 7, count: 4 };
        ids.push(c.send(Command::RegionRead, a.as_slice(), &[]));
        if i == 10 {
            ids.push(c.send(Command::RegionRead, RegionAccess { offset: 0, region: 42, count: 4 }.as_slice(), &[]));
        }
    }
    for (n, id) in ids.into_iter().enumerate() {
        let m = c.reply_to(id, Command::RegionRead);
        assert_eq!(m.header.is_error(), n == 11, "reply {n}");
    }
    c.assert_alive();
}

#[test]
fn reset_feature_migration_and_misdirected_commands() {
    let mut h = spawn();
    let c = &mut h.client;
    c.write32(7, 4, 0x0006);
    assert_eq!(c.read32(7, 4) & 0xffff, 6);
    c.call(Command::DeviceReset, &[], &[]).unwrap();
    assert_eq!(c.read32(7, 4) & 0xffff, 0, "command register reset");
    // FLR through the PCIe Device Control register.
    let mut p = c.read32(7, 0x34) as usize & 0xff;
    while c.read32(7, p as u64) & 0xff != 0x10 {
        p = (c.read32(7, p as u64) >> 8 & 0xff) as usize;
    }
    assert_ne!(c.read32(7, p as u64 + 4) & (1 << 28), 0);
    c.write(7, p as u64 + 8, &0x8000u16.to_le_bytes()).unwrap();
    let resets: Vec<_> = h.dev.seen().into_iter().filter(|s| matches!(s, Seen::Reset(_))).collect();
    assert_eq!(resets, vec![Seen::Reset(ResetKind::Device), Seen::Reset(ResetKind::Flr)]);
    let c = &mut h.client;
    let feat = DeviceFeature { argsz: 16, flags: u32::from(FEATURE_MIGRATION) | DEVICE_FEATURE_GET };
    assert_eq!(c.errno(Command::DeviceFeature, feat.as_slice(), &[]), libc::ENOTSUP);
    let probe = DeviceFeature {
        argsz: 8,
        flags: u32::from(FEATURE_DMA_LOGGING_START) | DEVICE_FEATURE_PROBE | DEVICE_FEATURE_SET,
    };
    // DMA logging is supported (tests/dma_space.rs), migration not yet.
    assert_eq!(c.call(Command::DeviceFeature, probe.as_slice(), &[]).unwrap().payload, probe.as_slice());
    let probe = DeviceFeature { argsz: 8, flags: u32::from(FEATURE_MIG_DEVICE_STATE) | DEVICE_FEATURE_PROBE };
    assert_eq!(c.errno(Command::DeviceFeature, probe.as_slice(), &[]), libc::ENOTSUP);
    let mig = MigData { argsz: 8, size: 16 };
    assert_eq!(c.errno(Command::MigDataRead, mig.as_slice(), &[]), libc::EINVAL);
    let mig = MigData { argsz: 8, size: 0 };
    assert_eq!(c.errno(Command::MigDataWrite, mig.as_slice(), &[]), libc::EINVAL);
    let dma = DmaAccess { addr: 0, count: 4 };
    assert_eq!(c.errno(Command::DmaRead, dma.as_slice(), &[]), libc::EINVAL);
    let mut w = dma.as_slice().to_vec();
    w.extend_from_slice(&[0; 4]);
    assert_eq!(c.errno(Command::DmaWrite, &w, &[]), libc::EINVAL);
    c.assert_alive();
}

#[test]
fn region_io_fds() {
    let mut h = spawn();
    let c = &mut h.client;
    let req = RegionIoFds { argsz: 16, flags: 0, index: 0, count: 0 };
    let m = c.call(Command::DeviceGetRegionIoFds, req.as_slice(), &[]).unwrap();
    let head: RegionIoFds = read_at(&m.payload, 0).unwrap();
    assert_eq!((head.argsz, head.count, m.payload.len(), m.fds.len()), (96, 2, 16, 0));
    let req = RegionIoFds { argsz: 96, ..req };
    let m = c.call(Command::DeviceGetRegionIoFds, req.as_slice(), &[]).unwrap();
    assert_eq!((m.payload.len(), m.fds.len()), (96, 1), "two entries share one fd");
    let e0: IoFdEntry = read_at(&m.payload, 16).unwrap();
    let e1: IoFdEntry = read_at(&m.payload, 56).unwrap();
    assert_eq!((e0.offset, e0.size, e0.fd_index, e0.flags), (0x100, 4, 0, 0));
    assert_eq!((e1.offset, e1.fd_index, e1.flags, e1.datamatch), (0x104, 0, IOEVENTFD_FLAG_DATAMATCH, 7));
    // The fd is the device's eventfd.
    rustix::io::write(m.fds[0].as_fd(), &1u64.to_ne_bytes()).unwrap();
    assert_eq!(efd_count(&h.dev.ioefd), 1);
    let req = RegionIoFds { argsz: 16, flags: 0, index: 2, count: 0 };
    let m = c.call(Command::DeviceGetRegionIoFds, req.as_slice(), &[]).unwrap();
    assert_eq!(read_at::<RegionIoFds>(&m.payload, 0).unwrap().count, 0);
    let req = RegionIoFds { argsz: 16, flags: 0, index: 1, count: 0 };
    assert_eq!(c.errno(Command::DeviceGetRegionIoFds, req.as_slice(), &[]), libc::EINVAL);
    c.assert_alive();
}

#[test]
fn custom_limits_are_advertised_and_enforced() {
    let mut h = spawn_with(ServerLimits { max_data_xfer_size: 4096, max_msg_fds: 2, max_dma_maps: 8, pgsizes: 4096 });
    let m = h.client.version_ok();
    let caps = Capabilities::from_json(&m.payload[4..m.payload.len() - 1]).unwrap();
    assert_eq!((caps.max_data_xfer_size, caps.max_msg_fds, caps.max_dma_maps), (4096, 2, 8));
    let c = &mut h.client;
    assert_eq!(c.read(2, 0, 4096).unwrap().len(), 4096);
    assert_eq!(c.read(2, 0, 4097).unwrap_err(), libc::E2BIG);
    c.write(2, 0, &[7; 4096]).unwrap();
    // A message larger than any the limits allow is drained and refused with E2BIG; the
    // connection stays.
    let a = RegionAccess { offset: 0, region: 2, count: 8192 };
    let id = c.send_raw(Command::RegionWrite as u16, 0, &[a.as_slice(), &[0; 8192]], &[]);
    let m = c.reply_to(id, Command::RegionWrite);
    assert_eq!((m.header.is_error(), m.header.error as i32), (true, libc::E2BIG));
    c.assert_alive();
}

#[test]
fn pipelined_replies_keep_their_order_around_replies_with_fds() {
    let mut h = spawn();
    let c = &mut h.client;
    let mut expect = Vec::new();
    for i in 0..40u32 {
        if i % 7 == 3 {
            let req = RegionInfo { argsz: 32, index: 4, ..Default::default() };
            expect.push((c.send(Command::DeviceGetRegionInfo, req.as_slice(), &[]), Command::DeviceGetRegionInfo, 1));
        } else {
            let a = RegionAccess { offset: u64::from(i % 8) * 4, region: 7, count: 4 };
            expect.push((c.send(Command::RegionRead, a.as_slice(), &[]), Command::RegionRead, 0));
        }
    }
    for (id, cmd, nfds) in expect {
        let m = c.reply_to(id, cmd);
        assert!(!m.header.is_error());
        assert_eq!(m.fds.len(), nfds);
    }
    c.assert_alive();
}
