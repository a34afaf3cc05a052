// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! No descriptor leaks across 1,000 connect / disconnect cycles. This file holds a single
//! test so that its binary has no other thread opening descriptors meanwhile.

mod common;

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::wire::*;
use vfio_user_server::irq::MSIX;
use vfio_user_server::{Endpoint, Listener, Server};
use vm_memory::ByteValued;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// One client session that leaves descriptors with the server: a DMA region fd, eventfds,
/// a twin socket, a refused message carrying an fd, and a region-info reply with an fd.
fn session(path: &std::path::Path) {
    let mut c = Client::new(UnixStream::connect(path).unwrap());
    c.version(r#"{"capabilities":{"max_msg_fds":8,"twin_socket":{"supported":true}}}"#).unwrap();
    let mem = memfd(0x1000);
    c.dma_map(0x10000, 0x1000, Some(&mem)).unwrap();
    let efds = [eventfd(), eventfd()];
    c.set_irqs(IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, MSIX, 0, 2, &[], &[&efds[0], &efds[1]]).unwrap();
    let a = RegionAccess { offset: 0, region: 7, count: 4 };
    assert_eq!(c.errno(Command::RegionRead, a.as_slice(), &[mem.as_fd()]), libc::EINVAL);
    let r = RegionInfo { argsz: 32, index: 4, ..Default::default() };
    assert_eq!(c.call(Command::DeviceGetRegionInfo, r.as_slice(), &[]).unwrap().fds.len(), 1);
}

#[test]
fn no_fd_leak_across_1000_reconnects() {
    let path = std::env::temp_dir().join(format!("vfio-user-server-{}-leak.sock", std::process::id()));
    let dev = Arc::new(TestDev::new());
    let mut server = Server::new(description(), dev.clone()).unwrap();
    server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
    let stop = server.shutdown_handle();
    let t = std::thread::spawn(move || server.run().unwrap());
    // Measure with a synchronising client connected (its answer proves the previous client
    // was cleaned up: one client at a time), before any session left anything behind.
    let mut sync = Client::new(UnixStream::connect(&path).unwrap());
    sync.version_ok();
    let before = open_fds();
    drop(sync);
    for _ in 0..1000 {
        session(&path);
    }
    let mut sync = Client::new(UnixStream::connect(&path).unwrap());
    sync.version_ok();
    let after = open_fds();
    assert_eq!(before, after, "descriptors leaked");
    let unmaps = dev.seen().iter().filter(|s| matches!(s, Seen::Unmap(..))).count();
    assert_eq!(unmaps, 1000);
    drop(sync);
    stop.shutdown();
    t.join().unwrap();
}
