// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device author's side: `DeviceMut` behind a `Mutex`, device-owned configuration
//! ranges, optional features switched off, and the event-loop style `handle_request`.

mod common;

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::region_caps::{parse_region_caps, RegionCap};
use vfio_user_proto::wire::*;
use vfio_user_server::{
    Bar, DeviceDescription, DeviceMut, DeviceRegion, Endpoint, Event, IoEventFd, Server, ServerLimits,
};
use vm_memory::ByteValued;

/// A device with a vendor capability it serves itself.
#[derive(Default)]
struct Owned {
    cfg_writes: Vec<(u64, Vec<u8>)>,
    efds: Vec<Arc<std::os::fd::OwnedFd>>,
}

impl DeviceMut for Owned {
    fn config_read(&mut self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        for (i, b) in data.iter_mut().enumerate() {
            *b = (offset as u8).wrapping_add(i as u8) | 0x80;
        }
        Ok(())
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.cfg_writes.push((offset, data.to_vec()));
        Ok(())
    }

    fn region_io_fds(&mut self, _region: u32) -> Vec<IoEventFd> {
        self.efds
            .iter()
            .enumerate()
            .map(|(i, fd)| IoEventFd { offset: i as u64 * 4, size: 4, datamatch: None, fd: fd.clone() })
            .collect()
    }
}

fn owned_desc() -> DeviceDescription {
    DeviceDescription::builder(0x1111, 0x2222)
        .bar(0, Bar::memory64(0x2_0000_0000))
        .region(12, DeviceRegion::new(0x2000, 1, 2).read_only().mmap(Arc::new(memfd(0x2000)), 0))
        .vendor_capability(&[0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 0])
        .config_callback(0x48..0x50)
        .reset_supported(false)
        .build()
        .unwrap()
}

fn serve(desc: DeviceDescription, dev: Owned) -> (Client, std::thread::JoinHandle<()>, Arc<Mutex<Owned>>) {
    let (a, b) = UnixStream::pair().unwrap();
    let dev = Arc::new(Mutex::new(dev));
    let mut server = Server::new(desc, dev.clone()).unwrap();
    server.set_endpoint(Endpoint::Stream(b));
    let t = std::thread::spawn(move || server.run().unwrap());
    let mut c = Client::new(a);
    c.version_ok();
    (c, t, dev)
}

#[test]
fn device_mut_owned_config_range_and_disabled_features() {
    let (mut c, t, dev) = serve(owned_desc(), Owned::default());
    // The vendor capability sits at 0x40: ID 9, length 11, then its data; bytes
    // 0x48..0x50 belong to the device.
    assert_eq!(c.read32(7, 0x34) & 0xff, 0x40);
    assert_eq!(c.read(7, 0x40, 8).unwrap(), vec![0x09, 0x00, 11, 0xaa, 0xbb, 0xcc, 0xdd, 0x00]);
    assert_eq!(c.read(7, 0x46, 4).unwrap(), vec![0xdd, 0, 0xc8, 0xc9], "split between emulation and device");
    c.write(7, 0x4e, &[1, 2, 3, 4]).unwrap();
    assert_eq!(dev.lock().unwrap().cfg_writes, vec![(0x4e, vec![1, 2])], "the device got its part only");
    assert_eq!(c.read(7, 0x50, 2).unwrap(), vec![0, 0], "the emulated part ignored the write (read-only)");
    // No RESET flag, and DEVICE_RESET is refused.
    let m = c.call(Command::DeviceGetInfo, DeviceInfo { argsz: 16, ..Default::default() }.as_slice(), &[]).unwrap();
    let i: DeviceInfo = read_at(&m.payload, 0).unwrap();
    assert_eq!((i.flags, i.num_regions), (DEVICE_FLAGS_PCI, 13));
    assert_eq!(c.errno(Command::DeviceReset, &[], &[]), libc::ENOTSUP);
    // A 64-bit BAR above 4 GiB sizes through its upper half.
    c.write32(7, 0x10, u32::MAX);
    c.write32(7, 0x14, u32::MAX);
    assert_eq!((c.read32(7, 0x10), c.read32(7, 0x14)), (0x4, 0xffff_fffe));
    // A read-only, mappable device region with a TYPE capability: the fd comes with the
    // full answer only.
    let req = RegionInfo { argsz: 32, index: 12, ..Default::default() };
    let m = c.call(Command::DeviceGetRegionInfo, req.as_slice(), &[]).unwrap();
    let info: RegionInfo = read_at(&m.payload, 0).unwrap();
    assert_eq!((info.flags, info.argsz, m.fds.len()), (REGION_FLAG_READ | REGION_FLAG_MMAP, 48, 0));
    let req = RegionInfo { argsz: 48, index: 12, ..Default::default() };
    let m = c.call(Command::DeviceGetRegionInfo, req.as_slice(), &[]).unwrap();
    assert_eq!(m.fds.len(), 1);
    assert_eq!(parse_region_caps(&m.payload).unwrap(), vec![RegionCap::Type(RegionTypeCap { type_: 1, subtype: 2 })]);
    assert_eq!(c.write(12, 0, &[1]).unwrap_err(), libc::EINVAL, "read-only region");
    assert_eq!(c.read(12, 0, 4).unwrap_err(), libc::EINVAL, "the device has no region_read: its default error");
    for idx in 9..12 {
        let req = RegionInfo { argsz: 32, index: idx, ..Default::default() };
        let m = c.call(Command::DeviceGetRegionInfo, req.as_slice(), &[]).unwrap();
        assert_eq!(read_at::<RegionInfo>(&m.payload, 0).unwrap().size, 0, "gap regions are empty");
    }
    c.assert_alive();
    drop(c);
    t.join().unwrap();
}

#[test]
fn io_fds_respect_the_clients_fd_limit() {
    let dev = Owned { efds: (0..3).map(|_| Arc::new(eventfd())).collect(), ..Default::default() };
    let (a, b) = UnixStream::pair().unwrap();
    let mut server = Server::new(owned_desc(), Mutex::new(dev)).unwrap();
    server.set_endpoint(Endpoint::Stream(b));
    let t = std::thread::spawn(move || server.run().unwrap());
    let mut c = Client::new(a);
    c.version(r#"{"capabilities":{"max_msg_fds":2}}"#).unwrap();
    let req = RegionIoFds { argsz: 1024, flags: 0, index: 0, count: 0 };
    assert_eq!(c.errno(Command::DeviceGetRegionIoFds, req.as_slice(), &[]), libc::E2BIG);
    c.assert_alive();
    drop(c);
    t.join().unwrap();
}

#[test]
fn event_loop_mode_with_dma_inside_a_handler() {
    let (a, b) = UnixStream::pair().unwrap();
    let dev = Arc::new(TestDev::new());
    let d2 = dev.clone();
    let mut server = Server::with_handles(description(), ServerLimits::default(), |_, dma| {
        *d2.dma.lock().unwrap() = Some(dma);
        d2
    })
    .unwrap();
    server.set_endpoint(Endpoint::Stream(b));
    assert_eq!(server.handle_request().unwrap(), Event::Connected);
    // The "VMM" thread drives the server; the test thread is the client.
    let t = std::thread::spawn(move || loop {
        match server.handle_request().unwrap() {
            Event::Disconnected | Event::Finished => return,
            _ => {}
        }
        let fd = server.socket_fd().expect("a connected client");
        let mut p = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        rustix::event::poll(&mut p, None).unwrap();
    });
    let mut c = Client::new(a);
    c.version_ok();
    c.dma_map(0x10000, 0x1000, None).unwrap();
    let rd = c.send(Command::RegionRead, RegionAccess { offset: 4, region: 9, count: 4 }.as_slice(), &[]);
    let m = c.recv();
    assert_eq!(m.header.command, Command::DmaRead as u16);
    let acc: DmaAccess = read_at(&m.payload, 0).unwrap();
    c.conn.send(m.header.reply(0), &[acc.as_slice(), b"loop"], &[]).unwrap();
    assert_eq!(&c.reply_to(rd, Command::RegionRead).payload[16..], b"loop");
    drop(c);
    t.join().unwrap();
}

#[test]
fn disconnect_wakes_a_device_thread_waiting_for_dma() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    let dma = h.dma.clone();
    let worker = std::thread::spawn(move || {
        let mut b = [0u8; 4];
        dma.read(0x10000, &mut b)
    });
    let m = h.client.recv();
    assert_eq!(m.header.command, Command::DmaRead as u16);
    // Hang up instead of answering.
    h.client.conn.sender.shutdown().unwrap();
    let err = worker.join().unwrap().unwrap_err();
    assert_eq!(err.errno(), libc::ENOTCONN);
}
