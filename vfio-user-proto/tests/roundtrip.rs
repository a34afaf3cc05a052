// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Round trips: random valid values of every request and reply kind encode to a payload
//! that decodes to the same value.

mod common;

use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use vfio_user_proto::wire::*;
use vfio_user_proto::{FeatureRequest, IoFdEntries, IrqAction, IrqData, MigState, Reply, Request, Version, WireArray};
use vm_memory::ByteValued;

const MAX: u32 = 1 << 20;

#[track_caller]
fn rt_req(r: &Request<'_>, nfds: usize) {
    let bytes = ereq(r);
    let back = dreq_fds(r.command(), &bytes, nfds).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    assert_eq!(&back, r);
}

#[track_caller]
fn rt_rep(r: &Reply<'_>, nfds: usize) {
    let bytes = erep(r);
    let back = drep(r.command(), &bytes, nfds).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    assert_eq!(&back, r);
}

/// (base, len) with len >= 1 and base + len not wrapping.
fn range64() -> impl Strategy<Value = (u64, u64)> {
    (1u64..=u64::MAX).prop_flat_map(|len| (0..=u64::MAX - len, Just(len)))
}

fn json() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(vec![]), vec(1u8..=255, 1..64)]
}

fn entries<T: ByteValued>(v: &[T]) -> Vec<u8> {
    v.iter().flat_map(|e| e.as_slice().to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn version(major: u16, minor: u16, json in json(), fds in 0usize..2) {
        let v = Version { major, minor, json: &json };
        rt_req(&Request::Version(v), 0);
        rt_rep(&Reply::Version(v), fds);
    }

    #[test]
    fn dma_map(rw in 0u32..4, extra in 0u32..3, (addr, size) in range64(), off: u64, fd: bool) {
        let ext = [0, DMA_MAP_FLAG_MMAP, DMA_MAP_FLAG_FILE_IO][extra as usize];
        let fd = fd || ext != 0;
        let offset = if fd { off.min(u64::MAX - size) } else { off };
        let map = DmaMap { argsz: 32, flags: rw | ext, offset, addr, size };
        rt_req(&Request::DmaMap { map, fd }, usize::from(fd));
        rt_rep(&Reply::DmaMap, 0);
    }

    #[test]
    fn dma_unmap(argsz in 24u32.., (addr, size) in range64(), all: bool) {
        let unmap = if all { DmaUnmap { argsz, flags: DMA_UNMAP_FLAG_ALL, addr: 0, size: 0 } } else { DmaUnmap { argsz, flags: 0, addr, size } };
        rt_req(&unmap_req(unmap, None), 0);
        rt_rep(&Reply::DmaUnmap(Some(unmap), None), 0);
    }

    #[test]
    fn dma_unmap_dirty_bitmap(shift in 9u32..22, pages in 1u64..2000, slack in 0u64..16, extra_argsz in 0u32..64, addr in 0u64..(1 << 40), bits in vec(any::<u8>(), 0..300)) {
        let pgsize = 1u64 << shift;
        let bm = DmaBitmap { pgsize, size: pages.div_ceil(8) + slack };
        let argsz = 40 + bm.size as u32 + extra_argsz;
        let unmap = DmaUnmap { argsz, flags: DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, addr, size: pages * pgsize };
        rt_req(&unmap_req(unmap, Some(bm)), 0);
        let bm = DmaBitmap { pgsize, size: bits.len() as u64 };
        rt_rep(&Reply::DmaUnmap(Some(unmap), Some((bm, &bits))), 0);
    }

    #[test]
    fn info_queries(argsz in 32u32.., flags: u32, a: u32, b: u32, c: u32, size: u64, offset: u64) {
        let d = DeviceInfo { argsz, flags, num_regions: a, num_irqs: b };
        rt_req(&Request::DeviceGetInfo(d), 0);
        rt_rep(&Reply::DeviceGetInfo(d), 0);
        let r = RegionInfo { argsz, flags, index: a, cap_offset: c, size, offset };
        rt_req(&Request::DeviceGetRegionInfo(r), 0);
        let i = IrqInfo { argsz, flags, index: a, count: b };
        rt_req(&Request::DeviceGetIrqInfo(i), 0);
        rt_rep(&Reply::DeviceGetIrqInfo(i), 0);
        let f = RegionIoFds { argsz, flags: 0, index: a, count: b };
        rt_req(&Request::DeviceGetRegionIoFds(f), 0);
    }

    #[test]
    fn region_info_reply(head in vec(any::<u8>(), 32), tail in vec(any::<u8>(), 0..128), fds in 0usize..2) {
        let whole = [&head[..], &tail[..]].concat();
        let info: RegionInfo = read_at(&whole, 0).unwrap();
        rt_rep(&Reply::DeviceGetRegionInfo(info, &whole), fds);
    }

    #[test]
    fn region_io_fds_reply(argsz: u32, index: u32, raw in vec(any::<(u64, u64, u32, u32, u64, u32)>(), 0..6), shadow: bool, extra_fds in 0usize..3) {
        let nfds = raw.iter().map(|e| e.5 % 4 + 1).max().unwrap_or(0) as usize + extra_fds;
        let count = raw.len() as u32;
        let r = RegionIoFds { argsz, flags: 0, index, count };
        if shadow {
            let v: Vec<IoFdEntryShadow> = raw.iter().map(|e| IoFdEntryShadow { offset: e.0, size: e.1, fd_index: e.5 % 4, type_: e.2, flags: e.3, shadow_mem_fd_index: e.2, shadow_offset: e.4, datamatch: e.4 ^ 1 }).collect();
            let bytes = entries(&v);
            let arr = WireArray::new(&bytes).unwrap();
            // No entries reads as the (empty) spec layout.
            let e = if v.is_empty() { IoFdEntries::Spec(WireArray::new(&[]).unwrap()) } else { IoFdEntries::Shadow(arr) };
            rt_rep(&Reply::DeviceGetRegionIoFds(r, e), nfds);
        } else {
            let v: Vec<IoFdEntry> = raw.iter().map(|e| IoFdEntry { offset: e.0, size: e.1, fd_index: e.5 % 4, type_: e.2, flags: e.3, padding: 0, datamatch: e.4 }).collect();
            let bytes = entries(&v);
            rt_rep(&Reply::DeviceGetRegionIoFds(r, IoFdEntries::Spec(WireArray::new(&bytes).unwrap())), nfds);
        }
    }

    #[test]
    fn set_irqs(action in 0usize..3, kind in 0usize..3, index: u32, start: u32, count in 0u32..64, bools in vec(any::<u8>(), 64), with_fds: bool, extra_argsz in 0u32..100) {
        let start = start.min(u32::MAX - count);
        let act = [IRQ_SET_ACTION_MASK, IRQ_SET_ACTION_UNMASK, IRQ_SET_ACTION_TRIGGER][action];
        let action = [IrqAction::Mask, IrqAction::Unmask, IrqAction::Trigger][action];
        let data_bit = [IRQ_SET_DATA_NONE, IRQ_SET_DATA_BOOL, IRQ_SET_DATA_EVENTFD][kind];
        let (data, nfds, len) = match kind {
            0 => (IrqData::None, 0, 0),
            1 => (IrqData::Bool(&bools[..count as usize]), 0, count),
            _ => {
                let n = if with_fds { count as usize } else { 0 };
                (IrqData::Eventfd(n), n, 0)
            }
        };
        let set = IrqSet { argsz: 20 + len + extra_argsz, flags: data_bit | act, index, start, count };
        rt_req(&Request::DeviceSetIrqs { set, action, data }, nfds);
        rt_rep(&Reply::DeviceSetIrqs, 0);
    }

    #[test]
    fn region_access(offset: u64, region: u32, data in vec(any::<u8>(), 0..256), count in 0..=MAX) {
        let a = RegionAccess { offset: offset.min(u64::MAX - u64::from(count)), region, count };
        rt_req(&Request::RegionRead(a), 0);
        rt_rep(&Reply::RegionWrite(Some(a)), 0);
        let w = RegionAccess { offset: offset.min(u64::MAX - data.len() as u64), region, count: data.len() as u32 };
        rt_req(&Request::RegionWrite(w, &data), 0);
        rt_rep(&Reply::RegionRead(w, &data), 0);
        rt_rep(&Reply::RegionWrite(None), 0);
    }

    #[test]
    fn dma_access(addr: u64, data in vec(any::<u8>(), 0..256), count in 0..=u64::from(MAX)) {
        let a = DmaAccess { addr: addr.min(u64::MAX - count), count };
        rt_req(&Request::DmaRead(a), 0);
        rt_rep(&Reply::DmaWrite(Some(a)), 0);
        let w = DmaAccess { addr: addr.min(u64::MAX - data.len() as u64), count: data.len() as u64 };
        rt_req(&Request::DmaWrite(w, &data), 0);
        rt_rep(&Reply::DmaRead(w, &data), 0);
        rt_rep(&Reply::DmaWrite(None), 0);
        rt_req(&Request::DeviceReset, 0);
        rt_rep(&Reply::DeviceReset, 0);
    }

    #[test]
    fn write_multi(raw in vec((any::<u64>(), any::<u32>(), 1u32..=8, any::<[u8; 8]>()), 1..32), done: u64) {
        let v: Vec<WriteMultiEntry> = raw.iter().map(|e| WriteMultiEntry { offset: e.0.min(u64::MAX - 8), region: e.1, count: e.2, data: e.3 }).collect();
        let bytes = entries(&v);
        rt_req(&Request::RegionWriteMulti(WireArray::new(&bytes).unwrap()), 0);
        rt_rep(&Reply::RegionWriteMulti(WriteMulti { wr_cnt: done }), 0);
    }

    #[test]
    fn device_feature(
        which in 0usize..9, argsz in 8u32.., feature: u16, get: bool, set: bool, state in 0usize..8,
        shift in 0u32..40, ranges in vec(range64(), 0..6), (iova, length) in range64(), data in vec(any::<u8>(), 0..64),
    ) {
        let flags_of = |ops: u32, f: u16| ops | u32::from(f);
        let (f, req) = match which {
            0 => {
                let ops = DEVICE_FEATURE_PROBE | if get { DEVICE_FEATURE_GET } else { 0 } | if set { DEVICE_FEATURE_SET } else { 0 };
                (DeviceFeature { argsz, flags: flags_of(ops, feature) }, FeatureRequest::Probe { feature, get, set })
            }
            1 => (DeviceFeature { argsz, flags: flags_of(DEVICE_FEATURE_GET, 1) }, FeatureRequest::MigrationGet),
            2 => (DeviceFeature { argsz, flags: flags_of(DEVICE_FEATURE_GET, 2) }, FeatureRequest::MigStateGet),
            3 => (DeviceFeature { argsz, flags: flags_of(DEVICE_FEATURE_SET, 2) }, FeatureRequest::MigStateSet(MigState::ALL[state])),
            4 => (DeviceFeature { argsz, flags: flags_of(DEVICE_FEATURE_SET, 7) }, FeatureRequest::DmaLoggingStop),
            _ => (DeviceFeature { argsz, flags: 0 }, FeatureRequest::DmaLoggingStop),
        };
        if which <= 4 {
            rt_req(&Request::DeviceFeature(f, req), 0);
        }
        // DMA_LOGGING_START with ranges.
        let rs: Vec<DmaLoggingRange> = ranges.iter().map(|&(iova, length)| DmaLoggingRange { iova, length }).collect();
        let rb = entries(&rs);
        let control = DmaLoggingControl { page_size: 1 << shift, num_ranges: rs.len() as u32, reserved: u32::from(feature) };
        let f = DeviceFeature { argsz, flags: DEVICE_FEATURE_SET | 6 };
        rt_req(&Request::DeviceFeature(f, FeatureRequest::DmaLoggingStart { control, ranges: WireArray::new(&rb).unwrap() }), 0);
        // DMA_LOGGING_REPORT, with an argsz the bitmap fits in.
        let page_size = 1u64 << shift.max(12);
        let words = length.div_ceil(page_size).div_ceil(64);
        if let Some(argsz) = u32::try_from(32 + words * 8).ok().and_then(|a| a.checked_add(argsz % 64)) {
            let f = DeviceFeature { argsz, flags: DEVICE_FEATURE_GET | 8 };
            rt_req(&Request::DeviceFeature(f, FeatureRequest::DmaLoggingReport(DmaLoggingReport { iova, length, page_size })), 0);
        }
        // A feature this crate does not know, with one operation.
        let unknown = if [1, 2, 6, 7, 8].contains(&feature) { 100 } else { feature };
        let ops = if get { DEVICE_FEATURE_GET } else { DEVICE_FEATURE_SET };
        let f = DeviceFeature { argsz, flags: ops | u32::from(unknown) };
        let ops = FeatureOps::from_bits_retain(ops);
        rt_req(&Request::DeviceFeature(f, FeatureRequest::Unknown { feature: unknown, ops, data: &data }), 0);
        // Replies carry any data.
        rt_rep(&Reply::DeviceFeature(DeviceFeature { argsz, flags: argsz ^ 0x5a5a }, &data), 0);
    }

    #[test]
    fn mig_data(extra: u32, data in vec(any::<u8>(), 0..256), size in 0..=MAX) {
        let m = MigData { argsz: (8 + size).saturating_add(extra), size };
        rt_req(&Request::MigDataRead(m), 0);
        let len = data.len() as u32;
        let w = MigData { argsz: (8 + len).saturating_add(extra), size: len };
        rt_req(&Request::MigDataWrite(w, &data), 0);
        rt_rep(&Reply::MigDataRead(MigData { argsz: 8 + len, size: len }, &data), 0);
        rt_rep(&Reply::MigDataWrite, 0);
    }
}
