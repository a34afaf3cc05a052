// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Large DMA_WRITEs received straight into guest memory (`GuestMemoryAccess::write_zero_copy`), on
//! the main and the twin socket, their refusals (the stream stays in sync), a stray fd, and
//! a server that stalls in the middle of one.

mod common;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vfio_user_client::{DmaProt, GuestMemoryAccess, VolatileBuf, VolatileBufMut};
use vfio_user_proto::header::FLAGS_NO_REPLY;
use vfio_user_proto::wire::DmaAccess;
use vfio_user_proto::{Command, Connection, Header};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

fn read_mem(gm: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    gm.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// Guest memory whose copying `write` always fails (EFAULT outside memory, as it should, EIO
/// inside): every DMA_WRITE it serves went through `write_zero_copy`.
struct ZeroCopyOnly(Arc<GuestMemoryMmap>);

impl GuestMemoryAccess for ZeroCopyOnly {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), i32> {
        self.0.read(addr, buf)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), i32> {
        match self.0.check_range(GuestAddress(addr), data.len(), Permissions::Write) {
            true => Err(libc::EIO),
            false => Err(libc::EFAULT),
        }
    }

    fn read_zero_copy(
        &self,
        addr: u64,
        len: usize,
        send: &mut dyn FnMut(&[VolatileBuf<'_>]),
    ) -> Option<Result<(), i32>> {
        self.0.read_zero_copy(addr, len, send)
    }

    fn write_zero_copy(
        &self,
        addr: u64,
        len: usize,
        recv: &mut dyn FnMut(&[VolatileBufMut<'_>]),
    ) -> Option<Result<(), i32>> {
        self.0.write_zero_copy(addr, len, recv)
    }
}

/// Sends a DMA_WRITE of `data` at `addr` (with `flags` and `fds`); returns its reply,
/// unless it asked for none.
fn dma_write(
    conn: &mut Connection,
    id: u16,
    addr: u64,
    data: &[u8],
    flags: u32,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Option<vfio_user_proto::Message> {
    let mut h = Header::command(id, Command::DmaWrite, 0);
    h.flags |= flags;
    let a = DmaAccess { addr, count: data.len() as u64 };
    conn.send(h, &[a.as_slice(), data], fds).unwrap();
    if flags & FLAGS_NO_REPLY != 0 {
        return None;
    }
    let r = conn.recv().unwrap();
    assert!(r.header.is_reply());
    assert_eq!(r.header.msg_id, id);
    if !r.header.is_error() {
        assert_eq!(r.payload, a.as_slice(), "the access echoed");
    }
    Some(r)
}

fn errno(r: Option<vfio_user_proto::Message>) -> i32 {
    r.unwrap().header.errno()
}

fn dma_read(conn: &mut Connection, id: u16, addr: u64, count: u64) -> Vec<u8> {
    conn.send(Header::command(id, Command::DmaRead, 0), &[DmaAccess { addr, count }.as_slice()], &[]).unwrap();
    let r = conn.recv().unwrap();
    assert!(r.header.is_reply() && !r.header.is_error(), "{:?}", r.header);
    r.payload[16..].to_vec()
}

/// The exchange: the client has mapped `[BASE, BASE + 2 MiB + 4 KiB)` read-write (past the
/// end of memory) and `[BASE + 4 MiB, + 64 KiB)` read-only.
fn exchange(conn: &mut Connection) {
    // 1 MiB spanning both regions, at an odd offset.
    let big = pattern(MIB as usize, 1);
    let off = MIB / 2 + 3;
    assert!(!dma_write(conn, 1, BASE + off, &big, 0, &[]).unwrap().header.is_error());
    // Outside every mapping, into a read-only one, past the end of memory.
    let d = pattern(8192, 2);
    assert_eq!(errno(dma_write(conn, 2, BASE + 3 * MIB, &d, 0, &[])), libc::EFAULT);
    assert_eq!(errno(dma_write(conn, 3, BASE + 4 * MIB, &d, 0, &[])), libc::EPERM);
    assert_eq!(errno(dma_write(conn, 4, BASE + 2 * MIB - 4096, &d, 0, &[])), libc::EFAULT);
    // A stray descriptor: refused, the stream in sync.
    let fd = memfd(4096);
    assert_eq!(errno(dma_write(conn, 5, BASE, &d, 0, &[fd.as_fd()])), libc::EINVAL);
    // The next requests work: the data read back, a whole region written without reply,
    // read back too.
    assert!(dma_read(conn, 6, BASE + off, MIB) == big);
    let whole = pattern(MIB as usize, 3);
    assert!(dma_write(conn, 7, BASE, &whole, FLAGS_NO_REPLY, &[]).is_none());
    assert!(dma_read(conn, 8, BASE, MIB) == whole);
}

fn map_all(c: &vfio_user_client::Client) {
    c.dma_map(BASE, 2 * MIB + 4096, DmaProt::READ_WRITE).unwrap();
    c.dma_map(BASE + 4 * MIB, 64 << 10, DmaProt::READ).unwrap();
}

/// Guest memory as the exchange leaves it.
fn check_memory(gm: &GuestMemoryMmap) {
    let mut expect = pattern(MIB as usize, 3);
    expect.extend_from_slice(&pattern(MIB as usize, 1)[MIB as usize / 2 - 3..]);
    expect.resize(2 * MIB as usize, 0);
    assert!(read_mem(gm, BASE, 2 * MIB as usize) == expect, "guest memory byte for byte");
}

#[test]
fn large_dma_write_received_into_guest_memory_on_the_main_socket() {
    let gm = two_region_memory();
    let config = test_config().dma_memory(Arc::new(ZeroCopyOnly(gm.clone())));
    assert_eq!(dma_session(config, false, map_all, exchange), (4, 4));
    check_memory(&gm);
}

#[test]
fn large_dma_write_received_into_guest_memory_on_the_twin_socket() {
    let gm = two_region_memory();
    let config = test_config().dma_memory(Arc::new(ZeroCopyOnly(gm.clone())));
    assert_eq!(dma_session(config, true, map_all, exchange), (4, 4));
    check_memory(&gm);
}

#[test]
fn a_server_stalling_in_a_large_dma_write_closes_the_connection() {
    let gm = two_region_memory();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(
        test_config().timeout(Duration::from_millis(300)).twin_socket(false).dma_memory(Arc::new(gm)),
        move |mut f| {
            f.handshake();
            f.accept_maps(2);
            rx.recv().unwrap();
            // The header, the access and part of the data, then nothing.
            let a = DmaAccess { addr: BASE, count: 65536 };
            let mut m = Header::command(1, Command::DmaWrite, 16 + 65536).as_slice().to_vec();
            m.extend_from_slice(a.as_slice());
            m.extend_from_slice(&[7; 1000]);
            f.write_bytes(&m);
            while f.conn.recv().is_ok() {}
        },
    );
    map_all(&c);
    tx.send(()).unwrap();
    let start = Instant::now();
    while c.disconnected().is_none() {
        assert!(start.elapsed() < Duration::from_secs(5), "still connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(c);
    h.join().unwrap();
}
