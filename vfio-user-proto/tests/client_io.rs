// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

#![cfg(feature = "socket")]

//! `Receiver::recv_timed` (a receive bounded by `SO_RCVTIMEO`) and `Sender::send_batch`.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vfio_user_proto::{Command, Connection, FrameError, Header};
use vm_memory::ByteValued;

#[test]
fn recv_timed_returns_would_block_on_timeout_and_keeps_partial_messages() {
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut rx = Connection::new(b);
    assert!(matches!(rx.receiver.recv_timed(), Err(FrameError::WouldBlock)));
    let mut h = Header::command(7, Command::RegionWrite, 4);
    h.msg_size = 20;
    a.write_all(h.as_slice()).unwrap();
    a.write_all(&[1, 2]).unwrap();
    assert!(matches!(rx.receiver.recv_timed(), Err(FrameError::WouldBlock)), "half a message is not a message");
    a.write_all(&[3, 4]).unwrap();
    let m = loop {
        // A receive may end at any byte boundary: retry until the message is whole.
        match rx.receiver.recv_timed() {
            Err(FrameError::WouldBlock) => continue,
            r => break r.unwrap(),
        }
    };
    assert_eq!((m.header.msg_id, &m.payload[..]), (7, &[1u8, 2, 3, 4][..]));
    drop(a);
    assert!(matches!(rx.receiver.recv_timed(), Err(FrameError::Closed)));
}

#[test]
fn recv_timed_does_at_most_one_recvmsg() {
    // A peer trickling a message byte by byte cannot keep the receiver inside one call.
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut rx = Connection::new(b);
    let h = Header::command(1, Command::DeviceReset, 0);
    a.write_all(&h.as_slice()[..1]).unwrap();
    assert!(matches!(rx.receiver.recv_timed(), Err(FrameError::WouldBlock)));
    a.write_all(&h.as_slice()[1..]).unwrap();
    let m = loop {
        match rx.receiver.recv_timed() {
            Err(FrameError::WouldBlock) => continue,
            r => break r.unwrap(),
        }
    };
    assert_eq!(m.header.msg_id, 1);
}

#[test]
fn send_batch_sends_whole_messages_back_to_back() {
    let (a, b) = UnixStream::pair().unwrap();
    let tx = Connection::new(a);
    let mut rx = Connection::new(b);
    // 600 messages of 3 iovecs each: more than one sendmsg's worth of iovecs.
    let bodies: Vec<[u8; 4]> = (0..600u32).map(|i| i.to_ne_bytes()).collect();
    let msgs: Vec<(Header, Vec<&[u8]>)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (Header::command(i as u16, Command::RegionWrite, 0), vec![&b[..2], &[][..], &b[2..]]))
        .collect();
    let batch: Vec<(Header, &[&[u8]])> = msgs.iter().map(|(h, p)| (*h, &p[..])).collect();
    let h = std::thread::spawn(move || {
        for i in 0..600u32 {
            let m = rx.recv().unwrap();
            assert_eq!((m.header.msg_id, m.header.msg_size), (i as u16, 20));
            assert_eq!(m.payload, i.to_ne_bytes());
        }
    });
    tx.sender.send_batch(&batch).unwrap();
    h.join().unwrap();
}
