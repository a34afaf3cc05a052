// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! virtio-blk over vfio-user with our client as the VMM: every request type on every kind
//! of DMA memory and every kind of notification, read-only mode, two queues, reset, the
//! capabilities, and hostile descriptor chains.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use vfio_user_virtio::blk::{BlkConfig, VirtioBlk};
use vfio_user_virtio::VirtioPci;
use vm_memory::{Bytes, GuestAddress};

/// Request data buffers: above half of RAM, so that `Sharing::Mixed` reaches them by message.
const DATA: u64 = 9 << 20;
/// Image size in sectors (8 MiB).
const SECTORS: u64 = 16384;

impl Served {
    fn start(dir: &Path, image: &Path, cfg: BlkConfig) -> Served {
        let server = VirtioPci::server(VirtioBlk::open(image, cfg).unwrap()).unwrap();
        Served::serve(dir.join("blk.sock"), server)
    }
}

fn file_bytes(image: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    std::fs::File::open(image).unwrap().read_exact_at(&mut v, off).unwrap();
    v
}

fn every_request_type(name: &str, sharing: Sharing, kick: Kick) {
    let dir = test_dir(name);
    let image = image(&dir, "disk.img", SECTORS);
    let served = Served::start(&dir, &image, BlkConfig::default());
    let mut vmm = Vmm::connect(&served.sock, sharing, kick);
    let features = vmm.init(1, u64::MAX);
    assert_ne!(features & (1 << 9), 0, "FLUSH offered");
    assert_eq!(features & (1 << 5), 0, "not read-only");
    // Configuration: capacity, blk_size, num_queues.
    let cap = u64::from(vmm.read32(DEVICE)) | (u64::from(vmm.read32(DEVICE + 4)) << 32);
    assert_eq!(cap, SECTORS);
    assert_eq!(vmm.read32(DEVICE + 20), 512);
    assert_eq!(vmm.read16(DEVICE + 34), 1);

    // GET_ID.
    assert_eq!(vmm.blk(0, T_GET_ID, 0, Some((DATA, 20, true))), (S_OK, 21));
    let mut id = [0u8; 20];
    vmm.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..13], b"vfio-user-blk");
    assert_eq!(&id[13..], &[0; 7]);

    // IN: eight sectors from sector 3.
    assert_eq!(vmm.blk(0, T_IN, 3, Some((DATA, 4096, true))), (S_OK, 4097));
    let mut got = vec![0u8; 4096];
    vmm.mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(3 * 512 + i as u64)), "IN data");

    // OUT: three sectors at sector 10, seen in the file at once.
    let data: Vec<u8> = (0..1536u32).map(|i| (i as u8) ^ 0xa5).collect();
    vmm.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    assert_eq!(vmm.blk(0, T_OUT, 10, Some((DATA, 1536, false))), (S_OK, 1));
    assert_eq!(file_bytes(&image, 10 * 512, 1536), data);
    assert_eq!(vmm.blk(0, T_FLUSH, 0, None), (S_OK, 1));
    // Read it back through the device.
    vmm.mem.write_slice(&[0u8; 1536], GuestAddress(DATA + 0x10000)).unwrap();
    assert_eq!(vmm.blk(0, T_IN, 10, Some((DATA + 0x10000, 1536, true))), (S_OK, 1537));
    let mut back = vec![0u8; 1536];
    vmm.mem.read_slice(&mut back, GuestAddress(DATA + 0x10000)).unwrap();
    assert_eq!(back, data);

    // A 1.5 MiB read in one descriptor (more than one transfer chunk).
    let big = 3 << 19;
    assert_eq!(vmm.blk(0, T_IN, 1000, Some((DATA, big, true))), (S_OK, big + 1));
    let mut got = vec![0u8; big as usize];
    vmm.mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(1000 * 512 + i as u64)), "big IN data");

    // WRITE_ZEROES and DISCARD.
    let seg = DATA + 0x20_0000;
    vmm.segment(seg, 20, 4, 0);
    assert_eq!(vmm.blk(0, T_WRITE_ZEROES, 0, Some((seg, 16, false))), (S_OK, 1));
    assert_eq!(file_bytes(&image, 20 * 512, 2048), vec![0u8; 2048]);
    assert_eq!(file_bytes(&image, 24 * 512, 1), vec![pattern(24 * 512)], "only the range is zeroed");
    vmm.segment(seg, 24, 8, 1);
    assert_eq!(vmm.blk(0, T_WRITE_ZEROES, 0, Some((seg, 16, false))), (S_OK, 1), "the UNMAP flag is allowed");
    assert_eq!(file_bytes(&image, 24 * 512, 4096), vec![0u8; 4096]);
    vmm.segment(seg, 64, 8, 0);
    assert_eq!(vmm.blk(0, T_DISCARD, 0, Some((seg, 16, false))), (S_OK, 1));

    // Anything else is unsupported.
    assert_eq!(vmm.blk(0, 99, 0, None), (S_UNSUPP, 1));
    assert_eq!(vmm.blk(0, 2, 0, None), (S_UNSUPP, 1), "no SCSI commands");

    assert!(vmm.take_irq(0) > 0, "completions raised MSI-X vector 0");
    drop(vmm);
}

#[test]
fn every_request_type_sealed_memfd_ioeventfd() {
    every_request_type("sealed", Sharing::SealedFd, Kick::IoEventFd);
}

#[test]
fn every_request_type_unsealed_memfd_region_write() {
    every_request_type("unsealed", Sharing::UnsealedFd, Kick::RegionWrite);
}

#[test]
fn every_request_type_message_dma_posted_writes() {
    every_request_type("message", Sharing::Message, Kick::Posted);
}

#[test]
fn every_request_type_rings_in_fd_memory_buffers_by_message() {
    every_request_type("mixed", Sharing::Mixed, Kick::IoEventFd);
}

#[test]
fn read_only_disk_refuses_every_write() {
    let dir = test_dir("ro");
    let image = image(&dir, "disk.img", SECTORS);
    let served = Served::start(&dir, &image, BlkConfig { read_only: true, ..Default::default() });
    let mut vmm = Vmm::connect(&served.sock, Sharing::SealedFd, Kick::IoEventFd);
    let offered = vmm.device_features();
    assert_ne!(offered & (1 << 5), 0, "VIRTIO_BLK_F_RO offered");
    assert_eq!(offered & ((1 << 13) | (1 << 14)), 0, "no DISCARD / WRITE_ZEROES");
    vmm.init(1, u64::MAX);
    vmm.mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(vmm.blk(0, T_OUT, 5, Some((DATA, 512, false))), (S_IOERR, 1));
    vmm.segment(DATA + 4096, 5, 1, 0);
    assert_eq!(vmm.blk(0, T_WRITE_ZEROES, 0, Some((DATA + 4096, 16, false))), (S_IOERR, 1));
    assert_eq!(vmm.blk(0, T_DISCARD, 0, Some((DATA + 4096, 16, false))), (S_IOERR, 1));
    assert_eq!(vmm.blk(0, T_FLUSH, 0, None), (S_OK, 1));
    assert_eq!(vmm.blk(0, T_IN, 5, Some((DATA, 512, true))), (S_OK, 513));
    let mut got = [0u8; 512];
    vmm.mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(5 * 512 + i as u64)));
    assert!(file_bytes(&image, 5 * 512, 512).iter().enumerate().all(|(i, &b)| b == pattern(5 * 512 + i as u64)));
}

#[test]
fn two_queues_are_served_each_with_its_own_vector() {
    let dir = test_dir("mq");
    let image = image(&dir, "disk.img", SECTORS);
    let served = Served::start(&dir, &image, BlkConfig { queues: 2, ..Default::default() });
    let mut vmm = Vmm::connect(&served.sock, Sharing::SealedFd, Kick::IoEventFd);
    let features = vmm.init(2, u64::MAX);
    assert_ne!(features & (1 << 12), 0, "MQ");
    assert_ne!(features & F_EVENT_IDX, 0, "EVENT_IDX");
    assert_eq!(vmm.read16(DEVICE + 34), 2);
    // Eight writes on each queue, to different sectors, published before either is kicked.
    let mut statuses = Vec::new();
    for q in 0..2usize {
        for r in 0..8u64 {
            let addr = DATA + (q as u64 * 8 + r) * 4096;
            vmm.mem.write_slice(&[(q as u8 + 1) * 16 + r as u8; 4096], GuestAddress(addr)).unwrap();
            let sector = 100 + (q as u64 * 8 + r) * 8;
            statuses.push(vmm.blk_request(q, T_OUT, sector, Some((addr, 4096, false))).1);
        }
    }
    vmm.kick(0);
    vmm.kick(1);
    assert_eq!(vmm.wait_used(0, 8).len(), 8);
    assert_eq!(vmm.wait_used(1, 8).len(), 8);
    for s in statuses {
        assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(s)).unwrap(), S_OK);
    }
    for i in 0..16u64 {
        let want = ((i / 8) as u8 + 1) * 16 + (i % 8) as u8;
        assert_eq!(file_bytes(&image, (100 + i * 8) * 512, 4096), vec![want; 4096]);
    }
    assert!(vmm.take_irq(0) > 0, "vector 0 for queue 0");
    assert!(vmm.take_irq(1) > 0, "vector 1 for queue 1");
    assert_eq!(vmm.take_irq(2), 0, "no configuration interrupt");
}

#[test]
fn reset_stops_the_queues_and_the_device_can_be_set_up_again() {
    let dir = test_dir("reset");
    let image = image(&dir, "disk.img", SECTORS);
    let served = Served::start(&dir, &image, BlkConfig::default());
    let mut vmm = Vmm::connect(&served.sock, Sharing::SealedFd, Kick::RegionWrite);
    vmm.init(1, u64::MAX);
    assert_eq!(vmm.blk(0, T_IN, 0, Some((DATA, 512, true))), (S_OK, 513));
    // DEVICE_RESET: everything back to its initial state.
    vmm.client.reset().unwrap();
    assert_eq!(vmm.status(), 0);
    vmm.write16(COMMON + 0x16, 0);
    assert_eq!(vmm.read16(COMMON + 0x18), 256);
    assert_eq!(vmm.read16(COMMON + 0x1c), 0, "queue disabled");
    assert_eq!(vmm.read16(COMMON + 0x1a), 0xffff, "no vector");
    // A request published now is not served.
    let before = vmm.used_idx(0);
    vmm.blk_request(0, T_IN, 0, Some((DATA, 512, true)));
    vmm.kick(0);
    vmm.client.region_read(0, 0, &mut [0u8; 4]).unwrap(); // a round trip
    assert_eq!(vmm.used_idx(0), before);
    // Set up again (init resets by status 0 first) and serve.
    vmm.init(1, u64::MAX);
    assert_eq!(vmm.blk(0, T_IN, 1, Some((DATA, 512, true))), (S_OK, 513));
}

#[test]
fn capabilities_and_the_pci_cfg_window() {
    let dir = test_dir("caps");
    let image = image(&dir, "disk.img", SECTORS);
    let served = Served::start(&dir, &image, BlkConfig::default());
    let vmm = Vmm::connect(&served.sock, Sharing::SealedFd, Kick::IoEventFd);
    let cfg8 = |off: u64| {
        let mut b = [0u8; 1];
        vmm.client.region_read(7, off, &mut b).unwrap();
        b[0]
    };
    let cfg32 = |off: u64| {
        let mut b = [0u8; 4];
        vmm.client.region_read(7, off, &mut b).unwrap();
        u32::from_le_bytes(b)
    };
    assert_eq!(cfg32(0), 0x1042_1af4, "virtio-blk, modern");
    assert_eq!(cfg8(8), 1, "revision 1");
    let mut found = std::collections::BTreeMap::new();
    let mut at = u64::from(cfg8(0x34));
    while at != 0 {
        if cfg8(at) == 0x09 {
            found.insert(cfg8(at + 3), (at, cfg8(at + 4), cfg32(at + 8), cfg32(at + 12)));
        }
        at = u64::from(cfg8(at + 1));
    }
    assert_eq!((found[&1].1, found[&1].2, found[&1].3), (0, 0, 0x40), "common: BAR0 offset 0");
    assert_eq!((found[&2].2, found[&2].3), (0x3000, 4));
    assert_eq!(cfg32(found[&2].0 + 16), 4, "notify_off_multiplier");
    assert_eq!((found[&3].2, found[&3].3), (0x1000, 1));
    assert_eq!((found[&4].2, found[&4].3), (0x2000, 60));
    // PCI_CFG: read the capacity's low word, then write the status register through it.
    let w = found[&5].0;
    vmm.client.region_write(7, w + 4, &[0]).unwrap();
    vmm.client.region_write(7, w + 8, &0x2000u32.to_le_bytes()).unwrap();
    vmm.client.region_write(7, w + 12, &4u32.to_le_bytes()).unwrap();
    assert_eq!(cfg32(w + 16), SECTORS as u32);
    vmm.client.region_write(7, w + 8, &0x14u32.to_le_bytes()).unwrap();
    vmm.client.region_write(7, w + 12, &1u32.to_le_bytes()).unwrap();
    vmm.client.region_write(7, w + 16, &[S_ACK]).unwrap();
    assert_eq!(vmm.status(), S_ACK);
}

#[test]
fn hostile_chains_get_their_status_and_the_device_keeps_serving() {
    let dir = test_dir("hostile");
    let image = image(&dir, "disk.img", SECTORS);
    let served = Served::start(&dir, &image, BlkConfig::default());
    let mut vmm = Vmm::connect(&served.sock, Sharing::SealedFd, Kick::IoEventFd);
    vmm.init(1, 0);
    let good = |vmm: &mut Vmm| assert_eq!(vmm.blk(0, T_IN, 7, Some((DATA, 512, true))), (S_OK, 513));

    // Buffers outside every mapping.
    assert_eq!(vmm.blk(0, T_IN, 0, Some((RAM + 0x1000, 512, true))), (S_IOERR, 1));
    assert_eq!(vmm.blk(0, T_OUT, 0, Some((RAM - 256, 512, false))), (S_IOERR, 1), "straddles the end");
    assert_eq!(vmm.blk(0, T_IN, 0, Some((u64::MAX - 100, 512, true))), (S_IOERR, 1), "wraps around");
    good(&mut vmm);
    // Sectors past the end, and lengths that are not whole sectors.
    assert_eq!(vmm.blk(0, T_IN, SECTORS - 1, Some((DATA, 1024, true))), (S_IOERR, 1));
    assert_eq!(vmm.blk(0, T_OUT, u64::MAX, Some((DATA, 512, false))), (S_IOERR, 1));
    assert_eq!(vmm.blk(0, T_IN, 0, Some((DATA, 100, true))), (S_IOERR, 1));
    vmm.segment(DATA, SECTORS - 2, 4, 0);
    assert_eq!(vmm.blk(0, T_WRITE_ZEROES, 0, Some((DATA, 16, false))), (S_IOERR, 1));
    vmm.segment(DATA, 0, 1, 1);
    assert_eq!(vmm.blk(0, T_DISCARD, 0, Some((DATA, 16, false))), (S_UNSUPP, 1), "UNMAP flag on a discard");
    vmm.segment(DATA, 0, 1, 0);
    vmm.segment(DATA + 16, 1, 1, 0);
    assert_eq!(vmm.blk(0, T_DISCARD, 0, Some((DATA, 32, false))), (S_IOERR, 1), "two segments");
    assert_eq!(vmm.blk(0, T_DISCARD, 0, Some((DATA, 20, false))), (S_IOERR, 1), "a partial segment");
    good(&mut vmm);

    // A short header.
    let status = vmm.scratch(0, 1);
    let hdr = vmm.scratch(0, 16);
    let head = vmm.add_chain(0, &[D { addr: hdr, len: 8, write: false }, D { addr: status, len: 1, write: true }]);
    vmm.kick(0);
    assert_eq!(vmm.wait_used(0, 1), vec![(u32::from(head), 1)]);
    assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(status)).unwrap(), S_IOERR);
    // A readable buffer after a writable one.
    let (h, s) = (vmm.scratch(0, 16), vmm.scratch(0, 1));
    vmm.mem.write_slice(&[0u8; 16], GuestAddress(h)).unwrap();
    let head = vmm.add_chain(
        0,
        &[
            D { addr: h, len: 16, write: false },
            D { addr: DATA, len: 512, write: true },
            D { addr: DATA + 512, len: 512, write: false },
            D { addr: s, len: 1, write: true },
        ],
    );
    vmm.kick(0);
    assert_eq!(vmm.wait_used(0, 1), vec![(u32::from(head), 1)]);
    assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(s)).unwrap(), S_IOERR);
    good(&mut vmm);

    // A loop: header -> status -> header -> ...
    let base = vmm.queues[0].next_desc;
    let (h, s) = (vmm.scratch(0, 16), vmm.scratch(0, 1));
    vmm.put_desc(0, base, h, 16, 1, base + 1);
    vmm.put_desc(0, base + 1, s, 1, 1 | 2, base);
    vmm.queues[0].next_desc = base + 2;
    vmm.publish(0, base);
    vmm.kick(0);
    assert_eq!(vmm.wait_used(0, 1), vec![(u32::from(base), 1)]);
    assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(s)).unwrap(), S_IOERR);
    // A next index beyond the queue.
    let base = vmm.queues[0].next_desc;
    let (h, s) = (vmm.scratch(0, 16), vmm.scratch(0, 1));
    vmm.put_desc(0, base, h, 16, 1, base + 1);
    vmm.put_desc(0, base + 1, s, 1, 1 | 2, 5000);
    vmm.queues[0].next_desc = base + 2;
    vmm.publish(0, base);
    vmm.kick(0);
    assert_eq!(vmm.wait_used(0, 1), vec![(u32::from(base), 1)]);
    assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(s)).unwrap(), S_IOERR);
    // A status byte outside memory: nothing to report into, the chain comes back empty.
    let h = vmm.scratch(0, 16);
    let head = vmm.add_chain(0, &[D { addr: h, len: 16, write: false }, D { addr: RAM + 64, len: 1, write: true }]);
    vmm.kick(0);
    assert_eq!(vmm.wait_used(0, 1), vec![(u32::from(head), 0)]);
    // A head index beyond the queue names no descriptor: consumed, never returned.
    vmm.publish(0, 1000);
    good(&mut vmm);

    // An available index running ahead by more than the queue size: ignored until fixed.
    let real = vmm.queues[0].avail_idx;
    vmm.mem.write_obj(real.wrapping_add(500).to_le(), GuestAddress(vmm.queues[0].avail + 2)).unwrap();
    vmm.kick(0);
    vmm.client.region_read(0, 0, &mut [0u8; 4]).unwrap();
    vmm.mem.write_obj(real.to_le(), GuestAddress(vmm.queues[0].avail + 2)).unwrap();
    good(&mut vmm);
    // Nothing of the above reached the image.
    assert!(file_bytes(&image, 0, 8192).iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
    assert!(file_bytes(&image, (SECTORS - 2) * 512, 1024)
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern((SECTORS - 2) * 512 + i as u64)));
}
