// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! End to end: our client against our server (vfio-user-server with a test device built
//! from a `DeviceDescription`), over a real listening socket with real fds.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vfio_user_client::{Client, Config, DmaProt, Error};
use vfio_user_proto::wire::*;
use vfio_user_server::{
    Bar, Device, DeviceDescription, DmaHandle, DmaRegion, Endpoint, IrqHandle, Listener, ResetKind, Server,
    ServerLimits, ShutdownHandle,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The server's transfer limit: small, so that region I/O above it must be split.
const XFER: u32 = 4096;
const BAR0_SIZE: u64 = 0x10000;

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Reset(ResetKind),
    Map(u64, u64, bool),
    Unmap(u64, u64),
}

struct Dev {
    bar0: Mutex<Vec<u8>>,
    seen: Mutex<Vec<Seen>>,
    /// The longest single access the device was asked for.
    longest: AtomicUsize,
}

impl Device for Dev {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        if region != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.longest.fetch_max(data.len(), Ordering::Relaxed);
        let o = offset as usize;
        data.copy_from_slice(&self.bar0.lock().unwrap()[o..o + data.len()]);
        Ok(())
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        if region != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.longest.fetch_max(data.len(), Ordering::Relaxed);
        let o = offset as usize;
        self.bar0.lock().unwrap()[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        self.seen.lock().unwrap().push(Seen::Reset(kind));
        Ok(())
    }

    fn dma_map(&self, r: &DmaRegion) -> io::Result<()> {
        self.seen.lock().unwrap().push(Seen::Map(
            r.iova,
            r.size,
            r.kind == vfio_user_server::vfio_user_dma::RegionKind::Mmap,
        ));
        Ok(())
    }

    fn dma_unmap(&self, r: &DmaRegion) {
        self.seen.lock().unwrap().push(Seen::Unmap(r.iova, r.size));
    }
}

fn memfd(size: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create("e2e", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)
        .unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).unwrap();
    fd
}

fn eventfd() -> OwnedFd {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK).unwrap()
}

fn efd_count(fd: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    match rustix::io::read(fd, &mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

fn description(bar2: Arc<OwnedFd>) -> DeviceDescription {
    DeviceDescription::builder(0x1b36, 0x0042)
        .subsystem(0x1af4, 0x1100)
        .class_code(0x058000)
        .bar(0, Bar::memory64(BAR0_SIZE))
        .bar(2, Bar::memory32(0x1000).mmap(bar2, 0))
        .bar(4, Bar::io(0x100))
        .intx()
        .msi(2, false)
        .build()
        .unwrap()
}

struct Harness {
    path: PathBuf,
    dev: Arc<Dev>,
    irq: IrqHandle,
    dma: DmaHandle,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
    /// BAR2's memory.
    bar2: Arc<OwnedFd>,
}

impl Harness {
    fn start() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Harness::start_at(std::env::temp_dir().join(format!("vfio-user-e2e-{}-{n}.sock", std::process::id())))
    }

    /// A server (with BAR2 memory of its own) listening at `path`.
    fn start_at(path: PathBuf) -> Self {
        let pattern: Vec<u8> = (0..BAR0_SIZE).map(|i| (i * 7 + (i >> 8)) as u8).collect();
        let dev = Arc::new(Dev { bar0: Mutex::new(pattern), seen: Mutex::default(), longest: AtomicUsize::new(0) });
        let limits = ServerLimits { max_data_xfer_size: XFER, ..ServerLimits::default() };
        let bar2 = Arc::new(memfd(0x1000));
        let mut server = Server::with_handles(description(bar2.clone()), limits, |_, _| dev.clone()).unwrap();
        server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
        let (irq, dma, stop) = (server.irq_handle(), server.dma_handle(), server.shutdown_handle());
        let thread = Some(std::thread::spawn(move || server.run().unwrap()));
        Harness { path, dev, irq, dma, stop, thread, bar2 }
    }

    fn connect(&self, config: Config) -> Client {
        Client::connect(&self.path, config).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.dev.seen.lock().unwrap().clone()
    }

    fn bar0(&self, at: usize, len: usize) -> Vec<u8> {
        self.dev.bar0.lock().unwrap()[at..at + len].to_vec()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn cfg_read32(c: &Client, off: u64) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(PCI_CONFIG_REGION_INDEX, off, &mut b).unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn negotiate_with_and_without_twin_socket() {
    let h = Harness::start();
    for twin in [true, false] {
        let c = h.connect(Config::default().twin_socket(twin));
        let n = c.negotiated();
        assert_eq!(n.twin_socket, twin);
        assert_eq!((n.major, n.peer.max_data_xfer_size, n.peer.max_msg_fds), (0, XFER, 16));
        assert!(n.peer.write_multiple);
        assert_eq!(cfg_read32(&c, 0), 0x0042_1b36);
        c.shutdown().unwrap();
    }
}

#[test]
fn device_region_and_irq_info_match_the_description() {
    let h = Harness::start();
    let c = h.connect(Config::default());
    let info = c.device_info();
    assert!(info.is_pci() && info.resettable());
    assert_eq!((info.num_regions, info.num_irqs), (9, 5));
    let rw = REGION_FLAG_READ | REGION_FLAG_WRITE;
    let expect = [
        (0, BAR0_SIZE, rw),
        (1, 0, 0),
        (2, 0x1000, rw | REGION_FLAG_MMAP),
        (3, 0, 0),
        (4, 0x100, rw),
        (5, 0, 0),
        (6, 0, 0),
        (7, 256, rw),
        (8, 0, 0),
    ];
    for (index, size, flags) in expect {
        let r = c.region_info(index).unwrap();
        assert_eq!((r.index, r.size, r.flags), (index, size, flags), "region {index}");
    }
    assert!(c.region_info(2).unwrap().fd().is_some(), "the mappable BAR comes with its fd");
    assert!(c.region_info(9).is_err());
    for (index, count) in [(0, 1), (1, 2), (2, 0), (3, 0), (4, 0)] {
        let i = c.irq_info(index).unwrap();
        assert_eq!((i.index, i.count), (index, count));
    }
}

#[test]
fn config_space_and_bar_sizing() {
    let h = Harness::start();
    let c = h.connect(Config::default());
    assert_eq!(cfg_read32(&c, 0x2c), 0x1100_1af4, "subsystem ids");
    assert_eq!(cfg_read32(&c, 0x08) >> 8, 0x058000, "class code");
    // BAR0 is 64-bit, 64 KiB: write all-ones to both halves, read back the size mask.
    for off in [0x10, 0x14] {
        c.region_write(PCI_CONFIG_REGION_INDEX, off, &u32::MAX.to_le_bytes()).unwrap();
    }
    assert_eq!(cfg_read32(&c, 0x10), 0xffff_0000 | 0x4, "64-bit memory BAR");
    assert_eq!(cfg_read32(&c, 0x14), u32::MAX);
    // BAR4 is a 256-byte I/O BAR.
    c.region_write(PCI_CONFIG_REGION_INDEX, 0x20, &u32::MAX.to_le_bytes()).unwrap();
    assert_eq!(cfg_read32(&c, 0x20) & !0x3, 0xffff_ff00);
    assert_eq!(cfg_read32(&c, 0x20) & 0x1, 1);
    // Program an address and read it back.
    c.region_write(PCI_CONFIG_REGION_INDEX, 0x10, &0xfe00_0000u32.to_le_bytes()).unwrap();
    assert_eq!(cfg_read32(&c, 0x10), 0xfe00_0004);
}

#[test]
fn region_io_above_max_data_xfer_size_is_split() {
    let h = Harness::start();
    let c = h.connect(Config::default());
    let len = 5 * XFER as usize + 123;
    let mut buf = vec![0u8; len];
    c.region_read(0, 100, &mut buf).unwrap();
    assert_eq!(buf, h.bar0(100, len));
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    c.region_write(0, 0x777, &data).unwrap();
    assert_eq!(h.bar0(0x777, len), data);
    assert_eq!(h.dev.longest.load(Ordering::Relaxed), XFER as usize, "no access above the server's limit");
    // Out of range: the server's errno comes back and the connection stays usable.
    let mut b = [0u8; 8];
    assert!(matches!(c.region_read(0, BAR0_SIZE - 4, &mut b), Err(Error::Server { .. })));
    c.region_read(0, 0, &mut b).unwrap();
}

#[test]
fn posted_writes_are_ordered_before_a_read() {
    let h = Harness::start();
    let c = h.connect(Config::default());
    for i in 0..500u32 {
        c.region_write_posted(0, u64::from(i) * 4, &i.to_le_bytes()).unwrap();
    }
    // The read is answered after every posted write took effect.
    let mut back = vec![0u8; 2000];
    c.region_read(0, 0, &mut back).unwrap();
    for i in 0..500u32 {
        let at = i as usize * 4;
        assert_eq!(u32::from_le_bytes(back[at..at + 4].try_into().unwrap()), i);
    }
}

#[test]
fn fd_backed_dma_lands_in_the_memfd() {
    let h = Harness::start();
    let c = h.connect(Config::default());
    let mem = memfd(0x8000);
    c.dma_map_fd(0x10_0000, 0x4000, mem.as_fd(), 0x2000, DmaProt::READ_WRITE).unwrap();
    assert_eq!(h.seen(), vec![Seen::Map(0x10_0000, 0x4000, true)]);
    h.dma.write(0x10_0100, b"device wrote this").unwrap();
    let mut back = [0u8; 17];
    rustix::io::pread(&mem, &mut back, 0x2100).unwrap();
    assert_eq!(&back, b"device wrote this");
    rustix::io::pwrite(&mem, b"guest data", 0x5000).unwrap();
    let mut got = [0u8; 10];
    h.dma.read(0x10_3000, &mut got).unwrap();
    assert_eq!(&got, b"guest data");
    c.dma_unmap(0x10_0000, 0x4000).unwrap();
    assert_eq!(h.seen()[1], Seen::Unmap(0x10_0000, 0x4000));
    assert!(h.dma.write(0x10_0100, b"x").is_err(), "unmapped");
}

fn message_dma(twin: bool) {
    let h = Harness::start();
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x20_0000), 0x4000)]).unwrap());
    let c = h.connect(Config::default().twin_socket(twin).guest_memory(mem.clone()));
    c.dma_map(0x20_0000, 0x4000, DmaProt::READ_WRITE).unwrap();
    assert_eq!(h.seen(), vec![Seen::Map(0x20_0000, 0x4000, false)]);
    // The server splits at min(client 1 MiB, server 4 KiB): two DMA_WRITE messages.
    let data: Vec<u8> = (0..6000).map(|i| (i % 253) as u8).collect();
    h.dma.write(0x20_0010, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    mem.read_slice(&mut back, GuestAddress(0x20_0010)).unwrap();
    assert_eq!(back, data);
    mem.write_slice(b"from guest memory", GuestAddress(0x20_3000)).unwrap();
    let mut got = [0u8; 17];
    h.dma.read(0x20_3000, &mut got).unwrap();
    assert_eq!(&got, b"from guest memory");
    // Outside the mapping: refused by the server before anything is sent.
    assert!(h.dma.read(0x20_4000, &mut got).is_err());
    let s = c.stats();
    assert_eq!((s.dma_served, s.dma_refused), (3, 0), "two DMA_WRITEs and one DMA_READ");
    let mut id = [0u8; 4];
    c.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut id).unwrap();
}

#[test]
fn message_based_dma_with_twin_socket() {
    message_dma(true);
}

#[test]
fn message_based_dma_without_twin_socket() {
    message_dma(false);
}

#[test]
fn irq_eventfd_reset_and_reconnect_replay() {
    let h = Harness::start();
    let c = h.connect(Config::default());
    let efd = eventfd();
    c.enable_irq_eventfds(PCI_INTX_IRQ_INDEX, 0, &[efd.as_fd()]).unwrap();
    h.irq.trigger_intx().unwrap();
    assert_eq!(efd_count(&efd), 1);
    c.reset().unwrap();
    assert_eq!(h.seen(), vec![Seen::Reset(ResetKind::Device)]);
    let mem = memfd(0x1000);
    c.dma_map_fd(0x30_0000, 0x1000, mem.as_fd(), 0, DmaProt::READ_WRITE).unwrap();
    // Reconnect with the server still serving: the old connection's mapping and eventfd
    // are released, the client replays both on the new one.
    c.reconnect().unwrap();
    let seen = h.seen();
    assert_eq!(
        &seen[1..],
        &[Seen::Map(0x30_0000, 0x1000, true), Seen::Unmap(0x30_0000, 0x1000), Seen::Map(0x30_0000, 0x1000, true)]
    );
    h.dma.write(0x30_0000, b"after reconnect").unwrap();
    let mut back = [0u8; 15];
    rustix::io::pread(&mem, &mut back, 0).unwrap();
    assert_eq!(&back, b"after reconnect");
    h.irq.trigger_intx().unwrap();
    assert_eq!(efd_count(&efd), 1, "the eventfd was replayed");
    assert_eq!(cfg_read32(&c, 0), 0x0042_1b36);
    // A second client after this one goes away is served too.
    drop(c);
    let c2 = h.connect(Config::default());
    assert_eq!(cfg_read32(&c2, 0), 0x0042_1b36);
    assert!(h.dma.region_at(0x30_0000).is_none(), "the departed client's mapping is gone");
}

#[test]
fn reconnect_maps_the_restarted_servers_memory_in_place() {
    let first = Harness::start();
    let path = first.path.clone();
    let c = h_connect_watched(&first);
    let map = c.map_region(2).unwrap();
    let at = map.areas()[0].as_ptr();
    map.write(0x10, b"first server").unwrap();
    drop(first);
    wait_readable(c.disconnect_fd());
    assert!(c.disconnected().is_some());
    // The restarted server has fresh BAR2 memory.
    let second = Harness::start_at(path);
    rustix::io::pwrite(&*second.bar2, b"second server", 0x10).unwrap();
    c.reconnect().unwrap();
    assert_eq!(map.areas()[0].as_ptr(), at, "the mapping stays where the VMM registered it");
    let mut b = [0u8; 13];
    map.read(0x10, &mut b).unwrap();
    assert_eq!(&b, b"second server", "it now shows the new server's memory");
    map.write(0x40, b"via the map").unwrap();
    let mut back = [0u8; 11];
    rustix::io::pread(&*second.bar2, &mut back, 0x40).unwrap();
    assert_eq!(&back, b"via the map", "and writes reach it");
}

fn h_connect_watched(h: &Harness) -> Client {
    let c = h.connect(Config::default());
    let fd = c.disconnect_fd();
    let mut p = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    assert_eq!(rustix::event::poll(&mut p, Some(&zero)).unwrap(), 0, "connected: quiet");
    c
}

/// Waits (at most 20 s) until `fd` is readable.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>) {
    let mut p = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let limit = rustix::event::Timespec { tv_sec: 20, tv_nsec: 0 };
    assert_eq!(rustix::event::poll(&mut p, Some(&limit)).unwrap(), 1, "no disconnect notice");
}

#[test]
fn vmm_sys_util_eventfd_is_accepted_without_unsafe() {
    let h = Harness::start();
    let c = h.connect(Config::default());
    let efd = vmm_sys_util_0_15::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
    c.enable_irq_eventfds(PCI_INTX_IRQ_INDEX, 0, &[vfio_user_client::borrow_eventfd(&efd)]).unwrap();
    h.irq.trigger_intx().unwrap();
    assert_eq!(efd.read().unwrap(), 1, "the server signalled the VMM's EventFd");
    c.disable_irqs(PCI_INTX_IRQ_INDEX).unwrap();
    h.irq.trigger_intx().unwrap();
    assert!(efd.read().is_err(), "disabled: nothing signalled");
}

#[test]
fn concurrent_region_reads() {
    let h = Harness::start();
    let c = Arc::new(h.connect(Config::default()));
    let expect = Arc::new(h.bar0(0, BAR0_SIZE as usize));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (c, expect) = (c.clone(), expect.clone());
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let off = ((t * 7919 + i * 104_729) % (BAR0_SIZE - 64)) as usize;
                    let len = 1 + (i as usize % 64);
                    let mut b = vec![0u8; len];
                    c.region_read(0, off as u64, &mut b).unwrap();
                    assert_eq!(b, expect[off..off + len], "thread {t} read {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
