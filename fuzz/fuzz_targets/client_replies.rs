// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The client against a hostile server. `Client::from_fd` runs over a socket pair with 5 ms
//! timeouts; a fake server thread answers every request with what the input says, and the
//! main thread runs a fixed script of client calls (device and region info for every region,
//! IRQ info, IO fds, region read / write / posted write, DMA map / unmap / unmap with bitmap
//! / unmap all, SET_IRQS, reset, DEVICE_FEATURE, migration and DMA-logging calls, mmapping a
//! region, migration data).
//!
//! Input: a config byte (bit 0: twin socket; bit 1: the client serves DMA from guest
//! memory, so large DMA_WRITEs are received straight into it), then for each request the
//! server reads one mode byte and its fields: a plausible reply (fds included) left alone
//! or mutated (a byte flipped, truncated, extended, a header field changed), an error reply
//! with a fuzzed errno (sometimes carrying a payload or fds), a plausible reply sent twice,
//! IRQ counts beyond the PCI limits, a reply made of fuzzed header fields and payload with 0–3 fds, or
//! (once) no reply at all; optionally preceded by a server-to-client DMA_READ/DMA_WRITE (a
//! DMA_WRITE of up to 64 KiB). When the input is used up the server hangs up.
//!
//! Checked: no panic, and every call returns (the harness is bounded by the timeouts).

#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use common::{eventfd, fds_for, memfd, Input};
use libfuzzer_sys::fuzz_target;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use vfio_user_client::{Client, Config, DmaProt, IrqAction, IrqSetData, MigState};
use vfio_user_proto::connection::Connection;
use vfio_user_proto::request::VersionWire;
use vfio_user_proto::version::TwinSocket;
use vfio_user_proto::wire::*;
use vfio_user_proto::{
    build_region_info, decode_request, Capabilities, Command, DecodeLimits, FeatureRequest, Header, Message, RegionCap,
    Request, HEADER_SIZE,
};
use vm_memory::{ByteValued, GuestAddress, GuestMemoryMmap};

fn send_raw(sock: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> bool {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut off = 0;
    while off < bytes.len() {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if off == 0 && !fds.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        }
        match sendmsg(sock, &[io::IoSlice::new(&bytes[off..])], &mut control, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
        {
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// A reply a correct server could send to `m`, with its fds. `inp` picks the variable parts.
fn plausible(inp: &mut Input, m: &Message, keep: &mut Vec<UnixStream>) -> (Vec<u8>, Vec<OwnedFd>) {
    let limits = DecodeLimits { max_data_xfer_size: 1 << 20, max_msg_fds: 253 };
    let mut p = Vec::new();
    let mut fds = Vec::new();
    let Ok(req) = decode_request(&m.header, &m.payload, m.fds.len(), &limits) else {
        return (p, fds);
    };
    match req {
        Request::Version(_) => {
            let sel = inp.u8();
            let mut caps = Capabilities::default();
            if sel & 1 != 0 {
                caps.max_msg_fds = u32::from(inp.u8() % 20);
                caps.max_data_xfer_size = [0, 1, 64, 4096, 1 << 20, u32::MAX][usize::from(inp.u8() % 6)];
                caps.pgsizes = [4096, 0x1000 | 0x20_0000, 0, 512, 1 << 40][usize::from(inp.u8() % 5)];
                caps.max_dma_maps = u32::from(inp.u8() % 4);
                caps.write_multiple = sel & 2 != 0;
            }
            if sel & 4 != 0 {
                caps.twin_socket = Some(TwinSocket { supported: true, fd_index: Some(u32::from(sel >> 6)) });
                if sel & 8 != 0 {
                    let (a, b) = UnixStream::pair().unwrap();
                    keep.push(a);
                    fds.push(OwnedFd::from(b));
                } else if sel & 16 != 0 {
                    fds.push(memfd(0x1000));
                }
            }
            let minor = if sel & 32 != 0 { u16::from(inp.u8()) } else { 2 };
            p.extend_from_slice(VersionWire { major: 0, minor }.as_slice());
            p.extend_from_slice(&caps.to_json()); // NUL included
        }
        Request::DeviceGetInfo(_) => {
            let sel = inp.u8();
            let num_regions = if sel & 0x80 != 0 { inp.u32() } else { 9 + u32::from(sel % 4) };
            let num_irqs = if sel & 0x40 != 0 { inp.u32() } else { 5 };
            let flags = DEVICE_FLAGS_PCI | if sel & 0x20 == 0 { DEVICE_FLAGS_RESET } else { 0 };
            p.extend_from_slice(DeviceInfo { argsz: 16, flags, num_regions, num_irqs }.as_slice());
        }
        Request::DeviceGetRegionInfo(r) => {
            let sel = inp.u8();
            let size = if sel & 1 != 0 { inp.u64() } else { 0x1000 << (sel >> 5) };
            let mut flags = REGION_FLAG_READ | REGION_FLAG_WRITE;
            let mut caps = Vec::new();
            if sel & 2 != 0 {
                flags |= REGION_FLAG_MMAP;
                fds.push(memfd(0x4000));
            }
            if sel & 4 != 0 {
                let n = inp.u8() % 4;
                let areas =
                    (0..n).map(|_| SparseArea { offset: u64::from(inp.u16()) << 8, size: u64::from(inp.u16()) << 8 });
                caps.push(RegionCap::SparseMmap(areas.collect()));
            }
            if sel & 8 != 0 {
                caps.push(RegionCap::Type(RegionTypeCap { type_: inp.u32(), subtype: inp.u32() }));
            }
            if sel & 16 != 0 {
                caps.push(RegionCap::Unknown { id: inp.u16(), version: 1 });
            }
            let info =
                RegionInfo { flags, index: r.index, size, offset: u64::from(inp.u8()) << 12, ..Default::default() };
            p = build_region_info(info, &caps, r.argsz);
        }
        Request::DeviceGetRegionIoFds(r) => {
            let n = u32::from(inp.u8() % 4);
            let shadow = inp.u8() & 1 != 0;
            let esize = if shadow { 48 } else { 40 };
            p.extend_from_slice(RegionIoFds { argsz: 16 + esize * n, flags: 0, index: r.index, count: n }.as_slice());
            if r.argsz >= 16 + esize * n {
                for i in 0..n {
                    let offset = u64::from(inp.u16());
                    let size = [0, 1, 2, 4, 8, 3][usize::from(inp.u8() % 6)];
                    if shadow {
                        let e = IoFdEntryShadow { offset, size, fd_index: i, ..Default::default() };
                        p.extend_from_slice(e.as_slice());
                    } else {
                        let e = IoFdEntry {
                            offset,
                            size,
                            fd_index: i,
                            flags: u32::from(inp.u8() % 4),
                            ..Default::default()
                        };
                        p.extend_from_slice(e.as_slice());
                    }
                    fds.push(eventfd());
                }
            }
        }
        Request::DeviceGetIrqInfo(r) => {
            // Mostly sane; from 0xf0 an absurd count the client must refuse (PCI limits).
            let count = match inp.u8() {
                c @ 0xf0.. => [u32::MAX, 2049, 33, 2, 1 << 20, 2048, 32, 1][usize::from(c % 8)],
                c => u32::from(c % 5),
            };
            let info = IrqInfo { argsz: 16, flags: IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE, index: r.index, count };
            p.extend_from_slice(info.as_slice());
        }
        Request::DmaUnmap(r) => {
            let (unmap, bitmap) = r.to_wire();
            p.extend_from_slice(unmap.as_slice());
            if let Some(b) = bitmap {
                p.extend_from_slice(b.as_slice());
                p.resize(40 + b.size.min(4096) as usize, 0xff);
            }
        }
        Request::RegionRead(a) => {
            p.extend_from_slice(a.as_slice());
            p.resize(16 + a.count as usize, 0x5a);
        }
        Request::RegionWrite(a, _) => p.extend_from_slice(a.as_slice()),
        Request::RegionWriteMulti(e) => p.extend_from_slice(WriteMulti { wr_cnt: e.len() as u64 }.as_slice()),
        Request::DeviceFeature(f, feat) => {
            p.extend_from_slice(f.as_slice());
            match feat {
                FeatureRequest::MigrationGet => {
                    p.extend_from_slice(FeatureMigration { flags: u64::from(inp.u8() % 8) }.as_slice())
                }
                FeatureRequest::MigStateGet => p.extend_from_slice(
                    FeatureMigState { device_state: u32::from(inp.u8() % 12), data_fd: 0 }.as_slice(),
                ),
                FeatureRequest::DmaLoggingReport(r) => {
                    p.extend_from_slice(r.as_slice());
                    let words = r.length.div_ceil(r.page_size).div_ceil(64).min(512);
                    p.resize(p.len() + 8 * words as usize, 0x11);
                }
                _ => {}
            }
        }
        Request::MigDataRead(m) => {
            let size = m.size.min(u32::from(inp.u8()));
            p.extend_from_slice(MigData { argsz: 8 + size, size }.as_slice());
            p.resize(8 + size as usize, 0x33);
        }
        _ => {}
    }
    (p, fds)
}

fn fake_server(sock: UnixStream, data: Vec<u8>) {
    let mut inp = Input::new(&data);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    let mut conn = Connection::new(sock.try_clone().unwrap());
    let mut keep = Vec::new();
    let mut silent_once = false;
    let mut dma_id: u16 = 0x8000;
    loop {
        // One recvmsg at a time, each bounded by the socket's receive timeout.
        let m = match conn.receiver.take_buffered() {
            Ok(Some(m)) => m,
            Ok(None) => match conn.receiver.fill_timed() {
                Ok(()) | Err(vfio_user_proto::FrameError::WouldBlock) => continue,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if !m.header.is_command() || m.header.no_reply() {
            continue;
        }
        if inp.is_empty() {
            return;
        }
        let mode = inp.u8();
        if mode & 0x80 != 0 {
            // A server-initiated DMA request first.
            dma_id = dma_id.wrapping_add(1);
            let cmd = if mode & 0x40 != 0 { Command::DmaWrite } else { Command::DmaRead };
            // Large DMA_WRITEs (up to 64 KiB) take the client's zero-copy path when it has
            // guest memory.
            let count = match cmd == Command::DmaWrite && mode & 0x20 != 0 {
                true => u64::from(inp.u16()),
                false => u64::from(inp.u8()),
            };
            let mut p = DmaAccess { addr: u64::from(inp.u16()) << 8, count }.as_slice().to_vec();
            if cmd == Command::DmaWrite {
                p.resize(16 + count as usize, 0x77);
            }
            let h = Header::command(dma_id, cmd, p.len());
            send_raw(&sock, &[h.as_slice(), &p].concat(), &[]);
        }
        let (header, payload, fds) = match mode % 8 {
            4 => {
                let mut h = m.header.error_reply(0);
                h.error = if mode & 8 != 0 { inp.u32() } else { u32::from(inp.u8()) };
                // An error reply carrying a payload (and fds): a violation.
                let payload = match mode & 16 != 0 {
                    true => {
                        let n = usize::from(inp.u8());
                        inp.bytes(n).to_vec()
                    }
                    false => Vec::new(),
                };
                let fds = if mode & 32 != 0 { fds_for(inp.u8()) } else { Vec::new() };
                (h, payload, fds)
            }
            5 => {
                let mut h = m.header.reply(0);
                if mode & 8 != 0 {
                    h.msg_id = inp.u16();
                }
                if mode & 16 != 0 {
                    h.command = u16::from(inp.u8() % 20);
                }
                h.flags = u32::from(inp.u8() & 0x3f);
                h.error = u32::from(inp.u8());
                let len = usize::from(inp.u16() % 1024);
                let payload = inp.bytes(len).to_vec();
                h.msg_size = if mode & 32 != 0 { inp.u32() } else { (HEADER_SIZE + payload.len()) as u32 };
                (h, payload, fds_for(inp.u8()))
            }
            6 if !silent_once => {
                silent_once = true;
                continue;
            }
            _ => {
                let (mut payload, mut fds) = plausible(&mut inp, &m, &mut keep);
                let mut h = m.header.reply(payload.len());
                match (mode >> 3) & 7 {
                    4 if !payload.is_empty() => {
                        let at = usize::from(inp.u16()) % payload.len();
                        payload[at] ^= inp.u8() | 1;
                    }
                    5 => payload.truncate(usize::from(inp.u16()) % (payload.len() + 1)),
                    6 => {
                        let n = usize::from(inp.u8());
                        let tail = inp.bytes(n).to_vec();
                        payload.extend_from_slice(&tail);
                    }
                    7 => match inp.u8() % 5 {
                        0 => h.msg_id ^= inp.u16() | 1,
                        1 => h.command = u16::from(inp.u8() % 20),
                        2 => h.flags = u32::from(inp.u8() & 0x3f),
                        3 => h.error = inp.u32(),
                        _ => fds.extend(fds_for(inp.u8())),
                    },
                    _ => {}
                }
                if (mode >> 3) & 7 != 7 || h.msg_size as usize != HEADER_SIZE + payload.len() {
                    h.msg_size = (HEADER_SIZE + payload.len()) as u32;
                }
                (h, payload, fds)
            }
        };
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        let mut bytes = [header.as_slice(), &payload].concat();
        // Mode 3: the reply sent twice, in one write (`mode & 8`) or in two: a violation
        // however it is read.
        let dup = mode % 8 == 3;
        if dup && mode & 8 != 0 {
            bytes.extend_from_slice(&bytes.clone());
        }
        if !send_raw(&sock, &bytes, &borrowed) {
            return;
        }
        if dup && mode & 8 == 0 && !send_raw(&sock, &bytes, &[]) {
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let twin = data[0] & 1 != 0;
    let (a, b) = UnixStream::pair().unwrap();
    let server_input = data[1..].to_vec();
    let server = std::thread::spawn(move || fake_server(b, server_input));
    let mut config = Config::default()
        .timeout(Duration::from_millis(5))
        .reset_timeout(Duration::from_millis(5))
        .connect_timeout(Duration::from_millis(5))
        .twin_socket(twin)
        .max_msg_fds(4);
    if data[0] & 2 != 0 {
        // Guest memory behind the script's DMA mappings, in two regions (a DMA spanning
        // both is served from two slices).
        let ranges = [(GuestAddress(0x10000), 0x1000), (GuestAddress(0x11000), 0x11000)];
        let memory = Arc::new(GuestMemoryMmap::<()>::from_ranges(&ranges).unwrap());
        config = config.dma_memory(Arc::new(memory));
    }
    if let Ok(c) = Client::from_fd(OwnedFd::from(a), config) {
        script(&c);
        drop(c);
    }
    server.join().expect("fake server thread");
});

fn script(c: &Client) {
    let n = c.device_info().num_regions.min(12);
    for i in 0..n {
        let _ = c.region_info(i);
    }
    for i in 0..5 {
        let _ = c.irq_info(i);
    }
    let _ = c.region_io_fds(0);
    let mut buf = [0u8; 16];
    let _ = c.region_read(0, 0, &mut buf);
    let _ = c.region_read(7, 0, &mut buf[..4]);
    let _ = c.region_write(0, 0, &[1, 2, 3, 4]);
    let _ = c.region_write_posted(0, 8, &[5, 6, 7, 8]);
    let _ = c.dma_map(0x10000, 0x1000, DmaProt::READ_WRITE);
    let ram = memfd(0x2000);
    let _ = c.dma_map_fd(0x20000, 0x2000, ram.as_fd(), 0, DmaProt::READ_WRITE);
    let efd = eventfd();
    let fds = [Some(efd.as_fd()), None];
    let _ = c.set_irqs(2, IrqAction::Trigger, 0, IrqSetData::Eventfds(&fds));
    let _ = c.set_irqs(0, IrqAction::Unmask, 0, IrqSetData::Bool(&[true]));
    let _ = c.dma_unmap(0x10000, 0x1000);
    let _ = c.device_feature_probe(1, true, false);
    let _ = c.migration_flags();
    let _ = c.migration_state();
    let _ = c.start_dma_logging(4096, &[(0x20000, 0x2000)]);
    let _ = c.report_dma_logging(0x20000, 0x2000, 4096);
    let _ = c.dma_unmap_with_dirty_bitmap(0x20000, 0x2000, 4096);
    let _ = c.stop_dma_logging();
    let _ = c.dma_unmap_all();
    let _ = c.set_migration_state(MigState::Stop);
    let mut mig = [0u8; 64];
    let _ = c.read_migration_data(&mut mig);
    let _ = c.write_migration_data(&[1; 16]);
    if let Ok(m) = c.map_region(0) {
        drop(m);
    }
    let _ = c.reset();
    let _ = c.disable_irqs(2);
    let _ = c.region_read(0, 0, &mut buf);
}
