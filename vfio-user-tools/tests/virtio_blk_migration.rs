// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Live migration of a virtio-blk device between two `vfio-user serve virtio-blk`
//! processes sharing one image, with our client as the VMM (it owns guest memory and
//! drives the virtqueues itself): requests are in flight when the source stops, the
//! destination serves the rest and more, every byte is checked, and the source's dirty
//! report holds every page the source device wrote while logging ran.

mod common;
#[path = "../../vfio-user-virtio/tests/common/mod.rs"]
mod driver;

use std::time::Instant;

use common::Served;
use driver::{Kick, Sharing, Vmm, HANG, RAM, S_OK, T_IN, T_OUT};
use vfio_user_client::{migrate, MigState, MigrateOptions, Progress};
use vm_memory::{Bytes, GuestAddress};

const SECTORS: u64 = 32768;
const IO: u32 = 64 * 1024;
const IO_SECTORS: u64 = IO as u64 / 512;
/// Request buffers: slot `s` at `DATA + s * IO`.
const DATA: u64 = 4 << 20;
/// Requests per queue per batch (three descriptors each in a 64-entry queue).
const PER_QUEUE: u64 = 8;

fn gen_bytes(gen: u8, sector: u64) -> Vec<u8> {
    (0..IO as usize).map(|i| gen ^ (sector as u8) ^ (i as u8) ^ ((i >> 9) as u8)).collect()
}

/// One request of a batch.
struct Req {
    q: usize,
    write: bool,
    sector: u64,
    buf: u64,
    status: u64,
}

/// Publishes (without kicking) on each of two queues: writes of generation `gen` at
/// `writes(q)` and reads of `reads(q)`; updates `model` for the writes.
fn publish(
    vmm: &mut Vmm,
    model: &mut [u8],
    gen: u8,
    writes: impl Fn(usize) -> Vec<u64>,
    reads: impl Fn(usize) -> Vec<u64>,
) -> Vec<Req> {
    let mut reqs = Vec::new();
    for q in 0..2usize {
        let mut slot = q as u64 * PER_QUEUE;
        for (write, sectors) in [(true, writes(q)), (false, reads(q))] {
            for sector in sectors {
                let buf = DATA + slot * u64::from(IO);
                slot += 1;
                if write {
                    let data = gen_bytes(gen, sector);
                    vmm.mem.write_slice(&data, GuestAddress(buf)).unwrap();
                    model[(sector * 512) as usize..][..IO as usize].copy_from_slice(&data);
                } else {
                    vmm.mem.write_slice(&vec![0xee; IO as usize], GuestAddress(buf)).unwrap();
                }
                let kind = if write { T_OUT } else { T_IN };
                let (_, status) = vmm.blk_request(q, kind, sector, Some((buf, IO, !write)));
                reqs.push(Req { q, write, sector, buf, status });
            }
        }
    }
    reqs
}

/// Checks every request succeeded and every read brought the model's bytes.
fn check(vmm: &Vmm, reqs: &[Req], model: &[u8]) {
    for r in reqs {
        assert_eq!(vmm.mem.read_obj::<u8>(GuestAddress(r.status)).unwrap(), S_OK, "queue {} sector {}", r.q, r.sector);
        if !r.write {
            let mut got = vec![0u8; IO as usize];
            vmm.mem.read_slice(&mut got, GuestAddress(r.buf)).unwrap();
            assert!(got == model[(r.sector * 512) as usize..][..IO as usize], "read of sector {}", r.sector);
        }
    }
}

fn ram(vmm: &Vmm) -> Vec<u8> {
    let mut v = vec![0u8; RAM as usize];
    vmm.mem.read_slice(&mut v, GuestAddress(0)).unwrap();
    v
}

#[test]
fn virtio_blk_migrates_between_two_processes_with_io_in_flight() {
    let dir = driver::test_dir("blk-migration");
    let image = driver::image(&dir, "disk.img", SECTORS);
    let img = image.to_str().unwrap();
    let args = ["virtio-blk", "--image", img, "--queues", "2"];
    let src = Served::spawn(&args, dir.join("src.sock"), false);
    let dst = Served::spawn(&args, dir.join("dst.sock"), false);
    let mut model = std::fs::read(&image).unwrap();

    let mut vmm = Vmm::connect(&src.path, Sharing::SealedFd, Kick::IoEventFd);
    vmm.init(2, u64::MAX);
    let (dst_client, dst_kicks) = vmm.second_client(&dst.path);
    // Queue q writes and reads only in its own half of the disk.
    let area = |q: usize, k: u64| q as u64 * (SECTORS / 2) + k * IO_SECTORS;

    // A: writes, and reads of untouched sectors; completed on the source.
    let a = publish(
        &mut vmm,
        &mut model,
        1,
        |q| (0..4).map(|k| area(q, k)).collect(),
        |q| (0..4).map(|k| area(q, 32 + k)).collect(),
    );
    vmm.kick(0);
    vmm.kick(1);
    vmm.wait_used(0, PER_QUEUE as u16);
    vmm.wait_used(1, PER_QUEUE as u16);
    check(&vmm, &a, &model);

    // B: published now but made visible (available index) and kicked only once the source
    // logs dirty pages (a worker still polling its ring after A would otherwise serve B
    // before logging begins), in flight when it stops.
    vmm.queues[0].hold_avail = true;
    vmm.queues[1].hold_avail = true;
    let b = publish(
        &mut vmm,
        &mut model,
        2,
        |q| (4..8).map(|k| area(q, k)).collect(),
        |q| (0..4).map(|k| area(q, k)).collect(),
    );
    let before = ram(&vmm);
    let seen = [vmm.queues[0].used_seen, vmm.queues[1].used_seen];
    let opts = MigrateOptions { resume: false, ..Default::default() };
    let report = migrate(&vmm.client, &dst_client, &opts, |p| {
        if matches!(p, Progress::Started { .. }) {
            vmm.release_avail(0);
            vmm.release_avail(1);
            vmm.kick(0);
            vmm.kick(1);
            // Let the source complete some of them before it is stopped.
            let t = Instant::now();
            while (0..2).any(|q| vmm.used_idx(q) == seen[q]) {
                assert!(t.elapsed() < HANG, "the source served nothing");
                std::thread::yield_now();
            }
        }
    })
    .unwrap();
    vmm.queues[0].hold_avail = false;
    vmm.queues[1].hold_avail = false;
    // Both devices are stopped: guest memory is still.
    let after = ram(&vmm);
    let dirty: std::collections::BTreeSet<u64> = report.dirty.iter().flat_map(|d| d.dirty_addresses()).collect();
    // The available rings' pages are the driver's own writes (release_avail), not the device's.
    let driver_wrote = [vmm.queues[0].avail & !4095, vmm.queues[1].avail & !4095];
    let changed: Vec<u64> = (0..RAM / 4096)
        .map(|p| p * 4096)
        .filter(|a| !driver_wrote.contains(a))
        .filter(|&a| before[a as usize..][..4096] != after[a as usize..][..4096])
        .collect();
    assert!(!changed.is_empty(), "the source wrote guest memory while logging");
    let missing: Vec<u64> = changed.iter().copied().filter(|a| !dirty.contains(a)).collect();
    assert!(missing.is_empty(), "pages the source wrote but did not report: {missing:x?}");

    // The destination takes over: the same queues, the same indexes.
    assert_eq!(dst_client.migration_state().unwrap(), MigState::Stop);
    dst_client.set_migration_state(MigState::Running).unwrap();
    let src_client = std::mem::replace(&mut vmm.client, dst_client);
    vmm.kick_fds = dst_kicks;
    vmm.wait_used(0, PER_QUEUE as u16);
    vmm.wait_used(1, PER_QUEUE as u16);
    check(&vmm, &b, &model);

    // C: more I/O on the destination, over what A and B wrote.
    let c = publish(
        &mut vmm,
        &mut model,
        3,
        |q| (0..4).map(|k| area(q, k)).collect(),
        |q| (4..8).map(|k| area(q, k)).collect(),
    );
    vmm.kick(0);
    vmm.kick(1);
    vmm.wait_used(0, PER_QUEUE as u16);
    vmm.wait_used(1, PER_QUEUE as u16);
    check(&vmm, &c, &model);
    assert_eq!(vmm.status() & driver::S_DRIVER_OK, driver::S_DRIVER_OK, "the driver's set-up came along");

    // The shared image holds exactly what the guest wrote.
    drop(src_client);
    drop(vmm);
    assert!(std::fs::read(&image).unwrap() == model, "image contents");
    drop((src, dst));
}
