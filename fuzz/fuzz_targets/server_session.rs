// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A whole server session over a socket pair, driven on this thread with
//! `Server::handle_request`, against a mock device (BARs incl. an mmappable one with sparse
//! areas, MSI-X, MSI, INTx, ROM, device-specific regions, a config-space callback range).
//!
//! Input: one byte choosing a canned VERSION (7 times in 8) or fuzzed VERSION fields; then up
//! to 64 messages, each a kind byte (a well-formed command built from fuzzed fields with the
//! wire structs / `Request::encode_payload`, or a raw message with fuzzed header fields and
//! payload), the fields, and an fd selector (0–3 memfds / eventfds attached).
//!
//! Checked for every reply: it is a reply, has only defined flag bits, answers the next
//! command that wanted one (msg_id and command echoed, in order; NO_REPLY commands get none);
//! error replies are header-only with an errno in 1..=4095 and no fds; successful replies
//! pass `decode_reply`. While the byte stream is in sync, every command is answered before the
//! server goes idle. The device asserts that the framework only passes in-range accesses.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};

use common::{fds_for, memfd, Input};
use libfuzzer_sys::fuzz_target;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use vfio_user_proto::connection::{Connection, Receiver};
use vfio_user_proto::header::{FLAGS_KNOWN, FLAGS_NO_REPLY};
use vfio_user_proto::migration::is_direct_arc;
use vfio_user_proto::wire::*;
use vfio_user_proto::{decode_reply, Command, FrameError, Header, Request, HEADER_SIZE};
use vfio_user_server::{
    Bar, Device, DeviceDescription, DeviceRegion, Event, IoEventFd, MigState, MigrationSupport, MsixConfig, PcieConfig,
    ResetKind, Server, ServerLimits,
};
use vm_memory::ByteValued;

const MAX_MSGS: usize = 64;
const MAX_RAW_PAYLOAD: usize = 512;
/// Small, so that no step's replies can fill the socket while this thread is in the server.
const MAX_XFER: u32 = 2048;
const CONFIG_CB: std::ops::Range<u16> = 0xe0..0x100;

/// Region sizes by index (0 = absent).
const SIZES: [u64; 11] = [0x1000, 0x100, 0x4000, 0, 0x1000, 0, 0x800, 0x1000, 0, 0x1000, 0x200];

fn description() -> DeviceDescription {
    static DESC: OnceLock<DeviceDescription> = OnceLock::new();
    DESC.get_or_init(|| {
        DeviceDescription::builder(0x4e58, 0x0002)
            .subsystem(0x4e58, 0x1002)
            .class_code(0xff0000)
            .bar(0, Bar::memory32(SIZES[0]))
            .bar(1, Bar::io(SIZES[1]))
            .bar(2, Bar::memory64(SIZES[2]).mmap(Arc::new(memfd(0x4000)), 0).sparse(&[(0, 0x1000), (0x3000, 0x1000)]))
            .bar(4, Bar::memory32(SIZES[4]).prefetchable().mmap(Arc::new(memfd(0x1000)), 0))
            .rom(SIZES[6])
            .region(9, DeviceRegion::new(SIZES[9], 0x8086_0000, 7))
            .region(10, DeviceRegion::new(SIZES[10], 0x8086_0000, 8).read_only())
            .intx()
            .msi(4, true)
            .msix(MsixConfig { vectors: 8, table_bar: 2, table_offset: 0x2000, pba_bar: 2, pba_offset: 0x2800 })
            .power_management()
            .pcie(PcieConfig { flr: true })
            .serial_number(0x0123_4567_89ab_cdef)
            .config_callback(CONFIG_CB)
            .err_irq()
            .req_irq()
            .build()
            .expect("fuzz device description")
    })
    .clone()
}

/// Answers deterministically and checks the framework's bounds.
struct FuzzDev {
    ioefd: Arc<OwnedFd>,
    /// The migration state as the arcs taken say, and the bytes loaded in RESUMING.
    mig: Mutex<(MigState, u64)>,
}

fn check(region: u32, offset: u64, len: usize) {
    let size = SIZES.get(region as usize).copied().unwrap_or(0);
    assert!(
        offset.checked_add(len as u64).is_some_and(|e| e <= size),
        "device access out of range: region {region} {offset:#x}+{len:#x} (size {size:#x})"
    );
}

impl Device for FuzzDev {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        check(region, offset, data.len());
        if region == 9 && offset == 0xf00 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        for (i, b) in data.iter_mut().enumerate() {
            *b = (offset as u8).wrapping_add(i as u8) ^ (region as u8);
        }
        Ok(())
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        check(region, offset, data.len());
        assert!(region != 10, "write to a read-only region reached the device");
        if region == 9 && offset == 0xf00 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(())
    }

    fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        assert!(offset >= u64::from(CONFIG_CB.start) && offset + data.len() as u64 <= u64::from(CONFIG_CB.end));
        data.fill(0x5a);
        Ok(())
    }

    fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        assert!(offset >= u64::from(CONFIG_CB.start) && offset + data.len() as u64 <= u64::from(CONFIG_CB.end));
        Ok(())
    }

    fn dma_map(&self, r: &vfio_user_server::DmaRegion) -> io::Result<()> {
        if r.iova == 0xdead_0000 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(())
    }

    fn migration(&self) -> Option<MigrationSupport> {
        Some(MigrationSupport { pre_copy: true })
    }

    fn migration_transition(&self, from: MigState, to: MigState) -> io::Result<()> {
        let mut m = self.mig.lock().unwrap();
        assert_eq!(m.0, from, "arc {from} -> {to} does not start where the device is");
        assert!(is_direct_arc(from, to, true), "the framework took {from} -> {to}, not a direct arc");
        if (from, to) == (MigState::Resuming, MigState::Stop) && m.1 % 2 == 1 {
            // An odd load is "invalid data": the device lands in ERROR.
            m.0 = MigState::Error;
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if to == MigState::Resuming {
            m.1 = 0;
        }
        m.0 = to;
        Ok(())
    }

    fn migration_read(&self, data: &mut [u8]) -> io::Result<usize> {
        let m = self.mig.lock().unwrap();
        assert!(m.0.is_saving(), "migration data read in {}", m.0);
        let n = data.len().min(100);
        data[..n].fill(0x33);
        Ok(n)
    }

    fn migration_write(&self, data: &[u8]) -> io::Result<()> {
        let mut m = self.mig.lock().unwrap();
        assert_eq!(m.0, MigState::Resuming, "migration data written in {}", m.0);
        m.1 += data.len() as u64;
        Ok(())
    }

    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        // DEVICE_RESET also resets the migration state (refused while stopped); an FLR
        // through config space leaves it alone.
        if kind == ResetKind::Device {
            let mut m = self.mig.lock().unwrap();
            assert!(!m.0.is_stopped(), "DEVICE_RESET reached a stopped device");
            m.0 = MigState::Running;
        }
        Ok(())
    }

    fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
        match region {
            0 => vec![
                IoEventFd { offset: 0x100, size: 4, datamatch: None, fd: self.ioefd.clone() },
                IoEventFd { offset: 0x104, size: 8, datamatch: Some(7), fd: self.ioefd.clone() },
            ],
            9 => vec![IoEventFd { offset: 0, size: 0, datamatch: None, fd: Arc::new(common::eventfd()) }],
            _ => Vec::new(),
        }
    }
}

fn send_raw(sock: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) -> bool {
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut off = 0;
    while off < bytes.len() {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if off == 0 && !borrowed.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
        }
        match sendmsg(sock, &[io::IoSlice::new(&bytes[off..])], &mut control, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
        {
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => {}
            // The server hung up, or (should not happen with the bounds above) a full socket.
            Err(_) => return false,
        }
    }
    true
}

/// A small or boundary value for offsets and sizes.
fn field(inp: &mut Input, small: u64) -> u64 {
    match inp.u8() % 8 {
        0 => u64::MAX - u64::from(inp.u8() % 4),
        1 => inp.u64(),
        2 => 0,
        _ => u64::from(inp.u32()) % small.max(1),
    }
}

/// A well-formed (or nearly) command payload for `cmd`, from fuzzed fields.
fn build(inp: &mut Input, cmd: u16, nfds: usize) -> Vec<u8> {
    let mut p = Vec::new();
    let page = |inp: &mut Input| u64::from(inp.u8()) * 0x1000;
    match cmd {
        1 => {
            let json = match inp.u8() % 4 {
                0 => &b""[..],
                1 => br#"{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1024}}"#,
                2 => br#"{"capabilities":{"twin_socket":{"supported":true}}}"#,
                _ => br#"{"capabilities":{"pgsizes":4096,"max_dma_maps":2,"write_multiple":true}}"#,
            };
            Request::Version(vfio_user_proto::Version { major: 0, minor: u16::from(inp.u8() % 3), json })
                .encode_payload(&mut p);
        }
        2 => {
            let map = DmaMap {
                argsz: 32,
                flags: u32::from(inp.u8() % 16),
                offset: page(inp) % 0x4000,
                addr: if inp.u8() == 0xde { 0xdead_0000 } else { page(inp) },
                size: (1 + u64::from(inp.u8() % 4)) * 0x1000,
            };
            Request::DmaMap { map, fd: nfds == 1 }.encode_payload(&mut p);
        }
        3 => {
            let flags = u32::from(inp.u8() % 4);
            let unmap = DmaUnmap { argsz: 24, flags, addr: page(inp), size: (1 + u64::from(inp.u8() % 4)) * 0x1000 };
            let bitmap = (flags & DMA_UNMAP_FLAG_GET_DIRTY_BITMAP != 0).then_some(DmaBitmap { pgsize: 4096, size: 8 });
            let unmap = if flags & DMA_UNMAP_FLAG_ALL != 0 {
                DmaUnmap { addr: 0, size: 0, ..unmap }
            } else if bitmap.is_some() {
                DmaUnmap { argsz: 48, ..unmap }
            } else {
                unmap
            };
            // Raw bytes: the flags may be invalid (ALL with GET_DIRTY_BITMAP), which no typed
            // request can hold.
            p.extend_from_slice(unmap.as_slice());
            if let Some(b) = bitmap {
                p.extend_from_slice(b.as_slice());
            }
        }
        4 => {
            Request::DeviceGetInfo(DeviceInfo { argsz: [16, 0x1000][usize::from(inp.u8() & 1)], ..Default::default() })
                .encode_payload(&mut p)
        }
        5 => {
            let argsz = [32, 0x1000, 40, u32::from(inp.u16())][usize::from(inp.u8() % 4)].max(32);
            Request::DeviceGetRegionInfo(RegionInfo { argsz, index: u32::from(inp.u8() % 12), ..Default::default() })
                .encode_payload(&mut p)
        }
        6 => {
            let argsz = [16, 0x1000, 56][usize::from(inp.u8() % 3)];
            Request::DeviceGetRegionIoFds(RegionIoFds { argsz, index: u32::from(inp.u8() % 12), ..Default::default() })
                .encode_payload(&mut p)
        }
        7 => Request::DeviceGetIrqInfo(IrqInfo { argsz: 16, index: u32::from(inp.u8() % 6), ..Default::default() })
            .encode_payload(&mut p),
        8 => {
            let sel = inp.u8();
            let data = [IRQ_SET_DATA_NONE, IRQ_SET_DATA_BOOL, IRQ_SET_DATA_EVENTFD][usize::from(sel % 3)];
            let action =
                [IRQ_SET_ACTION_MASK, IRQ_SET_ACTION_UNMASK, IRQ_SET_ACTION_TRIGGER][usize::from((sel >> 2) % 3)];
            let index = u32::from(inp.u8() % 6);
            let start = u32::from(inp.u8() % 10);
            let mut count = u32::from(inp.u8() % 10);
            if data == IRQ_SET_DATA_EVENTFD && sel & 0x80 != 0 {
                count = nfds as u32;
            }
            let bools = if data == IRQ_SET_DATA_BOOL { inp.bytes(count as usize).to_vec() } else { Vec::new() };
            let set = IrqSet { argsz: 20 + bools.len() as u32, flags: data | action, index, start, count };
            p.extend_from_slice(set.as_slice());
            p.extend_from_slice(&bools);
        }
        9 | 10 => {
            let region = u32::from(inp.u8() % 12);
            let size = SIZES.get(region as usize).copied().unwrap_or(0x1000);
            let offset = if inp.u8() & 1 == 0 { u64::from(inp.u16()) % (size + 8) } else { field(inp, size + 8) };
            let count = if cmd == 9 { u32::from(inp.u16()) % (MAX_XFER + 8) } else { u32::from(inp.u8() % 65) };
            p.extend_from_slice(RegionAccess { offset, region, count }.as_slice());
            if cmd == 10 {
                let d = inp.bytes(count as usize).to_vec();
                p.extend_from_slice(&d);
                p.resize(16 + count as usize, 0);
            }
        }
        11 | 12 => {
            p.extend_from_slice(DmaAccess { addr: page(inp), count: 8 }.as_slice());
            if cmd == 12 {
                p.extend_from_slice(&[0; 8]);
            }
        }
        15 => {
            let n = inp.u8() % 5;
            p.extend_from_slice(WriteMulti { wr_cnt: u64::from(n) }.as_slice());
            for _ in 0..n {
                let region = u32::from(inp.u8() % 12);
                let mut e = WriteMultiEntry {
                    offset: u64::from(inp.u16()) % 0x1008,
                    region,
                    count: u32::from(inp.u8() % 9),
                    data: [0; 8],
                };
                e.data[..].copy_from_slice(&inp.u64().to_ne_bytes());
                p.extend_from_slice(e.as_slice());
            }
        }
        16 => {
            let feature = u32::from(inp.u8() % 10);
            let ops = [DEVICE_FEATURE_PROBE, DEVICE_FEATURE_GET, DEVICE_FEATURE_SET][usize::from(inp.u8() % 3)];
            let data_len = usize::from(inp.u8() % 40);
            let mut data = inp.bytes(data_len).to_vec();
            if feature == u32::from(FEATURE_MIG_DEVICE_STATE) && ops == DEVICE_FEATURE_SET && inp.u8() & 3 != 0 {
                // Mostly valid states, so that the state machine gets walked.
                data = FeatureMigState { device_state: u32::from(inp.u8() % 8), data_fd: u32::MAX }.as_slice().to_vec();
            }
            let data_len = data.len();
            p.extend_from_slice(DeviceFeature { argsz: 8 + data_len as u32 + 64, flags: feature | ops }.as_slice());
            p.extend_from_slice(&data);
        }
        17 | 18 => {
            let size = u32::from(inp.u8());
            p.extend_from_slice(MigData { argsz: 8 + size, size }.as_slice());
            if cmd == 18 {
                p.resize(8 + size as usize, 0xab);
            }
        }
        _ => {}
    }
    p
}

fn fds_allowed(reply: &Header) -> bool {
    matches!(reply.cmd(), Ok(Command::Version | Command::DeviceGetRegionInfo | Command::DeviceGetRegionIoFds))
}

struct Session {
    rx: Receiver,
    /// (msg_id, command) of the commands that still owe a reply, in order.
    expect: VecDeque<(u16, u16)>,
    /// Whether `expect` is exact (the stream is in sync).
    strict: bool,
    closed: bool,
}

impl Session {
    fn drain(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(m) => {
                    let h = m.header;
                    assert!(h.is_reply(), "not a reply: {h:?}");
                    assert_eq!(h.flags & !FLAGS_KNOWN, 0, "undefined flag bits: {h:?}");
                    assert!(!h.no_reply(), "NO_REPLY set on a reply: {h:?}");
                    if self.strict {
                        let want = self.expect.pop_front();
                        assert_eq!(want, Some((h.msg_id, h.command)), "reply answers the wrong command: {h:?}");
                    }
                    if h.is_error() {
                        assert!(m.payload.is_empty(), "error reply with a payload: {h:?}");
                        assert!((1..=4095).contains(&h.error), "error reply without errno: {h:?}");
                        assert!(m.fds.is_empty(), "error reply with fds: {h:?}");
                    } else {
                        if let Err(e) = decode_reply(&h, &m.payload, m.fds.len()) {
                            panic!("reply does not decode: {e} {h:?} {:?}", m.payload);
                        }
                        assert!(m.fds.is_empty() || fds_allowed(&h), "fds on a reply: {h:?}");
                    }
                }
                Err(FrameError::WouldBlock) => return,
                Err(FrameError::Closed) => {
                    self.closed = true;
                    return;
                }
                Err(e) => panic!("reply stream broken: {e}"),
            }
        }
    }
}

/// Runs the server until it has nothing more to do; false when it disconnected.
fn step<D: Device>(server: &mut Server<D>) -> bool {
    for _ in 0..10_000 {
        match server.handle_request().expect("handle_request") {
            Event::Idle => return true,
            Event::Processed(_) | Event::Connected => {}
            Event::Disconnected | Event::Finished => return false,
        }
    }
    panic!("the server never went idle");
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let (ours, theirs) = UnixStream::pair().unwrap();
    let limits =
        ServerLimits { max_msg_fds: 4, max_data_xfer_size: MAX_XFER, max_dma_maps: 8, ..ServerLimits::default() };
    let ioefd = Arc::new(common::eventfd());
    let mut server =
        Server::with_handles(description(), limits, |_, _| FuzzDev { ioefd, mig: Mutex::new((MigState::Running, 0)) })
            .unwrap();
    server.set_endpoint(vfio_user_server::Endpoint::Stream(theirs));
    assert!(step(&mut server));
    let (_tx, rx) = Connection::new(ours.try_clone().unwrap()).split();
    let mut s = Session { rx, expect: VecDeque::new(), strict: true, closed: false };
    let mut next_id: u16 = 0;
    let max_size = HEADER_SIZE + 16 + MAX_XFER as usize;

    for i in 0..=MAX_MSGS {
        if i > 0 && inp.is_empty() {
            break;
        }
        let kind = inp.u8();
        next_id = next_id.wrapping_add(1);
        let (bytes, fds) = if i == 0 && kind % 8 != 0 {
            // The canned VERSION.
            let p = build(&mut inp, 1, 0);
            let h = Header::command(next_id, Command::Version, p.len());
            ([h.as_slice(), &p].concat(), Vec::new())
        } else if i > 0 && kind % 4 != 0 {
            let cmd = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 9, 10][usize::from(kind / 4) % 18];
            let fds = fds_for(inp.u8());
            let p = build(&mut inp, cmd, fds.len());
            let mut h = Header::command(next_id, Command::try_from(cmd).unwrap(), p.len());
            if kind & 0x80 != 0 && kind & 0x40 != 0 {
                h.flags |= FLAGS_NO_REPLY;
            }
            ([h.as_slice(), &p].concat(), fds)
        } else {
            // Raw: fuzzed header fields and payload.
            let command = if i == 0 && kind & 0x10 == 0 { 1 } else { u16::from(inp.u8() % 20) };
            let flags = match inp.u8() {
                f @ 0..=0xef => u32::from(f & FLAGS_NO_REPLY as u8),
                f => u32::from(f & 0x3f),
            };
            let len = usize::from(inp.u16()) % (MAX_RAW_PAYLOAD + 1);
            let payload = inp.bytes(len).to_vec();
            let msg_size = if inp.u8() % 8 == 0 { inp.u32() } else { (HEADER_SIZE + payload.len()) as u32 };
            let error = if flags & 0x20 != 0 { inp.u32() } else { 0 };
            let h = Header { msg_id: next_id, command, msg_size, flags, error };
            let fds = fds_for(inp.u8());
            ([h.as_slice(), &payload].concat(), fds)
        };
        let h: Header = read_at(&bytes, 0).unwrap();
        let size = h.msg_size as usize;
        let complete = size == bytes.len();
        let expect_close = !(HEADER_SIZE..=max_size).contains(&size)
            || (complete && h.msg_type() != Some(vfio_user_proto::MsgType::Command));
        if expect_close {
        } else if !complete {
            s.strict = false;
        } else if !h.no_reply() {
            s.expect.push_back((h.msg_id, h.command));
        }
        let sent = send_raw(&ours, &bytes, &fds);
        drop(fds);
        let alive = step(&mut server);
        s.drain();
        if !alive || !sent || s.closed {
            break;
        }
        if s.strict {
            assert!(s.expect.is_empty(), "commands left unanswered: {:?}", s.expect);
            if expect_close {
                // The server must have hung up.
                panic!("framing error {h:?} did not close the connection");
            }
        } else {
            break;
        }
    }
    drop(server);
    s.drain();
});
