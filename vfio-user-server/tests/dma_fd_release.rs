// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A client's file-I/O DMA mappings hold the server's only copies of their fds (mmapped
//! ones close theirs at once); a disconnect closes every one and unmaps the memory. This file holds a single test so that its binary has
//! no other thread opening descriptors meanwhile.

mod common;

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use common::*;
use vfio_user_proto::wire::*;
use vfio_user_server::{Endpoint, Listener, Server};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains("/memfd:test")).count()
}

#[test]
fn disconnect_releases_every_mapping_fd() {
    let path = std::env::temp_dir().join(format!("vfio-user-server-{}-dmafd.sock", std::process::id()));
    let mut server = Server::new(description(), Arc::new(TestDev::new())).unwrap();
    server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
    let (stop, dma) = (server.shutdown_handle(), server.dma_handle());
    let t = std::thread::spawn(move || server.run().unwrap());
    // Measured with a synchronising client connected (one client at a time: the next
    // client's answer proves the previous one was cleaned up).
    let mut sync = Client::new(UnixStream::connect(&path).unwrap());
    sync.version_ok();
    let (fds_before, maps_before) = (open_fds(), memfd_mappings());
    drop(sync);
    let mut c = Client::new(UnixStream::connect(&path).unwrap());
    c.version_ok();
    for i in 0..64u64 {
        let flags = DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE | if i % 4 == 3 { DMA_MAP_FLAG_FILE_IO } else { 0 };
        let mem = memfd(0x2000);
        c.dma_map_flags(0x100_0000 + i * 0x2000, 0x2000, flags, Some(&mem)).unwrap();
        // The client's copy is closed here: the server holds the only one.
    }
    c.dma_map(0x800_0000, 0x1000, None).unwrap();
    assert_eq!(open_fds(), fds_before + 16, "only the 16 FILE_IO mappings keep their fd");
    assert_eq!(memfd_mappings(), maps_before + 48, "FILE_IO mappings are not mmapped");
    dma.write(0x100_0000, &vec![1; 0x2000 * 64]).unwrap();
    assert_eq!(dma.regions().len(), 65);
    drop(c);
    let mut sync = Client::new(UnixStream::connect(&path).unwrap());
    sync.version_ok();
    assert!(dma.space().is_empty());
    assert_eq!(open_fds(), fds_before, "mapping fds leaked");
    assert_eq!(memfd_mappings(), maps_before, "mappings left");
    drop(sync);
    stop.shutdown();
    t.join().unwrap();
}
