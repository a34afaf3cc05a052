// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The server's `DmaSpace` over real sockets: DMA_MAP flags to mappings, device access
//! through the `DmaHandle`, message DMA on the main and the twin socket, DMA_UNMAP while a
//! device's DMA request waits for the client, and DEVICE_FEATURE DMA logging.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::connection::{Connection, Message};
use vfio_user_proto::wire::*;
use vfio_user_server::vfio_user_dma::vm_memory::{Bytes, GuestAddress};
use vfio_user_server::vfio_user_dma::{DmaProt, RegionKind};
use vfio_user_server::ServerLimits;
use vm_memory::ByteValued;

const RW: u32 = DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE;
const PAGE: u64 = 4096;

fn pread(fd: &OwnedFd, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    assert_eq!(rustix::io::pread(fd, &mut b, off).unwrap(), len);
    b
}

#[test]
fn memfd_mapping_is_written_by_the_device() {
    let mut h = spawn();
    let mem = memfd(4 * PAGE);
    h.client.dma_map(0x10_0000, 4 * PAGE, Some(&mem)).unwrap();
    let r = h.dma.region_at(0x10_0000).unwrap();
    assert_eq!((r.iova, r.size, r.prot, r.kind), (0x10_0000, 4 * PAGE, DmaProt::READ_WRITE, RegionKind::Mmap));
    // Copy API, typed objects, zero-copy and the vm-memory view all reach the memfd.
    h.dma.write(0x10_0ffe, b"abcd").unwrap();
    h.dma.write_obj(0x10_2000, &0x1122_3344_5566_7788u64).unwrap();
    {
        let g = h.dma.translate(0x10_3000, 8, true).unwrap();
        g.slices().next().unwrap().copy_from(b"zerocopy");
    }
    h.dma.memory().write_obj(0xabcdu16, GuestAddress(0x10_3010)).unwrap();
    assert_eq!(pread(&mem, 0xffe, 4), b"abcd");
    assert_eq!(pread(&mem, 0x2000, 8), 0x1122_3344_5566_7788u64.to_ne_bytes());
    assert_eq!(pread(&mem, 0x3000, 8), b"zerocopy");
    assert_eq!(pread(&mem, 0x3010, 2), 0xabcdu16.to_ne_bytes());
    // And the client's writes are seen by the device.
    rustix::io::pwrite(&mem, b"client", 0x100).unwrap();
    assert_eq!(h.dma.read_obj::<[u8; 6]>(0x10_0100).unwrap(), *b"client");
    // Beyond the mapping: EFAULT, nothing written.
    assert_eq!(h.dma.write(0x10_3ffe, b"xyz").unwrap_err().errno(), libc::EFAULT);
    assert_eq!(pread(&mem, 0x3ffe, 2), [0, 0]);
    h.client.dma_unmap(0, 0x10_0000, 4 * PAGE).unwrap();
    assert_eq!(h.dma.read_obj::<u8>(0x10_0000).unwrap_err().errno(), libc::EFAULT);
    assert!(h.dma.regions().is_empty());
}

#[test]
fn dma_map_flags_become_permissions_and_kinds() {
    let mut h = spawn();
    let ro = memfd(PAGE);
    h.client.dma_map_flags(0x1_0000, PAGE, DMA_MAP_FLAG_READ, Some(&ro)).unwrap();
    // A device write to read-only memory: EACCES, to device code and, through a region
    // write handler, to the client.
    assert_eq!(h.dma.write(0x1_0000, b"x").unwrap_err().errno(), libc::EACCES);
    assert_eq!(h.client.write(9, 0, b"x").unwrap_err(), libc::EACCES);
    rustix::io::pwrite(&ro, b"rom", 0).unwrap();
    assert_eq!(h.dma.read_obj::<[u8; 3]>(0x1_0000).unwrap(), *b"rom");
    // Write-only memory cannot be read.
    let wo = memfd(PAGE);
    h.client.dma_map_flags(0x2_0000, PAGE, DMA_MAP_FLAG_WRITE, Some(&wo)).unwrap();
    assert_eq!(h.dma.read_obj::<u8>(0x2_0000).unwrap_err().errno(), libc::EACCES);
    h.dma.write(0x2_0000, b"wo").unwrap();
    assert_eq!(pread(&wo, 0, 2), b"wo");
    // Explicit MMAP bit: mmapped.
    let m = memfd(PAGE);
    h.client.dma_map_flags(0x3_0000, PAGE, RW | DMA_MAP_FLAG_MMAP, Some(&m)).unwrap();
    assert_eq!(h.dma.region_at(0x3_0000).unwrap().kind, RegionKind::Mmap);
    // FILE_IO: pread/pwrite on the fd, no zero-copy.
    let f = memfd(2 * PAGE);
    h.client.dma_map_flags(0x4_0000, 2 * PAGE, RW | DMA_MAP_FLAG_FILE_IO, Some(&f)).unwrap();
    assert_eq!(h.dma.region_at(0x4_0000).unwrap().kind, RegionKind::FileIo);
    h.dma.write(0x4_0ffc, b"fileio!!").unwrap();
    assert_eq!(pread(&f, 0xffc, 8), b"fileio!!");
    assert_eq!(h.dma.translate(0x4_0000, 8, false).unwrap_err().errno(), libc::ENOTSUP);
    // Neither READ nor WRITE; FILE_IO without fd (refused by the decoder): EINVAL.
    assert_eq!(h.client.dma_map_flags(0x5_0000, PAGE, 0, None).unwrap_err(), libc::EINVAL);
    assert_eq!(h.client.dma_map_flags(0x5_0000, PAGE, RW | DMA_MAP_FLAG_FILE_IO, None).unwrap_err(), libc::EINVAL);
    // The device saw every mapping with its kind.
    let maps: Vec<_> = h.dev.seen().into_iter().filter(|s| matches!(s, Seen::Map(..))).collect();
    assert_eq!(maps.len(), 4);
    h.client.assert_alive();
}

/// Answers one DMA_READ / DMA_WRITE from a fake guest memory at `base`.
fn serve(conn: &mut Connection, m: &Message, base: u64, mem: &mut [u8]) -> u64 {
    let a: DmaAccess = read_at(&m.payload, 0).unwrap();
    let off = (a.addr - base) as usize;
    let n = a.count as usize;
    match m.header.cmd().unwrap() {
        Command::DmaRead => conn.send(m.header.reply(0), &[a.as_slice(), &mem[off..off + n]], &[]).unwrap(),
        Command::DmaWrite => {
            mem[off..off + n].copy_from_slice(&m.payload[16..]);
            conn.send(m.header.reply(0), &[a.as_slice()], &[]).unwrap()
        }
        c => panic!("unexpected {c}"),
    }
    a.count
}

#[test]
fn message_dma_on_the_twin_socket_is_split() {
    let mut h = spawn_with(ServerLimits::default());
    let json = r#"{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":4096,"twin_socket":{"supported":true}}}"#;
    let mut m = h.client.version(json).unwrap();
    let mut twin = Connection::new(UnixStream::from(m.fds.remove(0)));
    h.client.dma_map(0x10000, 0x10000, None).unwrap();
    assert_eq!(h.dma.region_at(0x10000).unwrap().kind, RegionKind::Message);
    let dma = h.dma.clone();
    let worker = std::thread::spawn(move || {
        let data: Vec<u8> = (0..10000u32).map(|i| (i * 7) as u8).collect();
        dma.write(0x10000, &data).unwrap();
        let mut back = vec![0u8; 10000];
        dma.read(0x10000, &mut back).unwrap();
        assert_eq!(back, data);
    });
    let mut mem = vec![0u8; 0x10000];
    let mut sizes = Vec::new();
    for _ in 0..6 {
        let m = twin.recv().unwrap();
        sizes.push(serve(&mut twin, &m, 0x10000, &mut mem));
    }
    worker.join().unwrap();
    assert_eq!(sizes, vec![4096, 4096, 1808, 4096, 4096, 1808]);
    h.client.assert_alive();
}

/// The deadlock the `DmaSpace` integration must avoid: without a twin socket, only the
/// request-handling thread reads the reply to a device thread's DMA_READ. If the client
/// unmaps the region while that reply is still owed, the unmap (on that same thread) must
/// not wait for the device's access: the device's access holds no reference to the region
/// while it waits for the client. The DMA_UNMAP reply comes at once (not after the 5 s
/// unmap timeout with EBUSY), and the device's next chunk fails with EFAULT.
#[test]
fn unmap_while_a_device_read_waits_for_the_client() {
    let mut h = spawn_with(ServerLimits::default());
    h.client.version(r#"{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":4096}}"#).unwrap();
    h.client.dma_map(0x10000, 0x2000, None).unwrap();
    let dma = h.dma.clone();
    let worker = std::thread::spawn(move || {
        let mut b = vec![0u8; 0x2000];
        dma.read(0x10000, &mut b).map(|()| b).map_err(|e| e.errno())
    });
    let req = h.client.recv();
    assert_eq!(req.header.command, Command::DmaRead as u16);
    let t = Instant::now();
    let u = DmaUnmap { argsz: 24, flags: 0, addr: 0x10000, size: 0x2000 };
    let id = h.client.send(Command::DmaUnmap, u.as_slice(), &[]);
    let r = h.client.reply_to(id, Command::DmaUnmap);
    assert!(!r.header.is_error(), "errno {}", r.header.error);
    assert!(t.elapsed() < Duration::from_secs(2), "DMA_UNMAP waited {:?}", t.elapsed());
    // The owed reply still reaches the device; its second chunk finds the region gone.
    let mut mem = vec![0x5a; 0x2000];
    serve(&mut h.client.conn, &req, 0x10000, &mut mem);
    assert_eq!(worker.join().unwrap().unwrap_err(), libc::EFAULT);
    assert_eq!(h.dev.seen().iter().filter(|s| matches!(s, Seen::Unmap(0x10000, 0x2000))).count(), 1);
    h.client.assert_alive();
}

// --- DMA logging -------------------------------------------------------------------------

fn feature(c: &mut Client, flags: u32, argsz: u32, data: &[u8]) -> Result<Message, i32> {
    c.call(Command::DeviceFeature, &[DeviceFeature { argsz, flags }.as_slice(), data].concat(), &[])
}

fn start(c: &mut Client, page_size: u64, ranges: &[(u64, u64)]) -> Result<u64, i32> {
    let mut d = DmaLoggingControl { page_size, num_ranges: ranges.len() as u32, reserved: 0 }.as_slice().to_vec();
    for &(iova, length) in ranges {
        d.extend_from_slice(DmaLoggingRange { iova, length }.as_slice());
    }
    let flags = u32::from(FEATURE_DMA_LOGGING_START) | DEVICE_FEATURE_SET;
    let m = feature(c, flags, 8 + d.len() as u32, &d)?;
    assert_eq!(m.payload.len(), 8 + d.len(), "echo");
    assert_eq!(&m.payload[24..], &d[16..], "ranges echoed");
    Ok(read_at::<DmaLoggingControl>(&m.payload, 8).unwrap().page_size)
}

fn stop(c: &mut Client) {
    feature(c, u32::from(FEATURE_DMA_LOGGING_STOP) | DEVICE_FEATURE_SET, 8, &[]).unwrap();
}

fn report(c: &mut Client, iova: u64, length: u64, page_size: u64) -> Result<Vec<u64>, i32> {
    let r = DmaLoggingReport { iova, length, page_size };
    let words = length.div_ceil(page_size).div_ceil(64) as usize;
    let flags = u32::from(FEATURE_DMA_LOGGING_REPORT) | DEVICE_FEATURE_GET;
    let m = feature(c, flags, (32 + words * 8) as u32, r.as_slice())?;
    let f: DeviceFeature = read_at(&m.payload, 0).unwrap();
    assert_eq!((f.argsz as usize, f.flags), (32 + words * 8, flags));
    assert_eq!(read_at::<DmaLoggingReport>(&m.payload, 8), Some(r));
    assert_eq!(m.payload.len(), 32 + words * 8);
    Ok(m.payload[32..].chunks_exact(8).map(|w| u64::from_ne_bytes(w.try_into().unwrap())).collect())
}

/// Two adjacent 16-page memfd mappings at 0x10_0000 and 0x11_0000, a hole, and a
/// 16-page message mapping at 0x13_0000 (never touched).
fn logging_setup() -> (Harness, OwnedFd, OwnedFd) {
    let mut h = spawn();
    let (a, b) = (memfd(16 * PAGE), memfd(16 * PAGE));
    h.client.dma_map(0x10_0000, 16 * PAGE, Some(&a)).unwrap();
    h.client.dma_map(0x11_0000, 16 * PAGE, Some(&b)).unwrap();
    h.client.dma_map(0x13_0000, 16 * PAGE, None).unwrap();
    (h, a, b)
}

#[test]
fn dma_logging_reports_device_writes_bit_exact() {
    let (mut h, _a, _b) = logging_setup();
    let c = &mut h.client;
    // PROBE: START and STOP are SET features, REPORT a GET one.
    let probe = |f: u16, op: u32| u32::from(f) | DEVICE_FEATURE_PROBE | op;
    for (flags, ok) in [
        (probe(FEATURE_DMA_LOGGING_START, DEVICE_FEATURE_SET), true),
        (probe(FEATURE_DMA_LOGGING_STOP, DEVICE_FEATURE_SET), true),
        (probe(FEATURE_DMA_LOGGING_REPORT, DEVICE_FEATURE_GET), true),
        (probe(FEATURE_DMA_LOGGING_REPORT, DEVICE_FEATURE_SET), false),
        (probe(FEATURE_DMA_LOGGING_START, DEVICE_FEATURE_GET), false),
        (probe(FEATURE_MIGRATION, DEVICE_FEATURE_GET), false),
    ] {
        let r = feature(c, flags, 8, &[]);
        assert_eq!(r.is_ok(), ok, "{flags:#x}");
        match r {
            Ok(m) => assert_eq!(m.payload, DeviceFeature { argsz: 8, flags }.as_slice()),
            Err(e) => assert_eq!(e, libc::ENOTSUP),
        }
    }
    // REPORT before START: EINVAL.
    assert_eq!(report(c, 0x10_0000, PAGE, PAGE).unwrap_err(), libc::EINVAL);
    // A page size below 4 KiB is raised to 4 KiB.
    assert_eq!(start(c, 512, &[]).unwrap(), PAGE);
    assert_eq!(start(c, PAGE, &[]).unwrap_err(), libc::EBUSY, "already logging");
    // Device writes: page 0 and 15 of the first mapping, pages 0-1 of the second (one
    // write across the boundary), page 5 of the second through the vm-memory view.
    h.dma.write(0x10_0000, &[1]).unwrap();
    h.dma.write(0x10_fff0, &[2; 0x20]).unwrap();
    h.dma.write(0x11_1000, &[3]).unwrap();
    h.dma.memory().write_obj(7u32, GuestAddress(0x11_5004)).unwrap();
    h.dma.read(0x11_8000, &mut [0; 64]).unwrap(); // reads are not logged
    let c = &mut h.client;
    // Inside the first mapping, from its page 8: page 15 is bit 7.
    assert_eq!(report(c, 0x10_8000, 8 * PAGE, PAGE).unwrap(), vec![1 << 7]);
    assert_eq!(report(c, 0x10_8000, 8 * PAGE, PAGE).unwrap(), vec![0], "cleared by the report");
    // Across both mappings and the hole, 8 KiB pages: page 0 (0x10_0000), page 8
    // (0x11_0000-0x11_1fff), page 10 (0x11_4000-0x11_5fff); page 7's write was reported.
    assert_eq!(report(c, 0x10_0000, 0x4_0000, 2 * PAGE).unwrap(), vec![(1 << 0) | (1 << 8) | (1 << 10)]);
    assert_eq!(report(c, 0x10_0000, 0x4_0000, 2 * PAGE).unwrap(), vec![0]);
    // More than 64 pages, starting in unmapped space: two words, page 79 is bit 15 of
    // the second; the message mapping is clean.
    h.dma.write(0x11_f000, &[4]).unwrap();
    let c = &mut h.client;
    assert_eq!(report(c, 0x0d_0000, 0x7_0000, PAGE).unwrap(), vec![0, 1 << 15]);
    // A bitmap larger than the server's limit (256 MiB): E2BIG; larger than the reply
    // the client accepts: EINVAL.
    let huge = 1u64 << 45; // 2^33 pages: a 1 GiB bitmap
    let flags = u32::from(FEATURE_DMA_LOGGING_REPORT) | DEVICE_FEATURE_GET;
    let r = DmaLoggingReport { iova: 0, length: huge, page_size: PAGE };
    assert_eq!(feature(c, flags, u32::MAX, r.as_slice()).unwrap_err(), libc::E2BIG);
    assert_eq!(
        feature(c, flags, 32 + 8, DmaLoggingReport { length: 65 * PAGE, ..r }.as_slice()).unwrap_err(),
        libc::EINVAL
    );
    stop(c);
    assert_eq!(report(c, 0x10_0000, PAGE, PAGE).unwrap_err(), libc::EINVAL, "stopped");
    // Migration itself is a later task.
    let mig = u32::from(FEATURE_MIGRATION) | DEVICE_FEATURE_GET;
    assert_eq!(feature(c, mig, 16, &[]).unwrap_err(), libc::ENOTSUP);
    c.assert_alive();
}

#[test]
fn dma_logging_of_ranges_and_restart_after_disconnect() {
    let (mut h, _a, _b) = logging_setup();
    let c = &mut h.client;
    // Overlapping ranges: EINVAL.
    assert_eq!(start(c, PAGE, &[(0x10_0000, 0x2000), (0x10_1000, 0x1000)]).unwrap_err(), libc::EINVAL);
    // Only the second mapping's first 4 pages are logged.
    assert_eq!(start(c, PAGE, &[(0x11_0000, 4 * PAGE)]).unwrap(), PAGE);
    h.dma.write(0x10_0000, &[1]).unwrap();
    h.dma.write(0x11_3000, &[1]).unwrap();
    h.dma.write(0x11_4000, &[1]).unwrap();
    assert_eq!(report(&mut h.client, 0x10_0000, 0x2_0000, PAGE).unwrap(), vec![1 << 19]);
    // A disconnect stops logging: the next client starts afresh.
    drop(h);
    let (mut h, _a, _b) = logging_setup();
    assert_eq!(report(&mut h.client, 0x10_0000, PAGE, PAGE).unwrap_err(), libc::EINVAL);
    assert_eq!(start(&mut h.client, PAGE, &[]).unwrap(), PAGE);
}

fn unmap_with_bitmap(c: &mut Client, addr: u64, size: u64, pgsize: u64, bm_size: u64) -> Result<Message, i32> {
    let u = DmaUnmap { argsz: (40 + bm_size) as u32, flags: DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, addr, size };
    let b = DmaBitmap { pgsize, size: bm_size };
    c.call(Command::DmaUnmap, &[u.as_slice(), b.as_slice()].concat(), &[])
}

#[test]
fn unmap_with_dirty_bitmap() {
    let (mut h, _a, _b) = logging_setup();
    // Not logging: EINVAL, the mapping stays.
    assert_eq!(unmap_with_bitmap(&mut h.client, 0x10_0000, 16 * PAGE, PAGE, 2).unwrap_err(), libc::EINVAL);
    start(&mut h.client, PAGE, &[]).unwrap();
    h.dma.write(0x10_1000, &[1]).unwrap();
    h.dma.write(0x10_9fff, &[1, 1]).unwrap(); // pages 9 and 10
                                              // A bitmap size beyond the u64 rounding of the 2 bytes needed: EINVAL, mapping kept.
    assert_eq!(unmap_with_bitmap(&mut h.client, 0x10_0000, 16 * PAGE, PAGE, 9).unwrap_err(), libc::EINVAL);
    assert!(h.dma.region_at(0x10_0000).is_some());
    let m = unmap_with_bitmap(&mut h.client, 0x10_0000, 16 * PAGE, PAGE, 8).unwrap();
    let u: DmaUnmap = read_at(&m.payload, 0).unwrap();
    assert_eq!((u.addr, u.size, u.flags), (0x10_0000, 16 * PAGE, DMA_UNMAP_FLAG_GET_DIRTY_BITMAP));
    assert_eq!(read_at::<DmaBitmap>(&m.payload, 24), Some(DmaBitmap { pgsize: PAGE, size: 8 }));
    let bits = (1u64 << 1) | (1 << 9) | (1 << 10);
    assert_eq!(&m.payload[40..], &bits.to_ne_bytes()[..]);
    assert!(h.dma.region_at(0x10_0000).is_none(), "unmapped");
    assert_eq!(h.dev.seen().iter().filter(|s| matches!(s, Seen::Unmap(0x10_0000, _))).count(), 1);
    // 8 KiB pages over the second mapping, exactly the 1 byte needed.
    h.dma.write(0x11_e000, &[1]).unwrap();
    let m = unmap_with_bitmap(&mut h.client, 0x11_0000, 16 * PAGE, 2 * PAGE, 1).unwrap();
    assert_eq!(&m.payload[40..], &[1 << 7]);
    // No such mapping.
    assert_eq!(unmap_with_bitmap(&mut h.client, 0x11_0000, 16 * PAGE, PAGE, 2).unwrap_err(), libc::ENOENT);
    h.client.assert_alive();
}
