// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Byte-exact layouts of commands 1–13 and 15, requests and replies, written from the
//! specification's tables (offsets are payload offsets, after the 16-byte header; sizes in
//! comments are whole messages). DEVICE_FEATURE, MIG_DATA_* and region capabilities are in
//! `wire_layout_feature.rs`.

mod common;

use common::*;
use vfio_user_proto::wire::*;
use vfio_user_proto::{Command, IoFdEntries, IrqAction, IrqData, Reply, Request, Version, WireArray};

#[test]
fn header_layout_and_message_sizes() {
    // DMA_MAP is a 48-byte message: 16 header + 32 payload.
    let payload = [0u8; 32];
    let framed = framed_command(0xbeef, Command::DmaMap, &payload);
    assert_eq!(framed.len(), 48);
    assert_eq!(&framed[..16], &header_bytes(0xbeef, 2, 48, 0, 0)[..]);
    // An error reply: type 1 | ERROR (bit 5), errno at 12, header only.
    let h = vfio_user_proto::Header::command(7, Command::RegionRead, 16).error_reply(libc::EFAULT);
    assert_eq!(vm_memory::ByteValued::as_slice(&h), &header_bytes(7, 9, 16, 0x21, libc::EFAULT as u32)[..]);
    // A NO_REPLY command has bit 4.
    let h = common::req_hdr(10, &[]);
    let h = vfio_user_proto::Header { flags: vfio_user_proto::header::FLAGS_NO_REPLY, ..h };
    assert!(h.no_reply() && h.is_command());
    assert_eq!(vm_memory::ByteValued::as_slice(&h)[8..12], 0x10u32.to_ne_bytes());
}

#[test]
fn version_request_and_reply_with_json_and_nul() {
    let json = br#"{"capabilities":{"max_msg_fds":8,"write_multiple":true}}"#;
    // major @0, minor @2, JSON @4, then the NUL that counts in msg_size.
    let wire = Bytes::new(4 + json.len() + 1).u16(0, 0).u16(2, 2).raw(4, json);
    assert_eq!(wire.0.last(), Some(&0));
    let v = Version { major: 0, minor: 2, json };
    #[cfg_attr(not(feature = "serde"), allow(unused_variables))]
    let got = both_ways_req(Command::Version, wire.bytes(), 0, &Request::Version(v));
    assert_eq!(framed_command(1, Command::Version, wire.bytes()).len(), 20 + json.len() + 1);
    // The JSON is the capabilities (parsed with the default `serde` feature).
    #[cfg(feature = "serde")]
    if let Request::Version(v) = got {
        let caps = vfio_user_proto::Capabilities::from_json(v.json).unwrap();
        assert_eq!((caps.max_msg_fds, caps.write_multiple), (8, true));
    }
    // The reply has the same layout; it may carry one fd (the twin socket).
    let rjson = br#"{"capabilities":{"twin_socket":{"supported":true,"fd_index":0}}}"#;
    let wire = Bytes::new(4 + rjson.len() + 1).u16(0, 0).u16(2, 0).raw(4, rjson);
    both_ways_rep(Command::Version, wire.bytes(), 1, &Reply::Version(Version { major: 0, minor: 0, json: rjson }));
    // Without JSON the payload is the bare 4 bytes (a 20-byte message).
    let wire = Bytes::new(4).u16(0, 0).u16(2, 1);
    both_ways_req(Command::Version, wire.bytes(), 0, &Request::Version(Version { major: 0, minor: 1, json: b"" }));
}

#[test]
fn dma_map_request_is_a_48_byte_message() {
    // argsz @0 (=32), flags @4, offset @8, address @16, size @24.
    let wire = Bytes::new(32)
        .u32(0, 32)
        .u32(4, DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE)
        .u64(8, 0x1000)
        .u64(16, 0xfeed_0000)
        .u64(24, 0x20_0000);
    assert_eq!(framed_command(3, Command::DmaMap, wire.bytes()).len(), 48);
    let map = DmaMap { argsz: 32, flags: 3, offset: 0x1000, addr: 0xfeed_0000, size: 0x20_0000 };
    both_ways_req(Command::DmaMap, wire.bytes(), 1, &Request::DmaMap { map, fd: true });
    let map = DmaMap { offset: 0, ..map };
    let wire = wire.u64(8, 0);
    both_ways_req(Command::DmaMap, wire.bytes(), 0, &Request::DmaMap { map, fd: false });
    // libvfio-user's FILE_IO bit (3) with an fd.
    let wire = wire.u32(4, DMA_MAP_FLAG_READ | DMA_MAP_FLAG_FILE_IO);
    let map = DmaMap { flags: 1 | 8, ..map };
    both_ways_req(Command::DmaMap, wire.bytes(), 1, &Request::DmaMap { map, fd: true });
    // The reply has no payload: a 16-byte message.
    both_ways_rep(Command::DmaMap, &[], 0, &Reply::DmaMap);
}

#[test]
fn dma_unmap_plain_all_and_dirty_bitmap() {
    // argsz @0, flags @4, address @8, size @16: a 40-byte message.
    let wire = Bytes::new(24).u32(0, 24).u32(4, 0).u64(8, 0x4000_0000).u64(16, 0x10_0000);
    assert_eq!(framed_command(1, Command::DmaUnmap, wire.bytes()).len(), 40);
    let unmap = DmaUnmap { argsz: 24, flags: 0, addr: 0x4000_0000, size: 0x10_0000 };
    both_ways_req(Command::DmaUnmap, wire.bytes(), 0, &unmap_req(unmap, None));
    // The reply echoes the 24-byte entry (a 40-byte message).
    both_ways_rep(Command::DmaUnmap, wire.bytes(), 0, &Reply::DmaUnmap(Some(unmap), None));
    // A 2021-style peer replies with nothing.
    both_ways_rep(Command::DmaUnmap, &[], 0, &Reply::DmaUnmap(None, None));

    // UNMAP_ALL (Linux bit 1) with address = size = 0.
    let wire = Bytes::new(24).u32(0, 24).u32(4, 2);
    let unmap = DmaUnmap { argsz: 24, flags: DMA_UNMAP_FLAG_ALL, addr: 0, size: 0 };
    both_ways_req(Command::DmaUnmap, wire.bytes(), 0, &unmap_req(unmap, None));

    // GET_DIRTY_BITMAP (bit 0): vfio_user_bitmap {pgsize @24, size @32} follows the entry.
    // 0x10_0000 / 4096 = 256 pages = 32 bytes of bitmap; reply = 24 + 16 + 32 = 72.
    let wire = Bytes::new(40).u32(0, 72).u32(4, 1).u64(8, 0x4000_0000).u64(16, 0x10_0000).u64(24, 4096).u64(32, 32);
    assert_eq!(framed_command(1, Command::DmaUnmap, wire.bytes()).len(), 56);
    let unmap = DmaUnmap { argsz: 72, flags: DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, addr: 0x4000_0000, size: 0x10_0000 };
    let bm = DmaBitmap { pgsize: 4096, size: 32 };
    both_ways_req(Command::DmaUnmap, wire.bytes(), 0, &unmap_req(unmap, Some(bm)));
    // Reply: entry + bitmap header + 32 bitmap bytes at @40.
    let bits: Vec<u8> = (0..32).collect();
    let rwire = Bytes::new(72).raw(0, &wire.0).raw(40, &bits);
    both_ways_rep(Command::DmaUnmap, rwire.bytes(), 0, &Reply::DmaUnmap(Some(unmap), Some((bm, &bits))));
}

#[test]
fn device_get_info_request_and_reply() {
    // argsz @0, flags @4, num_regions @8, num_irqs @12: 32-byte messages both ways.
    let wire = Bytes::new(16).u32(0, 16);
    let info = DeviceInfo { argsz: 16, ..Default::default() };
    both_ways_req(Command::DeviceGetInfo, wire.bytes(), 0, &Request::DeviceGetInfo(info));
    let wire = Bytes::new(16).u32(0, 16).u32(4, DEVICE_FLAGS_RESET | DEVICE_FLAGS_PCI).u32(8, 9).u32(12, 5);
    assert_eq!(&wire.0[4..8], &3u32.to_ne_bytes());
    let info = DeviceInfo { argsz: 16, flags: 3, num_regions: 9, num_irqs: 5 };
    both_ways_rep(Command::DeviceGetInfo, wire.bytes(), 0, &Reply::DeviceGetInfo(info));
}

#[test]
fn device_get_region_info_request_and_plain_reply() {
    // argsz @0, flags @4, index @8, cap_offset @12, size @16, offset @24: 48-byte request.
    let wire = Bytes::new(32).u32(0, 32).u32(8, 7);
    let info = RegionInfo { argsz: 32, index: 7, ..Default::default() };
    both_ways_req(Command::DeviceGetRegionInfo, wire.bytes(), 0, &Request::DeviceGetRegionInfo(info));
    assert_eq!(framed_command(1, Command::DeviceGetRegionInfo, wire.bytes()).len(), 48);
    // A reply without caps, with an mmap fd.
    let wire = Bytes::new(32)
        .u32(0, 32)
        .u32(4, REGION_FLAG_READ | REGION_FLAG_WRITE | REGION_FLAG_MMAP)
        .u32(8, 0)
        .u32(12, 0)
        .u64(16, 0x4000)
        .u64(24, 0x1_0000);
    let info = RegionInfo { argsz: 32, flags: 7, index: 0, cap_offset: 0, size: 0x4000, offset: 0x1_0000 };
    both_ways_rep(Command::DeviceGetRegionInfo, wire.bytes(), 1, &Reply::DeviceGetRegionInfo(info, wire.bytes()));
}

#[test]
fn device_get_region_io_fds_40_and_48_byte_entries() {
    // Request: argsz @0, flags @4 (0), index @8, count @12 (0): a 32-byte message.
    let wire = Bytes::new(16).u32(0, 4096).u32(8, 2);
    let r = RegionIoFds { argsz: 4096, flags: 0, index: 2, count: 0 };
    both_ways_req(Command::DeviceGetRegionIoFds, wire.bytes(), 0, &Request::DeviceGetRegionIoFds(r));
    // Reply with two spec (40-byte) entries sharing one fd: 16 + 2·40 payload.
    let mut w = Bytes::new(16 + 80).u32(0, 96).u32(4, 0).u32(8, 2).u32(12, 2);
    for (i, base) in [16usize, 56].into_iter().enumerate() {
        w = w
            .u64(base, 0x100 * i as u64)
            .u64(base + 8, 4)
            .u32(base + 16, 0)
            .u32(base + 20, IO_FD_TYPE_IOEVENTFD)
            .u32(base + 24, IOEVENTFD_FLAG_DATAMATCH)
            .u32(base + 28, 0)
            .u64(base + 32, 0xdead_0000 + i as u64);
    }
    let r = RegionIoFds { argsz: 96, flags: 0, index: 2, count: 2 };
    let entries = WireArray::<IoFdEntry>::new(&w.0[16..]).unwrap();
    let got = both_ways_rep(
        Command::DeviceGetRegionIoFds,
        w.bytes(),
        1,
        &Reply::DeviceGetRegionIoFds(r, IoFdEntries::Spec(entries)),
    );
    if let Reply::DeviceGetRegionIoFds(_, e) = got {
        let v = e.to_vec();
        assert_eq!(
            v[1],
            IoFdEntry { offset: 0x100, size: 4, fd_index: 0, type_: 0, flags: 1, padding: 0, datamatch: 0xdead_0001 }
        );
    }
    // libvfio-user's 48-byte entries: shadow_mem_fd_index @28, shadow_offset @32, datamatch @40.
    let w = Bytes::new(16 + 48)
        .u32(0, 64)
        .u32(8, 2)
        .u32(12, 1)
        .u64(16, 0x40)
        .u64(24, 8)
        .u32(32, 1)
        .u32(36, IO_FD_TYPE_IOEVENTFD_SHADOW)
        .u32(40, 0)
        .u32(44, 0)
        .u64(48, 0x2000)
        .u64(56, 0x77);
    let r = RegionIoFds { argsz: 64, flags: 0, index: 2, count: 1 };
    let entries = WireArray::<IoFdEntryShadow>::new(&w.0[16..]).unwrap();
    let got = both_ways_rep(
        Command::DeviceGetRegionIoFds,
        w.bytes(),
        2,
        &Reply::DeviceGetRegionIoFds(r, IoFdEntries::Shadow(entries)),
    );
    if let Reply::DeviceGetRegionIoFds(_, IoFdEntries::Shadow(a)) = got {
        let e = a.get(0).unwrap();
        assert_eq!((e.fd_index, e.shadow_mem_fd_index, e.shadow_offset, e.datamatch), (1, 0, 0x2000, 0x77));
    } else {
        panic!("48-byte entries not recognised");
    }
    // A reply truncated to the request's argsz: just the 16 bytes, no fds.
    let w = Bytes::new(16).u32(0, 96).u32(8, 2).u32(12, 2);
    let r = RegionIoFds { argsz: 96, flags: 0, index: 2, count: 2 };
    let empty = WireArray::<IoFdEntry>::new(&[]).unwrap();
    both_ways_rep(
        Command::DeviceGetRegionIoFds,
        w.bytes(),
        0,
        &Reply::DeviceGetRegionIoFds(r, IoFdEntries::Spec(empty)),
    );
}

#[test]
fn device_get_irq_info_request_and_reply() {
    // argsz @0, flags @4, index @8, count @12.
    let wire = Bytes::new(16).u32(0, 16).u32(8, PCI_MSIX_IRQ_INDEX);
    let i = IrqInfo { argsz: 16, flags: 0, index: 2, count: 0 };
    both_ways_req(Command::DeviceGetIrqInfo, wire.bytes(), 0, &Request::DeviceGetIrqInfo(i));
    let wire = wire.u32(4, IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_NORESIZE).u32(12, 2048);
    assert_eq!(&wire.0[4..8], &0b1011u32.to_ne_bytes());
    let i = IrqInfo { argsz: 16, flags: 0b1011, index: 2, count: 2048 };
    both_ways_rep(Command::DeviceGetIrqInfo, wire.bytes(), 0, &Reply::DeviceGetIrqInfo(i));
}

#[test]
fn device_set_irqs_bool_eventfd_and_none() {
    // argsz @0, flags @4, index @8, start @12, count @16, data @20.
    // DATA_BOOL (2) | ACTION_UNMASK (16), 4 vectors: a 36 + 4 byte message.
    let wire = Bytes::new(24).u32(0, 24).u32(4, 2 | 16).u32(8, 1).u32(12, 3).u32(16, 4).raw(20, &[1, 0, 1, 1]);
    assert_eq!(framed_command(1, Command::DeviceSetIrqs, wire.bytes()).len(), 36 + 4);
    let set = IrqSet { argsz: 24, flags: IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_UNMASK, index: 1, start: 3, count: 4 };
    let expect = Request::DeviceSetIrqs { set, action: IrqAction::Unmask, data: IrqData::Bool(&[1, 0, 1, 1]) };
    both_ways_req(Command::DeviceSetIrqs, wire.bytes(), 0, &expect);
    // DATA_EVENTFD (4) | ACTION_TRIGGER (32) with 3 eventfds: a 36-byte message.
    let wire = Bytes::new(20).u32(0, 20).u32(4, 4 | 32).u32(8, 2).u32(12, 0).u32(16, 3);
    let set = IrqSet { argsz: 20, flags: 36, index: 2, start: 0, count: 3 };
    let expect = Request::DeviceSetIrqs { set, action: IrqAction::Trigger, data: IrqData::Eventfd(3) };
    both_ways_req(Command::DeviceSetIrqs, wire.bytes(), 3, &expect);
    // The same with no fds de-assigns.
    let expect = Request::DeviceSetIrqs { set, action: IrqAction::Trigger, data: IrqData::Eventfd(0) };
    both_ways_req(Command::DeviceSetIrqs, wire.bytes(), 0, &expect);
    // DATA_NONE (1) | ACTION_MASK (8), count = start = 0 (disable the index).
    let wire = Bytes::new(20).u32(0, 20).u32(4, 1 | 8);
    let set = IrqSet { argsz: 20, flags: 9, index: 0, start: 0, count: 0 };
    both_ways_req(
        Command::DeviceSetIrqs,
        wire.bytes(),
        0,
        &Request::DeviceSetIrqs { set, action: IrqAction::Mask, data: IrqData::None },
    );
    // The reply is a bare header.
    both_ways_rep(Command::DeviceSetIrqs, &[], 0, &Reply::DeviceSetIrqs);
}

#[test]
fn region_read_and_write() {
    // offset @0, region @8, count @12; data @16.
    let wire = Bytes::new(16).u64(0, 0x10).u32(8, 7).u32(12, 4);
    assert_eq!(framed_command(1, Command::RegionRead, wire.bytes()).len(), 32);
    let a = RegionAccess { offset: 0x10, region: 7, count: 4 };
    both_ways_req(Command::RegionRead, wire.bytes(), 0, &Request::RegionRead(a));
    let rwire = Bytes::new(20).raw(0, &wire.0).raw(16, &[0xde, 0xad, 0xbe, 0xef]);
    both_ways_rep(Command::RegionRead, rwire.bytes(), 0, &Reply::RegionRead(a, &[0xde, 0xad, 0xbe, 0xef]));
    // REGION_WRITE: 32 + count request, 32-byte reply echoing the access header.
    both_ways_req(Command::RegionWrite, rwire.bytes(), 0, &Request::RegionWrite(a, &[0xde, 0xad, 0xbe, 0xef]));
    assert_eq!(framed_command(1, Command::RegionWrite, rwire.bytes()).len(), 36);
    both_ways_rep(Command::RegionWrite, wire.bytes(), 0, &Reply::RegionWrite(Some(a)));
    both_ways_rep(Command::RegionWrite, &[], 0, &Reply::RegionWrite(None));
}

#[test]
fn dma_read_and_write_use_u64_count() {
    // address @0 (8), count @8 (8), data @16.
    let wire = Bytes::new(16).u64(0, 0x8000_0000).u64(8, 3);
    let a = DmaAccess { addr: 0x8000_0000, count: 3 };
    both_ways_req(Command::DmaRead, wire.bytes(), 0, &Request::DmaRead(a));
    let rwire = Bytes::new(19).raw(0, &wire.0).raw(16, &[1, 2, 3]);
    both_ways_rep(Command::DmaRead, rwire.bytes(), 0, &Reply::DmaRead(a, &[1, 2, 3]));
    both_ways_req(Command::DmaWrite, rwire.bytes(), 0, &Request::DmaWrite(a, &[1, 2, 3]));
    // The DMA_WRITE reply echoes address + count (8 bytes, see DIGEST §9.1): 32-byte message.
    both_ways_rep(Command::DmaWrite, wire.bytes(), 0, &Reply::DmaWrite(Some(a)));
    // QEMU answers with a bare header.
    both_ways_rep(Command::DmaWrite, &[], 0, &Reply::DmaWrite(None));
}

#[test]
fn device_reset_has_no_payload() {
    both_ways_req(Command::DeviceReset, &[], 0, &Request::DeviceReset);
    both_ways_rep(Command::DeviceReset, &[], 0, &Reply::DeviceReset);
    assert_eq!(framed_command(5, Command::DeviceReset, &[]), header_bytes(5, 13, 16, 0, 0));
}

#[test]
fn region_write_multi_request_and_reply() {
    // wr_cnt @0 (8), then 24-byte entries: offset @0, region @8, count @12, data[8] @16.
    let w = Bytes::new(8 + 48)
        .u64(0, 2)
        .u64(8, 0x1000)
        .u32(16, 0)
        .u32(20, 4)
        .raw(24, &[1, 2, 3, 4, 0, 0, 0, 0])
        .u64(32, 0x2008)
        .u32(40, 2)
        .u32(44, 8)
        .raw(48, &[9; 8]);
    assert_eq!(framed_command(1, Command::RegionWriteMulti, w.bytes()).len(), 24 + 2 * 24);
    let entries = WireArray::<WriteMultiEntry>::new(&w.0[8..]).unwrap();
    let got = both_ways_req(Command::RegionWriteMulti, w.bytes(), 0, &Request::RegionWriteMulti(entries));
    if let Request::RegionWriteMulti(e) = got {
        assert_eq!(e.get(1).unwrap(), WriteMultiEntry { offset: 0x2008, region: 2, count: 8, data: [9; 8] });
        assert_eq!(e.get(0).unwrap().data[..4], [1, 2, 3, 4]);
    }
    // Reply: wr_cnt @0 — a 24-byte message.
    let r = Bytes::new(8).u64(0, 2);
    both_ways_rep(Command::RegionWriteMulti, r.bytes(), 0, &Reply::RegionWriteMulti(WriteMulti { wr_cnt: 2 }));
}
