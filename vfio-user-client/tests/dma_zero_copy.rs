// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA_READ replies sent straight out of guest memory (`GuestMemoryAccess::read_zero_copy`), on the
//! main and the twin socket, their refusals, and the copying fallback for a `GuestMemoryAccess`
//! that does not provide it.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use vfio_user_client::{DmaProt, GuestMemoryAccess};
use vfio_user_proto::wire::DmaAccess;
use vfio_user_proto::{Command, Connection, Header};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

/// The two regions of guest memory (a read may span both), filled with `pattern(2 MiB, 5)`.
fn patterned_memory() -> Arc<GuestMemoryMmap> {
    let gm = two_region_memory();
    gm.write_slice(&pattern(2 * MIB as usize, 5), GuestAddress(BASE)).unwrap();
    gm
}

/// Sends a DMA_READ and returns its reply.
fn dma_read(conn: &mut Connection, id: u16, addr: u64, count: u64) -> vfio_user_proto::Message {
    conn.send(Header::command(id, Command::DmaRead, 0), &[DmaAccess { addr, count }.as_slice()], &[]).unwrap();
    let r = conn.recv().unwrap();
    assert!(r.header.is_reply());
    assert_eq!(r.header.msg_id, id);
    r
}

/// The exchange, against guest memory filled with `pattern(2 MiB, 5)` from `BASE`, the
/// client having mapped `[BASE, BASE + 2 MiB + 4 KiB)` readable (past the end of memory)
/// and `[BASE + 4 MiB, + 4 KiB)` write-only.
fn exchange(conn: &mut Connection) {
    let expect = pattern(2 * MIB as usize, 5);
    // 1 MiB spanning both regions, at an odd offset.
    let off = MIB as usize / 2 + 3;
    let r = dma_read(conn, 1, BASE + off as u64, MIB);
    assert!(!r.header.is_error());
    assert_eq!(r.header.msg_size as usize, 16 + 16 + MIB as usize);
    assert_eq!(&r.payload[..16], DmaAccess { addr: BASE + off as u64, count: MIB }.as_slice());
    assert!(r.payload[16..] == expect[off..off + MIB as usize], "the guest data, byte for byte");
    // Inside the mapping but running past the end of guest memory.
    assert_eq!(dma_read(conn, 2, BASE + 2 * MIB - 8, 16).header.errno(), libc::EFAULT);
    // Outside every mapping.
    assert_eq!(dma_read(conn, 3, BASE + 3 * MIB, 16).header.errno(), libc::EFAULT);
    // A write-only mapping.
    assert_eq!(dma_read(conn, 4, BASE + 4 * MIB, 16).header.errno(), libc::EPERM);
    // The stream is in sync: the next read works, a whole region.
    let r = dma_read(conn, 5, BASE, MIB);
    assert!(r.payload[16..] == expect[..MIB as usize]);
}

fn map_all(c: &vfio_user_client::Client) {
    c.dma_map(BASE, 2 * MIB + 4096, DmaProt::READ).unwrap();
    c.dma_map(BASE + 4 * MIB, 4096, DmaProt::WRITE).unwrap();
}

#[test]
fn large_dma_read_sent_from_guest_memory_on_the_main_socket() {
    let config = test_config().dma_memory(Arc::new(patterned_memory()));
    assert_eq!(dma_session(config, false, map_all, exchange), (2, 3));
}

#[test]
fn large_dma_read_sent_from_guest_memory_on_the_twin_socket() {
    let config = test_config().dma_memory(Arc::new(patterned_memory()));
    assert_eq!(dma_session(config, true, map_all, exchange), (2, 3));
}

/// A `GuestMemoryAccess` with only the required methods: served by copying.
struct Plain(Mutex<Vec<u8>>);

impl GuestMemoryAccess for Plain {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), i32> {
        let m = self.0.lock().unwrap();
        let at = addr.checked_sub(BASE).ok_or(libc::EFAULT)? as usize;
        buf.copy_from_slice(m.get(at..at + buf.len()).ok_or(libc::EFAULT)?);
        Ok(())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), i32> {
        let mut m = self.0.lock().unwrap();
        let at = addr.checked_sub(BASE).ok_or(libc::EFAULT)? as usize;
        m.get_mut(at..at + data.len()).ok_or(libc::EFAULT)?.copy_from_slice(data);
        Ok(())
    }
}

#[test]
fn a_dma_memory_without_zero_copy_is_served_by_copying() {
    let mem = Arc::new(Plain(Mutex::new(pattern(2 * MIB as usize, 5))));
    assert_eq!(dma_session(test_config().dma_memory(mem), false, map_all, exchange), (2, 3));
}

/// Guest memory whose copying `read` always fails: every DMA_READ it serves went through
/// `read_zero_copy`.
struct ZeroCopyOnly(Arc<GuestMemoryMmap>);

impl GuestMemoryAccess for ZeroCopyOnly {
    fn read(&self, _: u64, _: &mut [u8]) -> Result<(), i32> {
        Err(libc::EIO)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), i32> {
        self.0.write(addr, data)
    }

    fn read_zero_copy(
        &self,
        addr: u64,
        len: usize,
        send: &mut dyn FnMut(&[vfio_user_client::VolatileBuf<'_>]),
    ) -> Option<Result<(), i32>> {
        self.0.read_zero_copy(addr, len, send)
    }
}

#[test]
fn guest_memory_reads_do_not_go_through_the_copying_read() {
    let mem = Arc::new(ZeroCopyOnly(patterned_memory()));
    let (_, refused) = dma_session(test_config().dma_memory(mem), false, map_all, exchange);
    assert_eq!(refused, 3);
}
