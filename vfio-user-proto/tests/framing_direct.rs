// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

#![cfg(feature = "socket")]

//! Large payloads received straight into their own buffer, and `Receiver::recv_into` (the
//! payload into the caller's buffers), over real socket pairs.

mod common;

use common::{efd_read, raw_send};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::event::{eventfd, EventfdFlags};
use vfio_user_proto::{Command, Connection, FrameError, Header};
use vm_memory::ByteValued;

fn pair() -> (UnixStream, Connection) {
    let (a, b) = UnixStream::pair().unwrap();
    (a, Connection::new(b))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn efd(v: u64) -> OwnedFd {
    let e = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    assert_eq!(rustix::io::write(&e, &v.to_ne_bytes()).unwrap(), 8);
    e
}

#[test]
fn a_large_payload_trickling_in_keeps_its_fds_and_the_next_message_its_own() {
    let (a, mut b) = pair();
    let payload = pattern(300_000, 1);
    let h = Header::command(1, Command::RegionWrite, payload.len());
    // Header and the first bytes with one fd; the rest in pieces, one piece with a second
    // fd (a hostile peer: it belongs to this message all the same).
    let mut first = h.as_slice().to_vec();
    first.extend_from_slice(&payload[..100]);
    raw_send(&a, &first, &[efd(1).as_fd()]);
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    assert!(!b.receiver.has_buffered_message());
    raw_send(&a, &payload[100..5000], &[efd(2).as_fd()]);
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    let rest = payload[5000..].to_vec();
    let next = efd(3);
    let t = std::thread::spawn(move || {
        for c in rest.chunks(70_000) {
            (&a).write_all(c).unwrap();
        }
        raw_send(&a, Header::command(2, Command::DmaMap, 0).as_slice(), &[next.as_fd()]);
        a
    });
    let m = b.recv().unwrap();
    assert_eq!((m.header.msg_id, m.payload.len()), (1, payload.len()));
    assert!(m.payload == payload);
    assert_eq!(m.fds.iter().map(efd_read).collect::<Vec<_>>(), [1, 2]);
    let m = b.recv().unwrap();
    assert_eq!((m.header.msg_id, m.fds.len()), (2, 1));
    assert_eq!(efd_read(&m.fds[0]), 3);
    drop(t.join().unwrap());
}

#[test]
fn eof_in_a_large_payload() {
    let (mut a, mut b) = pair();
    a.write_all(Header::command(1, Command::RegionWrite, 100_000).as_slice()).unwrap();
    a.write_all(&[0; 50_000]).unwrap();
    drop(a);
    match b.recv() {
        Err(FrameError::EofMidMessage { got: 50_016, need: 100_016 }) => {}
        other => panic!("expected EofMidMessage, got {other:?}"),
    }
}

#[test]
fn recv_into_takes_a_buffered_message_and_leaves_the_next() {
    let (mut a, mut b) = pair();
    let body = pattern(1000, 7);
    let h = Header::command(3, Command::DmaRead, 16 + body.len()).reply(16 + body.len());
    a.write_all(h.as_slice()).unwrap();
    a.write_all(&[0xaa; 16]).unwrap();
    a.write_all(&body).unwrap();
    a.write_all(Header::command(4, Command::DeviceReset, 0).as_slice()).unwrap();
    assert_eq!(b.receiver.peek_header().unwrap().msg_id, 3);
    let (mut prefix, mut dst) = ([0u8; 16], vec![0u8; body.len()]);
    let (got, fds) = b.receiver.recv_into(&mut prefix, &mut dst).unwrap();
    assert_eq!((got.msg_id, fds.len()), (3, 0));
    assert_eq!((prefix, &dst), ([0xaa; 16], &body));
    assert_eq!(b.recv().unwrap().header.msg_id, 4);
}

#[test]
fn recv_into_a_large_payload_arriving_later_with_its_fd() {
    let (a, mut b) = pair();
    let body = pattern(1 << 20, 9);
    let h = Header::command(5, Command::DmaRead, 0).reply(16 + body.len());
    let mut first = h.as_slice().to_vec();
    first.extend_from_slice(&[0x11; 10]); // part of the prefix only
    raw_send(&a, &first, &[efd(8).as_fd()]);
    let h = b.receiver.peek_header().unwrap();
    assert_eq!(h.msg_size as usize, 32 + body.len());
    let sent = body.clone();
    let t = std::thread::spawn(move || {
        (&a).write_all(&[0x11; 6]).unwrap();
        (&a).write_all(&sent).unwrap();
        (&a).write_all(Header::command(6, Command::DeviceReset, 0).as_slice()).unwrap();
        a
    });
    let (mut prefix, mut dst) = ([0u8; 16], vec![0u8; body.len()]);
    let (_, fds) = b.receiver.recv_into(&mut prefix, &mut dst).unwrap();
    assert_eq!(prefix, [0x11; 16]);
    assert!(dst == body);
    assert_eq!(fds.len(), 1);
    assert_eq!(efd_read(&fds[0]), 8);
    let m = b.recv().unwrap();
    assert_eq!((m.header.msg_id, m.fds.len()), (6, 0));
    drop(t.join().unwrap());
}

#[test]
fn recv_into_after_a_large_payload_started_arriving() {
    let (a, mut b) = pair();
    let body = pattern(200_000, 3);
    let h = Header::command(7, Command::RegionWrite, 0);
    let h = Header { msg_size: (16 + 8 + body.len()) as u32, ..h };
    let mut first = h.as_slice().to_vec();
    first.extend_from_slice(&[5; 8]);
    first.extend_from_slice(&body[..30_000]);
    raw_send(&a, &first, &[]);
    // try_recv starts receiving it into a payload of its own.
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    let rest = body[30_000..].to_vec();
    let t = std::thread::spawn(move || (&a).write_all(&rest).map(|()| a));
    let (mut prefix, mut dst) = ([0u8; 8], vec![0u8; body.len()]);
    b.receiver.recv_into(&mut prefix, &mut dst).unwrap();
    assert_eq!(prefix, [5; 8]);
    assert!(dst == body);
    drop(t.join().unwrap().unwrap());
}

#[test]
fn recv_into_with_the_wrong_size_consumes_nothing() {
    let (mut a, mut b) = pair();
    a.write_all(Header::command(1, Command::RegionWrite, 4).as_slice()).unwrap();
    a.write_all(&[1, 2, 3, 4]).unwrap();
    let e = b.receiver.recv_into(&mut [0; 2], &mut [0; 3]).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let m = b.recv().unwrap();
    assert_eq!((m.header.msg_id, &m.payload[..]), (1, &[1u8, 2, 3, 4][..]));
}

#[test]
fn recv_into_eof_and_bounds() {
    let (mut a, mut b) = pair();
    a.write_all(Header::command(1, Command::RegionWrite, 64).as_slice()).unwrap();
    a.write_all(&[0; 40]).unwrap();
    drop(a);
    match b.receiver.recv_into(&mut [0; 16], &mut [0; 48]) {
        Err(FrameError::EofMidMessage { got: 56, need: 80 }) => {}
        other => panic!("expected EofMidMessage, got {other:?}"),
    }
    // The size bound applies to peek_header as to recv.
    let (mut a, mut b) = pair();
    b.receiver.set_max_msg_size(1000);
    a.write_all(Header::command(1, Command::RegionWrite, 2000).as_slice()).unwrap();
    assert!(matches!(b.receiver.peek_header(), Err(FrameError::Oversize { size: 2016, max: 1000 })));
}

#[test]
fn a_recycled_payload_receives_the_next_large_message() {
    let (a, mut b) = pair();
    let send = |len: usize, seed: u8| {
        let data = pattern(len, seed);
        let a = a.try_clone().unwrap();
        let d = data.clone();
        let t = std::thread::spawn(move || {
            let h = Header::command(1, Command::RegionWrite, d.len());
            (&a).write_all(h.as_slice()).unwrap();
            (&a).write_all(&d).unwrap();
        });
        (t, data)
    };
    let (t, data) = send(200_000, 1);
    let m = b.recv().unwrap();
    t.join().unwrap();
    assert!(m.payload == data);
    let ptr = m.payload.as_ptr();
    b.receiver.recycle(m.payload);
    // A smaller one reuses it; the bytes past its end are not part of it.
    let (t, data) = send(150_000, 2);
    let m = b.recv().unwrap();
    t.join().unwrap();
    assert_eq!(m.payload.as_ptr(), ptr);
    assert!(m.payload == data);
    b.receiver.recycle(m.payload);
    // A larger one too, within its capacity.
    let (t, data) = send(199_000, 3);
    let m = b.recv().unwrap();
    t.join().unwrap();
    assert_eq!(m.payload.as_ptr(), ptr);
    assert!(m.payload == data);
    // Small payloads are not kept.
    b.receiver.recycle(vec![0; 100]);
    let (t, data) = send(50_000, 4);
    let m = b.recv().unwrap();
    t.join().unwrap();
    assert!(m.payload == data);
}

/// The buffer at the offset a DMA_WRITE-like prefix names.
fn pick<'m>(mem: &'m mut [u8]) -> impl FnOnce(&Header, &[u8]) -> Option<&'m mut [u8]> {
    move |h, p| {
        let off = u64::from_le_bytes(p.try_into().unwrap()) as usize;
        let n = h.msg_size as usize - 24;
        Some(&mut mem[off..off + n])
    }
}

#[test]
fn recv_into_with_picks_the_buffer_from_the_prefix() {
    let (a, mut b) = pair();
    let mut mem = vec![0u8; 1 << 20];
    let data = pattern(300_000, 5);
    let send = |off: u64, data: &[u8]| {
        let mut bytes = Header::command(1, Command::DmaWrite, 8 + data.len()).as_slice().to_vec();
        bytes.extend_from_slice(&off.to_le_bytes());
        bytes.extend_from_slice(data);
        bytes
    };
    let (first, second) = (send(4096, &data), send(0, b"small"));
    let t = std::thread::spawn(move || {
        (&a).write_all(&first[..100]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        (&a).write_all(&first[100..]).unwrap();
        (&a).write_all(&second).unwrap();
        (&a).write_all(Header::command(2, Command::DeviceReset, 0).as_slice()).unwrap();
        a
    });
    let (h, fds) = b.receiver.recv_into_with(8, pick(&mut mem)).unwrap().unwrap();
    assert_eq!((h.msg_id, fds.len()), (1, 0));
    assert!(mem[4096..4096 + data.len()] == data[..]);
    b.receiver.recv_into_with(8, pick(&mut mem)).unwrap().unwrap();
    assert_eq!(&mem[..5], b"small");
    // Nothing chosen: nothing consumed.
    assert!(b.receiver.recv_into_with(0, |_, _| None).unwrap().is_none());
    assert_eq!(b.recv().unwrap().header.msg_id, 2);
    drop(t.join().unwrap());
}

#[test]
fn recv_into_with_consumes_nothing_unless_the_buffer_fits() {
    let (mut a, mut b) = pair();
    a.write_all(Header::command(1, Command::RegionWrite, 12).as_slice()).unwrap();
    a.write_all(&[7; 12]).unwrap();
    let mut buf = [0u8; 8];
    // Longer prefix than the payload, then a buffer of the wrong size.
    assert!(b.receiver.recv_into_with(13, |_, _| Some(&mut buf[..])).unwrap().is_none());
    assert!(b.receiver.recv_into_with(4, |_, p| (p == [7; 4]).then_some(&mut buf[..7])).unwrap().is_none());
    assert!(b.receiver.recv_into_with(4, |_, _| Some(&mut buf[..])).unwrap().is_some());
    assert_eq!(buf, [7; 8]);
    // A large payload already being received into its own buffer.
    let body = pattern(100_000, 1);
    let mut first = Header::command(3, Command::RegionWrite, 4 + body.len()).as_slice().to_vec();
    first.extend_from_slice(&[9; 4]);
    first.extend_from_slice(&body[..20_000]);
    a.write_all(&first).unwrap();
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    let rest = body[20_000..].to_vec();
    let t = std::thread::spawn(move || a.write_all(&rest).map(|()| a));
    let mut dst = vec![0u8; body.len()];
    b.receiver.recv_into_with(4, |_, p| (p == [9; 4]).then_some(&mut dst[..])).unwrap().unwrap();
    assert!(dst == body);
    drop(t.join().unwrap().unwrap());
}
