// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-blk device's queue, driven from arbitrary guest memory and notifications.
//!
//! Input: a config byte (bits 0-1: how the 64 KiB of client memory is mapped: a mmapped
//! memfd (sealed against shrinking), a FILE_IO memfd, message DMA through a fake transport, or half mmapped and half
//! by message; bit 2: read-only disk; bit 3: EVENT_IDX; bits 4-6: queue size 2..64), the
//! descriptor table, available and used ring addresses (u32 each), a u16 length and that
//! many bytes of initial memory, then up to 32 steps: `op % 4` 0 = a notification
//! (`serve_queue`), 3 = a notification served as a queue worker does, with interrupt
//! moderation (`serve_queue_polling`, one `Moderation` across steps, no polling), 1 = the
//! guest writes bytes (u16 offset, u8 length, bytes), 2 = the guest sets the available
//! index (u16).
//!
//! Checks: nothing panics; the used index in memory is the queue's after every
//! notification that completed requests, and moved by exactly the requests completed; the
//! outcome's `notify` says whether the driver was signalled; the image keeps its size, and
//! its contents when read-only.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use common::{memfd, Input};
use libfuzzer_sys::fuzz_target;
use vfio_user_dma::{DmaProt, DmaSpace, DmaTransport, MapRequest, Result};
use vfio_user_virtio::blk::{BlkConfig, VirtioBlk};
use vfio_user_virtio::{serve_queue, serve_queue_polling, Moderation, Pacing};
use virtio_queue::{Queue, QueueState, QueueT};

const MEM: u64 = 0x1_0000;
const SECTORS: u64 = 64;

/// The client's RAM behind message mappings.
struct Ram(Mutex<Vec<u8>>);

impl DmaTransport for Ram {
    fn max_data_xfer_size(&self) -> usize {
        4096
    }
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        let m = self.0.lock().unwrap();
        buf.copy_from_slice(&m[iova as usize..iova as usize + buf.len()]);
        Ok(())
    }
    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()> {
        let mut m = self.0.lock().unwrap();
        m[iova as usize..iova as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// A memfd sealed against shrinking (the space mmaps only those).
fn sealed_memfd(size: u64) -> std::os::fd::OwnedFd {
    let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
    let fd = rustix::fs::memfd_create("fuzz", flags).expect("memfd_create");
    rustix::fs::ftruncate(&fd, size).expect("ftruncate");
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).expect("seal");
    fd
}

fn map(space: &DmaSpace, iova: u64, size: u64, kind: u8) {
    let fd = (kind < 2).then(|| if kind == 0 { sealed_memfd(MEM) } else { memfd(MEM) });
    let req = MapRequest { iova, size, file_offset: iova, prot: DmaProt::READ_WRITE, fd, file_io: kind == 1 };
    space.map(req).expect("map");
}

fn image_bytes(f: &File) -> Vec<u8> {
    let mut v = vec![0u8; (SECTORS * 512) as usize];
    f.read_exact_at(&mut v, 0).expect("image read");
    v
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cfg = input.u8();
    let space = DmaSpace::default();
    space.set_transport(Some(Arc::new(Ram(Mutex::new(vec![0; MEM as usize])))));
    match cfg & 3 {
        3 => {
            map(&space, 0, MEM / 2, 0);
            map(&space, MEM / 2, MEM / 2, 2);
        }
        k => map(&space, 0, MEM, k),
    }
    let read_only = cfg & 4 != 0;
    let size = 1u16 << (1 + (cfg >> 4) % 6);
    let (desc, avail, used) = (input.u32(), input.u32(), input.u32());
    let n = usize::from(input.u16()).min(MEM as usize);
    let _ = space.write(0, input.bytes(n));

    let disk = File::from(memfd(SECTORS * 512));
    disk.write_all_at(&vec![0x5a; (SECTORS * 512) as usize], 0).expect("image");
    let blk =
        VirtioBlk::new(disk.try_clone().expect("dup"), BlkConfig { queue_size: 64, read_only, ..Default::default() })
            .expect("device");
    let st = QueueState {
        max_size: 64,
        next_avail: 0,
        next_used: 0,
        event_idx_enabled: cfg & 8 != 0,
        size,
        ready: true,
        desc_table: desc.into(),
        avail_ring: avail.into(),
        used_ring: used.into(),
    };
    let Ok(mut queue) = Queue::try_from(st) else { return };
    let before = image_bytes(&disk);
    let mut moderation = Moderation::default();
    for _ in 0..32 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 4 {
            1 => {
                let off = u64::from(input.u16());
                let len = usize::from(input.u8());
                let _ = space.write(off, input.bytes(len));
            }
            2 => {
                let idx = input.u16();
                let _ = space.write(u64::from(avail) + 2, &idx.to_le_bytes());
            }
            op => {
                let used_before = queue.next_used();
                let out = if op == 3 {
                    let pacing = Pacing {
                        poll: std::time::Duration::ZERO,
                        signal_after: std::time::Duration::MAX,
                        quiet: std::time::Duration::ZERO,
                        moderate: Some(std::time::Duration::MAX),
                    };
                    let mut signals = 0;
                    let out = serve_queue_polling(
                        &blk,
                        0,
                        &mut queue,
                        &space,
                        || true,
                        pacing,
                        &mut moderation,
                        || signals += 1,
                    );
                    assert_eq!(out.notify, signals > 0);
                    out
                } else {
                    serve_queue(&blk, 0, &mut queue, &space, || true)
                };
                let out = std::hint::black_box(out);
                assert_eq!(queue.next_used().wrapping_sub(used_before), out.completed as u16);
                if out.completed > 0 && !out.broken {
                    let mut idx = [0u8; 2];
                    if space.read(u64::from(used) + 2, &mut idx).is_ok() {
                        assert_eq!(u16::from_le_bytes(idx), queue.next_used(), "used index in memory");
                    }
                }
            }
        }
    }
    let after = image_bytes(&disk);
    assert_eq!(disk.metadata().expect("stat").len(), SECTORS * 512, "image size");
    if read_only {
        assert!(before == after, "a read-only image changed");
    }
});
