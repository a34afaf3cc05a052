// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `DmaHandle::read_by_message` / `write_by_message` against the workspace's client: a
//! mapping made with an fd is reached with DMA_READ / DMA_WRITE all the same, split at the
//! client's `max_data_xfer_size` (4 KiB here, the least our client advertises), on the main
//! socket and on the twin socket.
//!
//! The client serves DMA from a guest memory of its own that is *not* the fd it mapped, so
//! where bytes land tells which path carried them: the memfd for the server's direct
//! access, the client's guest memory for messages.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use vfio_user_client::{Client, Config, DmaProt};
use vfio_user_server::vfio_user_dma::vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vfio_user_server::{Bar, Device, DeviceDescription, DmaHandle, Endpoint, Listener, Server, ShutdownHandle};

const PAGE: u64 = 4096;
const IOVA: u64 = 0x10_0000;

struct NoRegions;

impl Device for NoRegions {}

struct Setup {
    dir: PathBuf,
    dma: DmaHandle,
    stop: ShutdownHandle,
    serving: Option<JoinHandle<vfio_user_server::Result<()>>>,
    client: Client,
    guest: Arc<GuestMemoryMmap>,
    mem: OwnedFd,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.client.shutdown();
        self.stop.shutdown();
        if let Some(s) = self.serving.take() {
            s.join().unwrap().unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup(name: &str, twin: bool) -> Setup {
    let dir = std::env::temp_dir().join(format!("dma-by-message-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("s.sock");
    let desc = DeviceDescription::builder(0x1af4, 0x10f0).bar(0, Bar::memory32(16)).build().unwrap();
    let mut server = Server::new(desc, NoRegions).unwrap();
    server.set_endpoint(Endpoint::Listener(Listener::bind(&sock).unwrap()));
    let dma = server.dma_handle();
    let stop = server.shutdown_handle();
    let serving = Some(std::thread::spawn(move || server.run()));
    // The client's guest memory is anonymous memory at the same IOVA as the memfd mapping.
    let guest = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(IOVA), 4 * PAGE as usize)]).unwrap());
    let config = Config::default().twin_socket(twin).max_data_xfer_size(4096).guest_memory(guest.clone());
    let client = Client::connect(&sock, config).unwrap();
    let mem = rustix::fs::memfd_create("dma", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)
        .unwrap();
    rustix::fs::ftruncate(&mem, 4 * PAGE).unwrap();
    rustix::fs::fcntl_add_seals(&mem, rustix::fs::SealFlags::SHRINK).unwrap();
    client.dma_map_fd(IOVA, 4 * PAGE, mem.as_fd(), 0, DmaProt::READ_WRITE).unwrap();
    Setup { dir, dma, stop, serving, client, guest, mem }
}

fn pread(fd: &OwnedFd, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    assert_eq!(rustix::io::pread(fd, &mut b, off).unwrap(), len);
    b
}

fn check_forced_messages(s: &Setup) {
    s.client.start_dma_logging(PAGE, &[]).unwrap();
    // A device thread: 12 KiB by message into the fd mapping's first three pages, 3 KiB
    // directly into its fourth, then 8 KiB read back by message.
    let dma = s.dma.clone();
    let device = std::thread::spawn(move || -> vfio_user_server::vfio_user_dma::Result<Vec<u8>> {
        dma.write_by_message(IOVA, &[b'M'; 3 * PAGE as usize])?;
        dma.write(IOVA + 3 * PAGE, &[b'D'; 3072])?;
        let mut back = vec![0u8; 2 * PAGE as usize];
        dma.read_by_message(IOVA + 1024, &mut back)?;
        Ok(back)
    });
    let back = device.join().unwrap().unwrap();
    assert_eq!(back, vec![b'M'; 2 * PAGE as usize]);
    // 3 DMA_WRITE and 2 DMA_READ of 4 KiB reached the client.
    assert_eq!(s.client.stats().dma_served, 5);
    // The messages were served from the client's guest memory, the memfd's first page
    // was not touched; the direct write went to the memfd only.
    let mut g = vec![0u8; 3 * PAGE as usize];
    s.guest.read_slice(&mut g, GuestAddress(IOVA)).unwrap();
    assert_eq!(g, vec![b'M'; 3 * PAGE as usize]);
    assert!(pread(&s.mem, 0, 3 * PAGE as usize).iter().all(|&b| b == 0));
    assert_eq!(pread(&s.mem, 3 * PAGE, 3072), vec![b'D'; 3072]);
    let mut g = vec![0u8; PAGE as usize];
    s.guest.read_slice(&mut g, GuestAddress(IOVA + 3 * PAGE)).unwrap();
    assert!(g.iter().all(|&b| b == 0));
    // Only the directly written page is in the server's dirty log.
    assert_eq!(s.client.report_dma_logging(IOVA, 4 * PAGE, PAGE).unwrap(), vec![0b1000]);
    // Out of the mapping: EFAULT before anything is sent.
    assert_eq!(s.dma.write_by_message(IOVA + 4 * PAGE - 4, &[0; 8]).unwrap_err().errno(), libc::EFAULT);
    assert_eq!(s.client.stats().dma_served, 5);
}

#[test]
fn fd_mapping_reached_by_messages_on_the_main_socket() {
    let s = setup("main", false);
    check_forced_messages(&s);
}

#[test]
fn fd_mapping_reached_by_messages_on_the_twin_socket() {
    let s = setup("twin", true);
    assert!(s.client.negotiated().twin_socket);
    check_forced_messages(&s);
}

#[test]
fn read_only_mapping_refuses_a_write_by_message() {
    let s = setup("ro", false);
    let ro = rustix::fs::memfd_create("ro", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)
        .unwrap();
    rustix::fs::ftruncate(&ro, PAGE).unwrap();
    rustix::fs::fcntl_add_seals(&ro, rustix::fs::SealFlags::SHRINK).unwrap();
    s.client.dma_map_fd(0x20_0000, PAGE, ro.as_fd(), 0, DmaProt::READ).unwrap();
    let dma = s.dma.clone();
    let e = std::thread::spawn(move || dma.write_by_message(0x20_0000, b"no")).join().unwrap().unwrap_err();
    assert_eq!(e.errno(), libc::EACCES);
    assert_eq!(s.client.stats().dma_served, 0);
}
