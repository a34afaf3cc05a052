// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Byte-exact layouts of DEVICE_FEATURE (MIGRATION, MIG_DEVICE_STATE, DMA_LOGGING_*),
//! MIG_DATA_READ / MIG_DATA_WRITE and the REGION_INFO capability chain, from the spec tables.

mod common;

use common::*;
use vfio_user_proto::request::decode_feature;
use vfio_user_proto::wire::*;
use vfio_user_proto::{
    build_region_info, parse_region_caps, Command, FeatureRequest, MigState, RegionCap, Reply, Request, WireArray,
};

const GET: u32 = 1 << 16;
const SET: u32 = 1 << 17;
const PROBE: u32 = 1 << 18;

#[test]
fn feature_migration_get_and_probe() {
    // argsz @0, flags @4 (index in bits 0-15, GET 16, SET 17, PROBE 18), data @8.
    let wire = Bytes::new(8).u32(0, 16).u32(4, GET | 1);
    assert_eq!(&wire.0[4..8], &0x0001_0001u32.to_ne_bytes());
    let f = DeviceFeature { argsz: 16, flags: GET | FEATURE_MIGRATION as u32 };
    both_ways_req(Command::DeviceFeature, wire.bytes(), 0, &Request::DeviceFeature(f, FeatureRequest::MigrationGet));
    assert_eq!(framed_command(1, Command::DeviceFeature, wire.bytes()).len(), 24);
    // Reply: argsz = 16, flags echoed, data = migration flags u64 @8 (STOP_COPY | PRE_COPY).
    let r = Bytes::new(16).u32(0, 16).u32(4, GET | 1).u64(8, MIGRATION_STOP_COPY | MIGRATION_PRE_COPY);
    assert_eq!(&r.0[8..16], &5u64.to_ne_bytes());
    both_ways_rep(Command::DeviceFeature, r.bytes(), 0, &Reply::DeviceFeature(f, &r.0[8..]));
    // PROBE | GET of MIGRATION: no data.
    let wire = Bytes::new(8).u32(0, 8).u32(4, PROBE | GET | 1);
    let f = DeviceFeature { argsz: 8, flags: PROBE | GET | 1 };
    let p = FeatureRequest::Probe { feature: 1, get: true, set: false };
    both_ways_req(Command::DeviceFeature, wire.bytes(), 0, &Request::DeviceFeature(f, p));
    // PROBE | GET | SET is allowed (GET|SET only conflict without PROBE).
    let wire = Bytes::new(8).u32(0, 8).u32(4, PROBE | GET | SET | 2);
    let f = DeviceFeature { argsz: 8, flags: PROBE | GET | SET | 2 };
    let p = FeatureRequest::Probe { feature: 2, get: true, set: true };
    both_ways_req(Command::DeviceFeature, wire.bytes(), 0, &Request::DeviceFeature(f, p));
    // The reply to a PROBE echoes the request payload.
    both_ways_rep(Command::DeviceFeature, wire.bytes(), 0, &Reply::DeviceFeature(f, &[]));
}

#[test]
fn feature_mig_device_state_set_and_get() {
    // SET: data = device_state u32 @8, data_fd u32 @12.
    let wire = Bytes::new(16).u32(0, 16).u32(4, SET | 2).u32(8, 3).u32(12, 0);
    let f = DeviceFeature { argsz: 16, flags: SET | FEATURE_MIG_DEVICE_STATE as u32 };
    let expect = Request::DeviceFeature(f, FeatureRequest::MigStateSet(MigState::StopCopy));
    both_ways_req(Command::DeviceFeature, wire.bytes(), 0, &expect);
    // The reply to SET echoes the payload.
    both_ways_rep(Command::DeviceFeature, wire.bytes(), 0, &Reply::DeviceFeature(f, &wire.0[8..]));
    // GET: no data in the request, the state in the reply.
    let wire = Bytes::new(8).u32(0, 16).u32(4, GET | 2);
    let f = DeviceFeature { argsz: 16, flags: GET | 2 };
    both_ways_req(Command::DeviceFeature, wire.bytes(), 0, &Request::DeviceFeature(f, FeatureRequest::MigStateGet));
    let r = Bytes::new(16).u32(0, 16).u32(4, GET | 2).u32(8, 2);
    both_ways_rep(Command::DeviceFeature, r.bytes(), 0, &Reply::DeviceFeature(f, &r.0[8..]));
    // Every state value of the spec's table.
    for (v, s) in [
        (0, MigState::Error),
        (1, MigState::Stop),
        (2, MigState::Running),
        (3, MigState::StopCopy),
        (4, MigState::Resuming),
        (6, MigState::PreCopy),
    ] {
        assert_eq!(MigState::try_from(v).unwrap(), s);
        assert_eq!(s as u32, v);
    }
}

#[test]
fn feature_dma_logging_start_with_ranges_and_stop() {
    // data: page_size u64 @8, num_ranges u32 @16, reserved u32 @20, ranges @24 {iova, length}.
    let wire = Bytes::new(8 + 16 + 32)
        .u32(0, 56)
        .u32(4, SET | 6)
        .u64(8, 4096)
        .u32(16, 2)
        .u32(20, 0)
        .u64(24, 0x1_0000)
        .u64(32, 0x4000)
        .u64(40, 0x10_0000)
        .u64(48, 0x20_0000);
    let f = DeviceFeature { argsz: 56, flags: SET | FEATURE_DMA_LOGGING_START as u32 };
    let control = DmaLoggingControl { page_size: 4096, num_ranges: 2, reserved: 0 };
    let ranges = WireArray::<DmaLoggingRange>::new(&wire.0[24..]).unwrap();
    let got = both_ways_req(
        Command::DeviceFeature,
        wire.bytes(),
        0,
        &Request::DeviceFeature(f, FeatureRequest::DmaLoggingStart { control, ranges }),
    );
    if let Request::DeviceFeature(_, FeatureRequest::DmaLoggingStart { ranges, .. }) = got {
        assert_eq!(ranges.get(1).unwrap(), DmaLoggingRange { iova: 0x10_0000, length: 0x20_0000 });
    }
    // num_ranges = 0: log everything.
    let wire0 = Bytes::new(24).u32(0, 24).u32(4, SET | 6).u64(8, 4096);
    let f0 = DeviceFeature { argsz: 24, flags: SET | 6 };
    let control0 = DmaLoggingControl { page_size: 4096, num_ranges: 0, reserved: 0 };
    let none = WireArray::<DmaLoggingRange>::new(&[]).unwrap();
    both_ways_req(
        Command::DeviceFeature,
        wire0.bytes(),
        0,
        &Request::DeviceFeature(f0, FeatureRequest::DmaLoggingStart { control: control0, ranges: none }),
    );
    // STOP: SET | 7, no data.
    let wire = Bytes::new(8).u32(0, 8).u32(4, SET | 7);
    let f = DeviceFeature { argsz: 8, flags: SET | 7 };
    both_ways_req(Command::DeviceFeature, wire.bytes(), 0, &Request::DeviceFeature(f, FeatureRequest::DmaLoggingStop));
}

#[test]
fn feature_dma_logging_report_with_bitmap_in_reply() {
    // Request data: iova @8, length @16, page_size @24. 130 pages -> 3 u64 words of bitmap.
    let wire = Bytes::new(32).u32(0, 32 + 24).u32(4, GET | 8).u64(8, 0x10_0000).u64(16, 130 * 4096).u64(24, 4096);
    let f = DeviceFeature { argsz: 56, flags: GET | FEATURE_DMA_LOGGING_REPORT as u32 };
    let r = DmaLoggingReport { iova: 0x10_0000, length: 130 * 4096, page_size: 4096 };
    both_ways_req(
        Command::DeviceFeature,
        wire.bytes(),
        0,
        &Request::DeviceFeature(f, FeatureRequest::DmaLoggingReport(r)),
    );
    // Reply: the same with the bitmap at data offset 24 (payload @32): page p is bit p%64
    // of word p/64. Pages 0, 65 and 129 dirty.
    let reply = Bytes::new(32 + 24)
        .u32(0, 56)
        .u32(4, GET | 8)
        .u64(8, 0x10_0000)
        .u64(16, 130 * 4096)
        .u64(24, 4096)
        .u64(32, 1)
        .u64(40, 1 << 1)
        .u64(48, 1 << 1);
    let got = both_ways_rep(Command::DeviceFeature, reply.bytes(), 0, &Reply::DeviceFeature(f, &reply.0[8..]));
    if let Reply::DeviceFeature(_, data) = got {
        let rep: DmaLoggingReport = read_at(data, 0).unwrap();
        assert_eq!(rep, r);
        let words: Vec<u64> = data[24..].chunks(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
        let dirty: Vec<u64> = (0..130).filter(|p| words[(p / 64) as usize] & (1 << (p % 64)) != 0).collect();
        assert_eq!(dirty, vec![0, 65, 129]);
    }
    // decode_feature is public and agrees.
    assert_eq!(decode_feature(&f, &wire.0[8..]).unwrap(), FeatureRequest::DmaLoggingReport(r));
}

#[test]
fn unknown_features_keep_their_data() {
    let wire = Bytes::new(12).u32(0, 12).u32(4, SET | 0x55).raw(8, &[1, 2, 3, 4]);
    let f = DeviceFeature { argsz: 12, flags: SET | 0x55 };
    let expect = FeatureRequest::Unknown { feature: 0x55, ops: FeatureOps::SET, data: &[1, 2, 3, 4] };
    both_ways_req(Command::DeviceFeature, wire.bytes(), 0, &Request::DeviceFeature(f, expect));
}

#[test]
fn mig_data_read_and_write() {
    // READ request: argsz @0, size @4 — a 24-byte message.
    let wire = Bytes::new(8).u32(0, 8 + 4096).u32(4, 4096);
    let m = MigData { argsz: 4104, size: 4096 };
    both_ways_req(Command::MigDataRead, wire.bytes(), 0, &Request::MigDataRead(m));
    assert_eq!(framed_command(1, Command::MigDataRead, wire.bytes()).len(), 24);
    // READ reply: argsz = 8 + n @0, size = n @4, data @8 (short read: the stream is drained).
    let r = Bytes::new(8 + 5).u32(0, 13).u32(4, 5).raw(8, b"state");
    both_ways_rep(Command::MigDataRead, r.bytes(), 0, &Reply::MigDataRead(MigData { argsz: 13, size: 5 }, b"state"));
    // WRITE request: argsz @0, size @4, data @8; reply has no payload.
    both_ways_req(
        Command::MigDataWrite,
        r.bytes(),
        0,
        &Request::MigDataWrite(MigData { argsz: 13, size: 5 }, b"state"),
    );
    assert_eq!(framed_command(1, Command::MigDataWrite, r.bytes()).len(), 24 + 5);
    both_ways_rep(Command::MigDataWrite, &[], 0, &Reply::MigDataWrite);
}

#[test]
fn region_info_reply_with_sparse_mmap_and_type_caps() {
    // info (32) | SPARSE_MMAP @32: id 1 @0, version 1 @2, next @4, nr_areas @8, reserved @12,
    // areas @16 (2 × 16) | TYPE @80: id 2, version 1, next 0, type @8, subtype @12.
    let flags = REGION_FLAG_READ | REGION_FLAG_WRITE | REGION_FLAG_MMAP | REGION_FLAG_CAPS;
    let w = Bytes::new(96)
        .u32(0, 96)
        .u32(4, flags)
        .u32(8, 9)
        .u32(12, 32)
        .u64(16, 0x10_0000)
        .u64(24, 0x4000_0000)
        .u16(32, 1)
        .u16(34, 1)
        .u32(36, 80)
        .u32(40, 2)
        .u32(44, 0)
        .u64(48, 0)
        .u64(56, 0x1000)
        .u64(64, 0x8000)
        .u64(72, 0x8000)
        .u16(80, 2)
        .u16(82, 1)
        .u32(84, 0)
        .u32(88, 0x8086)
        .u32(92, 0x10);
    let caps = vec![
        RegionCap::SparseMmap(vec![
            SparseArea { offset: 0, size: 0x1000 },
            SparseArea { offset: 0x8000, size: 0x8000 },
        ]),
        RegionCap::Type(RegionTypeCap { type_: 0x8086, subtype: 0x10 }),
    ];
    let info = RegionInfo { argsz: 0, flags: 7, index: 9, cap_offset: 0, size: 0x10_0000, offset: 0x4000_0000 };
    let built = build_region_info(info, &caps, 4096);
    assert_eq!(built, w.0);
    assert_eq!(parse_region_caps(w.bytes()).unwrap(), caps);
    let decoded: RegionInfo = read_at(w.bytes(), 0).unwrap();
    both_ways_rep(Command::DeviceGetRegionInfo, w.bytes(), 1, &Reply::DeviceGetRegionInfo(decoded, w.bytes()));
    // With argsz 32 the server sends the bare info with the full size in argsz, no CAPS.
    let short = build_region_info(info, &caps, 32);
    assert_eq!(short, Bytes::new(32).u32(0, 96).u32(4, 7).u32(8, 9).u64(16, 0x10_0000).u64(24, 0x4000_0000).0);
}
