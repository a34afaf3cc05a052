// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Framing over real socket pairs with real descriptors.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use rustix::event::{eventfd, EventfdFlags};
use vfio_user_proto::{Command, Connection, FrameError, Header};

fn pair() -> (Connection, Connection) {
    let (a, b) = UnixStream::pair().unwrap();
    (Connection::new(a), Connection::new(b))
}

fn fd_is_cloexec(fd: impl AsFd) -> bool {
    rustix::io::fcntl_getfd(fd).unwrap().contains(rustix::io::FdFlags::CLOEXEC)
}

#[test]
fn pipelined_messages_keep_their_own_fds() {
    let (a, mut b) = pair();
    let e1 = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    let e2 = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    // Three messages back to back: none, one fd, two fds.
    a.send(Header::command(1, Command::DeviceReset, 0), &[], &[]).unwrap();
    a.send(Header::command(2, Command::DmaMap, 4), &[&[1, 2, 3, 4]], &[e1.as_fd()]).unwrap();
    a.send(Header::command(3, Command::DeviceSetIrqs, 2), &[&[9], &[8]], &[e1.as_fd(), e2.as_fd()]).unwrap();
    a.send(Header::command(4, Command::DeviceReset, 0), &[], &[]).unwrap();
    let m1 = b.recv().unwrap();
    assert_eq!((m1.header.msg_id, m1.fds.len(), m1.payload.len()), (1, 0, 0));
    let m2 = b.recv().unwrap();
    assert_eq!((m2.header.msg_id, m2.fds.len(), &m2.payload[..]), (2, 1, &[1u8, 2, 3, 4][..]));
    assert!(fd_is_cloexec(&m2.fds[0]));
    let m3 = b.recv().unwrap();
    assert_eq!((m3.header.msg_id, m3.fds.len(), &m3.payload[..]), (3, 2, &[9u8, 8][..]));
    let m4 = b.recv().unwrap();
    assert_eq!((m4.header.msg_id, m4.fds.len()), (4, 0));
    // The received descriptor is the same eventfd.
    rustix::io::write(&e1, &5u64.to_ne_bytes()).unwrap();
    let mut v = [0u8; 8];
    assert_eq!(rustix::io::read(&m2.fds[0], &mut v).unwrap(), 8);
    assert_eq!(u64::from_ne_bytes(v), 5);
}

#[test]
fn large_message_arrives_whole() {
    let (a, mut b) = pair();
    b.receiver.set_max_msg_size(4 << 20);
    let data: Vec<u8> = (0..(3 << 20)).map(|i| i as u8).collect();
    let t = std::thread::spawn(move || {
        a.send(Header::command(9, Command::RegionWrite, 0), &[&data[..]], &[]).unwrap();
        data
    });
    let m = b.recv().unwrap();
    let data = t.join().unwrap();
    assert_eq!(m.payload, data);
}

#[test]
fn framing_errors_are_distinct() {
    // EOF between messages.
    let (a, mut b) = pair();
    drop(a);
    assert!(matches!(b.recv(), Err(FrameError::Closed)));
    // EOF mid-message.
    let (mut a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    let h = Header::command(1, Command::RegionRead, 16);
    a.write_all(vm_memory::ByteValued::as_slice(&h)).unwrap();
    a.write_all(&[0; 5]).unwrap();
    drop(a);
    assert!(matches!(b.recv(), Err(FrameError::EofMidMessage { got: 21, need: 32 })));
    // msg_size smaller than a header.
    let (mut a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    let mut h = Header::command(1, Command::DeviceReset, 0);
    h.msg_size = 8;
    a.write_all(vm_memory::ByteValued::as_slice(&h)).unwrap();
    assert!(matches!(b.recv(), Err(FrameError::Undersize(8))));
    // msg_size over the limit, refused before reading or allocating it.
    let (mut a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    let mut h = Header::command(1, Command::RegionWrite, 0);
    h.msg_size = u32::MAX;
    a.write_all(vm_memory::ByteValued::as_slice(&h)).unwrap();
    assert!(matches!(b.recv(), Err(FrameError::Oversize { size: u32::MAX, .. })));
    // A reply where a command is expected.
    let (a, mut b) = pair();
    a.send(Header::command(1, Command::DeviceReset, 0).reply(0), &[], &[]).unwrap();
    assert!(matches!(b.recv().unwrap().expect_command(), Err(FrameError::UnexpectedType { .. })));
}

#[test]
fn try_recv_keeps_partial_messages() {
    let (mut a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    let h = Header::command(7, Command::RegionRead, 16);
    a.write_all(vm_memory::ByteValued::as_slice(&h)).unwrap();
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    a.write_all(&[1; 16]).unwrap();
    let m = b.try_recv().unwrap();
    assert_eq!((m.header.msg_id, m.payload.len()), (7, 16));
}
