// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Interoperability with the rust-vmm `vfio_user` client (the one Cloud Hypervisor uses):
//! it negotiates, enumerates every region (argsz retry, sparse areas, fds), reads and writes
//! regions, maps DMA with an fd, installs eventfds, resets and unmaps, all against our
//! server. That client never looks at error replies, so only successful paths are driven.

mod common;

use std::os::fd::AsRawFd;
use std::sync::Arc;

use common::*;
use vfio_user::Client;
use vfio_user_proto::wire::*;
use vfio_user_server::irq::MSIX;
use vfio_user_server::{Endpoint, Listener, ResetKind, Server};

#[test]
fn rust_vmm_client_drives_our_server() {
    let path = std::env::temp_dir().join(format!("vfio-user-rustvmm-{}.sock", std::process::id()));
    let dev = Arc::new(TestDev::new());
    let mut server = Server::new(description(), dev.clone()).unwrap();
    server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
    let (stop, irq) = (server.shutdown_handle(), server.irq_handle());
    let t = std::thread::spawn(move || server.run().unwrap());

    let mut c = Client::new(&path).unwrap();
    // Regions as the client saw them.
    let cfg = c.region(PCI_CONFIG_REGION_INDEX).unwrap();
    assert_eq!((cfg.size, cfg.flags), (4096, REGION_FLAG_READ | REGION_FLAG_WRITE));
    let bar2 = c.region(2).unwrap();
    assert!(bar2.file_offset.is_some(), "mmap fd received");
    assert_eq!(bar2.sparse_areas.len(), 1);
    assert_eq!((bar2.sparse_areas[0].offset, bar2.sparse_areas[0].size), (0, 0x2000));
    let bar4 = c.region(4).unwrap();
    assert!(bar4.file_offset.is_some(), "whole-region mmap fd without sparse areas");
    assert!(bar4.sparse_areas.is_empty());
    assert_eq!(c.region(9).unwrap().size, 0x1000);
    // `c.resettable()` is not checked: this client inverts the RESET flag (PEERS.md); the
    // flag itself is checked in protocol.rs.
    // Config space and BAR access.
    let mut id = [0u8; 4];
    c.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut id).unwrap();
    assert_eq!(u32::from_le_bytes(id), 0x0001_4e58);
    c.region_write(PCI_CONFIG_REGION_INDEX, 0x10, &u32::MAX.to_le_bytes()).unwrap();
    let mut bar = [0u8; 4];
    c.region_read(PCI_CONFIG_REGION_INDEX, 0x10, &mut bar).unwrap();
    assert_eq!(u32::from_le_bytes(bar), 0xffff_f000, "BAR sizing as Cloud Hypervisor does it");
    c.region_write(0, 0x40, b"rust-vmm").unwrap();
    let mut back = [0u8; 8];
    c.region_read(0, 0x40, &mut back).unwrap();
    assert_eq!(&back, b"rust-vmm");
    // IRQs.
    let info = c.get_irq_info(MSIX).unwrap();
    assert_eq!(info.count, u32::from(MSIX_VECTORS));
    let efd = eventfd();
    c.set_irqs(MSIX, IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, 0, 1, &[efd.as_raw_fd()]).unwrap();
    irq.trigger_msix(0).unwrap();
    assert_eq!(efd_count(&efd), 1);
    // DMA with an fd.
    let mem = memfd(0x2000);
    c.dma_map(0, 0x10000, 0x2000, mem.as_raw_fd()).unwrap();
    c.reset().unwrap();
    c.dma_unmap(0x10000, 0x2000).unwrap();
    let seen = dev.seen();
    assert!(seen.contains(&Seen::Map(0x10000, 0x2000, true)));
    assert!(seen.contains(&Seen::Unmap(0x10000, 0x2000)));
    assert!(seen.contains(&Seen::Reset(ResetKind::Device)));
    // Still in sync after all that.
    c.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut id).unwrap();
    assert_eq!(u32::from_le_bytes(id), 0x0001_4e58);
    c.shutdown().unwrap();
    stop.shutdown();
    t.join().unwrap();
}
