// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user demo`: the whole protocol end to end, with no set-up. A thread serves the
//! demo device on a socket in a fresh temporary directory; the client connects to it over
//! that socket, inspects the device, maps a memfd as DMA memory, installs an eventfd for
//! MSI-X vector 0, rings the doorbell, waits for the interrupt, checks the pattern the
//! device wrote by DMA, measures config-read latency, and tears everything down.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::{memfd_create, MemfdFlags};
use vfio_user_client::{Client, Config, DmaProt};
use vfio_user_proto::wire::{PCI_CONFIG_REGION_INDEX, PCI_MSIX_IRQ_INDEX};
use vfio_user_server::{Listener, ShutdownHandle};

use crate::{devices, inspect, pci, stats};

/// IOVA at which the demo maps its DMA memory.
const IOVA: u64 = 0x1_0000_0000;
/// Size of the DMA memory.
const DMA_SIZE: u64 = 0x10_0000;
/// Where in it the device is asked to write, and how much.
const TARGET_OFFSET: u64 = 0x2000;
const TARGET_LEN: u32 = 0x1000;
const PATTERN: u32 = 0xc0ffee42;
/// Config reads timed for the latency figure.
const LATENCY_READS: usize = 10_000;

/// The server thread and its socket directory; stopped and removed on drop, also on error.
struct ServerThread {
    /// Removed (with tempfile) when this is dropped, after the server stopped.
    _dir: tempfile::TempDir,
    stop: Option<ShutdownHandle>,
    thread: Option<JoinHandle<Result<(), vfio_user_server::Error>>>,
}

impl ServerThread {
    fn stop(&mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            s.shutdown();
        }
        match self.thread.take().map(|t| t.join()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(format!("server: {e}")),
            Some(Err(_)) => Err("the server thread panicked".into()),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn start_server() -> Result<(ServerThread, PathBuf), String> {
    let dir = tempfile::Builder::new()
        .prefix("vfio-user-demo-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let path = dir.path().join("demo.sock");
    let mut st = ServerThread { _dir: dir, stop: None, thread: None };
    let mut server = devices::demo_server().map_err(|e| format!("building the demo device: {e}"))?;
    let listener = Listener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    server.set_endpoint(vfio_user_server::Endpoint::Listener(listener));
    st.stop = Some(server.shutdown_handle());
    st.thread = Some(std::thread::spawn(move || server.run()));
    Ok((st, path))
}

fn check(what: &str, r: Result<(), vfio_user_client::Error>) -> Result<(), String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// Runs the demo, printing as it goes.
pub fn run() -> Result<(), String> {
    println!("vfio-user demo: a sample device served in this process, driven by the client over a real UNIX socket.");
    let (mut server, path) = start_server()?;
    println!(
        "Server: demo device {:04x}:{:04x} listening on {}",
        devices::DEMO_VENDOR,
        devices::DEMO_DEVICE,
        path.display()
    );

    let client = Client::connect(&path, Config::default().timeout(Duration::from_secs(5)))
        .map_err(|e| format!("connecting: {e}"))?;
    println!("Client: connected");
    print!("{}", inspect::negotiated(&client));
    print!("{}", inspect::device_info(&client));
    print!("{}", inspect::regions(&client).map_err(|e| format!("region info: {e}"))?);
    print!("{}", inspect::irqs(&client).map_err(|e| format!("IRQ info: {e}"))?);
    let bars = inspect::size_bars(&client).map_err(|e| format!("sizing BARs: {e}"))?;
    let config = inspect::read_config(&client).map_err(|e| format!("reading config space: {e}"))?;
    print!("{}", inspect::config_summary(&config, &bars));

    // DMA memory: a memfd the server maps through the fd it receives.
    let mem = memfd_create("vfio-user-demo-dma", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| format!("memfd_create: {e}"))?;
    rustix::fs::ftruncate(&mem, DMA_SIZE).map_err(|e| format!("ftruncate: {e}"))?;
    rustix::fs::fcntl_add_seals(&mem, rustix::fs::SealFlags::SHRINK).map_err(|e| format!("F_SEAL_SHRINK: {e}"))?;
    check("DMA_MAP", client.dma_map_fd(IOVA, DMA_SIZE, mem.as_fd(), 0, DmaProt::READ_WRITE))?;
    println!("DMA: mapped a {} memfd at IOVA {IOVA:#x} (read/write)", inspect::size(DMA_SIZE));

    // Interrupt: an eventfd for MSI-X vector 0, and MSI-X enabled in config space as a VMM
    // would.
    let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
    check("SET_IRQS", client.enable_irq_eventfds(PCI_MSIX_IRQ_INDEX, 0, &[efd.as_fd()]))?;
    if let Some(&(cap, _)) = pci::capabilities(&config).iter().find(|&&(_, id)| id == 0x11) {
        let ctl = u16::from_le_bytes([config[cap as usize + 2], config[cap as usize + 3]]);
        let ctl = (ctl | 0x8000) & !0x4000; // MSI-X Enable, Function Mask off
        check("enabling MSI-X", client.region_write(PCI_CONFIG_REGION_INDEX, u64::from(cap) + 2, &ctl.to_le_bytes()))?;
    }
    println!("IRQ: eventfd installed for MSI-X vector 0, MSI-X enabled");

    // Ring the doorbell.
    let target = IOVA + TARGET_OFFSET;
    let mut regs = Vec::new();
    regs.extend_from_slice(&target.to_le_bytes());
    regs.extend_from_slice(&TARGET_LEN.to_le_bytes());
    regs.extend_from_slice(&PATTERN.to_le_bytes());
    check("programming the DMA", client.region_write(0, devices::REG_ADDR, &regs))?;
    let t0 = Instant::now();
    check("ringing the doorbell", client.region_write(0, devices::REG_DOORBELL, &1u32.to_le_bytes()))?;
    println!("Doorbell: asked the device to write {TARGET_LEN} bytes of {PATTERN:#010x} at IOVA {target:#x}");
    wait_eventfd(&efd, Duration::from_secs(5))?;
    let irq_latency = t0.elapsed();
    println!("IRQ: MSI-X vector 0 fired ({} µs after the doorbell write was sent)", irq_latency.as_micros());
    let mut status = [0u8; 8];
    check("reading status", client.region_read(0, devices::REG_DONE, &mut status))?;
    let errno = u32::from_le_bytes([status[4], status[5], status[6], status[7]]);
    if errno != 0 {
        return Err(format!("the device's DMA failed: errno {errno}"));
    }
    let mut got = vec![0u8; TARGET_LEN as usize + 8];
    rustix::io::pread(&mem, &mut got, TARGET_OFFSET - 4).map_err(|e| format!("reading the memfd: {e}"))?;
    let inside = got[4..4 + TARGET_LEN as usize].chunks(4).all(|c| c == PATTERN.to_le_bytes());
    let outside = got[..4] == [0; 4] && got[4 + TARGET_LEN as usize..] == [0; 4];
    if !inside || !outside {
        return Err("the pattern in DMA memory is not what the device was asked to write".into());
    }
    println!("DMA: verified {TARGET_LEN} bytes of {PATTERN:#010x} in the memfd, neighbouring bytes untouched");

    // Latency of the smallest round trip.
    let mut lat = Vec::with_capacity(LATENCY_READS);
    let mut b = [0u8; 4];
    for _ in 0..LATENCY_READS {
        let t = Instant::now();
        check("config read", client.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut b))?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let s = stats::Summary::of(&mut lat);
    println!(
        "Latency: {LATENCY_READS} lock-step 4-byte config reads: p50 {} p99 {} (max {})",
        stats::us(s.p50),
        stats::us(s.p99),
        stats::us(s.max)
    );

    check("disabling MSI-X", client.disable_irqs(PCI_MSIX_IRQ_INDEX))?;
    check("DMA_UNMAP", client.dma_unmap(IOVA, DMA_SIZE))?;
    println!("DMA: unmapped; IRQ: disabled");
    check("disconnecting", client.shutdown())?;
    drop(client);
    server.stop()?;
    drop(server);
    let _: OwnedFd = mem;
    if path.exists() {
        return Err(format!("{} still exists after the server stopped", path.display()));
    }
    println!("Done: client disconnected, server stopped, socket directory removed. All checks passed.");
    Ok(())
}

fn wait_eventfd(efd: &OwnedFd, timeout: Duration) -> Result<(), String> {
    let ts = Timespec { tv_sec: timeout.as_secs() as _, tv_nsec: timeout.subsec_nanos() as _ };
    let mut fds = [PollFd::new(efd, PollFlags::IN)];
    match poll(&mut fds, Some(&ts)) {
        Ok(0) => Err(format!("no interrupt within {} s", timeout.as_secs())),
        Ok(_) => {
            let mut v = [0u8; 8];
            rustix::io::read(efd, &mut v).map_err(|e| format!("reading the eventfd: {e}"))?;
            Ok(())
        }
        Err(e) => Err(format!("poll: {e}")),
    }
}
