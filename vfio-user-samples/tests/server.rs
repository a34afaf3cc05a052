// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `server` binary driven by the workspace's client, as libvfio-user's sample client
//! drives libvfio-user's sample server: identity and regions, BAR0 and BAR1, the timer's
//! INTx and DMA (direct and by message, with DMA dirty logging), and a migration from one
//! `server` process to another.
//!
//! The client serves DMA_READ / DMA_WRITE from a guest memory of its own that is not the
//! memfd it maps for DMA, so where bytes land shows how the device wrote them: the memfd
//! for direct DMA, the client's guest memory for DMA by message.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use vfio_user_client::{Client, Config, DmaProt, MigState};
use vfio_user_samples::server::{BAR1_MMAP_AREAS, BAR1_SIZE, BAR1_USED, STOP_COPY_STREAM_SIZE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const PAGE: u64 = 4096;
/// Pages of client memory (the memfd mapped for DMA, and the guest memory).
const PAGES: u64 = 8;

/// A temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("vfio-user-samples-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `server` process, killed on drop if still running.
struct Proc(Child);

impl Proc {
    /// Starts `server -v <sock>` and waits for the socket to appear.
    fn spawn(sock: &Path) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("-v")
            .arg(sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "the server did not create its socket");
            std::thread::sleep(Duration::from_millis(5));
        }
        p
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The VMM side: a client whose DMA is served from `guest`, and the memfd it maps.
struct Vmm {
    client: Client,
    guest: Arc<GuestMemoryMmap>,
    mem: OwnedFd,
}

impl Vmm {
    /// Connects as libvfio-user's sample client does: no twin socket, so the device's DMA
    /// messages arrive on the main socket.
    fn connect(sock: &Path) -> Vmm {
        let guest =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (PAGES * PAGE) as usize)]).unwrap());
        let config = Config::default().twin_socket(false).guest_memory(guest.clone());
        let client = Client::connect(sock, config).unwrap();
        let mem = rustix::fs::memfd_create(
            "client-ram",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
        )
        .unwrap();
        rustix::fs::ftruncate(&mem, PAGES * PAGE).unwrap();
        rustix::fs::fcntl_add_seals(&mem, rustix::fs::SealFlags::SHRINK).unwrap();
        Vmm { client, guest, mem }
    }

    /// DMA_MAP of page `page` of the memfd at IOVA `page * 4096`, one page.
    fn map_page(&self, page: u64) {
        self.client.dma_map_fd(page * PAGE, PAGE, self.mem.as_fd(), page * PAGE, DmaProt::READ_WRITE).unwrap();
    }

    fn memfd(&self, iova: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        assert_eq!(rustix::io::pread(&self.mem, &mut b, iova).unwrap(), len);
        b
    }

    fn guest(&self, iova: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.guest.read_slice(&mut b, GuestAddress(iova)).unwrap();
        b
    }

    /// Waits until the client has served `n` DMA requests in all.
    fn wait_dma_served(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.client.stats().dma_served < n {
            assert!(Instant::now() < deadline, "served {} DMA requests, expected {n}", self.client.stats().dma_served);
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(self.client.stats().dma_served, n, "no more DMA than expected");
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn eventfd() -> OwnedFd {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK).unwrap()
}

/// Waits up to `timeout` for the eventfd to be signalled; returns and resets its count.
fn wait_irq(fd: &OwnedFd, timeout: Duration) -> u64 {
    let ts = Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let _ = poll(&mut fds, Some(&ts));
    let mut b = [0u8; 8];
    match rustix::io::read(fd, &mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

/// The data the device's DMA run leaves: 1 KiB each of `A`, `B`, `C`, `D`.
fn abcd() -> Vec<u8> {
    (0..4u8).flat_map(|i| vec![b'A' + i; 1024]).collect()
}

#[test]
fn identity_regions_bars_and_exit_with_the_client() {
    let dir = Dir::new("identity");
    let sock = dir.0.join("sock");
    let mut server = Proc::spawn(&sock);
    let vmm = Vmm::connect(&sock);
    let c = &vmm.client;
    let info = c.device_info();
    assert_eq!((info.num_regions, info.num_irqs, info.resettable()), (9, 5, true));
    // The mappings the device can track, not 4096 (issue 16, item 2).
    assert_eq!(c.negotiated().peer.max_dma_maps, vfio_user_samples::server::DMA_SLOTS as u32);
    let mut ids = [0u8; 0x30];
    c.region_read(7, 0, &mut ids).unwrap();
    assert_eq!(&ids[0..4], &[0xad, 0xde, 0xef, 0xbe], "dead:beef");
    assert_eq!(&ids[0x2c..0x30], &[0xfe, 0xca, 0xbe, 0xba], "subsystem cafe:babe");
    // BAR sizing: 8 bytes decode 16, BAR1 16 KiB.
    for bar in 0..2u64 {
        c.region_write(7, 0x10 + 4 * bar, &[0xff; 4]).unwrap();
    }
    let mut bars = [0u8; 8];
    c.region_read(7, 0x10, &mut bars).unwrap();
    assert_eq!(&bars, &[0xf0, 0xff, 0xff, 0xff, 0x00, 0xc0, 0xff, 0xff]);
    assert_eq!(c.irq_info(0).unwrap().count, 1);
    assert_eq!((c.irq_info(1).unwrap().count, c.irq_info(2).unwrap().count), (0, 0));

    // Regions: BAR0 of 8 bytes, trapped; BAR1 of 16 KiB (a power of two, where the C sample
    // has 0x3000) with two sparse mmap areas.
    let r0 = c.region_info(0).unwrap();
    assert_eq!((r0.size, r0.readable(), r0.writable(), r0.mappable()), (8, true, true, false));
    let r1 = c.region_info(1).unwrap();
    assert_eq!((r1.size, r1.mappable()), (BAR1_SIZE, true));
    assert!(r1.size.is_power_of_two());
    let areas: Vec<_> = r1.sparse_areas().unwrap().iter().map(|a| (a.offset, a.size)).collect();
    assert_eq!(areas, BAR1_MMAP_AREAS.to_vec());
    for i in 2..9 {
        let r = c.region_info(i).unwrap();
        assert_eq!(r.size, if i == 7 { 256 } else { 0 }, "region {i}");
    }

    // BAR1: what the client writes by message shows in its mapping and back.
    let mapping = c.map_region(1).unwrap();
    c.region_write(1, 0x2010, b"by message").unwrap();
    let mut b = [0u8; 10];
    mapping.read(0x2010, &mut b).unwrap();
    assert_eq!(&b, b"by message");
    mapping.write(0x0ff0, b"by mapping").unwrap();
    c.region_read(1, 0x0ff0, &mut b).unwrap();
    assert_eq!(&b, b"by mapping");
    c.region_write(1, 0x1800, b"trapped").unwrap();
    let mut t = [0u8; 7];
    c.region_read(1, 0x1800, &mut t).unwrap();
    assert_eq!(&t, b"trapped");
    // Past the C sample's 0x3000 bytes, BAR1's last 4 KiB are memory too (trapped).
    c.region_write(1, 0x2ffc, &[7; 8]).unwrap();
    let mut tail = [0u8; 8];
    c.region_read(1, 0x2ffc, &mut tail).unwrap();
    assert_eq!(tail, [7; 8]);
    assert_eq!(c.region_write(1, 0x3ffc, &[0; 8]).unwrap_err().errno(), libc::EINVAL, "past BAR1");

    // BAR0: a time; reading gives now - time; 8 bytes at 0 only, no time in the past.
    c.region_write(0, 0, &(now() + 100).to_ne_bytes()).unwrap();
    let mut delta = [0u8; 8];
    c.region_read(0, 0, &mut delta).unwrap();
    assert!((-101..=-99).contains(&i64::from_ne_bytes(delta)));
    assert_eq!(c.region_write(0, 0, &(now() - 10).to_ne_bytes()).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(c.region_write(0, 0, &[0; 4]).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(c.region_read(0, 4, &mut [0; 4]).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(c.region_read(0, 8, &mut [0; 8]).unwrap_err().errno(), libc::EINVAL, "past BAR0");
    c.reset().unwrap();

    // The server serves one client: it exits 0 when the client goes away, removing its
    // socket.
    drop(mapping);
    drop(vmm);
    assert!(server.wait(Duration::from_secs(10)).success());
    assert!(!sock.exists());
}

#[test]
fn timer_raises_intx_then_dma_direct_and_by_message() {
    let dir = Dir::new("dma");
    let sock = dir.0.join("sock");
    let mut server = Proc::spawn(&sock);
    let vmm = Vmm::connect(&sock);
    let c = &vmm.client;
    for page in 0..3 {
        vmm.map_page(page);
    }
    let irq = eventfd();
    c.enable_irq_eventfds(0, 0, &[irq.as_fd()]).unwrap();
    c.start_dma_logging(PAGE, &[]).unwrap();
    c.region_write(0, 0, &(now() + 1).to_ne_bytes()).unwrap();
    assert_eq!(wait_irq(&irq, Duration::from_secs(5)), 1, "INTx");
    // 4 DMA_WRITE of 1 KiB and 2 DMA_READ of 2 KiB (our client takes 4 KiB messages;
    // libvfio-user's, with its 1 KiB limit, sees 4 DMA_READ of 1 KiB).
    vmm.wait_dma_served(6);
    // The second mapping (page 1) was written directly: the memfd has the data, the
    // client's guest memory does not. The first (page 0) was written by message: the
    // other way round.
    assert_eq!(vmm.memfd(PAGE, 4096), abcd());
    assert_eq!(vmm.guest(PAGE, 4096), vec![0; 4096]);
    assert_eq!(vmm.guest(0, 4096), abcd());
    assert_eq!(vmm.memfd(0, 4096), vec![0; 4096]);
    // The server's dirty log has the page it wrote directly, and only that one.
    assert_eq!(c.report_dma_logging(0, 3 * PAGE, PAGE).unwrap(), vec![0b010]);
    c.stop_dma_logging().unwrap();

    // Freed slots are reused: unmapping page 0 and mapping page 5 makes page 5 the first
    // mapping, which the next run writes by message.
    c.dma_unmap(0, PAGE).unwrap();
    vmm.map_page(5);
    c.region_write(0, 0, &(now() + 1).to_ne_bytes()).unwrap();
    assert_eq!(wait_irq(&irq, Duration::from_secs(5)), 1);
    vmm.wait_dma_served(12);
    assert_eq!(vmm.guest(5 * PAGE, 4096), abcd());
    assert_eq!(vmm.memfd(5 * PAGE, 4096), vec![0; 4096]);
    drop(vmm);
    assert!(server.wait(Duration::from_secs(10)).success(), "DMA never failed");
}

#[test]
fn dma_without_two_mappings_stops_the_server_with_failure() {
    let dir = Dir::new("nodma");
    let sock = dir.0.join("sock");
    let mut server = Proc::spawn(&sock);
    let vmm = Vmm::connect(&sock);
    vmm.map_page(0);
    vmm.client.region_write(0, 0, &(now() + 1).to_ne_bytes()).unwrap();
    // As the C sample exits when its DMA fails: the connection closes, status 1.
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(1));
    assert!(vmm.client.region_read(0, 0, &mut [0; 8]).is_err());
}

#[test]
fn migration_to_a_second_server_process() {
    let dir = Dir::new("migration");
    let (src_sock, dst_sock) = (dir.0.join("sock"), dir.0.join("sock_migrated"));
    let mut src = Proc::spawn(&src_sock);
    let vmm = Vmm::connect(&src_sock);
    let c = &vmm.client;
    vmm.map_page(0);
    vmm.map_page(1);
    let src_irq = eventfd();
    c.enable_irq_eventfds(0, 0, &[src_irq.as_fd()]).unwrap();
    assert_eq!(c.migration_flags().unwrap() & 4, 4, "PRE_COPY supported");
    let pattern = |seed: u8| -> Vec<u8> { (0..BAR1_USED).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect() };
    c.region_write(1, 0, &pattern(1)).unwrap();
    // The interrupt is due in 3 s; the migration must deliver it from the destination.
    let due = now() + 3;
    c.region_write(0, 0, &due.to_ne_bytes()).unwrap();

    // PRE_COPY: BAR1 while the guest keeps writing it.
    c.set_migration_state(MigState::PreCopy).unwrap();
    let mut pre = vec![0u8; 0x4000];
    assert_eq!(c.read_migration_data(&mut pre).unwrap() as u64, BAR1_USED);
    assert_eq!(&pre[..BAR1_USED as usize], &pattern(1)[..]);
    assert_eq!(c.read_migration_data(&mut pre).unwrap(), 0, "no more for now");
    c.region_write(1, 0, &pattern(2)).unwrap();
    // STOP_COPY: BAR1, then BAR0's time.
    c.set_migration_state(MigState::StopCopy).unwrap();
    let mut stream = vec![0u8; 0x4000];
    let n = c.read_migration_data(&mut stream).unwrap();
    assert_eq!(n as u64, STOP_COPY_STREAM_SIZE);
    stream.truncate(n);
    assert_eq!(&stream[..BAR1_USED as usize], &pattern(2)[..]);
    assert_eq!(&stream[BAR1_USED as usize..], &due.to_ne_bytes());
    assert!(c.region_read(1, 0, &mut [0; 4]).is_err(), "no region access while saving");
    c.set_migration_state(MigState::Stop).unwrap();

    // The destination loads the stream.
    let mut dst = Proc::spawn(&dst_sock);
    let vmm2 = Vmm::connect(&dst_sock);
    let d = &vmm2.client;
    d.set_migration_state(MigState::Resuming).unwrap();
    d.write_migration_data(&stream).unwrap();
    d.set_migration_state(MigState::Stop).unwrap();
    let mut bar1 = vec![0u8; BAR1_USED as usize];
    d.region_read(1, 0, &mut bar1).unwrap();
    assert_eq!(bar1, pattern(2));
    // Running again, it raises the source's interrupt at the time due, then does its DMA.
    d.set_migration_state(MigState::Running).unwrap();
    vmm2.map_page(0);
    vmm2.map_page(1);
    let irq = eventfd();
    d.enable_irq_eventfds(0, 0, &[irq.as_fd()]).unwrap();
    assert_eq!(wait_irq(&irq, Duration::from_secs(10)), 1, "the destination delivers the interrupt");
    assert!(now() >= due);
    vmm2.wait_dma_served(6);
    assert_eq!(vmm2.memfd(PAGE, 4096), abcd());
    assert_eq!(vmm2.guest(0, 4096), abcd());
    // The source, stopped, did nothing.
    assert_eq!(wait_irq(&src_irq, Duration::from_millis(300)), 0);
    assert_eq!(c.stats().dma_served, 0);

    drop(vmm2);
    assert!(dst.wait(Duration::from_secs(10)).success());
    drop(vmm);
    assert!(src.wait(Duration::from_secs(10)).success());
}

#[test]
fn command_line() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_server")).args(args).output().unwrap();
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing vfio-user socket path"));
    let o = run(&["-x", "/nonexistent/sock"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage: server [-v] <socketpath>"));
    let o = run(&["-v", "/nonexistent-dir/sock"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent-dir/sock"));
}
