// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The client's socket paths over real socket pairs: `recv_timed` (a receive bounded by
//! `SO_RCVTIMEO`), `send_batch`, `recv_volatile_with` (a payload received straight into
//! vm-memory guest memory made of several regions), `recv_timed_unless`, and
//! `send_volatile` (a message sent straight out of guest memory). They moved here from
//! vfio-user-proto with the paths they test.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{eventfd, EventfdFlags};
use vfio_user_proto::{Command, Connection, FrameError, Header, HEADER_SIZE};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions, VolatileSlice};

use super::{RecvExt, SendExt, VolatileBuf, VolatileBufMut};
use vfio_user_proto::connection::IOV_MAX;

fn efd_read(fd: &OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    assert_eq!(rustix::io::read(fd, &mut b).unwrap(), 8);
    u64::from_ne_bytes(b)
}

/// Sends raw bytes with fds in one sendmsg (no framing), as a hostile or slow peer would.
fn raw_send(sock: &UnixStream, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(253))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    let n = sendmsg(sock, &[std::io::IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL).unwrap();
    assert_eq!(n, bytes.len());
}

// ---- recv_timed and send_batch

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
    tx.sender.lock().send_batch(&batch).unwrap();
    h.join().unwrap();
}

// ---- recv_volatile_with and recv_timed_unless

const STALL: Duration = Duration::from_secs(10);
const PREFIX: [u8; 16] = [0xab; 16];

fn pair() -> (UnixStream, Connection) {
    let (a, b) = UnixStream::pair().unwrap();
    (a, Connection::new(b))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add((i >> 10) as u8).wrapping_add(seed)).collect()
}

fn efd(v: u64) -> OwnedFd {
    let e = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    assert_eq!(rustix::io::write(&e, &v.to_ne_bytes()).unwrap(), 8);
    e
}

fn memory(sizes: &[usize]) -> GuestMemoryMmap {
    let mut at = 0;
    let ranges: Vec<_> = sizes
        .iter()
        .map(|&s| {
            let r = (GuestAddress(at), s);
            at += s as u64;
            r
        })
        .collect();
    GuestMemoryMmap::<()>::from_ranges(&ranges).unwrap()
}

fn message(id: u16, data: &[u8]) -> Vec<u8> {
    let mut m = Header::command(id, Command::DmaWrite, 16 + data.len()).as_slice().to_vec();
    m.extend_from_slice(&PREFIX);
    m.extend_from_slice(data);
    m
}

fn recv_at(
    b: &mut Connection,
    mem: &GuestMemoryMmap,
    addr: u64,
    len: usize,
) -> Result<Option<(Header, Vec<OwnedFd>)>, FrameError> {
    let slices: Vec<_> =
        mem.get_slices(GuestAddress(addr), len, Permissions::Write).unwrap().map(|s| s.unwrap()).collect();
    let bufs: Vec<VolatileBufMut<'_>> = slices.iter().map(VolatileBufMut::new).collect();
    b.receiver.recv_volatile_with(16, STALL, |h, p| {
        assert_eq!(h.cmd(), Ok(Command::DmaWrite));
        assert_eq!(p, PREFIX);
        Some(&bufs[..])
    })
}

fn one_slice(mem: &GuestMemoryMmap, len: usize) -> vm_memory::VolatileSlice<'_, ()> {
    mem.get_slices(GuestAddress(0), len, Permissions::Write).unwrap().next().unwrap().unwrap()
}

fn read_mem(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

#[test]
fn a_large_payload_lands_across_three_regions_and_the_next_message_follows() {
    let (a, mut b) = pair();
    // Nearly 1 MiB (the default size bound) spanning three regions (a middle one of 256
    // KiB) at an odd offset.
    let mem = memory(&[1 << 20, 256 << 10, 1 << 20]);
    let data = pattern((1 << 20) - 3, 1);
    let addr = (1 << 19) + 5;
    assert_eq!(mem.get_slices(GuestAddress(addr), data.len(), Permissions::Write).unwrap().count(), 3);
    let wire = message(1, &data);
    let t = std::thread::spawn(move || {
        (&a).write_all(&wire).unwrap();
        (&a).write_all(Header::command(2, Command::DmaMap, 0).as_slice()).unwrap();
        a
    });
    let (h, fds) = recv_at(&mut b, &mem, addr, data.len()).unwrap().unwrap();
    assert_eq!((h.msg_id, h.msg_size as usize), (1, 32 + data.len()));
    assert!(fds.is_empty());
    assert!(read_mem(&mem, addr, data.len()) == data, "byte for byte");
    // Nothing written around it.
    assert_eq!(read_mem(&mem, addr - 5, 5), [0; 5]);
    assert_eq!(read_mem(&mem, addr + data.len() as u64, 7), [0; 7]);
    assert_eq!(b.recv().unwrap().header.msg_id, 2);
    drop(t.join().unwrap());
}

#[test]
fn bytes_buffered_before_the_call_are_copied_then_the_rest_received() {
    let mem = memory(&[64 << 10, 128 << 10]);
    // A small message (in the shared buffer) and a large one (in its own payload buffer).
    for (len, have) in [(8000usize, 3000usize), (100_000, 40_000)] {
        let (a, mut b) = pair();
        let data = pattern(len, len as u8);
        let wire = message(7, &data);
        (&a).write_all(&wire[..32 + have]).unwrap();
        assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
        let rest = wire[32 + have..].to_vec();
        let t = std::thread::spawn(move || {
            (&a).write_all(&rest).unwrap();
            a
        });
        let addr = (64 << 10) - 1234;
        recv_at(&mut b, &mem, addr, len).unwrap().unwrap();
        assert!(read_mem(&mem, addr, len) == data, "len {len}");
        let a = t.join().unwrap();
        (&a).write_all(Header::command(8, Command::DmaMap, 0).as_slice()).unwrap();
        assert_eq!(b.recv().unwrap().header.msg_id, 8);
    }
}

#[test]
fn a_payload_in_many_small_writes() {
    let (a, mut b) = pair();
    let mem = memory(&[128 << 10, 128 << 10]);
    let data = pattern(200_000, 3);
    let wire = message(1, &data);
    let t = std::thread::spawn(move || {
        for (i, c) in wire.chunks(997).enumerate() {
            (&a).write_all(c).unwrap();
            if i % 16 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        a
    });
    recv_at(&mut b, &mem, 17, data.len()).unwrap().unwrap();
    assert!(read_mem(&mem, 17, data.len()) == data);
    drop(t.join().unwrap());
}

#[test]
fn fds_with_the_message_are_returned_and_the_next_message_keeps_its_own() {
    let (a, mut b) = pair();
    let mem = memory(&[256 << 10]);
    let data = pattern(150_000, 4);
    let wire = message(1, &data);
    // One fd with the header, a stray one in the middle of the data.
    raw_send(&a, &wire[..20], &[efd(1).as_fd()]);
    let rest = wire[20..].to_vec();
    let t = std::thread::spawn(move || {
        (&a).write_all(&rest[..50_000]).unwrap();
        raw_send(&a, &rest[50_000..60_000], &[efd(2).as_fd()]);
        (&a).write_all(&rest[60_000..]).unwrap();
        raw_send(&a, Header::command(2, Command::DmaMap, 0).as_slice(), &[efd(3).as_fd()]);
        a
    });
    let (_, fds) = recv_at(&mut b, &mem, 0, data.len()).unwrap().unwrap();
    assert_eq!(fds.iter().map(efd_read).collect::<Vec<_>>(), [1, 2]);
    assert!(read_mem(&mem, 0, data.len()) == data);
    let m = b.recv().unwrap();
    assert_eq!(m.header.msg_id, 2);
    assert_eq!(m.fds.iter().map(efd_read).collect::<Vec<_>>(), [3]);
    drop(t.join().unwrap());
}

#[test]
fn end_of_stream_in_the_middle_of_the_data() {
    let (a, mut b) = pair();
    let mem = memory(&[64 << 10]);
    let wire = message(1, &pattern(50_000, 5));
    (&a).write_all(&wire[..30_000]).unwrap();
    drop(a);
    match recv_at(&mut b, &mem, 0, 50_000) {
        Err(FrameError::EofMidMessage { got: 30_000, need }) => assert_eq!(need, wire.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn declined_or_misfit_buffers_consume_nothing() {
    let (a, mut b) = pair();
    let mem = memory(&[64 << 10]);
    let data = pattern(40_000, 6);
    let wire = message(1, &data);
    (&a).write_all(&wire[..1000]).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        (&a).write_all(&wire[1000..]).unwrap();
        a
    });
    // Declined after seeing the prefix.
    let r = b.receiver.recv_volatile_with(16, STALL, |_, p| {
        assert_eq!(p, PREFIX);
        None
    });
    assert!(r.unwrap().is_none());
    // Buffers one byte short, and a prefix longer than the payload.
    let slice = one_slice(&mem, data.len() - 1);
    let short = [VolatileBufMut::new(&slice)];
    assert!(b.receiver.recv_volatile_with(16, STALL, |_, _| Some(&short[..])).unwrap().is_none());
    assert!(b.receiver.recv_volatile_with(16 + data.len() + 1, STALL, |_, _| unreachable!()).unwrap().is_none());
    // The message is whole for recv, and memory untouched.
    let m = b.recv().unwrap();
    assert_eq!(m.payload[..16], PREFIX);
    assert!(m.payload[16..] == data);
    assert_eq!(read_mem(&mem, 0, 64 << 10), vec![0; 64 << 10]);
    drop(t.join().unwrap());
}

#[test]
fn a_peer_that_stalls_is_given_up_on_after_the_limit() {
    let mem = memory(&[64 << 10]);
    let wire = message(1, &pattern(50_000, 7));
    // In the data, before the prefix is complete, and with only the header: with a
    // receive timeout, and on a non-blocking socket.
    for (cut, timeout) in [(30_000, true), (24, true), (16, true), (30_000, false), (24, false)] {
        let (a, b) = UnixStream::pair().unwrap();
        if timeout {
            b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        } else {
            b.set_nonblocking(true).unwrap();
        }
        let mut b = Connection::new(b);
        (&a).write_all(&wire[..cut]).unwrap();
        let start = Instant::now();
        let slice = one_slice(&mem, 50_000);
        let bufs = [VolatileBufMut::new(&slice)];
        let r = b.receiver.recv_volatile_with(16, Duration::from_millis(100), |_, _| Some(&bufs[..]));
        let took = start.elapsed();
        match r {
            Err(FrameError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT), "cut {cut}"),
            other => panic!("cut {cut}: {other:?}"),
        }
        assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "cut {cut}: {took:?}");
        drop(a);
    }
}

#[test]
fn recv_timed_unless_leaves_a_diverted_message_and_takes_others() {
    let (a, mut b) = pair();
    b.receiver.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let is_write = |h: &Header| h.cmd() == Ok(Command::DmaWrite);
    assert!(matches!(b.receiver.recv_timed_unless(is_write), Err(FrameError::WouldBlock)));
    (&a).write_all(Header::command(1, Command::DmaMap, 0).as_slice()).unwrap();
    let data = pattern(100_000, 8);
    (&a).write_all(&message(2, &data)[..100]).unwrap();
    assert_eq!(b.receiver.recv_timed_unless(is_write).unwrap().unwrap().header.msg_id, 1);
    // Only part of it has arrived: diverted all the same, and again (nothing consumed).
    for _ in 0..2 {
        assert_eq!(b.receiver.recv_timed_unless(is_write).unwrap().unwrap_err().msg_id, 2);
    }
    let wire = message(2, &data);
    let t = std::thread::spawn(move || {
        (&a).write_all(&wire[100..]).unwrap();
        a
    });
    let mem = memory(&[128 << 10]);
    recv_at(&mut b, &mem, 0, data.len()).unwrap().unwrap();
    assert!(read_mem(&mem, 0, data.len()) == data);
    drop(t.join().unwrap());
}

// ---- send_volatile

fn send_pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn sends_header_parts_and_guest_data_as_one_message() {
    let (a, b) = UnixStream::pair().unwrap();
    let conn = Connection::new(a);
    let mut peer = Connection::new(b);
    let (mut m1, mut m2) = (send_pattern(3000, 1), send_pattern(5, 2));
    let (s1, s2) = (VolatileSlice::from(&mut m1[..]), VolatileSlice::from(&mut m2[..]));
    let h = Header::command(7, Command::DmaRead, 0);
    conn.sender.lock().send_volatile(h, &[b"prefix"], &[VolatileBuf::new(&s1), VolatileBuf::new(&s2)]).unwrap();
    let got = peer.recv().unwrap();
    assert_eq!(got.header.msg_id, 7);
    assert_eq!(got.header.msg_size as usize, HEADER_SIZE + 6 + 3005);
    assert_eq!(&got.payload[..6], b"prefix");
    assert_eq!(&got.payload[6..3006], &m1[..]);
    assert_eq!(&got.payload[3006..], &m2[..]);
}

#[test]
fn a_message_larger_than_the_socket_buffer_is_sent_whole_after_short_writes() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let conn = Connection::new(a);
    let mut mem = send_pattern(4 << 20, 3);
    let expect = mem.clone();
    let reader = std::thread::spawn(move || {
        let mut all = vec![0u8; HEADER_SIZE + 8 + (4 << 20)];
        b.read_exact(&mut all).unwrap();
        all
    });
    let halves = mem.split_at_mut(1 << 20);
    let (s1, s2) = (VolatileSlice::from(halves.0), VolatileSlice::from(halves.1));
    let h = Header::command(1, Command::DmaRead, 0);
    conn.sender.lock().send_volatile(h, &[&[9u8; 8]], &[VolatileBuf::new(&s1), VolatileBuf::new(&s2)]).unwrap();
    let all = reader.join().unwrap();
    assert_eq!(&all[HEADER_SIZE..HEADER_SIZE + 8], &[9u8; 8]);
    assert_eq!(&all[HEADER_SIZE + 8..], &expect[..]);
}

#[test]
fn too_many_parts_are_refused_before_sending() {
    let (a, _b) = UnixStream::pair().unwrap();
    let conn = Connection::new(a);
    let mut m = [0u8; 1];
    let s = VolatileSlice::from(&mut m[..]);
    let bufs = vec![VolatileBuf::new(&s); IOV_MAX];
    let h = Header::command(1, Command::DmaRead, 0);
    let e = conn.sender.lock().send_volatile(h, &[], &bufs).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
}
