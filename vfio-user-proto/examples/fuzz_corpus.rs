// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Writes the seed corpus of the `proto_decode` fuzz target: one valid message per command
//! (and the interesting replies), each as header (16 bytes) + fd count (1 byte) + payload.
//!
//! `cargo run -p vfio-user-proto --example fuzz_corpus -- fuzz/corpus/proto_decode`

use std::path::PathBuf;

use vfio_user_proto::wire::*;
use vfio_user_proto::{
    build_region_info, Capabilities, FeatureRequest, Header, IoFdEntries, IrqAction, IrqData, MigState, RegionCap,
    Reply, Request, Version, WireArray,
};
use vm_memory::ByteValued;

fn message(header: Header, nfds: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header.as_slice().to_vec();
    out.push(nfds);
    out.extend_from_slice(payload);
    out
}

fn request(r: &Request<'_>, nfds: u8) -> Vec<u8> {
    let mut p = Vec::new();
    r.encode_payload(&mut p);
    message(Header::command(1, r.command(), p.len()), nfds, &p)
}

fn reply(r: &Reply<'_>, nfds: u8) -> Vec<u8> {
    let mut p = Vec::new();
    r.encode_payload(&mut p);
    message(Header::command(1, r.command(), 0).reply(p.len()), nfds, &p)
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus/proto_decode".into()));
    std::fs::create_dir_all(&dir).expect("create corpus directory");
    let json = Capabilities { max_msg_fds: 16, write_multiple: true, ..Default::default() }.to_json();
    let json = &json[..json.len() - 1];
    let ranges = [DmaLoggingRange { iova: 0x1000, length: 0x4000 }];
    let range_bytes: Vec<u8> = ranges.iter().flat_map(|r| r.as_slice().to_vec()).collect();
    let wm = WriteMultiEntry { offset: 0x10, region: 2, count: 4, data: [1, 2, 3, 4, 0, 0, 0, 0] };
    let irq = IrqSet { argsz: 22, flags: IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, index: 2, start: 0, count: 2 };
    let efd = IrqSet { argsz: 20, flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, index: 2, start: 0, count: 2 };
    let feat = |argsz, flags| DeviceFeature { argsz, flags };
    let get = DEVICE_FEATURE_GET;
    let set = DEVICE_FEATURE_SET;
    let requests: Vec<(&str, Vec<u8>)> = vec![
        ("req-01-version", request(&Request::Version(Version { major: 0, minor: 2, json }), 0)),
        (
            "req-02-dma-map",
            request(
                &Request::DmaMap {
                    map: DmaMap { argsz: 32, flags: 3, offset: 0, addr: 0x10_0000, size: 0x1000 },
                    fd: true,
                },
                1,
            ),
        ),
        (
            "req-03-dma-unmap",
            request(
                &Request::DmaUnmap(DmaUnmapRequest {
                    argsz: 24,
                    op: DmaUnmapOp::One { addr: 0x10_0000, size: 0x1000 },
                }),
                0,
            ),
        ),
        (
            "req-03-dma-unmap-bitmap",
            request(
                &Request::DmaUnmap(DmaUnmapRequest {
                    argsz: 41,
                    op: DmaUnmapOp::WithDirtyBitmap {
                        addr: 0x10_0000,
                        size: 0x8000,
                        bitmap: DmaBitmap { pgsize: 4096, size: 1 },
                    },
                }),
                0,
            ),
        ),
        ("req-04-device-get-info", request(&Request::DeviceGetInfo(DeviceInfo { argsz: 16, ..Default::default() }), 0)),
        (
            "req-05-region-info",
            request(&Request::DeviceGetRegionInfo(RegionInfo { argsz: 256, index: 2, ..Default::default() }), 0),
        ),
        (
            "req-06-region-io-fds",
            request(&Request::DeviceGetRegionIoFds(RegionIoFds { argsz: 256, flags: 0, index: 2, count: 0 }), 0),
        ),
        (
            "req-07-irq-info",
            request(&Request::DeviceGetIrqInfo(IrqInfo { argsz: 16, flags: 0, index: 2, count: 0 }), 0),
        ),
        (
            "req-08-set-irqs-bool",
            request(&Request::DeviceSetIrqs { set: irq, action: IrqAction::Trigger, data: IrqData::Bool(&[1, 0]) }, 0),
        ),
        (
            "req-08-set-irqs-eventfd",
            request(&Request::DeviceSetIrqs { set: efd, action: IrqAction::Trigger, data: IrqData::Eventfd(2) }, 2),
        ),
        ("req-09-region-read", request(&Request::RegionRead(RegionAccess { offset: 0x10, region: 0, count: 4 }), 0)),
        (
            "req-10-region-write",
            request(&Request::RegionWrite(RegionAccess { offset: 0x10, region: 0, count: 4 }, &[1, 2, 3, 4]), 0),
        ),
        ("req-11-dma-read", request(&Request::DmaRead(DmaAccess { addr: 0x10_0000, count: 8 }), 0)),
        ("req-12-dma-write", request(&Request::DmaWrite(DmaAccess { addr: 0x10_0000, count: 2 }, &[5, 6]), 0)),
        ("req-13-device-reset", request(&Request::DeviceReset, 0)),
        (
            "req-15-write-multi",
            request(&Request::RegionWriteMulti(WireArray::new(wm.as_slice()).expect("one entry")), 0),
        ),
        (
            "req-16-feature-migration-get",
            request(&Request::DeviceFeature(feat(16, get | 1), FeatureRequest::MigrationGet), 0),
        ),
        (
            "req-16-feature-probe",
            request(
                &Request::DeviceFeature(
                    feat(8, DEVICE_FEATURE_PROBE | set | 6),
                    FeatureRequest::Probe { feature: 6, get: false, set: true },
                ),
                0,
            ),
        ),
        (
            "req-16-feature-mig-state-set",
            request(&Request::DeviceFeature(feat(16, set | 2), FeatureRequest::MigStateSet(MigState::Stop)), 0),
        ),
        (
            "req-16-feature-logging-start",
            request(
                &Request::DeviceFeature(
                    feat(40, set | 6),
                    FeatureRequest::DmaLoggingStart {
                        control: DmaLoggingControl { page_size: 4096, num_ranges: 1, reserved: 0 },
                        ranges: WireArray::new(&range_bytes).expect("one range"),
                    },
                ),
                0,
            ),
        ),
        (
            "req-16-feature-logging-stop",
            request(&Request::DeviceFeature(feat(8, set | 7), FeatureRequest::DmaLoggingStop), 0),
        ),
        (
            "req-16-feature-logging-report",
            request(
                &Request::DeviceFeature(
                    feat(40, get | 8),
                    FeatureRequest::DmaLoggingReport(DmaLoggingReport {
                        iova: 0x1000,
                        length: 0x4000,
                        page_size: 4096,
                    }),
                ),
                0,
            ),
        ),
        ("req-17-mig-data-read", request(&Request::MigDataRead(MigData { argsz: 4104, size: 4096 }), 0)),
        ("req-18-mig-data-write", request(&Request::MigDataWrite(MigData { argsz: 11, size: 3 }, &[7, 8, 9]), 0)),
    ];
    let caps = [
        RegionCap::SparseMmap(vec![SparseArea { offset: 0, size: 0x1000 }]),
        RegionCap::Type(RegionTypeCap { type_: 1, subtype: 2 }),
    ];
    let info = RegionInfo { argsz: 0, flags: 7, index: 2, cap_offset: 0, size: 0x2000, offset: 0 };
    let region_info = build_region_info(info, &caps, 4096);
    let io_entry = IoFdEntry { offset: 0, size: 4, fd_index: 0, type_: 0, flags: 1, padding: 0, datamatch: 5 };
    let bits = [0xffu8; 8];
    let replies: Vec<(&str, Vec<u8>)> = vec![
        ("rep-05-region-info-caps", reply(&Reply::DeviceGetRegionInfo(info, &region_info), 1)),
        (
            "rep-06-region-io-fds",
            reply(
                &Reply::DeviceGetRegionIoFds(
                    RegionIoFds { argsz: 56, flags: 0, index: 2, count: 1 },
                    IoFdEntries::Spec(WireArray::new(io_entry.as_slice()).expect("one entry")),
                ),
                1,
            ),
        ),
        ("rep-09-region-read", reply(&Reply::RegionRead(RegionAccess { offset: 0, region: 0, count: 2 }, &[1, 2]), 0)),
        (
            "rep-03-dma-unmap-bitmap",
            reply(
                &Reply::DmaUnmap(
                    Some(DmaUnmap { argsz: 48, flags: 1, addr: 0, size: 0x40000 }),
                    Some((DmaBitmap { pgsize: 4096, size: 8 }, &bits)),
                ),
                0,
            ),
        ),
        ("rep-17-mig-data-read", reply(&Reply::MigDataRead(MigData { argsz: 10, size: 2 }, &[1, 2]), 0)),
    ];
    for (name, bytes) in requests.iter().chain(replies.iter()) {
        std::fs::write(dir.join(name), bytes).expect("write corpus file");
    }
    println!("wrote {} files to {}", requests.len() + replies.len(), dir.display());
}
