// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Live migration between two server processes (`vfio-user serve demo`), driven by our
//! client: the device keeps writing into client memory by DMA throughout PRE_COPY; its
//! state must arrive whole, the dirty bitmaps must be exactly the pages it wrote, and the
//! destination must carry on where the source stopped. Also the `migrate` subcommand.

use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use vfio_user_client::{Client, Config, DmaProt, MigState, MigrateOptions, Migration};

mod common;

use common::{Served, BIN};

// The demo device's registers (see vfio-user-tools/src/devices.rs).
const REG_ADDR: u64 = 0x00;
const REG_PATTERN: u64 = 0x0c;
const REG_STREAM: u64 = 0x1c;
const REG_SEQ: u64 = 0x20;
const BAR2_SIZE: usize = 0x2000;

const IOVA: u64 = 0x4000_0000;
const PAGES: u32 = 64;

/// A quiet `vfio-user serve` child on a fresh socket path.
fn serve(sample: &str, name: &str) -> Served {
    Served::quiet(sample, std::env::temp_dir().join(format!("vfu-migrate-{name}-{}.sock", std::process::id())))
}

fn connect(s: &Served) -> Client {
    Client::connect(&s.path, Config::default()).unwrap()
}

fn memfd(size: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create("guest", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)
        .unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).unwrap();
    fd
}

fn read_u64(c: &Client, off: u64) -> u64 {
    let mut b = [0u8; 8];
    c.region_read(0, off, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn device_state(c: &Client) -> (Vec<u8>, Vec<u8>) {
    let mut regs = vec![0u8; 0x28];
    c.region_read(0, 0, &mut regs).unwrap();
    let mut bar2 = vec![0u8; BAR2_SIZE];
    c.region_read(2, 0, &mut bar2).unwrap();
    (regs, bar2)
}

/// The guest pages holding anything non-zero: the pages the device wrote.
fn written_pages(guest: &OwnedFd) -> Vec<u64> {
    let mut mem = vec![0u8; PAGES as usize * 4096];
    assert_eq!(rustix::io::pread(guest, &mut mem, 0).unwrap(), mem.len());
    mem.chunks(4096)
        .enumerate()
        .filter(|(_, p)| p.iter().any(|&b| b != 0))
        .map(|(i, _)| IOVA + i as u64 * 4096)
        .collect()
}

fn wait_for_seq(c: &Client, above: u64) -> u64 {
    let t = Instant::now();
    loop {
        let seq = read_u64(c, REG_SEQ);
        if seq > above {
            return seq;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the device's writer is stuck at {seq}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn device_migrates_between_processes_while_it_writes_by_dma() {
    let a = serve("demo", "src");
    let b = serve("demo", "dst");
    let src = connect(&a);
    let dst = connect(&b);
    // One guest memory, mapped into both devices (as a VMM keeps its RAM across a local
    // migration).
    let guest = memfd(u64::from(PAGES) * 4096);
    let size = u64::from(PAGES) * 4096;
    src.dma_map_fd(IOVA, size, guest.as_fd(), 0, DmaProt::READ_WRITE).unwrap();
    dst.dma_map_fd(IOVA, size, guest.as_fd(), 0, DmaProt::READ_WRITE).unwrap();

    // Device state worth carrying: BAR2 contents and registers.
    let pattern: Vec<u8> = (0..BAR2_SIZE).map(|i| (i * 13 + (i >> 8)) as u8).collect();
    src.region_write(2, 0, &pattern).unwrap();
    src.region_write(0, REG_PATTERN, &0xfeed_f00du32.to_le_bytes()).unwrap();

    let opts = MigrateOptions { resume: false, ..Default::default() };
    let mut m = Migration::start(&src, &dst, &opts).unwrap();
    assert!(m.pre_copy());
    assert_eq!(src.migration_state().unwrap(), MigState::PreCopy);
    assert_eq!(dst.migration_state().unwrap(), MigState::Resuming);

    // The device starts writing into guest memory, and keeps running through PRE_COPY.
    src.region_write(0, REG_ADDR, &IOVA.to_le_bytes()).unwrap();
    src.region_write(0, REG_STREAM, &PAGES.to_le_bytes()).unwrap();
    let mut seen = 0;
    for _ in 0..3 {
        seen = wait_for_seq(&src, seen + 20);
        let (bytes, _) = m.precopy_round().unwrap();
        assert!(bytes > 0, "each pre-copy round streams a snapshot");
    }
    // Writes go on during PRE_COPY; some more before the device stops.
    wait_for_seq(&src, seen + 20);
    let report = m.finish(&mut |_| ()).unwrap();
    assert_eq!(report.precopy_rounds, 3);
    assert!(report.stopcopy_bytes > BAR2_SIZE as u64);
    assert_eq!(src.migration_state().unwrap(), MigState::Stop);
    assert_eq!(dst.migration_state().unwrap(), MigState::Stop);

    // The source is stopped: its writer no longer writes.
    let final_seq = read_u64(&src, REG_SEQ);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(read_u64(&src, REG_SEQ), final_seq, "a stopped device wrote");
    assert!(final_seq > 60);

    // Dirty bitmaps: exactly the pages written (logging started before the first write).
    assert_eq!(report.dirty.len(), 1);
    let dirty: Vec<u64> = report.dirty[0].dirty_addresses().collect();
    let written = written_pages(&guest);
    assert!(written.len() > 10, "the device wrote only {} pages", written.len());
    assert_eq!(dirty, written, "dirty bitmap differs from the pages written");

    // The state arrived whole (the destination is in STOP, where reads are allowed).
    let (src_regs, src_bar2) = device_state(&src);
    let (dst_regs, dst_bar2) = device_state(&dst);
    assert_eq!(dst_regs, src_regs);
    assert!(dst_bar2 == pattern && src_bar2 == pattern, "BAR2 differs after migration");
    assert_eq!(read_u64(&dst, REG_SEQ), final_seq);

    // Running, the destination carries on from the source's sequence number.
    dst.set_migration_state(MigState::Running).unwrap();
    let resumed = wait_for_seq(&dst, final_seq + 10);
    assert!(resumed > final_seq + 10);
    src.dma_unmap_all().unwrap_err(); // the stopped source refuses
    src.set_migration_state(MigState::Running).unwrap();
    src.dma_unmap_all().unwrap();
}

#[test]
fn migrate_subcommand_moves_the_state_and_reports_each_step() {
    let a = serve("demo", "cli-src");
    let b = serve("demo", "cli-dst");
    {
        let src = connect(&a);
        src.region_write(2, 0x100, b"state that must move").unwrap();
    }
    let out = Command::new(BIN).args(["migrate", "--from"]).arg(&a.path).arg("--to").arg(&b.path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for want in ["source in PRE_COPY, destination in RESUMING", "pre-copy round 1", "source stopped (STOP_COPY)"] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(text.contains("source: device STOP, destination: device RUNNING"), "{text}");
    let dst = connect(&b);
    let mut got = [0u8; 20];
    dst.region_read(2, 0x100, &mut got).unwrap();
    assert_eq!(&got, b"state that must move");
    assert_eq!(dst.migration_state().unwrap(), MigState::Running);
}

#[test]
fn migrate_subcommand_refuses_a_device_that_cannot_migrate() {
    let a = serve("gpio", "gpio-src");
    let b = serve("demo", "gpio-dst");
    let out = Command::new(BIN).args(["migrate", "--from"]).arg(&a.path).arg("--to").arg(&b.path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("source: device cannot migrate"), "{err}");
    // The destination was not touched.
    let dst = connect(&b);
    assert_eq!(dst.migration_state().unwrap(), MigState::Running);
}

#[test]
fn migrate_between_lvu_servers_says_why_it_fails_and_works_with_rounds_0() {
    let (a, b) = (serve("lvu-server", "lvu-src"), serve("lvu-server", "lvu-dst"));
    let out = Command::new(BIN).args(["migrate", "--from"]).arg(&a.path).arg("--to").arg(&b.path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("errno 22") && err.contains("resend their whole state") && err.contains("--rounds 0"),
        "{err}"
    );
    let (c, d) = (serve("lvu-server", "lvu-src0"), serve("lvu-server", "lvu-dst0"));
    {
        connect(&c).region_write(1, 0x2000, b"bar1").unwrap();
    }
    let out = Command::new(BIN)
        .args(["migrate", "--rounds", "0", "--json", "--from"])
        .arg(&c.path)
        .arg("--to")
        .arg(&d.path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!((last["event"].as_str(), last["precopy_rounds"].as_u64()), (Some("migrated"), Some(0)), "{text}");
    assert!(last["stopcopy_bytes"].as_u64().unwrap() > 0 && last["rate_bytes_per_s"].as_f64().unwrap() > 0.0);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v["event"].is_string(), "{line}");
    }
    let mut got = [0u8; 4];
    connect(&d).region_read(1, 0x2000, &mut got).unwrap();
    assert_eq!(&got, b"bar1");
}
