// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The table of bad inputs. The server runs with `LIMITS` (4 fds per message, 64 KiB
//! transfers, 4 DMA maps) and the test device of `common::description()`: regions 0 (BAR0,
//! 4 KiB), 1 (empty), 2 (BAR2, 16 KiB, MSI-X), 4 (BAR4), 6 (ROM, read-only, 2 KiB),
//! 7 (config, 4 KiB), 8 (VGA, empty), 9 (device-specific); IRQs INTx 1, MSI 4, MSI-X 8,
//! ERR 1, REQ 1.

use libc::{E2BIG, EEXIST, EINVAL, ENOENT, ENOSPC, ENOTSUP};
use vfio_user_proto::command::Command;
use vfio_user_proto::header::{FLAGS_ERROR, FLAGS_NO_REPLY, FLAGS_TYPE_COMMAND, FLAGS_TYPE_REPLY};
use vfio_user_proto::wire as W;
use vfio_user_proto::wire::*;
use vfio_user_proto::Header;
use vm_memory::ByteValued;

/// The connection a case needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    /// A new connection before VERSION.
    Fresh,
    /// A connection after VERSION.
    Negotiated,
}

/// Descriptors sent with the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fds {
    None,
    Eventfds(usize),
    Memfd,
}

/// What must happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// An error reply with this errno; the connection stays usable.
    Errno(i32),
    /// An error reply with this errno, then the server hangs up.
    ErrnoThenClose(i32),
    /// No reply at all (NO_REPLY); the next reply is the next command's.
    Silent,
    /// Framing error: the server closes the connection.
    Close,
    /// The client leaves in the middle of a message (the server must just move on).
    ClientHangsUp,
}

pub struct Case {
    pub name: &'static str,
    pub session: Session,
    /// Valid commands sent (and checked to succeed) first.
    pub before: Vec<(Command, Vec<u8>, Fds)>,
    pub cmd: u16,
    pub flags: u32,
    pub payload: Vec<u8>,
    pub fds: Fds,
    /// Raw bytes written instead of a framed message (framing cases).
    pub raw: Option<Vec<u8>>,
    pub expect: Expect,
}

impl Case {
    fn fds(mut self, f: Fds) -> Self {
        self.fds = f;
        self
    }
    fn fresh(mut self) -> Self {
        self.session = Session::Fresh;
        self
    }
    fn before(mut self, cmd: Command, payload: Vec<u8>, f: Fds) -> Self {
        self.before.push((cmd, payload, f));
        self
    }
    fn no_reply(mut self) -> Self {
        self.flags |= FLAGS_NO_REPLY;
        self.expect = Expect::Silent;
        self
    }
}

fn err(name: &'static str, cmd: impl Into<u16>, payload: Vec<u8>, errno: i32) -> Case {
    Case {
        name,
        session: Session::Negotiated,
        before: Vec::new(),
        cmd: cmd.into(),
        flags: FLAGS_TYPE_COMMAND,
        payload,
        fds: Fds::None,
        raw: None,
        expect: Expect::Errno(errno),
    }
}

fn framing(name: &'static str, raw: Vec<u8>, expect: Expect) -> Case {
    Case { raw: Some(raw), expect, ..err(name, 0u16, Vec::new(), 0) }
}

fn hdr(cmd: impl Into<u16>, flags: u32, msg_size: u32) -> Vec<u8> {
    Header { msg_id: 0x4242, command: cmd.into(), msg_size, flags, error: 0 }.as_slice().to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn gi(argsz: u32) -> Vec<u8> {
    DeviceInfo { argsz, ..Default::default() }.as_slice().to_vec()
}
fn ri(argsz: u32, index: u32) -> Vec<u8> {
    RegionInfo { argsz, index, ..Default::default() }.as_slice().to_vec()
}
fn iofds(argsz: u32, flags: u32, index: u32) -> Vec<u8> {
    RegionIoFds { argsz, flags, index, count: 0 }.as_slice().to_vec()
}
fn ii(argsz: u32, index: u32) -> Vec<u8> {
    IrqInfo { argsz, index, ..Default::default() }.as_slice().to_vec()
}
fn set(flags: u32, index: u32, start: u32, count: u32) -> Vec<u8> {
    IrqSet { argsz: 20, flags, index, start, count }.as_slice().to_vec()
}
fn acc(offset: u64, region: u32, count: u32) -> Vec<u8> {
    RegionAccess { offset, region, count }.as_slice().to_vec()
}
fn map(argsz: u32, flags: u32, offset: u64, addr: u64, size: u64) -> Vec<u8> {
    W::DmaMap { argsz, flags, offset, addr, size }.as_slice().to_vec()
}
fn rw_map(addr: u64, size: u64) -> Vec<u8> {
    map(32, DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE, 0, addr, size)
}
fn unmap(argsz: u32, flags: u32, addr: u64, size: u64) -> Vec<u8> {
    W::DmaUnmap { argsz, flags, addr, size }.as_slice().to_vec()
}
fn feat(argsz: u32, flags: u32) -> Vec<u8> {
    W::DeviceFeature { argsz, flags }.as_slice().to_vec()
}
fn mig(argsz: u32, size: u32) -> Vec<u8> {
    MigData { argsz, size }.as_slice().to_vec()
}
fn multi(entries: &[(u64, u32, u32)]) -> Vec<u8> {
    let mut p = (entries.len() as u64).to_ne_bytes().to_vec();
    for &(offset, region, count) in entries {
        p.extend_from_slice(WriteMultiEntry { offset, region, count, data: [0; 8] }.as_slice());
    }
    p
}

const RW: u32 = DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE;
const EFD_TRIGGER: u32 = IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER;
const NONE_TRIGGER: u32 = IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER;
const BOOL_TRIGGER: u32 = IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER;

use Command::*;

pub fn all() -> Vec<Case> {
    let mut v = vec![
        // --- before VERSION: EINVAL, the connection stays open for a VERSION.
        err("pre-version GET_INFO", DeviceGetInfo, gi(16), EINVAL).fresh(),
        err("pre-version REGION_READ", RegionRead, acc(0, 7, 4), EINVAL).fresh(),
        err("pre-version DMA_MAP", DmaMap, rw_map(0x100000, 0x1000), EINVAL).fresh(),
        err("pre-version RESET", DeviceReset, vec![], EINVAL).fresh(),
        err("pre-version unknown command 99", 99u16, vec![], EINVAL).fresh(),
        err("VERSION JSON without NUL", Version, b"\0\0\x02\0{}".to_vec(), EINVAL).fresh(),
        err("VERSION JSON unparsable", Version, b"\0\0\x02\0{\"capabilities\":\0".to_vec(), EINVAL).fresh(),
        err("VERSION JSON bare NUL", Version, b"\0\0\x02\0\0".to_vec(), EINVAL).fresh(),
        err("VERSION payload of 2 bytes", Version, vec![0, 0], EINVAL).fresh(),
        err(
            "VERSION max_data_xfer_size 0",
            Version,
            b"\0\0\x02\0{\"capabilities\":{\"max_data_xfer_size\":0}}\0".to_vec(),
            EINVAL,
        )
        .fresh(),
        err(
            "VERSION max_msg_fds not a number",
            Version,
            b"\0\0\x02\0{\"capabilities\":{\"max_msg_fds\":\"x\"}}\0".to_vec(),
            EINVAL,
        )
        .fresh(),
        err("VERSION with an fd", Version, b"\0\0\x02\0{}\0".to_vec(), EINVAL).fds(Fds::Eventfds(1)).fresh(),
        Case {
            expect: Expect::ErrnoThenClose(ENOTSUP),
            ..err("VERSION major 1", Version, b"\x01\0\0\0{}\0".to_vec(), 0).fresh()
        },
        // --- header level
        err("second VERSION", Version, b"\0\0\x02\0{}\0".to_vec(), EINVAL),
        err("command code 0", 0u16, vec![], EINVAL),
        err("command code 19", 19u16, vec![0; 8], EINVAL),
        err("command code 0xffff", 0xffffu16, vec![0; 64], EINVAL),
        err("removed command 14 (DIRTY_PAGES)", 14u16, vec![0; 8], ENOTSUP),
        err("DMA_READ sent to the server", DmaRead, DmaAccess { addr: 0, count: 4 }.as_slice().to_vec(), EINVAL),
        err(
            "DMA_WRITE sent to the server",
            DmaWrite,
            cat(&[DmaAccess { addr: 0, count: 4 }.as_slice(), &[0; 4]]),
            EINVAL,
        ),
        // --- DMA_MAP
        err("DMA_MAP short payload", DmaMap, vec![0; 16], EINVAL),
        err("DMA_MAP long payload", DmaMap, cat(&[&rw_map(0x100000, 0x1000), &[0; 8]]), EINVAL),
        err("DMA_MAP argsz 24", DmaMap, map(24, RW, 0, 0x100000, 0x1000), EINVAL),
        err("DMA_MAP argsz 40", DmaMap, map(40, RW, 0, 0x100000, 0x1000), EINVAL),
        err("DMA_MAP unknown flag bit 9", DmaMap, map(32, RW | 1 << 9, 0, 0x100000, 0x1000), EINVAL),
        err("DMA_MAP MMAP flag without fd", DmaMap, map(32, RW | DMA_MAP_FLAG_MMAP, 0, 0x100000, 0x1000), EINVAL),
        err(
            "DMA_MAP MMAP|FILE_IO",
            DmaMap,
            map(32, RW | DMA_MAP_FLAG_MMAP | DMA_MAP_FLAG_FILE_IO, 0, 0x100000, 0x1000),
            EINVAL,
        )
        .fds(Fds::Memfd),
        err("DMA_MAP size 0", DmaMap, rw_map(0x100000, 0), EINVAL),
        err("DMA_MAP address + size wraps u64", DmaMap, rw_map(u64::MAX - 0xfff, 0x2000), EINVAL),
        err("DMA_MAP offset + size wraps u64", DmaMap, map(32, RW, u64::MAX - 0xfff, 0x100000, 0x2000), EINVAL)
            .fds(Fds::Memfd),
        err("DMA_MAP address not page aligned", DmaMap, rw_map(0x100800, 0x1000), EINVAL),
        err("DMA_MAP size not page aligned", DmaMap, rw_map(0x100000, 0x1800), EINVAL),
        err("DMA_MAP two fds", DmaMap, rw_map(0x100000, 0x1000), EINVAL).fds(Fds::Eventfds(2)),
        err("DMA_MAP overlapping the end", DmaMap, rw_map(0x101000, 0x2000), EEXIST).before(
            DmaMap,
            rw_map(0x100000, 0x2000),
            Fds::None,
        ),
        err("DMA_MAP overlapping the start", DmaMap, rw_map(0xff000, 0x2000), EEXIST).before(
            DmaMap,
            rw_map(0x100000, 0x2000),
            Fds::Memfd,
        ),
        err("DMA_MAP identical re-map", DmaMap, rw_map(0x100000, 0x2000), EEXIST).before(
            DmaMap,
            rw_map(0x100000, 0x2000),
            Fds::None,
        ),
        err("DMA_MAP inside a mapping", DmaMap, rw_map(0x101000, 0x1000), EEXIST).before(
            DmaMap,
            rw_map(0x100000, 0x4000),
            Fds::None,
        ),
        err("DMA_MAP over max_dma_maps", DmaMap, rw_map(0x200000, 0x1000), ENOSPC)
            .before(DmaMap, rw_map(0x100000, 0x1000), Fds::None)
            .before(DmaMap, rw_map(0x101000, 0x1000), Fds::Memfd)
            .before(DmaMap, rw_map(0x102000, 0x1000), Fds::None)
            .before(DmaMap, rw_map(0x103000, 0x1000), Fds::None),
        // --- DMA_UNMAP
        err("DMA_UNMAP never mapped", DmaUnmap, unmap(24, 0, 0x100000, 0x1000), ENOENT),
        err("DMA_UNMAP part of a mapping", DmaUnmap, unmap(24, 0, 0x100000, 0x1000), ENOENT).before(
            DmaMap,
            rw_map(0x100000, 0x2000),
            Fds::None,
        ),
        err("DMA_UNMAP larger than the mapping", DmaUnmap, unmap(24, 0, 0x100000, 0x3000), ENOENT).before(
            DmaMap,
            rw_map(0x100000, 0x2000),
            Fds::None,
        ),
        err("DMA_UNMAP short payload", DmaUnmap, vec![0; 12], EINVAL),
        err("DMA_UNMAP argsz 16", DmaUnmap, unmap(16, 0, 0x100000, 0x1000), EINVAL),
        err("DMA_UNMAP unknown flag bit 5", DmaUnmap, unmap(24, 1 << 5, 0x100000, 0x1000), EINVAL),
        err("DMA_UNMAP ALL with an address", DmaUnmap, unmap(24, DMA_UNMAP_FLAG_ALL, 0x100000, 0x1000), EINVAL),
        err("DMA_UNMAP ALL|GET_DIRTY_BITMAP", DmaUnmap, unmap(24, DMA_UNMAP_FLAGS_KNOWN, 0, 0), EINVAL),
        err("DMA_UNMAP size 0", DmaUnmap, unmap(24, 0, 0x100000, 0), EINVAL),
        err("DMA_UNMAP address + size wraps u64", DmaUnmap, unmap(24, 0, u64::MAX, 2), EINVAL),
        err("DMA_UNMAP with an fd", DmaUnmap, unmap(24, 0, 0x100000, 0x1000), EINVAL).fds(Fds::Memfd),
        err(
            "DMA_UNMAP dirty bitmap of a never-mapped region",
            DmaUnmap,
            cat(&[
                &unmap(4096, DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, 0x100000, 0x1000),
                DmaBitmap { pgsize: 4096, size: 8 }.as_slice(),
            ]),
            ENOENT,
        ),
        // --- DEVICE_GET_INFO
        err("GET_INFO argsz 8", DeviceGetInfo, gi(8), EINVAL),
        err("GET_INFO short payload", DeviceGetInfo, vec![16, 0, 0, 0, 0, 0, 0, 0], EINVAL),
        err("GET_INFO payload beyond argsz", DeviceGetInfo, cat(&[&gi(16), &[0; 8]]), EINVAL),
        err("GET_INFO with an fd", DeviceGetInfo, gi(16), EINVAL).fds(Fds::Eventfds(1)),
        // --- DEVICE_GET_REGION_INFO
        err("REGION_INFO index 10", DeviceGetRegionInfo, ri(32, 10), EINVAL),
        err("REGION_INFO index u32::MAX", DeviceGetRegionInfo, ri(32, u32::MAX), EINVAL),
        err("REGION_INFO argsz 16", DeviceGetRegionInfo, ri(16, 0), EINVAL),
        err("REGION_INFO short payload", DeviceGetRegionInfo, ri(32, 0)[..16].to_vec(), EINVAL),
        err("REGION_INFO with an fd", DeviceGetRegionInfo, ri(32, 0), EINVAL).fds(Fds::Memfd),
        // --- DEVICE_GET_REGION_IO_FDS
        err("IO_FDS index 10", DeviceGetRegionIoFds, iofds(16, 0, 10), EINVAL),
        err("IO_FDS empty region 1", DeviceGetRegionIoFds, iofds(16, 0, 1), EINVAL),
        err("IO_FDS flags set", DeviceGetRegionIoFds, iofds(16, 1, 0), EINVAL),
        err("IO_FDS argsz 8", DeviceGetRegionIoFds, iofds(8, 0, 0), EINVAL),
        err("IO_FDS with an fd", DeviceGetRegionIoFds, iofds(16, 0, 0), EINVAL).fds(Fds::Eventfds(1)),
        // --- DEVICE_GET_IRQ_INFO
        err("IRQ_INFO index 5", DeviceGetIrqInfo, ii(16, 5), EINVAL),
        err("IRQ_INFO index u32::MAX", DeviceGetIrqInfo, ii(16, u32::MAX), EINVAL),
        err("IRQ_INFO argsz 8", DeviceGetIrqInfo, ii(8, 0), EINVAL),
        err("IRQ_INFO short payload", DeviceGetIrqInfo, ii(16, 0)[..12].to_vec(), EINVAL),
        // --- DEVICE_SET_IRQS
        err("SET_IRQS index 5", DeviceSetIrqs, set(NONE_TRIGGER, 5, 0, 1), EINVAL),
        err("SET_IRQS MSI start + count beyond 4 vectors", DeviceSetIrqs, set(NONE_TRIGGER, 1, 3, 2), EINVAL),
        err("SET_IRQS start + count wraps u32", DeviceSetIrqs, set(NONE_TRIGGER, 2, u32::MAX, 2), EINVAL),
        err("SET_IRQS ERR count 2", DeviceSetIrqs, set(NONE_TRIGGER, 3, 0, 2), EINVAL),
        err("SET_IRQS two DATA bits", DeviceSetIrqs, set(NONE_TRIGGER | IRQ_SET_DATA_BOOL, 0, 0, 1), EINVAL),
        err("SET_IRQS two ACTION bits", DeviceSetIrqs, set(NONE_TRIGGER | IRQ_SET_ACTION_MASK, 0, 0, 1), EINVAL),
        err("SET_IRQS no DATA bit", DeviceSetIrqs, set(IRQ_SET_ACTION_TRIGGER, 0, 0, 1), EINVAL),
        err("SET_IRQS unknown flag bit 6", DeviceSetIrqs, set(NONE_TRIGGER | 1 << 6, 0, 0, 1), EINVAL),
        err(
            "SET_IRQS argsz 16",
            DeviceSetIrqs,
            IrqSet { argsz: 16, flags: NONE_TRIGGER, index: 0, start: 0, count: 1 }.as_slice().to_vec(),
            EINVAL,
        ),
        err("SET_IRQS short payload", DeviceSetIrqs, set(NONE_TRIGGER, 0, 0, 1)[..16].to_vec(), EINVAL),
        err("SET_IRQS BOOL missing data", DeviceSetIrqs, cat(&[&set(BOOL_TRIGGER, 1, 0, 2), &[1]]), EINVAL),
        err("SET_IRQS BOOL count u32::MAX", DeviceSetIrqs, set(BOOL_TRIGGER, 2, 0, u32::MAX), EINVAL),
        err("SET_IRQS NONE with an fd", DeviceSetIrqs, set(NONE_TRIGGER, 0, 0, 1), EINVAL).fds(Fds::Eventfds(1)),
        err("SET_IRQS EVENTFD 1 fd for 2 vectors", DeviceSetIrqs, set(EFD_TRIGGER, 1, 0, 2), EINVAL)
            .fds(Fds::Eventfds(1)),
        err("SET_IRQS EVENTFD 3 fds for 2 vectors", DeviceSetIrqs, set(EFD_TRIGGER, 1, 0, 2), EINVAL)
            .fds(Fds::Eventfds(3)),
        err("SET_IRQS EVENTFD 5 fds > max_msg_fds 4", DeviceSetIrqs, set(EFD_TRIGGER, 2, 0, 5), EINVAL)
            .fds(Fds::Eventfds(5)),
        err("SET_IRQS EVENTFD with data bytes", DeviceSetIrqs, cat(&[&set(EFD_TRIGGER, 0, 0, 1), &[1]]), EINVAL),
        // --- REGION_READ
        err("REGION_READ count max_data_xfer_size + 1", RegionRead, acc(0, 7, 0x10001), E2BIG),
        err("REGION_READ count u32::MAX", RegionRead, acc(0, 0, u32::MAX), E2BIG),
        err("REGION_READ offset + count wraps u64", RegionRead, acc(u64::MAX - 1, 0, 4), EINVAL),
        err("REGION_READ offset past the end", RegionRead, acc(0x1000, 0, 4), EINVAL),
        err("REGION_READ straddling the end", RegionRead, acc(0xffe, 0, 4), EINVAL),
        err("REGION_READ region 10", RegionRead, acc(0, 10, 4), EINVAL),
        err("REGION_READ region u32::MAX", RegionRead, acc(0, u32::MAX, 4), EINVAL),
        err("REGION_READ empty region 1", RegionRead, acc(0, 1, 4), EINVAL),
        err("REGION_READ config space past 4 KiB", RegionRead, acc(0xffc, 7, 8), EINVAL),
        err("REGION_READ short payload", RegionRead, acc(0, 0, 4)[..12].to_vec(), EINVAL),
        err("REGION_READ trailing bytes", RegionRead, cat(&[&acc(0, 0, 4), &[0; 4]]), EINVAL),
        err("REGION_READ with an fd", RegionRead, acc(0, 0, 4), EINVAL).fds(Fds::Eventfds(1)),
        // --- REGION_WRITE
        err("REGION_WRITE count above the data", RegionWrite, cat(&[&acc(0, 0, 8), &[0; 4]]), EINVAL),
        err("REGION_WRITE count below the data", RegionWrite, cat(&[&acc(0, 0, 2), &[0; 4]]), EINVAL),
        err("REGION_WRITE count max_data_xfer_size + 1", RegionWrite, cat(&[&acc(0, 0, 0x10001), &[0; 4]]), E2BIG),
        err("REGION_WRITE offset + count wraps u64", RegionWrite, cat(&[&acc(u64::MAX - 1, 0, 4), &[0; 4]]), EINVAL),
        err("REGION_WRITE past the end", RegionWrite, cat(&[&acc(0xffe, 0, 4), &[0; 4]]), EINVAL),
        err("REGION_WRITE read-only ROM", RegionWrite, cat(&[&acc(0, 6, 4), &[0; 4]]), EINVAL),
        err("REGION_WRITE region 10", RegionWrite, cat(&[&acc(0, 10, 4), &[0; 4]]), EINVAL),
        err("REGION_WRITE with an fd", RegionWrite, cat(&[&acc(0, 0, 4), &[0; 4]]), EINVAL).fds(Fds::Memfd),
        // --- DEVICE_RESET
        err("RESET with a payload", DeviceReset, vec![0; 4], EINVAL),
        err("RESET with an fd", DeviceReset, vec![], EINVAL).fds(Fds::Eventfds(1)),
        // --- REGION_WRITE_MULTI
        err("WRITE_MULTI wr_cnt 0", RegionWriteMulti, 0u64.to_ne_bytes().to_vec(), EINVAL),
        err("WRITE_MULTI wr_cnt u64::MAX", RegionWriteMulti, u64::MAX.to_ne_bytes().to_vec(), EINVAL),
        err(
            "WRITE_MULTI wr_cnt above the entries",
            RegionWriteMulti,
            cat(&[&2u64.to_ne_bytes(), &multi(&[(0, 0, 4)])[8..]]),
            EINVAL,
        ),
        err("WRITE_MULTI entry count 9", RegionWriteMulti, multi(&[(0, 0, 9)]), EINVAL),
        err("WRITE_MULTI entry count 0", RegionWriteMulti, multi(&[(0, 0, 0)]), EINVAL),
        err("WRITE_MULTI entry region 10", RegionWriteMulti, multi(&[(0, 0, 4), (0, 10, 4)]), EINVAL),
        err("WRITE_MULTI entry to the ROM", RegionWriteMulti, multi(&[(0, 6, 4)]), EINVAL),
        err("WRITE_MULTI entry past the end", RegionWriteMulti, multi(&[(0xffc, 0, 8)]), EINVAL),
        err("WRITE_MULTI entry offset wraps u64", RegionWriteMulti, multi(&[(u64::MAX - 2, 0, 8)]), EINVAL),
        // --- DEVICE_FEATURE
        err("FEATURE short payload", DeviceFeature, vec![8, 0, 0, 0], EINVAL),
        err("FEATURE argsz 4", DeviceFeature, feat(4, FEATURE_MIGRATION as u32 | DEVICE_FEATURE_GET), EINVAL),
        err("FEATURE GET|SET", DeviceFeature, feat(16, 1 | DEVICE_FEATURE_GET | DEVICE_FEATURE_SET), EINVAL),
        err("FEATURE no operation", DeviceFeature, feat(16, 1), EINVAL),
        err("FEATURE unknown flag bit 20", DeviceFeature, feat(16, 1 | DEVICE_FEATURE_GET | 1 << 20), EINVAL),
        err(
            "FEATURE PROBE MIGRATION (unsupported)",
            DeviceFeature,
            feat(8, FEATURE_MIGRATION as u32 | DEVICE_FEATURE_PROBE | DEVICE_FEATURE_GET),
            ENOTSUP,
        ),
        err(
            "FEATURE GET MIGRATION (unsupported)",
            DeviceFeature,
            feat(16, FEATURE_MIGRATION as u32 | DEVICE_FEATURE_GET),
            ENOTSUP,
        ),
        err("FEATURE with an fd", DeviceFeature, feat(16, FEATURE_MIGRATION as u32 | DEVICE_FEATURE_GET), EINVAL)
            .fds(Fds::Eventfds(1)),
        // --- MIG_DATA_* outside a migration state
        err("MIG_DATA_READ while RUNNING", MigDataRead, mig(8 + 64, 64), EINVAL),
        err("MIG_DATA_WRITE while RUNNING", MigDataWrite, cat(&[&mig(8 + 4, 4), &[1, 2, 3, 4]]), EINVAL),
        err("MIG_DATA_READ size above max_data_xfer_size", MigDataRead, mig(8 + 0x10001, 0x10001), E2BIG),
        err("MIG_DATA_READ argsz below size", MigDataRead, mig(8, 64), EINVAL),
        err("MIG_DATA_WRITE size above the data", MigDataWrite, cat(&[&mig(8 + 8, 8), &[1, 2, 3, 4]]), EINVAL),
        // --- a message over the size limit (16 + 16 + max_data_xfer_size), payload
        // complete: drained and refused like a count over max_data_xfer_size
        err(
            "REGION_WRITE one byte over the size limit",
            RegionWrite,
            cat(&[&acc(0, 0, 0x10001), &[7; 0x10001]]),
            E2BIG,
        ),
        err("DMA_MAP padded over the size limit", DmaMap, vec![0; 0x10001 + 16], E2BIG),
        // --- NO_REPLY: no reply at all, not even an error
        err("NO_REPLY REGION_READ out of range", RegionRead, acc(0x1000, 0, 4), 0).no_reply(),
        err("NO_REPLY unknown command", 77u16, vec![], 0).no_reply(),
        err("NO_REPLY DMA_UNMAP never mapped", DmaUnmap, unmap(24, 0, 0x100000, 0x1000), 0).no_reply(),
        err("NO_REPLY SET_IRQS bad index", DeviceSetIrqs, set(NONE_TRIGGER, 9, 0, 1), 0).no_reply(),
        err("NO_REPLY valid REGION_WRITE", RegionWrite, cat(&[&acc(0, 0, 4), &[9; 4]]), 0).no_reply(),
        err("NO_REPLY valid RESET", DeviceReset, vec![], 0).no_reply(),
        err("NO_REPLY second VERSION", Version, b"\0\0\x02\0{}\0".to_vec(), 0).no_reply(),
    ];
    // --- framing: the connection closes, the next client is served
    let limit = 16 + 16 + 0x10000u32;
    v.extend([
        framing("msg_size 0", hdr(DeviceGetInfo, 0, 0), Expect::Close),
        framing("msg_size 15", hdr(DeviceGetInfo, 0, 15), Expect::Close),
        // Over the limit, the payload is drained (see the E2BIG case above): one that never
        // comes is a stall, one cut short an end of stream in a message.
        framing("msg_size above the limit, payload never sent", hdr(RegionWrite, 0, limit + 1), Expect::ClientHangsUp),
        framing("msg_size u32::MAX, payload never sent", hdr(RegionWrite, 0, u32::MAX), Expect::ClientHangsUp),
        framing("a reply sent to the server", hdr(DeviceGetInfo, FLAGS_TYPE_REPLY, 16), Expect::Close),
        framing("an error reply sent to the server", hdr(DmaRead, FLAGS_TYPE_REPLY | FLAGS_ERROR, 16), Expect::Close),
        framing("undefined message type 2", cat(&[&hdr(DeviceGetInfo, 2, 32), &gi(16)]), Expect::Close),
        framing("undefined message type 15", hdr(DeviceReset, 15, 16), Expect::Close),
        framing("half a header, then hang up", hdr(DeviceGetInfo, 0, 32)[..8].to_vec(), Expect::ClientHangsUp),
        framing(
            "half a payload, then hang up",
            cat(&[&hdr(RegionWrite, 0, 16 + 16 + 64), &acc(0, 0, 64)]),
            Expect::ClientHangsUp,
        ),
    ]);
    v
}
