// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A test VMM: our client owns guest memory (memfds), DMA-maps it, plays the virtio
//! driver (feature negotiation, split virtqueues it writes itself), kicks by ioeventfd or
//! REGION_WRITE and waits on the MSI-X eventfds.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
use vfio_user_client::{Client, Config, DmaProt};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// BAR0 offsets (the transport's layout).
pub const COMMON: u64 = 0x0000;
pub const ISR: u64 = 0x1000;
pub const DEVICE: u64 = 0x2000;
pub const NOTIFY: u64 = 0x3000;

pub const S_ACK: u8 = 1;
pub const S_DRIVER: u8 = 2;
pub const S_DRIVER_OK: u8 = 4;
pub const S_FEATURES_OK: u8 = 8;
pub const S_NEEDS_RESET: u8 = 64;

pub const F_VERSION_1: u64 = 1 << 32;
pub const F_EVENT_IDX: u64 = 1 << 29;
pub const F_INDIRECT: u64 = 1 << 28;

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;

pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// Guest RAM size; rings live in the first MiB, request buffers above.
pub const RAM: u64 = 16 << 20;
/// Queue size the test driver uses.
pub const QSIZE: u16 = 64;
/// Longest wait for a completion before a test fails (a hang guard, not a timing check).
pub const HANG: Duration = Duration::from_secs(20);

/// How the driver notifies the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// Writes the queue's ioeventfd (DEVICE_GET_REGION_IO_FDS).
    IoEventFd,
    /// REGION_WRITE to the notify area, waiting for the reply.
    RegionWrite,
    /// Posted REGION_WRITE (as QEMU 11.1 sends them).
    Posted,
}

/// How guest memory is shared with the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// A memfd sealed against shrinking, passed with DMA_MAP.
    SealedFd,
    /// A memfd without seals, passed with DMA_MAP.
    UnsealedFd,
    /// No fd: the server uses DMA_READ / DMA_WRITE messages.
    Message,
    /// Rings in a sealed fd mapping (the first half), buffers in a message mapping.
    Mixed,
}

/// A guest RAM memfd of `size` bytes and the test's own mapping of it.
pub fn guest_ram(size: u64, seal: bool) -> (OwnedFd, Arc<GuestMemoryMmap>) {
    let fd = memfd_create("guest-ram", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    if seal {
        fcntl_add_seals(&fd, SealFlags::SHRINK).unwrap();
    }
    let file = File::from(fd.try_clone().unwrap());
    let region = MmapRegion::from_file(FileOffset::new(file, 0), size as usize).unwrap();
    let mem = GuestMemoryMmap::from_regions(vec![GuestRegionMmap::new(region, GuestAddress(0)).unwrap()]).unwrap();
    (fd, Arc::new(mem))
}

/// A raw image of `sectors` sectors, sector `s` filled with bytes `s as u8 ^ i as u8`.
pub fn image(dir: &Path, name: &str, sectors: u64) -> PathBuf {
    let p = dir.join(name);
    let mut data = vec![0u8; (sectors * 512) as usize];
    for (i, b) in data.iter_mut().enumerate() {
        *b = ((i / 512) as u8) ^ (i as u8);
    }
    std::fs::write(&p, data).unwrap();
    p
}

/// A fresh directory for a test, removed when dropped.
pub struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory for a test.
pub fn test_dir(name: &str) -> TestDir {
    let d = std::env::temp_dir().join(format!("vfio-user-virtio-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TestDir(d)
}

/// The driver's view of one split virtqueue.
#[derive(Debug)]
pub struct DQueue {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub avail_idx: u16,
    /// While set, `publish` fills ring entries but leaves the available index the device
    /// reads as it was, until `release_avail`: a device polling its ring sees nothing.
    pub hold_avail: bool,
    pub used_seen: u16,
    pub next_desc: u16,
    /// Scratch area for this queue's request headers and status bytes.
    pub scratch: u64,
    pub next_scratch: u64,
}

/// One descriptor the test asks for.
#[derive(Clone, Copy, Debug)]
pub struct D {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

/// The test VMM.
pub struct Vmm {
    pub client: Client,
    pub mem: Arc<GuestMemoryMmap>,
    pub ram_fd: OwnedFd,
    pub irqs: Vec<OwnedFd>,
    pub kick_fds: Vec<Arc<OwnedFd>>,
    pub queues: Vec<DQueue>,
    pub kick: Kick,
    pub features: u64,
}

impl Vmm {
    /// Connects to `sock`, shares guest RAM as `sharing` says, wires MSI-X vectors
    /// `0..=queues` to eventfds.
    pub fn connect(sock: &Path, sharing: Sharing, kick: Kick) -> Vmm {
        Self::connect_with(sock, sharing, kick, |mem| Config::default().guest_memory(mem))
    }

    /// [`connect`](Self::connect) with the client configuration `config` makes from the
    /// guest memory (it serves the server's DMA messages from what it is given).
    pub fn connect_with(
        sock: &Path,
        sharing: Sharing,
        kick: Kick,
        config: impl FnOnce(Arc<GuestMemoryMmap>) -> Config,
    ) -> Vmm {
        let seal = sharing != Sharing::UnsealedFd;
        let (ram_fd, mem) = guest_ram(RAM, seal);
        let config =
            if matches!(sharing, Sharing::Message | Sharing::Mixed) { config(mem.clone()) } else { Config::default() };
        let client = Client::connect(sock, config).unwrap();
        match sharing {
            Sharing::SealedFd | Sharing::UnsealedFd => {
                client.dma_map_fd(0, RAM, ram_fd.as_fd(), 0, DmaProt::READ_WRITE).unwrap()
            }
            Sharing::Message => client.dma_map(0, RAM, DmaProt::READ_WRITE).unwrap(),
            Sharing::Mixed => {
                client.dma_map_fd(0, RAM / 2, ram_fd.as_fd(), 0, DmaProt::READ_WRITE).unwrap();
                client.dma_map(RAM / 2, RAM / 2, DmaProt::READ_WRITE).unwrap();
            }
        }
        let mut msix = [0u8; 2];
        // MSI-X capability at 0x40: vectors = table size + 1.
        client.region_read(7, 0x42, &mut msix).unwrap();
        let vectors = (u16::from_le_bytes(msix) & 0x7ff) + 1;
        let irqs: Vec<OwnedFd> =
            (0..vectors).map(|_| eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()).collect();
        let borrowed: Vec<_> = irqs.iter().map(|f| f.as_fd()).collect();
        client.enable_irq_eventfds(2, 0, &borrowed).unwrap();
        let kick_fds = client.region_io_fds(0).unwrap().into_iter().map(|r| r.fd).collect();
        Vmm { client, mem, ram_fd, irqs, kick_fds, queues: Vec::new(), kick, features: 0 }
    }

    /// Connects another client to `sock` with the same guest memory (a sealed memfd
    /// mapped with DMA_MAP) and the same interrupt eventfds: the destination of a
    /// migration. Returns it with its queue ioeventfds.
    pub fn second_client(&self, sock: &Path) -> (Client, Vec<Arc<OwnedFd>>) {
        let client = Client::connect(sock, Config::default()).unwrap();
        client.dma_map_fd(0, RAM, self.ram_fd.as_fd(), 0, DmaProt::READ_WRITE).unwrap();
        let borrowed: Vec<_> = self.irqs.iter().map(|f| f.as_fd()).collect();
        client.enable_irq_eventfds(2, 0, &borrowed).unwrap();
        let kicks = client.region_io_fds(0).unwrap().into_iter().map(|r| r.fd).collect();
        (client, kicks)
    }

    pub fn read8(&self, off: u64) -> u8 {
        let mut b = [0u8; 1];
        self.client.region_read(0, off, &mut b).unwrap();
        b[0]
    }

    pub fn read16(&self, off: u64) -> u16 {
        let mut b = [0u8; 2];
        self.client.region_read(0, off, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    pub fn read32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.client.region_read(0, off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    pub fn write8(&self, off: u64, v: u8) {
        self.client.region_write(0, off, &[v]).unwrap();
    }

    pub fn write16(&self, off: u64, v: u16) {
        self.client.region_write(0, off, &v.to_le_bytes()).unwrap();
    }

    pub fn write32(&self, off: u64, v: u32) {
        self.client.region_write(0, off, &v.to_le_bytes()).unwrap();
    }

    pub fn status(&self) -> u8 {
        self.read8(COMMON + 0x14)
    }

    /// The 64 device feature bits.
    pub fn device_features(&self) -> u64 {
        self.write32(COMMON, 0);
        let lo = self.read32(COMMON + 4);
        self.write32(COMMON, 1);
        let hi = self.read32(COMMON + 4);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    /// Resets the device, negotiates `want & offered`, sets up `nq` queues (vector q each,
    /// configuration vector nq) and sets DRIVER_OK. Returns the negotiated features.
    pub fn init(&mut self, nq: u16, want: u64) -> u64 {
        self.write8(COMMON + 0x14, 0);
        assert_eq!(self.status(), 0);
        self.write8(COMMON + 0x14, S_ACK | S_DRIVER);
        let features = self.device_features() & (want | F_VERSION_1);
        self.write32(COMMON + 8, 0);
        self.write32(COMMON + 0xc, features as u32);
        self.write32(COMMON + 8, 1);
        self.write32(COMMON + 0xc, (features >> 32) as u32);
        self.write8(COMMON + 0x14, S_ACK | S_DRIVER | S_FEATURES_OK);
        assert_eq!(self.status() & S_FEATURES_OK, S_FEATURES_OK, "features {features:#x} accepted");
        assert!(self.read16(COMMON + 0x12) >= nq);
        self.queues.clear();
        for q in 0..nq {
            let base = 0x1_0000 + u64::from(q) * 0x1_0000;
            let dq = DQueue {
                size: QSIZE,
                desc: base,
                avail: base + 0x4000,
                used: base + 0x8000,
                avail_idx: 0,
                hold_avail: false,
                used_seen: 0,
                next_desc: 0,
                scratch: base + 0xc000,
                next_scratch: 0,
            };
            // Clear the rings.
            self.mem.write_slice(&[0u8; 0x10000], GuestAddress(base)).unwrap();
            self.write16(COMMON + 0x16, q);
            assert_eq!(self.read16(COMMON + 0x18), 256, "max queue size");
            self.write16(COMMON + 0x18, QSIZE);
            self.write16(COMMON + 0x1a, q);
            assert_eq!(self.read16(COMMON + 0x1a), q, "vector accepted");
            assert_eq!(self.read16(COMMON + 0x1e), q, "notify offset");
            for (off, addr) in [(0x20, dq.desc), (0x28, dq.avail), (0x30, dq.used)] {
                self.write32(COMMON + off, addr as u32);
                self.write32(COMMON + off + 4, (addr >> 32) as u32);
            }
            self.write16(COMMON + 0x1c, 1);
            self.queues.push(dq);
        }
        self.write16(COMMON + 0x10, nq);
        self.write8(COMMON + 0x14, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        assert_eq!(self.status(), S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        self.features = features;
        features
    }

    /// Writes a raw descriptor into queue `q`'s table.
    pub fn put_desc(&self, q: usize, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.queues[q].desc + u64::from(index) * 16;
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&d, GuestAddress(at)).unwrap();
    }

    /// Makes `head` available on queue `q` (does not kick).
    pub fn publish(&mut self, q: usize, head: u16) {
        let dq = &mut self.queues[q];
        let slot = dq.avail + 4 + u64::from(dq.avail_idx % dq.size) * 2;
        self.mem.write_obj(head.to_le(), GuestAddress(slot)).unwrap();
        dq.avail_idx = dq.avail_idx.wrapping_add(1);
        if !dq.hold_avail {
            self.release_avail(q);
        }
    }

    /// Makes everything published on queue `q` visible to the device (its available index).
    pub fn release_avail(&self, q: usize) {
        let dq = &self.queues[q];
        fence(Ordering::SeqCst);
        self.mem.write_obj(dq.avail_idx.to_le(), GuestAddress(dq.avail + 2)).unwrap();
        fence(Ordering::SeqCst);
    }

    /// Adds a chain made of `descs` to queue `q` (does not kick); returns its head.
    pub fn add_chain(&mut self, q: usize, descs: &[D]) -> u16 {
        let size = self.queues[q].size;
        let head = self.queues[q].next_desc;
        for (i, d) in descs.iter().enumerate() {
            let index = (head + i as u16) % size;
            let last = i == descs.len() - 1;
            let flags = u16::from(!last) | if d.write { 2 } else { 0 };
            self.put_desc(q, index, d.addr, d.len, flags, (index + 1) % size);
        }
        self.queues[q].next_desc = (head + descs.len() as u16) % size;
        self.publish(q, head);
        head
    }

    /// Notifies queue `q`.
    pub fn kick(&self, q: usize) {
        let data = (q as u16).to_le_bytes();
        let off = NOTIFY + 4 * q as u64;
        match self.kick {
            Kick::IoEventFd => {
                rustix::io::write(&*self.kick_fds[q], &1u64.to_ne_bytes()).unwrap();
            }
            Kick::RegionWrite => self.client.region_write(0, off, &data).unwrap(),
            Kick::Posted => self.client.region_write_posted(0, off, &data).unwrap(),
        }
    }

    /// The used ring's index.
    pub fn used_idx(&self, q: usize) -> u16 {
        fence(Ordering::SeqCst);
        u16::from_le(self.mem.read_obj(GuestAddress(self.queues[q].used + 2)).unwrap())
    }

    /// Waits until `n` more chains of queue `q` are used; returns their (id, len). Fails
    /// the test after [`HANG`].
    pub fn wait_used(&mut self, q: usize, n: u16) -> Vec<(u32, u32)> {
        let target = self.queues[q].used_seen.wrapping_add(n);
        let start = Instant::now();
        while self.used_idx(q).wrapping_sub(self.queues[q].used_seen) < n {
            assert!(start.elapsed() < HANG, "queue {q}: no completion within {HANG:?}");
            let mut p = [PollFd::new(&self.irqs[q], PollFlags::IN)];
            let _ = poll(&mut p, Some(&Timespec { tv_sec: 0, tv_nsec: 50_000_000 }));
        }
        let dq = &self.queues[q];
        let mut out = Vec::new();
        let mut i = dq.used_seen;
        while i != target {
            let at = dq.used + 4 + u64::from(i % dq.size) * 8;
            let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
            out.push((u32::from_le(id), u32::from_le(len)));
            i = i.wrapping_add(1);
        }
        self.queues[q].used_seen = target;
        out
    }

    /// Reads and clears the interrupt count of MSI-X vector `v`.
    pub fn take_irq(&self, v: usize) -> u64 {
        let mut b = [0u8; 8];
        match rustix::io::read(&self.irqs[v], &mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            _ => 0,
        }
    }

    /// Scratch bytes in queue `q`'s area (reused round-robin).
    pub fn scratch(&mut self, q: usize, len: u64) -> u64 {
        let dq = &mut self.queues[q];
        if dq.next_scratch + len > 0x4000 {
            dq.next_scratch = 0;
        }
        let a = dq.scratch + dq.next_scratch;
        dq.next_scratch += (len + 15) & !15;
        a
    }

    /// Builds a block request (header, optional data, status) on queue `q` without
    /// kicking; returns (head, status address).
    pub fn blk_request(&mut self, q: usize, kind: u32, sector: u64, data: Option<(u64, u32, bool)>) -> (u16, u64) {
        let hdr = self.scratch(q, 16);
        let status = self.scratch(q, 1);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
        let mut descs = vec![D { addr: hdr, len: 16, write: false }];
        if let Some((addr, len, write)) = data {
            descs.push(D { addr, len, write });
        }
        descs.push(D { addr: status, len: 1, write: true });
        (self.add_chain(q, &descs), status)
    }

    /// One block request, kicked and waited for: returns (status, used length).
    pub fn blk(&mut self, q: usize, kind: u32, sector: u64, data: Option<(u64, u32, bool)>) -> (u8, u32) {
        let (head, status) = self.blk_request(q, kind, sector, data);
        self.kick(q);
        let used = self.wait_used(q, 1);
        assert_eq!(used[0].0, u32::from(head), "the used element names the chain's head");
        (self.mem.read_obj(GuestAddress(status)).unwrap(), used[0].1)
    }

    /// A discard / write-zeroes segment at `addr`.
    pub fn segment(&self, addr: u64, sector: u64, sectors: u32, flags: u32) {
        let mut s = [0u8; 16];
        s[0..8].copy_from_slice(&sector.to_le_bytes());
        s[8..12].copy_from_slice(&sectors.to_le_bytes());
        s[12..16].copy_from_slice(&flags.to_le_bytes());
        self.mem.write_slice(&s, GuestAddress(addr)).unwrap();
    }
}

/// The expected image byte `i` of [`image`].
pub fn pattern(i: u64) -> u8 {
    ((i / 512) as u8) ^ (i as u8)
}

/// A server run on a thread of the test, listening at `sock`; shut down and joined on drop
/// (the server's own result must be `Ok`).
pub struct Served {
    pub sock: PathBuf,
    stop: vfio_user_server::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<vfio_user_server::Result<()>>>,
}

impl Served {
    /// Binds `sock` for `server` and runs it on a thread.
    pub fn serve<D: vfio_user_server::Device + 'static>(
        sock: PathBuf,
        mut server: vfio_user_server::Server<D>,
    ) -> Served {
        let listener = vfio_user_server::Listener::bind(&sock).unwrap();
        server.set_endpoint(vfio_user_server::Endpoint::Listener(listener));
        let stop = server.shutdown_handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        Served { sock, stop, thread }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}
