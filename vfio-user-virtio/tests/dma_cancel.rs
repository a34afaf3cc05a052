// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Reset and migration STOP while a queue worker waits for a DMA reply on the main socket
//! (guest memory mapped without fd, no twin socket): the socket thread cancels the wait
//! instead of waiting for a reply that only it would receive. The server's DMA-reply
//! timeout is 600 s, so a reset or STOP that waited for the reply, or for the timeout,
//! would not return within the client's bound, and the client's answer is held until the
//! device has given up the request: the order, not a clock, is what is checked.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use vfio_user_client::{Config, GuestMemoryAccess, MigState};
use vfio_user_server::Timeouts;
use vfio_user_virtio::blk::{BlkConfig, VirtioBlk};
use vfio_user_virtio::{VirtioDevice, VirtioPci};
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};

/// The request's data buffer (the client's DMA_READ of it is the one held).
const DATA: u64 = 9 << 20;
const SECTORS: u64 = 16384;
/// Longest the held DMA_READ waits for the device to give the request up (a hang guard).
const HOLD_BOUND: Duration = Duration::from_secs(30);
/// The client's bound on DEVICE_RESET and on the STOP transition.
const CLIENT_BOUND: Duration = Duration::from_secs(60);

/// VirtioBlk, counting the requests whose `handle` has returned.
struct Counted {
    blk: VirtioBlk,
    handled: Arc<AtomicU64>,
}

impl VirtioDevice for Counted {
    fn device_type(&self) -> u16 {
        self.blk.device_type()
    }
    fn class_code(&self) -> u32 {
        self.blk.class_code()
    }
    fn num_queues(&self) -> u16 {
        self.blk.num_queues()
    }
    fn queue_max_size(&self) -> u16 {
        self.blk.queue_max_size()
    }
    fn features(&self) -> u64 {
        self.blk.features()
    }
    fn config_size(&self) -> usize {
        self.blk.config_size()
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        self.blk.read_config(offset, data)
    }
    fn reset(&self) {
        self.blk.reset()
    }
    fn handle<M: GuestMemory>(&self, queue: u16, mem: &M, chain: DescriptorChain<&M>) -> u32 {
        let n = self.blk.handle(queue, mem, chain);
        self.handled.fetch_add(1, Ordering::SeqCst);
        n
    }
    fn save(&self) -> Vec<u8> {
        self.blk.save()
    }
    fn restore(&self, state: &[u8]) -> vfio_user_virtio::Result<()> {
        self.blk.restore(state)
    }
}

/// What the held DMA_READ saw.
#[derive(Debug, Default)]
struct Held {
    /// The client received the DMA_READ of the data buffer and is holding its reply.
    caught: bool,
    /// Released because the device's `handle` returned first (true) or at [`HOLD_BOUND`].
    released_after_handle: Option<bool>,
}

/// Guest memory served to the server's DMA messages, holding back the reply to the first
/// DMA_READ of [`DATA`] after [`Trap::arm`] until the device's `handle` of that request has
/// returned, i.e. until the server gave the request up without the reply.
struct Trap {
    mem: Arc<GuestMemoryMmap>,
    armed: AtomicBool,
    handled: Arc<AtomicU64>,
    held: Mutex<Held>,
    cv: Condvar,
}

impl Trap {
    fn arm(&self) {
        *self.held.lock().unwrap() = Held::default();
        self.armed.store(true, Ordering::SeqCst);
    }

    fn hold(&self, addr: u64) {
        if addr != DATA || !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        // The request reading this buffer is inside `handle`: it has not returned yet.
        let before = self.handled.load(Ordering::SeqCst);
        self.held.lock().unwrap().caught = true;
        self.cv.notify_all();
        let start = Instant::now();
        let after_handle = loop {
            if self.handled.load(Ordering::SeqCst) > before {
                break true;
            }
            if start.elapsed() > HOLD_BOUND {
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.held.lock().unwrap().released_after_handle = Some(after_handle);
    }

    /// Waits until the DMA_READ is held (at most [`HANG`]).
    fn wait_caught(&self) {
        let held = self.held.lock().unwrap();
        let (held, _) = self.cv.wait_timeout_while(held, HANG, |h| !h.caught).unwrap();
        assert!(held.caught, "the worker read the data buffer by message");
    }

    fn released_after_handle(&self) -> Option<bool> {
        self.held.lock().unwrap().released_after_handle
    }
}

impl GuestMemoryAccess for Trap {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), i32> {
        self.hold(addr);
        self.mem.read_slice(buf, GuestAddress(addr)).map_err(|_| libc::EFAULT)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), i32> {
        self.mem.write_slice(data, GuestAddress(addr)).map_err(|_| libc::EFAULT)
    }
}

impl Served {
    fn start(dir: &Path, image: &Path, handled: Arc<AtomicU64>) -> Served {
        let blk = VirtioBlk::open(image, BlkConfig::default()).unwrap();
        let mut server = VirtioPci::server(Counted { blk, handled }).unwrap();
        server.set_timeouts(Timeouts { dma_reply: Duration::from_secs(600), ..Timeouts::default() });
        Served::serve(dir.join("blk.sock"), server)
    }
}

/// A server and a message-DMA client whose DMA_READ of [`DATA`] can be held.
fn setup(dir: &Path) -> (Served, Vmm, Arc<Trap>, PathBuf) {
    let image = image(dir, "disk.img", SECTORS);
    let handled = Arc::new(AtomicU64::new(0));
    let served = Served::start(dir, &image, handled.clone());
    let mut trap = None;
    let vmm = Vmm::connect_with(&served.sock, Sharing::Message, Kick::Posted, |mem| {
        let t = Arc::new(Trap {
            mem,
            armed: AtomicBool::new(false),
            handled,
            held: Mutex::new(Held::default()),
            cv: Condvar::new(),
        });
        trap = Some(t.clone());
        // No twin socket: the worker's DMA replies come on the main socket, routed by the
        // thread that handles the reset.
        Config::default().dma_memory(t).twin_socket(false).reset_timeout(CLIENT_BOUND).timeout(CLIENT_BOUND)
    });
    (served, vmm, trap.unwrap(), image)
}

/// Publishes a 4 KiB write of `fill` at `sector` from [`DATA`] and kicks, the trap armed;
/// returns the status byte's address once the worker waits for the held DMA_READ.
fn held_write(vmm: &mut Vmm, trap: &Trap, sector: u64, fill: u8) -> u64 {
    vmm.mem.write_slice(&[fill; 4096], GuestAddress(DATA)).unwrap();
    trap.arm();
    let (_, status) = vmm.blk_request(0, T_OUT, sector, Some((DATA, 4096, false)));
    vmm.kick(0);
    trap.wait_caught();
    status
}

#[test]
fn reset_cancels_a_workers_message_dma_wait() {
    let dir = test_dir("cancel-reset");
    let (_served, mut vmm, trap, image) = setup(&dir);
    vmm.init(1, u64::MAX);
    assert_eq!(vmm.blk(0, T_IN, 0, Some((DATA, 512, true))), (S_OK, 513));
    let used = vmm.used_idx(0);
    let status = held_write(&mut vmm, &trap, 8, 0xa5);
    // The worker waits for the held reply; the socket thread must not wait for it.
    vmm.client.reset().expect("reset returns while the client holds the worker's DMA reply");
    assert_eq!(trap.released_after_handle(), Some(true), "the device gave the request up before the reply came");
    assert_eq!(vmm.status(), 0);
    assert_eq!(vmm.used_idx(0), used, "the cut-short request is not completed");
    assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(status)).unwrap(), 0xff, "nor its status written");
    // The late reply was dropped and the connection serves on.
    vmm.init(1, u64::MAX);
    vmm.mem.write_slice(&[0x5a; 4096], GuestAddress(DATA)).unwrap();
    assert_eq!(vmm.blk(0, T_OUT, 16, Some((DATA, 4096, false))), (S_OK, 1));
    let mut got = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&image).unwrap(), &mut got, 16 * 512).unwrap();
    assert_eq!(got, vec![0x5a; 4096]);
}

#[test]
fn stop_takes_the_request_back_and_running_serves_it_again() {
    let dir = test_dir("cancel-stop");
    let (_served, mut vmm, trap, image) = setup(&dir);
    vmm.init(1, u64::MAX);
    let used = vmm.used_idx(0);
    let status = held_write(&mut vmm, &trap, 24, 0xc3);
    vmm.client
        .set_migration_state_with_timeout(MigState::Stop, CLIENT_BOUND)
        .expect("STOP returns while the client holds the worker's DMA reply");
    assert_eq!(trap.released_after_handle(), Some(true), "the device gave the request up before the reply came");
    assert_eq!(vmm.used_idx(0), used, "the request is not completed while stopped");
    assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(status)).unwrap(), 0xff);
    // RUNNING again: the request is served from the start (the trap is spent).
    vmm.client.set_migration_state_with_timeout(MigState::Running, CLIENT_BOUND).unwrap();
    let done = vmm.wait_used(0, 1);
    assert_eq!(done[0].1, 1, "status byte written");
    assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(status)).unwrap(), S_OK);
    let mut got = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&image).unwrap(), &mut got, 24 * 512).unwrap();
    assert_eq!(got, vec![0xc3; 4096]);
}
