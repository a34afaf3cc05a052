// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A raw test client and a test device, shared by the integration tests.

#![allow(dead_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vfio_user_proto::command::Command;
use vfio_user_proto::connection::{Connection, Message};
use vfio_user_proto::header::{FLAGS_NO_REPLY, FLAGS_TYPE_COMMAND};
use vfio_user_proto::wire::*;
use vfio_user_proto::Header;
use vfio_user_server::vfio_user_dma::RegionKind;
use vfio_user_server::{
    Bar, Device, DeviceDescription, DeviceRegion, DmaHandle, DmaRegion, Endpoint, IoEventFd, IrqHandle, MsixConfig,
    PcieConfig, ResetKind, Server, ServerLimits, ShutdownHandle, VectorState,
};
use vm_memory::ByteValued;

pub const MSIX_VECTORS: u16 = 8;

pub fn memfd(size: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create("test", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)
        .unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).unwrap();
    fd
}

/// A memfd without the shrink seal: the server reaches it with pread/pwrite.
pub fn unsealed_memfd(size: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create("test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    fd
}

pub fn eventfd() -> OwnedFd {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK).unwrap()
}

/// Reads and resets an eventfd's counter (0 when not signalled).
pub fn efd_count(fd: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    match rustix::io::read(fd, &mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

/// What the test device saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Reset(ResetKind),
    Map(u64, u64, bool),
    Unmap(u64, u64),
    Irq(u32, u32, VectorState),
    Connected(bool),
}

pub struct TestDev {
    pub bar0: Mutex<Vec<u8>>,
    pub seen: Mutex<Vec<Seen>>,
    pub dma: Mutex<Option<DmaHandle>>,
    pub ioefd: Arc<OwnedFd>,
}

impl TestDev {
    pub fn new() -> Self {
        TestDev {
            bar0: Mutex::new(vec![0; 0x1000]),
            seen: Mutex::new(Vec::new()),
            dma: Mutex::new(None),
            ioefd: Arc::new(eventfd()),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Device for TestDev {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        match region {
            0 => {
                let m = self.bar0.lock().unwrap();
                data.copy_from_slice(&m[offset as usize..offset as usize + data.len()]);
            }
            // Region 9 reads guest memory at iova 0x10000 + offset (DMA inside a handler).
            9 => {
                let dma = self.dma.lock().unwrap().clone().unwrap();
                dma.read(0x10000 + offset, data).map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
            }
            _ => data.fill(0xa5),
        }
        Ok(())
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        match region {
            0 => {
                let mut m = self.bar0.lock().unwrap();
                m[offset as usize..offset as usize + data.len()].copy_from_slice(data);
                Ok(())
            }
            9 => {
                let dma = self.dma.lock().unwrap().clone().unwrap();
                dma.write(0x10000 + offset, data).map_err(|e| io::Error::from_raw_os_error(e.errno()))
            }
            _ => Ok(()),
        }
    }

    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        self.seen.lock().unwrap().push(Seen::Reset(kind));
        Ok(())
    }

    fn dma_map(&self, r: &DmaRegion) -> io::Result<()> {
        self.seen.lock().unwrap().push(Seen::Map(r.iova, r.size, r.kind != RegionKind::Message));
        if r.iova == 0xdead_0000 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(())
    }

    fn dma_unmap(&self, r: &DmaRegion) {
        self.seen.lock().unwrap().push(Seen::Unmap(r.iova, r.size));
    }

    fn irq_state_changed(&self, index: u32, vector: u32, state: VectorState) {
        self.seen.lock().unwrap().push(Seen::Irq(index, vector, state));
    }

    fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
        if region != 0 {
            return Vec::new();
        }
        vec![
            IoEventFd { offset: 0x100, size: 4, datamatch: None, fd: self.ioefd.clone() },
            IoEventFd { offset: 0x104, size: 4, datamatch: Some(7), fd: self.ioefd.clone() },
        ]
    }

    fn client_connected(&self, c: bool) {
        self.seen.lock().unwrap().push(Seen::Connected(c));
    }
}

pub fn description() -> DeviceDescription {
    DeviceDescription::builder(0x4e58, 0x0001)
        .subsystem(0x4e58, 0x1001)
        .class_code(0xff0000)
        .bar(0, Bar::memory32(0x1000))
        .bar(2, Bar::memory64(0x4000).mmap(Arc::new(memfd(0x4000)), 0))
        .bar(4, Bar::memory32(0x1000).prefetchable().mmap(Arc::new(memfd(0x1000)), 0))
        .rom(0x800)
        .region(9, DeviceRegion::new(0x1000, 0x8086_0000, 7))
        .intx()
        .msi(4, true)
        .msix(MsixConfig { vectors: MSIX_VECTORS, table_bar: 2, table_offset: 0x2000, pba_bar: 2, pba_offset: 0x3000 })
        .power_management()
        .pcie(PcieConfig { flr: true })
        .serial_number(0x0123_4567_89ab_cdef)
        .err_irq()
        .req_irq()
        .build()
        .unwrap()
}

pub struct Harness {
    pub client: Client,
    pub dev: Arc<TestDev>,
    pub irq: IrqHandle,
    pub dma: DmaHandle,
    pub stop: ShutdownHandle,
    pub thread: Option<JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.shutdown();
        let _ = self.client.conn.sender.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A server on its own thread serving one connected client.
pub fn spawn_with(limits: ServerLimits) -> Harness {
    spawn_with_timeouts(limits, vfio_user_server::Timeouts::default())
}

/// [`spawn_with`] with the given timeouts.
pub fn spawn_with_timeouts(limits: ServerLimits, timeouts: vfio_user_server::Timeouts) -> Harness {
    let (a, b) = UnixStream::pair().unwrap();
    let dev = Arc::new(TestDev::new());
    let d2 = dev.clone();
    let mut server = Server::with_handles(description(), limits, |_, dma| {
        *d2.dma.lock().unwrap() = Some(dma);
        d2
    })
    .unwrap();
    server.set_endpoint(Endpoint::Stream(b));
    server.set_timeouts(timeouts);
    let (irq, dma, stop) = (server.irq_handle(), server.dma_handle(), server.shutdown_handle());
    let thread = std::thread::spawn(move || server.run().unwrap());
    Harness { client: Client::new(a), dev, irq, dma, stop, thread: Some(thread) }
}

pub fn spawn() -> Harness {
    let mut h = spawn_with(ServerLimits::default());
    h.client.version_ok();
    h
}

pub struct Client {
    pub conn: Connection,
    /// The same socket, for writing raw bytes.
    pub raw: UnixStream,
    pub next_id: u16,
}

impl Client {
    pub fn new(s: UnixStream) -> Self {
        let raw = s.try_clone().unwrap();
        Client { conn: Connection::new(s), raw, next_id: 100 }
    }

    pub fn send_raw(&mut self, cmd: u16, flags: u32, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        let h = Header { msg_id: self.next_id, command: cmd, msg_size: 0, flags, error: 0 };
        self.conn.send(h, parts, fds).unwrap();
        self.next_id
    }

    pub fn send(&mut self, cmd: Command, payload: &[u8], fds: &[BorrowedFd<'_>]) -> u16 {
        self.send_raw(cmd as u16, FLAGS_TYPE_COMMAND, &[payload], fds)
    }

    pub fn send_no_reply(&mut self, cmd: Command, payload: &[u8]) -> u16 {
        self.send_raw(cmd as u16, FLAGS_NO_REPLY, &[payload], &[])
    }

    pub fn recv(&mut self) -> Message {
        self.conn.recv().unwrap()
    }

    /// Receives the reply to `id`, asserting that it is the next message.
    pub fn reply_to(&mut self, id: u16, cmd: Command) -> Message {
        let m = self.recv();
        assert!(m.header.is_reply(), "expected a reply, got {:?}", m.header);
        assert_eq!((m.header.msg_id, m.header.command), (id, cmd as u16));
        m
    }

    pub fn call(&mut self, cmd: Command, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Message, i32> {
        let id = self.send(cmd, payload, fds);
        let m = self.reply_to(id, cmd);
        if m.header.is_error() {
            assert!(m.payload.is_empty(), "error replies carry no payload");
            Err(m.header.error as i32)
        } else {
            Ok(m)
        }
    }

    pub fn errno(&mut self, cmd: Command, payload: &[u8], fds: &[BorrowedFd<'_>]) -> i32 {
        match self.call(cmd, payload, fds) {
            Ok(m) => panic!("{cmd} succeeded: {:?}", m.header),
            Err(e) => e,
        }
    }

    pub fn version(&mut self, json: &str) -> Result<Message, i32> {
        let mut p = vec![0u8, 0, 2, 0];
        p.extend_from_slice(json.as_bytes());
        p.push(0);
        self.call(Command::Version, &p, &[])
    }

    pub fn version_ok(&mut self) -> Message {
        self.version(r#"{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}}"#).unwrap()
    }

    pub fn read(&mut self, region: u32, offset: u64, count: u32) -> Result<Vec<u8>, i32> {
        let a = RegionAccess { offset, region, count };
        let m = self.call(Command::RegionRead, a.as_slice(), &[])?;
        assert_eq!(m.payload.len(), 16 + count as usize);
        assert_eq!(&m.payload[..16], a.as_slice());
        Ok(m.payload[16..].to_vec())
    }

    pub fn read32(&mut self, region: u32, offset: u64) -> u32 {
        let v = self.read(region, offset, 4).unwrap();
        u32::from_le_bytes([v[0], v[1], v[2], v[3]])
    }

    pub fn write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), i32> {
        let a = RegionAccess { offset, region, count: data.len() as u32 };
        let id = self.send_raw(Command::RegionWrite as u16, 0, &[a.as_slice(), data], &[]);
        let m = self.reply_to(id, Command::RegionWrite);
        if m.header.is_error() {
            return Err(m.header.error as i32);
        }
        assert_eq!(m.payload, a.as_slice());
        Ok(())
    }

    pub fn write32(&mut self, region: u32, offset: u64, v: u32) {
        self.write(region, offset, &v.to_le_bytes()).unwrap()
    }

    pub fn set_irqs(
        &mut self,
        flags: u32,
        index: u32,
        start: u32,
        count: u32,
        data: &[u8],
        fds: &[&OwnedFd],
    ) -> Result<(), i32> {
        let set = IrqSet { argsz: 20 + data.len() as u32, flags, index, start, count };
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        let id = self.send_raw(Command::DeviceSetIrqs as u16, 0, &[set.as_slice(), data], &borrowed);
        let m = self.reply_to(id, Command::DeviceSetIrqs);
        if m.header.is_error() {
            Err(m.header.error as i32)
        } else {
            Ok(())
        }
    }

    pub fn dma_map(&mut self, addr: u64, size: u64, fd: Option<&OwnedFd>) -> Result<(), i32> {
        self.dma_map_flags(addr, size, DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE, fd)
    }

    pub fn dma_map_flags(&mut self, addr: u64, size: u64, flags: u32, fd: Option<&OwnedFd>) -> Result<(), i32> {
        let m = DmaMap { argsz: 32, flags, offset: 0, addr, size };
        let fds: Vec<_> = fd.iter().map(|f| f.as_fd()).collect();
        self.call(Command::DmaMap, m.as_slice(), &fds).map(|_| ())
    }

    pub fn dma_unmap(&mut self, flags: u32, addr: u64, size: u64) -> Result<Message, i32> {
        let u = DmaUnmap { argsz: 24, flags, addr, size };
        self.call(Command::DmaUnmap, u.as_slice(), &[])
    }

    /// A quick command that must succeed: proves the stream is still in sync.
    pub fn assert_alive(&mut self) {
        let m =
            self.call(Command::DeviceGetInfo, DeviceInfo { argsz: 16, ..Default::default() }.as_slice(), &[]).unwrap();
        let i: DeviceInfo = read_at(&m.payload, 0).unwrap();
        assert_eq!(i.num_irqs, 5);
    }
}
