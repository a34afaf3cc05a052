// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The descriptor table as the real DMA-map limit (issue 16, item 2). This binary lowers
//! its own RLIMIT_NOFILE, so it holds a single test (no other test opens descriptors
//! meanwhile).

mod common;

use common::*;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use vfio_user_proto::version::Capabilities;

fn open_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

fn set_soft_limit(soft: u64) {
    let max = getrlimit(Resource::Nofile).maximum;
    setrlimit(Resource::Nofile, Rlimit { current: Some(soft), maximum: max }).unwrap();
}

#[test]
fn the_descriptor_table_bounds_dma_maps_without_dropping_the_connection() {
    let orig = getrlimit(Resource::Nofile);

    // 1. A full table: the kernel truncates the DMA_MAP's SCM_RIGHTS (MSG_CTRUNC). The
    // server used to drop the connection, losing every mapping; now it answers EMFILE and
    // keeps the stream in sync.
    let mut h = spawn();
    let mem = memfd(0x2000);
    let kept = memfd(0x1000);
    h.client.dma_map(0x1000, 0x1000, Some(&kept)).unwrap();
    let highest = open_fds().into_iter().max().unwrap() as u64;
    set_soft_limit(highest + 1);
    let mut fillers = Vec::new();
    loop {
        match rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC) {
            Ok(f) => fillers.push(f),
            Err(rustix::io::Errno::MFILE) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let full = h.client.dma_map(0x10_0000, 0x2000, Some(&mem));
    drop(fillers);
    setrlimit(Resource::Nofile, orig).unwrap();
    assert_eq!(full, Err(libc::EMFILE));
    h.client.assert_alive();
    h.client.dma_map(0x10_0000, 0x2000, Some(&mem)).unwrap();
    assert_eq!(h.dma.regions().len(), 2, "the earlier mapping survived");
    drop(h);

    // 2. A low limit: the server advertises a max_dma_maps the table can hold, and refuses
    // fd-keeping mappings past its budget with ENOSPC, keeping the connection; sealed
    // (mmapped) mappings hold no fd and are not counted.
    set_soft_limit(open_fds().len() as u64 + 150);
    let mut h = spawn_with(vfio_user_server::ServerLimits::default());
    let v = h.client.version_ok();
    let json = &v.payload[4..v.payload.len() - 1];
    let caps = Capabilities::from_json(json).unwrap();
    assert!(caps.max_dma_maps < 150, "max_dma_maps {} under a limit of 150 spare fds", caps.max_dma_maps);
    let mut mapped = 0u64;
    let refused = loop {
        let fd = unsealed_memfd(0x1000);
        match h.client.dma_map(0x100_0000 + mapped * 0x1000, 0x1000, Some(&fd)) {
            Ok(()) => mapped += 1,
            Err(e) => break e,
        }
        assert!(mapped <= 150, "no fd budget");
    };
    assert_eq!(refused, libc::ENOSPC);
    assert!(mapped >= 16 && mapped <= u64::from(caps.max_dma_maps), "{mapped} of {}", caps.max_dma_maps);
    h.client.assert_alive();
    for i in 0..8 {
        h.client.dma_map(0x800_0000 + i * 0x1000, 0x1000, Some(&memfd(0x1000))).unwrap();
    }
    h.client.assert_alive();
    drop(h);
    setrlimit(Resource::Nofile, orig).unwrap();
}
