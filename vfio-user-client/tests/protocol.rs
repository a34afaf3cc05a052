// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Every call against a scripted fake server over a real socket, with real fds.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use common::*;
use vfio_user_client::{DmaProt, Error, IrqAction, IrqSetData, MigState, RegionCap};
use vfio_user_proto::wire::*;
use vfio_user_proto::{decode_request, Capabilities, Command, FeatureRequest, IrqData, Request};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestAddressSpace, GuestMemoryMmap};

fn req<'a>(f: &Fake, m: &'a vfio_user_proto::Message) -> Request<'a> {
    decode_request(&m.header, &m.payload, m.fds.len(), &f.limits).unwrap()
}

#[test]
fn version_offers_every_capability_and_obeys_the_reply() {
    let caps = Capabilities { max_data_xfer_size: 4096, max_msg_fds: 3, write_multiple: true, ..Default::default() };
    let (c, h) = start(test_config().max_msg_fds(7).twin_socket(true), move |mut f| {
        let offered = f.handshake_with(&caps, &[], default_info());
        assert_eq!(offered.max_msg_fds, 7);
        assert_eq!(offered.max_data_xfer_size, 1 << 20);
        assert!(offered.write_multiple);
        assert!(offered.twin_socket_supported());
        assert!(offered.pgsizes >= 4096);
    });
    h.join().unwrap();
    let n = c.negotiated();
    assert_eq!((n.peer.max_data_xfer_size, n.peer.max_msg_fds, n.peer.write_multiple), (4096, 3, true));
    assert!(!n.twin_socket);
    let d = c.device_info();
    assert!(d.resettable() && d.is_pci());
    assert_eq!((d.num_regions, d.num_irqs), (9, 5));
    let b: vfio_bindings_0_7::bindings::vfio::vfio_device_info = d.into();
    assert_eq!((b.flags, b.num_regions, b.num_irqs), (d.flags, 9, 5));
    let b: vfio_bindings_0_6::bindings::vfio::vfio_device_info = d.into();
    assert_eq!((b.flags, b.num_regions, b.num_irqs), (d.flags, 9, 5));
}

#[test]
fn version_error_reply_and_bad_major_fail_the_connect() {
    let (e, h) = start_err(test_config(), |mut f| {
        let m = f.expect(Command::Version);
        f.error(&m, libc::ENOTSUP);
    });
    h.join().unwrap();
    assert!(matches!(e, Error::Server { command: Command::Version, errno: libc::ENOTSUP }), "{e}");
    let (e, h) = start_err(test_config(), |mut f| {
        let m = f.expect(Command::Version);
        f.reply(&m, &[VersionWire { major: 1, minor: 0 }.as_slice(), b"{}\0"]);
    });
    h.join().unwrap();
    assert!(matches!(e, Error::Negotiation(_)), "{e}");
}

use vfio_user_proto::request::VersionWire;

#[test]
fn region_read_and_write_are_split_by_max_data_xfer_size() {
    let caps = Capabilities { max_data_xfer_size: 64, ..Default::default() };
    let (c, h) = start(test_config(), move |mut f| {
        f.handshake_with(&caps, &[], default_info());
        let mut backing = vec![0u8; 256];
        for _ in 0..8 {
            let m = f.recv();
            match req(&f, &m) {
                Request::RegionRead(a) => {
                    assert!(a.count <= 64 && a.region == 2);
                    let s = a.offset as usize;
                    f.reply(&m, &[a.as_slice(), &backing[s..s + a.count as usize]]);
                }
                Request::RegionWrite(a, d) => {
                    assert!(a.count <= 64);
                    backing[a.offset as usize..a.offset as usize + d.len()].copy_from_slice(d);
                    f.reply(&m, &[a.as_slice()]);
                }
                r => panic!("unexpected {r:?}"),
            }
        }
    });
    let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    c.region_write(2, 10, &data).unwrap(); // 4 messages
    let mut back = vec![0u8; 200];
    c.region_read(2, 10, &mut back).unwrap(); // 4 messages
    assert_eq!(back, data);
    h.join().unwrap();
    assert!(matches!(c.region_read(9, 0, &mut [0; 4]), Err(Error::InvalidInput(_))));
}

#[test]
fn server_errors_carry_the_errno() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::RegionRead);
        f.error(&m, libc::ENOENT);
        let m = f.expect(Command::RegionWrite);
        f.error(&m, 0); // rust-vmm's server does this
    });
    let e = c.region_read(0, 0, &mut [0; 4]).unwrap_err();
    assert!(matches!(e, Error::Server { command: Command::RegionRead, errno: libc::ENOENT }), "{e}");
    let e = c.region_write(0, 0, &[1]).unwrap_err();
    assert_eq!(e.errno(), libc::EIO);
    h.join().unwrap();
    assert!(c.disconnected().is_none(), "error replies keep the connection");
}

#[test]
fn region_info_retries_argsz_parses_caps_and_maps_sparse_areas() {
    let mem = Arc::new(memfd(0x4000));
    let mem2 = mem.clone();
    let (c, h) = start(test_config(), move |mut f| {
        f.handshake();
        let caps = vec![
            RegionCap::SparseMmap(vec![
                SparseArea { offset: 0, size: 0x1000 },
                SparseArea { offset: 0x2000, size: 0x1000 },
            ]),
            RegionCap::Type(RegionTypeCap { type_: 0x8086_0000, subtype: 7 }),
        ];
        let info = RegionInfo {
            flags: REGION_FLAG_READ | REGION_FLAG_WRITE | REGION_FLAG_MMAP,
            index: 0,
            size: 0x4000,
            ..Default::default()
        };
        // First ask: pretend the caps do not fit (like a server with a big chain).
        let m = f.expect(Command::DeviceGetRegionInfo);
        let mut short = info;
        short.argsz = 5000;
        f.reply(&m, &[short.as_slice()]);
        let m = f.expect(Command::DeviceGetRegionInfo);
        let asked = match req(&f, &m) {
            Request::DeviceGetRegionInfo(i) => i.argsz,
            _ => unreachable!(),
        };
        assert_eq!(asked, 5000, "the client asks again with the argsz the server needs");
        let p = vfio_user_proto::build_region_info(info, &caps, asked);
        f.reply_fds(&m, &[&p], &[&mem2]);
        // Region 1: plain, no caps.
        let m = f.expect(Command::DeviceGetRegionInfo);
        let i1 = RegionInfo { argsz: 32, flags: REGION_FLAG_READ, index: 1, size: 16, ..Default::default() };
        f.reply(&m, &[i1.as_slice()]);
    });
    let r = c.region_info(0).unwrap();
    assert!(r.mappable() && r.readable() && r.writable());
    assert_eq!(r.sparse_areas().unwrap().len(), 2);
    assert_eq!(r.region_type(), Some(RegionTypeCap { type_: 0x8086_0000, subtype: 7 }));
    assert!(r.file_offset().is_some());
    let again = c.region_info(0).unwrap();
    assert!(Arc::ptr_eq(&r, &again), "cached: no second round trip");
    // The areas, as our own type and as both vfio-bindings versions' structs.
    let areas = r.sparse_mmap_areas();
    let sparse: Vec<(u64, u64)> = r.sparse_areas().unwrap().iter().map(|a| (a.offset, a.size)).collect();
    assert_eq!(areas.iter().map(|a| (a.offset, a.size)).collect::<Vec<_>>(), sparse);
    let v6: Vec<vfio_bindings_0_6::bindings::vfio::vfio_region_sparse_mmap_area> =
        areas.iter().map(|&a| a.into()).collect();
    let v7: Vec<vfio_bindings_0_7::bindings::vfio::vfio_region_sparse_mmap_area> =
        areas.iter().map(|&a| a.into()).collect();
    assert_eq!(v6.iter().map(|a| (a.offset, a.size)).collect::<Vec<_>>(), sparse);
    assert_eq!(v7.iter().map(|a| (a.offset, a.size)).collect::<Vec<_>>(), sparse);
    assert_eq!(vfio_user_client::SparseMmapArea::from(v6[1]), areas[1]);
    let info6: vfio_bindings_0_6::bindings::vfio::vfio_region_info = (&*r).into();
    assert_eq!((info6.index, info6.size, info6.offset, info6.cap_offset), (0, r.size, r.offset, 0));
    assert_eq!(info6.flags & REGION_FLAG_CAPS, 0, "no capability chain follows the struct");
    let map = c.map_region(0).unwrap();
    assert_eq!(map.areas().len(), 2);
    map.store::<u32>(0x2004, 0xdead_beef).unwrap();
    assert_eq!(fd_read(&mem, 0x2004, 4), 0xdead_beefu32.to_ne_bytes());
    fd_write(&mem, 0x10, b"hello");
    let mut b = [0u8; 5];
    map.read(0x10, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    assert!(map.read(0x1000, &mut b).is_err(), "outside the sparse areas");
    assert!(map.load::<u32>(0x2002).is_err(), "unaligned");
    let r1 = c.region_info(1).unwrap();
    assert!(!r1.mappable());
    let b: vfio_bindings_0_7::bindings::vfio::vfio_region_info = (&*r1).into();
    assert_eq!(b.size, 16);
    assert!(matches!(c.map_region(1), Err(Error::Unsupported(_))));
    h.join().unwrap();
}

#[test]
fn region_io_fds_in_both_layouts() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceGetRegionInfo);
        let i = RegionInfo {
            argsz: 32,
            flags: REGION_FLAG_READ | REGION_FLAG_WRITE,
            index: 0,
            size: 0x1000,
            ..Default::default()
        };
        f.reply(&m, &[i.as_slice()]);
        let (e1, e2) = (eventfd(), eventfd());
        // Spec layout, two entries sharing fd 0 and one on fd 1.
        let m = f.expect(Command::DeviceGetRegionIoFds);
        let mut p = RegionIoFds { argsz: 16 + 3 * 40, flags: 0, index: 0, count: 3 }.as_slice().to_vec();
        for (off, idx, dm) in [(0x10u64, 0u32, 1u64), (0x20, 0, 2), (0x30, 1, 0)] {
            let e = IoFdEntry {
                offset: off,
                size: 4,
                fd_index: idx,
                type_: 0,
                flags: if dm != 0 { IOEVENTFD_FLAG_DATAMATCH } else { 0 },
                padding: 0,
                datamatch: dm,
            };
            p.extend_from_slice(e.as_slice());
        }
        f.reply_fds(&m, &[&p], &[&e1, &e2]);
        // libvfio-user's 48-byte layout.
        let m = f.expect(Command::DeviceGetRegionIoFds);
        let mut p = RegionIoFds { argsz: 16 + 48, flags: 0, index: 0, count: 1 }.as_slice().to_vec();
        let e = IoFdEntryShadow {
            offset: 0x40,
            size: 8,
            fd_index: 0,
            type_: 0,
            flags: 0,
            shadow_mem_fd_index: 0,
            shadow_offset: 0,
            datamatch: 0,
        };
        p.extend_from_slice(e.as_slice());
        f.reply_fds(&m, &[&p], &[&e1]);
        // An entry outside the region: refused.
        let m = f.expect(Command::DeviceGetRegionIoFds);
        let mut p = RegionIoFds { argsz: 16 + 40, flags: 0, index: 0, count: 1 }.as_slice().to_vec();
        let e = IoFdEntry { offset: 0xffe, size: 4, ..Default::default() };
        p.extend_from_slice(e.as_slice());
        f.reply_fds(&m, &[&p], &[&e1]);
    });
    let v = c.region_io_fds(0).unwrap();
    assert_eq!(v.len(), 3);
    assert!(Arc::ptr_eq(&v[0].fd, &v[1].fd));
    assert!(!Arc::ptr_eq(&v[0].fd, &v[2].fd));
    assert_eq!((v[1].offset, v[1].size, v[1].datamatch, v[1].flags), (0x20, 4, 2, IOEVENTFD_FLAG_DATAMATCH));
    let v = c.region_io_fds(0).unwrap();
    assert_eq!((v.len(), v[0].offset, v[0].size), (1, 0x40, 8));
    assert!(matches!(c.region_io_fds(0), Err(Error::Protocol(_))));
    h.join().unwrap();
}

#[test]
fn dma_map_unmap_flags_are_spec_values() {
    let caps = Capabilities { max_dma_maps: 2, ..Default::default() };
    let mem = memfd(0x10000);
    let (c, h) = start(test_config(), move |mut f| {
        f.handshake_with(&caps, &[], default_info());
        let m = f.expect(Command::DmaMap);
        match req(&f, &m) {
            Request::DmaMap { map, fd } => {
                assert!(fd);
                assert_eq!(
                    (map.flags, map.offset, map.addr, map.size),
                    (DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE, 0x1000, 0x10_0000, 0x4000)
                );
            }
            _ => unreachable!(),
        }
        // The fd is the memfd: write through it.
        fd_write(&m.fds[0], 0x1000, b"via fd");
        f.reply(&m, &[]);
        let m = f.expect(Command::DmaMap);
        match req(&f, &m) {
            Request::DmaMap { map, fd } => assert!(!fd && map.flags == DMA_MAP_FLAG_READ && map.offset == 0),
            _ => unreachable!(),
        }
        f.reply(&m, &[]);
        let m = f.expect(Command::DmaUnmap);
        let u = match req(&f, &m) {
            Request::DmaUnmap(r) if matches!(r.to_wire(), (_, None)) => r.to_wire().0,
            _ => unreachable!(),
        };
        assert_eq!((u.flags, u.addr, u.size), (0, 0x10_0000, 0x4000));
        f.reply(&m, &[u.as_slice()]);
        let m = f.expect(Command::DmaUnmap);
        let (u, bm) = match req(&f, &m) {
            Request::DmaUnmap(r) => match r.to_wire() {
                (unmap, Some(b)) => (unmap, b),
                _ => unreachable!(),
            },
            _ => unreachable!(),
        };
        assert_eq!(u.flags, 1, "GET_DIRTY_BITMAP is Linux's 1 << 0");
        assert_eq!((bm.pgsize, bm.size), (4096, 1));
        f.reply(&m, &[u.as_slice(), bm.as_slice(), &[0b101]]);
        let m = f.expect(Command::DmaUnmap);
        let u = match req(&f, &m) {
            Request::DmaUnmap(r) => r.to_wire().0,
            _ => unreachable!(),
        };
        assert_eq!((u.flags, u.addr, u.size), (2, 0, 0), "UNMAP_ALL is Linux's 1 << 1");
        f.reply(&m, &[u.as_slice()]);
    });
    c.dma_map_fd(0x10_0000, 0x4000, mem.as_fd(), 0x1000, DmaProt::READ_WRITE).unwrap();
    assert_eq!(fd_read(&mem, 0x1000, 6), b"via fd");
    c.dma_map(0x20_0000, 0x2000, DmaProt::READ).unwrap();
    assert!(matches!(c.dma_map(0x20_1000, 0x1000, DmaProt::READ), Err(Error::InvalidInput(_))), "overlap");
    assert!(matches!(c.dma_map(0x30_0000, 0x1000, DmaProt::READ), Err(Error::Unsupported(_))), "max_dma_maps");
    assert!(matches!(c.dma_map(0x30_0001, 0x1000, DmaProt::READ), Err(Error::InvalidInput(_))), "alignment");
    assert!(matches!(c.dma_unmap(0x10_0000, 0x1000), Err(Error::InvalidInput(_))), "must match exactly");
    assert_eq!(c.dma_mappings().len(), 2);
    c.dma_unmap(0x10_0000, 0x4000).unwrap();
    assert_eq!(c.dma_unmap_with_dirty_bitmap(0x20_0000, 0x2000, 4096).unwrap(), vec![0b101]);
    c.dma_unmap_all().unwrap();
    assert!(c.dma_mappings().is_empty());
    h.join().unwrap();
}

#[test]
fn set_irqs_every_kind_split_by_max_msg_fds() {
    let caps = Capabilities { max_msg_fds: 2, ..Default::default() };
    let (c, h) = start(test_config(), move |mut f| {
        f.handshake_with(&caps, &[], default_info());
        let m = f.expect(Command::DeviceGetIrqInfo);
        f.reply(
            &m,
            &[IrqInfo { argsz: 16, flags: IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE, index: 2, count: 8 }.as_slice()],
        );
        let mut got = Vec::new();
        for _ in 0..7 {
            let m = f.expect(Command::DeviceSetIrqs);
            if let Request::DeviceSetIrqs { set, action, data } = req(&f, &m) {
                let data = match data {
                    IrqData::None => "none".to_string(),
                    IrqData::Bool(b) => format!("bool{b:?}"),
                    IrqData::Eventfd(n) => format!("efd{n}"),
                };
                got.push(format!("{action:?} {} {} {data}", set.start, set.count));
            }
            // Signal every eventfd received so the test can see they are the client's.
            for fd in &m.fds {
                rustix::io::write(fd, &1u64.to_ne_bytes()).unwrap();
            }
            f.reply(&m, &[]);
        }
        assert_eq!(
            got,
            [
                "Trigger 0 2 efd2",
                "Trigger 2 2 efd2",
                "Trigger 4 1 efd1", // 5 fds, max 2 per message
                "Trigger 5 2 efd0", // a run of None: de-assign
                "Mask 1 3 bool[1, 0, 1]",
                "Unmask 0 1 none",
                "Trigger 0 0 none", // disable
            ]
        );
    });
    let efds: Vec<OwnedFd> = (0..5).map(|_| eventfd()).collect();
    let mut v: Vec<Option<std::os::fd::BorrowedFd<'_>>> = efds.iter().map(|e| Some(e.as_fd())).collect();
    v.extend([None, None]);
    c.set_irqs(2, IrqAction::Trigger, 0, IrqSetData::Eventfds(&v)).unwrap();
    for e in &efds {
        let mut b = [0u8; 8];
        assert_eq!(rustix::io::read(e, &mut b).unwrap(), 8, "the server got our eventfd");
    }
    c.set_irqs(2, IrqAction::Mask, 1, IrqSetData::Bool(&[true, false, true])).unwrap();
    c.set_irqs_raw(2, IRQ_SET_DATA_NONE | IRQ_SET_ACTION_UNMASK, 0, 1, &[]).unwrap();
    c.disable_irqs(2).unwrap();
    assert!(matches!(c.set_irqs(2, IrqAction::Trigger, 7, IrqSetData::None { count: 2 }), Err(Error::InvalidInput(_))));
    assert!(matches!(
        c.set_irqs_raw(2, IRQ_SET_DATA_NONE | IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_MASK, 0, 1, &[]),
        Err(Error::InvalidInput(_))
    ));
    let i = c.irq_info(2).unwrap();
    assert_eq!((i.count, i.flags), (8, IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE));
    let b6: vfio_bindings_0_6::bindings::vfio::vfio_irq_info = i.into();
    let b7: vfio_bindings_0_7::bindings::vfio::vfio_irq_info = i.into();
    assert_eq!((b6.index, b6.flags, b6.count), (2, i.flags, 8));
    assert_eq!((b7.index, b7.flags, b7.count), (2, i.flags, 8));
    h.join().unwrap();
}

#[test]
fn reset_uses_its_own_timeout_and_needs_the_flag() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceReset);
        f.reply(&m, &[]);
    });
    c.reset().unwrap();
    h.join().unwrap();
    let info = DeviceInfo { flags: DEVICE_FLAGS_PCI, ..default_info() };
    let (c, h) = start(test_config(), move |mut f| {
        f.handshake_with(&Capabilities::default(), &[], info);
    });
    h.join().unwrap();
    assert!(!c.resettable());
    assert!(matches!(c.reset(), Err(Error::Unsupported(_))));
}

#[test]
fn migration_and_dma_logging_calls() {
    let caps = Capabilities { max_data_xfer_size: 4096, ..Default::default() };
    let (c, h) = start(test_config(), move |mut f| {
        f.handshake_with(&caps, &[], default_info());
        let mut stream: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut written = Vec::new();
        loop {
            let m = match f.conn.recv() {
                Ok(m) => m,
                Err(_) => break,
            };
            match req(&f, &m) {
                Request::DeviceFeature(df, FeatureRequest::Probe { feature, .. }) => {
                    if feature == FEATURE_MIGRATION {
                        f.reply(&m, &[df.as_slice()])
                    } else {
                        f.error(&m, libc::ENOTTY)
                    }
                }
                Request::DeviceFeature(df, FeatureRequest::MigrationGet) => f.reply(
                    &m,
                    &[
                        DeviceFeature { argsz: 16, ..df }.as_slice(),
                        &(MIGRATION_STOP_COPY | MIGRATION_PRE_COPY).to_ne_bytes(),
                    ],
                ),
                Request::DeviceFeature(df, FeatureRequest::MigStateGet) => f.reply(
                    &m,
                    &[
                        DeviceFeature { argsz: 16, ..df }.as_slice(),
                        FeatureMigState { device_state: 6, data_fd: 0 }.as_slice(),
                    ],
                ),
                Request::DeviceFeature(_, FeatureRequest::MigStateSet(_)) => f.reply(&m, &[&m.payload]),
                Request::MigDataRead(md) => {
                    let n = (md.size as usize).min(stream.len());
                    let d: Vec<u8> = stream.drain(..n).collect();
                    f.reply(&m, &[MigData { argsz: 8 + n as u32, size: n as u32 }.as_slice(), &d]);
                }
                Request::MigDataWrite(md, d) => {
                    assert!(md.size <= 4096);
                    written.extend_from_slice(d);
                    f.reply(&m, &[]);
                }
                Request::DeviceFeature(df, FeatureRequest::DmaLoggingStart { control, ranges }) => {
                    assert_eq!(ranges.len(), 1);
                    let mut p = df.as_slice().to_vec();
                    p.extend_from_slice(DmaLoggingControl { page_size: 8192, ..control }.as_slice());
                    p.extend_from_slice(ranges.as_bytes());
                    f.reply(&m, &[&p]);
                }
                Request::DeviceFeature(df, FeatureRequest::DmaLoggingStop) => f.reply(&m, &[df.as_slice()]),
                Request::DeviceFeature(df, FeatureRequest::DmaLoggingReport(r)) => {
                    let words = (r.length / r.page_size).div_ceil(64);
                    assert!(words * 8 + 32 <= 4096, "bitmap chunk fits the transfer limit");
                    let mut p = DeviceFeature { argsz: 32 + words as u32 * 8, ..df }.as_slice().to_vec();
                    p.extend_from_slice(r.as_slice());
                    for w in 0..words {
                        p.extend_from_slice(&((r.iova / r.page_size / 64 + w) | 1 << 63).to_ne_bytes());
                    }
                    f.reply(&m, &[&p]);
                }
                r => panic!("unexpected {r:?}"),
            }
        }
        assert_eq!(written.len(), 9000);
    });
    assert!(c.device_feature_probe(FEATURE_MIGRATION, true, false).unwrap());
    assert!(!c.device_feature_probe(FEATURE_DMA_LOGGING_START, false, true).unwrap());
    assert_eq!(c.migration_flags().unwrap(), MIGRATION_STOP_COPY | MIGRATION_PRE_COPY);
    assert_eq!(c.migration_state().unwrap(), MigState::PreCopy);
    c.set_migration_state(MigState::StopCopy).unwrap();
    let mut buf = vec![0u8; 6000];
    assert_eq!(c.read_migration_data(&mut buf).unwrap(), 5000, "short read: data exhausted");
    assert_eq!(buf[4999], (4999u32 as u8));
    c.write_migration_data(&vec![7u8; 9000]).unwrap();
    assert_eq!(c.start_dma_logging(4096, &[(0, 1 << 30)]).unwrap(), 8192);
    // 1 GiB at 4 KiB = 262144 pages = 4096 words: split into several requests.
    let bm = c.report_dma_logging(0, 1 << 30, 4096).unwrap();
    assert_eq!(bm.len(), 4096);
    for (i, w) in bm.iter().enumerate() {
        assert_eq!(*w, i as u64 | 1 << 63, "words concatenate in order");
    }
    c.stop_dma_logging().unwrap();
    c.shutdown().unwrap();
    h.join().unwrap();
}

fn guest_memory() -> Arc<GuestMemoryMmap> {
    Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x10_0000), 0x10000)]).unwrap())
}

fn dma_exchange(f: &Fake, conn: &vfio_user_proto::Connection, id: u16) {
    use vfio_user_proto::Header;
    let mut next = id;
    let mut cmd = |h: Header, parts: &[&[u8]]| {
        let mut h = h;
        h.msg_id = next;
        next += 1;
        conn.send(h, parts, &[]).unwrap();
    };
    // 1: read 4 bytes inside the mapping.
    cmd(Header::command(0, Command::DmaRead, 0), &[DmaAccess { addr: 0x10_0010, count: 4 }.as_slice()]);
    // 2: write 3 bytes.
    cmd(Header::command(0, Command::DmaWrite, 0), &[DmaAccess { addr: 0x10_0020, count: 3 }.as_slice(), b"abc"]);
    // 3: read outside any mapping.
    cmd(Header::command(0, Command::DmaRead, 0), &[DmaAccess { addr: 0x50_0000, count: 4 }.as_slice()]);
    // 4: write into the read-only mapping.
    cmd(Header::command(0, Command::DmaWrite, 0), &[DmaAccess { addr: 0x10_8000, count: 1 }.as_slice(), b"x"]);
    // 5: mapped but outside guest memory.
    cmd(Header::command(0, Command::DmaRead, 0), &[DmaAccess { addr: 0x11_0000, count: 4 }.as_slice()]);
    // 6: more than our max_data_xfer_size.
    cmd(Header::command(0, Command::DmaRead, 0), &[DmaAccess { addr: 0x10_0000, count: 1 << 21 }.as_slice()]);
    let _ = f;
}

fn check_dma_replies(rx: &mut vfio_user_proto::Connection, id: u16) {
    let mut r = Vec::new();
    for _ in 0..6 {
        let m = rx.recv().unwrap();
        assert!(m.header.is_reply());
        r.push(m);
    }
    r.sort_by_key(|m| m.header.msg_id);
    assert_eq!(r[0].header.msg_id, id);
    assert!(!r[0].header.is_error());
    assert_eq!(&r[0].payload[16..], b"1234");
    assert!(!r[1].header.is_error());
    assert_eq!(r[1].payload.len(), 16, "DMA_WRITE reply echoes address and count");
    assert_eq!(r[2].header.errno(), libc::EFAULT);
    assert_eq!(r[3].header.errno(), libc::EPERM);
    assert_eq!(r[4].header.errno(), libc::EFAULT);
    assert_eq!(r[5].header.errno(), libc::E2BIG);
}

#[test]
fn server_dma_is_served_from_guest_memory_on_the_main_socket() {
    let gm = guest_memory();
    gm.write_slice(b"1234", GuestAddress(0x10_0010)).unwrap();
    let config = test_config().twin_socket(false).dma_memory(Arc::new(gm.clone()));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(config, move |mut f| {
        f.handshake();
        f.accept_maps(2);
        rx.recv().unwrap();
        dma_exchange(&f, &f.conn, 100);
        check_dma_replies(&mut f.conn, 100);
    });
    c.dma_map(0x10_0000, 0x8000, DmaProt::READ_WRITE).unwrap();
    c.dma_map(0x10_8000, 0x10000, DmaProt::READ).unwrap();
    tx.send(()).unwrap();
    h.join().unwrap();
    let st = c.stats();
    assert_eq!((st.dma_served, st.dma_refused), (2, 4));
    let mut b = [0u8; 3];
    gm.read_slice(&mut b, GuestAddress(0x10_0020)).unwrap();
    assert_eq!(&b, b"abc");
}

#[test]
fn server_dma_on_the_twin_socket() {
    let gm = guest_memory();
    gm.write_slice(b"1234", GuestAddress(0x10_0010)).unwrap();
    let config = test_config().dma_memory(Arc::new(gm.clone()));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(config, move |mut f| {
        let mut twin = f.handshake_twin();
        f.accept_maps(2);
        rx.recv().unwrap();
        dma_exchange(&f, &twin, 7);
        check_dma_replies(&mut twin, 7);
        // Nothing arrived on the main socket meanwhile: the next message is the reset.
        let m = f.expect(Command::DeviceReset);
        f.reply(&m, &[]);
        // Keep both sockets open until the client closes: an EOF on the twin socket would
        // otherwise race with the reset reply on the main one.
        while f.conn.recv().is_ok() {}
        drop(twin);
    });
    assert!(c.negotiated().twin_socket);
    c.dma_map(0x10_0000, 0x8000, DmaProt::READ_WRITE).unwrap();
    c.dma_map(0x10_8000, 0x10000, DmaProt::READ).unwrap();
    tx.send(()).unwrap();
    // The reset is sent while the server is busy with DMA on the twin socket.
    c.reset().unwrap();
    c.shutdown().unwrap();
    h.join().unwrap();
    let mut b = [0u8; 3];
    gm.read_slice(&mut b, GuestAddress(0x10_0020)).unwrap();
    assert_eq!(&b, b"abc");
}

#[test]
fn server_dma_from_guest_memory_atomic() {
    // What Cloud Hypervisor keeps its guest memory in.
    let gm = vm_memory::GuestMemoryAtomic::new(
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x10_0000), 0x10000)]).unwrap(),
    );
    gm.memory().write_slice(b"atomic", GuestAddress(0x10_0100)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(test_config().twin_socket(false).guest_memory(gm.clone()), move |mut f| {
        f.handshake();
        let m = f.expect(Command::DmaMap);
        f.reply(&m, &[]);
        rx.recv().unwrap();
        let hd = vfio_user_proto::Header::command(60, Command::DmaRead, 0);
        f.conn.send(hd, &[DmaAccess { addr: 0x10_0100, count: 6 }.as_slice()], &[]).unwrap();
        let r = f.conn.recv().unwrap();
        assert_eq!(&r.payload[16..], b"atomic");
    });
    c.dma_map(0x10_0000, 0x10000, DmaProt::READ).unwrap();
    tx.send(()).unwrap();
    h.join().unwrap();
}

#[test]
fn server_dma_without_memory_goes_through_the_mapping_fd() {
    let mem = memfd(0x2000);
    fd_write(&mem, 0x1010, b"1234");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(test_config().twin_socket(false), move |mut f| {
        f.handshake();
        let m = f.expect(Command::DmaMap);
        f.reply(&m, &[]);
        rx.recv().unwrap();
        let mut h = vfio_user_proto::Header::command(50, Command::DmaRead, 0);
        f.conn.send(h, &[DmaAccess { addr: 0x4010, count: 4 }.as_slice()], &[]).unwrap();
        let r = f.conn.recv().unwrap();
        assert_eq!(&r.payload[16..], b"1234");
        h = vfio_user_proto::Header::command(51, Command::DmaWrite, 0);
        f.conn.send(h, &[DmaAccess { addr: 0x4000, count: 2 }.as_slice(), b"ok"], &[]).unwrap();
        let r = f.conn.recv().unwrap();
        assert!(!r.header.is_error());
    });
    c.dma_map_fd(0x4000, 0x1000, mem.as_fd(), 0x1000, DmaProt::READ_WRITE).unwrap();
    tx.send(()).unwrap();
    h.join().unwrap();
    assert_eq!(fd_read(&mem, 0x1000, 2), b"ok");
}
