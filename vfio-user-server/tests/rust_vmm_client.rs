// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Interop: rust-vmm's `vfio_user::Client` 0.1.7 (what Cloud Hypervisor uses) against our
//! server over a real socket, with a GPIO card like the `gpio` example built here (plus
//! MSI and a mappable BAR, so every path of that client runs).
//!
//! Where that client is buggy the test documents the quirk and asserts what actually
//! happens; our server stays spec-correct:
//! * `resettable()` is inverted (`flags & RESET != RESET`).
//! * It cannot parse error replies: it reads the full success reply size, so after an
//!   error reply it waits for bytes that never come (until the server hangs up).
//! * DMA_UNMAP: the client sends flags 0 (its wrong flag bits 1<<1 / 1<<2 are only in its
//!   server-side `DmaUnmapFlags`), so plain unmaps interoperate.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vfio_user::Client;
use vfio_user_proto::wire::*;
use vfio_user_server::{
    Bar, DeviceDescription, DmaHandle, DmaRegion, Endpoint, IrqHandle, Listener, ResetKind, Server, ServerLimits,
    ShutdownHandle,
};

const PINS_TOGGLE: u16 = 0xffff;
/// Reads at or above this BAR2 offset fail in the device (to provoke an error reply).
const UNBACKED: u64 = 0x80;

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Reset(ResetKind),
    Map(u64, u64, bool),
    Unmap(u64, u64),
}

#[derive(Default)]
struct Gpio {
    pins: Mutex<u16>,
    latch: Mutex<Vec<u8>>,
    seen: Mutex<Vec<Seen>>,
    failed_read: Mutex<Option<Sender<u64>>>,
}

impl vfio_user_server::Device for Gpio {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        if region != 2 || offset >= UNBACKED {
            if let Some(tx) = self.failed_read.lock().unwrap().as_ref() {
                let _ = tx.send(offset);
            }
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let latch = self.latch.lock().unwrap();
        let mut pins = self.pins.lock().unwrap();
        let p = pins.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset as usize + i;
            *b = if o < 2 { p[o] } else { latch[o] };
        }
        if offset < 2 {
            *pins ^= PINS_TOGGLE;
        }
        Ok(())
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        if region != 2 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let o = offset as usize;
        self.latch.lock().unwrap()[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        *self.pins.lock().unwrap() = 0;
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
    let fd = rustix::fs::memfd_create(
        "rust-vmm-interop",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
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

fn description(reset: bool) -> DeviceDescription {
    DeviceDescription::builder(0x494f, 0x0dc8)
        .class_code(0xff0000)
        .bar(0, Bar::memory32(0x1000).mmap(Arc::new(memfd(0x1000)), 0))
        .bar(2, Bar::memory32(256))
        .intx()
        .msi(2, false)
        .reset_supported(reset)
        .build()
        .unwrap()
}

struct Harness {
    path: PathBuf,
    dev: Arc<Gpio>,
    irq: IrqHandle,
    dma: DmaHandle,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Harness {
    fn start(reset: bool) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vfio-user-rust-vmm-{}-{n}.sock", std::process::id()));
        let dev = Arc::new(Gpio { latch: Mutex::new(vec![0; 256]), ..Default::default() });
        let mut server = Server::with_handles(description(reset), ServerLimits::default(), |_, _| dev.clone()).unwrap();
        server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
        let (irq, dma, stop) = (server.irq_handle(), server.dma_handle(), server.shutdown_handle());
        let thread = Some(std::thread::spawn(move || server.run().unwrap()));
        Harness { path, dev, irq, dma, stop, thread }
    }

    fn client(&self) -> Client {
        Client::new(&self.path).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.dev.seen.lock().unwrap().clone()
    }

    fn stop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn device_info_regions_and_irq_info() {
    let h = Harness::start(true);
    let mut c = h.client();
    // Quirk: the server sets VFIO_DEVICE_FLAGS_RESET, the client reports "not resettable".
    assert!(!c.resettable(), "rust-vmm inverts the RESET flag");
    let bar0 = c.region(0).unwrap();
    assert_eq!(bar0.size, 0x1000);
    assert_eq!(bar0.flags, REGION_FLAG_READ | REGION_FLAG_WRITE | REGION_FLAG_MMAP);
    assert!(bar0.file_offset.is_some(), "the mmap fd of a whole-region mappable BAR arrives");
    let bar2 = c.region(2).unwrap();
    assert_eq!((bar2.size, bar2.flags), (256, REGION_FLAG_READ | REGION_FLAG_WRITE));
    assert!(bar2.file_offset.is_none() && bar2.sparse_areas.is_empty());
    let cfg = c.region(PCI_CONFIG_REGION_INDEX).unwrap();
    assert_eq!((cfg.size, cfg.flags), (256, REGION_FLAG_READ | REGION_FLAG_WRITE));
    for i in [1, 3, 4, 5, 6, 8] {
        assert_eq!(c.region(i).unwrap().size, 0, "region {i}");
    }
    assert!(c.region(9).is_none());
    for (index, count) in [(0, 1), (1, 2), (2, 0), (3, 0), (4, 0)] {
        let info = c.get_irq_info(index).unwrap();
        assert_eq!((info.index, info.count), (index, count));
        assert_ne!(info.flags & IRQ_INFO_EVENTFD, 0);
    }
    c.shutdown().unwrap();
}

#[test]
fn resettable_flag_inverted_both_ways() {
    let h = Harness::start(false);
    let c = h.client();
    // No RESET flag on the wire, and rust-vmm says "resettable".
    assert!(c.resettable());
}

#[test]
fn config_space_and_bar_access() {
    let h = Harness::start(true);
    let mut c = h.client();
    let mut id = [0u8; 4];
    c.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut id).unwrap();
    assert_eq!(id, [0x4f, 0x49, 0xc8, 0x0d]);
    // Command register: memory space + bus master, read back.
    c.region_write(PCI_CONFIG_REGION_INDEX, 4, &6u16.to_le_bytes()).unwrap();
    let mut cmd = [0u8; 2];
    c.region_read(PCI_CONFIG_REGION_INDEX, 4, &mut cmd).unwrap();
    assert_eq!(u16::from_le_bytes(cmd) & 6, 6);
    // BAR sizing through config writes, as Cloud Hypervisor does it.
    c.region_write(PCI_CONFIG_REGION_INDEX, 0x18, &u32::MAX.to_le_bytes()).unwrap();
    let mut bar = [0u8; 4];
    c.region_read(PCI_CONFIG_REGION_INDEX, 0x18, &mut bar).unwrap();
    assert_eq!(u32::from_le_bytes(bar) & !0xf, !0xff, "BAR2 is 256 bytes");
    // BAR2 data: the pins toggle on every read, the latch keeps what was written.
    let mut pins = [0u8; 2];
    c.region_read(2, 0, &mut pins).unwrap();
    assert_eq!(pins, [0, 0]);
    c.region_read(2, 0, &mut pins).unwrap();
    assert_eq!(pins, [0xff, 0xff]);
    c.region_write(2, 4, b"gpio").unwrap();
    let mut latch = [0u8; 4];
    c.region_read(2, 4, &mut latch).unwrap();
    assert_eq!(&latch, b"gpio");
    c.shutdown().unwrap();
}

#[test]
fn dma_map_unmap_and_device_dma() {
    let h = Harness::start(true);
    let mut c = h.client();
    let mem = memfd(0x4000);
    c.dma_map(0x1000, 0x10_0000, 0x2000, mem.as_raw_fd()).unwrap();
    assert_eq!(h.seen(), vec![Seen::Map(0x10_0000, 0x2000, true)]);
    // The device writes guest memory; it lands in the client's memfd at offset + 0x10.
    h.dma.write(0x10_0010, b"written by the device").unwrap();
    let mut back = [0u8; 21];
    rustix::io::pread(&mem, &mut back, 0x1010).unwrap();
    assert_eq!(&back, b"written by the device");
    c.dma_unmap(0x10_0000, 0x2000).unwrap();
    assert_eq!(h.seen()[1], Seen::Unmap(0x10_0000, 0x2000));
    assert!(h.dma.region_at(0x10_0000).is_none());
    // Remapping after the unmap works (the stream stayed in sync).
    c.dma_map(0, 0x20_0000, 0x1000, mem.as_raw_fd()).unwrap();
    assert_eq!(h.seen()[2], Seen::Map(0x20_0000, 0x1000, true));
    c.shutdown().unwrap();
}

#[test]
fn set_irqs_eventfd_and_reset() {
    let h = Harness::start(true);
    let mut c = h.client();
    let efd = eventfd();
    let flags = IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER;
    c.set_irqs(PCI_INTX_IRQ_INDEX, flags, 0, 1, &[efd.as_raw_fd()]).unwrap();
    h.irq.trigger_intx().unwrap();
    assert_eq!(efd_count(&efd), 1);
    // MSI with two eventfds in one message.
    let (m0, m1) = (eventfd(), eventfd());
    c.set_irqs(PCI_MSI_IRQ_INDEX, flags, 0, 2, &[m0.as_raw_fd(), m1.as_raw_fd()]).unwrap();
    // Enable MSI in the capability (as the guest would) so vectors are delivered.
    let msi = find_cap(&mut c, 0x05);
    let mut ctl = [0u8; 2];
    c.region_read(PCI_CONFIG_REGION_INDEX, msi + 2, &mut ctl).unwrap();
    let ctl = (u16::from_le_bytes(ctl) | 1 | (1 << 4)).to_le_bytes(); // enable, 2 vectors
    c.region_write(PCI_CONFIG_REGION_INDEX, msi + 2, &ctl).unwrap();
    h.irq.trigger_msi(1).unwrap();
    assert_eq!((efd_count(&m0), efd_count(&m1)), (0, 1));
    c.reset().unwrap();
    assert_eq!(h.seen(), vec![Seen::Reset(ResetKind::Device)]);
    // The stream is still in sync after the reset.
    let mut id = [0u8; 2];
    c.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut id).unwrap();
    assert_eq!(id, [0x4f, 0x49]);
    c.shutdown().unwrap();
}

fn find_cap(c: &mut Client, id: u8) -> u64 {
    let mut p = [0u8; 1];
    c.region_read(PCI_CONFIG_REGION_INDEX, 0x34, &mut p).unwrap();
    let mut at = p[0] as u64;
    while at != 0 {
        let mut h = [0u8; 2];
        c.region_read(PCI_CONFIG_REGION_INDEX, at, &mut h).unwrap();
        if h[0] == id {
            return at;
        }
        at = h[1] as u64;
    }
    panic!("capability {id:#x} not found");
}

#[test]
fn error_reply_desyncs_the_rust_vmm_client() {
    let mut h = Harness::start(true);
    let (tx, rx) = channel();
    *h.dev.failed_read.lock().unwrap() = Some(tx);
    let mut c = h.client();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 4];
        c.region_read(2, UNBACKED, &mut buf)
    });
    // The device refused the read: our server answers with a 16-byte error reply (EIO).
    assert_eq!(rx.recv().unwrap(), UNBACKED);
    // Quirk: the client reads a 32-byte success header plus data and never looks at the
    // ERROR flag, so it waits for bytes that never come; it only returns when the server
    // hangs up, and then with a stream error, never with the errno.
    h.stop();
    assert!(matches!(t.join().unwrap(), Err(vfio_user::Error::StreamRead(_))));
}

#[test]
fn server_serves_the_next_rust_vmm_client() {
    let h = Harness::start(true);
    for _ in 0..3 {
        let mut c = h.client();
        let mem = memfd(0x1000);
        c.dma_map(0, 0x10_0000, 0x1000, mem.as_raw_fd()).unwrap();
        let mut id = [0u8; 2];
        c.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut id).unwrap();
        assert_eq!(id, [0x4f, 0x49]);
        // Left without unmapping: the server drops the mapping when the client goes away.
        drop(c);
    }
    let _c = h.client();
    let maps = h.seen().iter().filter(|s| matches!(s, Seen::Map(..))).count();
    let unmaps = h.seen().iter().filter(|s| matches!(s, Seen::Unmap(..))).count();
    assert_eq!((maps, unmaps), (3, 3), "each departed client's mapping was released");
}
