// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

#![cfg(feature = "socket")]

//! Framing over real socket pairs with real descriptors.

mod common;

use common::{efd_read, raw_send};
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

// ---------------------------------------------------------------------------------------
// Stress and hostile-peer framing tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use vm_memory::ByteValued;

/// Records the largest allocation made by a thread while it is watching.
struct Watching;

thread_local! {
    static WATCH: Cell<bool> = const { Cell::new(false) };
}
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches
// only a const-initialised thread-local and an atomic, neither of which allocates.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc`/`realloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    if WATCH.try_with(Cell::get).unwrap_or(false) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Watching = Watching;

/// A small deterministic generator, so that failures reproduce.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn efd_write(fd: &OwnedFd, v: u64) {
    assert_eq!(rustix::io::write(fd, &v.to_ne_bytes()).unwrap(), 8);
}

#[test]
fn two_hundred_pipelined_messages_each_get_exactly_their_fds() {
    let (a, mut b) = pair();
    const N: usize = 200;
    let sender = std::thread::spawn(move || {
        let mut rng = Lcg(42);
        for i in 0..N {
            let len = (rng.next() % 3000) as usize;
            let payload: Vec<u8> = (0..len).map(|k| (i + k) as u8).collect();
            let nfds = (rng.next() % 4) as usize;
            let fds: Vec<OwnedFd> = (0..nfds).map(|_| eventfd(0, EventfdFlags::CLOEXEC).unwrap()).collect();
            for (j, fd) in fds.iter().enumerate() {
                efd_write(fd, (i * 4 + j + 1) as u64);
            }
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
            a.send(Header::command(i as u16, Command::RegionWrite, 0), &[&payload], &borrowed).unwrap();
            // Our copies close here; the receiver's stay open.
        }
        a
    });
    let mut rng = Lcg(42);
    for i in 0..N {
        let len = (rng.next() % 3000) as usize;
        let nfds = (rng.next() % 4) as usize;
        let m = b.recv().unwrap();
        assert_eq!(m.header.msg_id as usize, i);
        assert_eq!(m.payload.len(), len, "message {i}");
        assert!(m.payload.iter().enumerate().all(|(k, &v)| v == (i + k) as u8), "message {i} payload");
        assert_eq!(m.fds.len(), nfds, "message {i} fd count");
        for (j, fd) in m.fds.iter().enumerate() {
            assert_eq!(efd_read(fd), (i * 4 + j + 1) as u64, "message {i} fd {j}");
            assert!(fd_is_cloexec(fd));
        }
    }
    let _a = sender.join().unwrap();
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
}

#[test]
fn message_split_across_many_small_writes() {
    let (mut a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let h = Header::command(77, Command::RegionWrite, payload.len());
    let t = std::thread::spawn(move || {
        for byte in h.as_slice() {
            a.write_all(std::slice::from_ref(byte)).unwrap();
            a.flush().unwrap();
        }
        for chunk in payload.chunks(3) {
            a.write_all(chunk).unwrap();
        }
        // And a second message right behind it, whole.
        a.write_all(Header::command(78, Command::DeviceReset, 0).as_slice()).unwrap();
        (a, payload)
    });
    let m = b.recv().unwrap();
    let (_a, payload) = t.join().unwrap();
    assert_eq!((m.header.msg_id, m.header.msg_size), (77, 1016));
    assert_eq!(m.payload, payload);
    assert_eq!(b.recv().unwrap().header.msg_id, 78);
}

#[test]
fn fds_arrive_with_the_header_and_the_payload_later() {
    let (a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    let e = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    efd_write(&e, 99);
    let h = Header::command(5, Command::DmaMap, 32);
    raw_send(&a, h.as_slice(), &[e.as_fd()]);
    drop(e);
    // Header and fd are in, the payload is not: nothing yet, and nothing lost.
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    (&a).write_all(&[1; 20]).unwrap();
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    (&a).write_all(&[2; 12]).unwrap();
    // A following message without fds must not get any.
    (&a).write_all(Header::command(6, Command::DeviceReset, 0).as_slice()).unwrap();
    let m = b.try_recv().unwrap();
    assert_eq!((m.header.msg_id, m.payload.len(), m.fds.len()), (5, 32, 1));
    assert_eq!(efd_read(&m.fds[0]), 99);
    let m = b.try_recv().unwrap();
    assert_eq!((m.header.msg_id, m.fds.len()), (6, 0));
}

#[test]
fn more_than_253_fds_in_one_message_is_too_many() {
    let (a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    let fds: Vec<OwnedFd> = (0..300).map(|_| eventfd(0, EventfdFlags::CLOEXEC).unwrap()).collect();
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    let h = Header::command(1, Command::DeviceSetIrqs, 20);
    // One message, two sendmsg calls: the header with 200 fds, the payload with 100 more.
    raw_send(&a, h.as_slice(), &borrowed[..200]);
    raw_send(&a, &[0; 20], &borrowed[200..]);
    match b.recv() {
        Err(FrameError::TooManyFds { got: 300, max: 253 }) => {}
        other => panic!("expected TooManyFds, got {other:?}"),
    }
    // The sender refuses more than 253 itself.
    let (a, _b) = pair();
    let e = a.send(Header::command(1, Command::DeviceSetIrqs, 0), &[&[0; 20]], &borrowed[..254]).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
}

#[test]
fn eof_mid_header_and_mid_payload() {
    let (mut a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    a.write_all(&Header::command(1, Command::RegionRead, 16).as_slice()[..10]).unwrap();
    drop(a);
    assert!(matches!(b.recv(), Err(FrameError::EofMidMessage { got: 10, need: 16 })));
    let (mut a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    a.write_all(Header::command(1, Command::DeviceReset, 0).as_slice()).unwrap();
    a.write_all(Header::command(2, Command::RegionWrite, 100).as_slice()).unwrap();
    a.write_all(&[0; 99]).unwrap();
    drop(a);
    // The whole message before the cut is still delivered.
    assert_eq!(b.recv().unwrap().header.msg_id, 1);
    match b.recv() {
        Err(e @ FrameError::EofMidMessage { got: 115, need: 116 }) => assert_eq!(e.errno(), libc::ENOTCONN),
        other => panic!("expected EofMidMessage, got {other:?}"),
    }
}

#[test]
fn try_recv_partial_header_then_fds_then_completion() {
    let (a, mut b) = UnixStream::pair().map(|(a, b)| (a, Connection::new(b))).unwrap();
    let e = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    efd_write(&e, 3);
    let h = Header::command(9, Command::DeviceSetIrqs, 20);
    raw_send(&a, &h.as_slice()[..7], &[e.as_fd()]);
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    assert!(!b.receiver.has_buffered_message());
    raw_send(&a, &h.as_slice()[7..], &[]);
    assert!(matches!(b.try_recv(), Err(FrameError::WouldBlock)));
    raw_send(&a, &[0; 20], &[]);
    let m = b.try_recv().unwrap();
    assert_eq!((m.header.msg_id, m.fds.len()), (9, 1));
    assert_eq!(efd_read(&m.fds[0]), 3);
}

#[test]
fn oversize_is_refused_before_allocating_it() {
    // A 17 MiB message to a receiver with the default bound (1 MiB + 32).
    let (a, mut b) = pair();
    let big = vec![0u8; 17 << 20];
    let t = std::thread::spawn(move || a.send(Header::command(1, Command::RegionWrite, 0), &[&big], &[]));
    WATCH.with(|w| w.set(true));
    let r = b.recv();
    WATCH.with(|w| w.set(false));
    match r {
        Err(e @ FrameError::Oversize { size, max }) => {
            assert_eq!((size as usize, max), (16 + (17 << 20), 16 + 16 + (1 << 20)));
            assert_eq!(e.errno(), libc::E2BIG);
        }
        other => panic!("expected Oversize, got {other:?}"),
    }
    // The receiver never allocated more than its initial buffer.
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest <= 64 * 1024, "receiver allocated {largest} bytes");
    // The connection is dead: the sender, blocked mid-message, fails once it is closed.
    drop(b);
    let e = t.join().unwrap().unwrap_err();
    assert!(matches!(e, FrameError::Io(_)), "{e:?}");
}

#[test]
fn send_refuses_a_msg_size_that_does_not_fit_u32() {
    let (a, _b) = pair();
    let len = (u32::MAX as usize) - 15;
    // SAFETY: an anonymous private mapping with no address hint; the pages are never
    // touched (the send is refused before reading them) and the mapping is unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: `p` is a readable mapping of `len` bytes that outlives the slice.
    let huge = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
    let e = a.send(Header::command(1, Command::RegionWrite, 0), &[huge], &[]).unwrap_err();
    assert_eq!(e.errno(), libc::E2BIG);
    // Parts that only overflow together are refused too.
    let e = a
        .send(Header::command(1, Command::RegionWrite, 0), &[&huge[..len / 2], &huge[..len / 2 + 1]], &[])
        .unwrap_err();
    assert_eq!(e.errno(), libc::E2BIG);
    // Eight parts are more than one message takes.
    let e = a.send(Header::command(1, Command::RegionWrite, 0), &[&[0u8; 1][..]; 8], &[]).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    // SAFETY: unmapping the mapping made above; `huge` is not used after this.
    assert_eq!(unsafe { libc::munmap(p, len) }, 0);
}

#[test]
fn eight_concurrent_senders_never_interleave() {
    let (a, mut b) = pair();
    b.receiver.set_max_msg_size(1 << 20);
    let a = std::sync::Arc::new(a);
    const PER: usize = 20;
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for k in 0..PER {
                    // Large enough to be written in several pieces.
                    let payload = vec![t; 100_000 + k * 1000];
                    let id = u16::from(t) << 8 | k as u16;
                    a.send(Header::command(id, Command::RegionWrite, 0), &[&payload[..50], &payload[50..]], &[])
                        .unwrap();
                }
            })
        })
        .collect();
    let mut next = [0usize; 8];
    for _ in 0..8 * PER {
        let m = b.recv().unwrap();
        let (t, k) = ((m.header.msg_id >> 8) as usize, (m.header.msg_id & 0xff) as usize);
        assert_eq!(k, next[t], "thread {t} messages out of order");
        next[t] += 1;
        assert_eq!(m.payload.len(), 100_000 + k * 1000);
        assert!(m.payload.iter().all(|&v| v as usize == t), "bytes of two senders interleaved");
    }
    for t in threads {
        t.join().unwrap();
    }
}

/// With `set_deliver_damaged`, a message over the limit is read and discarded (never
/// stored), returned with `Damage::Oversize` and its descriptors, and the next message is
/// received intact: small and large oversized payloads, arriving whole or in pieces.
#[test]
fn oversized_messages_are_drained_when_damaged_ones_are_delivered() {
    use vfio_user_proto::Damage;
    let (a, mut b) = pair();
    b.receiver.set_max_msg_size(1000);
    b.receiver.set_deliver_damaged(true);
    let e = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    let writer = std::thread::spawn(move || {
        for (id, len) in [(1u16, 985usize), (2, 5000), (3, 300_000)] {
            let body = vec![id as u8; len];
            a.send(Header::command(id, Command::RegionWrite, 0), &[&body], &[e.as_fd()]).unwrap();
            a.send(Header::command(id + 100, Command::DeviceReset, 0), &[&[7]], &[]).unwrap();
        }
        a
    });
    for (id, len) in [(1u16, 985usize), (2, 5000), (3, 300_000)] {
        let m = b.recv().unwrap();
        assert_eq!(m.header.msg_id, id);
        assert_eq!(m.damage, Some(Damage::Oversize { size: 16 + len as u32, max: 1000 }));
        assert!(m.payload.is_empty());
        assert_eq!(m.fds.len(), 1);
        let n = b.recv().unwrap();
        assert_eq!((n.header.msg_id, n.damage, &n.payload[..]), (id + 100, None, &[7u8][..]));
    }
    drop(writer.join().unwrap());
    assert!(matches!(b.recv(), Err(FrameError::Closed)));
}
