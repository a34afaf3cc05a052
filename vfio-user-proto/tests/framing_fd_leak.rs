// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

#![cfg(feature = "socket")]

//! Received descriptors are closed when the message is dropped. Alone in its test binary,
//! so that no other test opens or closes descriptors while /proc/self/fd is counted.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::event::{eventfd, EventfdFlags};
use vfio_user_proto::{Command, Connection, Header};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn dropping_a_message_closes_its_fds() {
    let (a, b) = UnixStream::pair().unwrap();
    let (a, mut b) = (Connection::new(a), Connection::new(b));
    let fds: Vec<OwnedFd> = (0..5).map(|_| eventfd(0, EventfdFlags::CLOEXEC).unwrap()).collect();
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    for i in 0..3u16 {
        a.send(Header::command(i, Command::DeviceSetIrqs, 0), &[&[0; 20]], &borrowed).unwrap();
    }
    drop(borrowed);
    drop(fds);
    let before = open_fds();
    let m1 = b.recv().unwrap();
    let m2 = b.recv().unwrap();
    assert_eq!(open_fds(), before + 10);
    drop(m1);
    assert_eq!(open_fds(), before + 5);
    // Taking an fd out keeps it; the rest close with the message.
    let mut m2 = m2;
    let kept = m2.fds.pop().unwrap();
    drop(m2);
    assert_eq!(open_fds(), before + 1);
    drop(kept);
    assert_eq!(open_fds(), before);
    // Fds of a message still buffered in the receiver close with the receiver.
    drop(b);
    let after_close = open_fds();
    assert!(after_close < before, "receiver's buffered fds and socket were not closed");
    drop(a);
}
