// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Many threads on one client: replies matched by message id, disconnects, ordering, and
//! reconnecting to a restarted server.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;

use common::*;
use vfio_user_client::{Client, Config, DisconnectReason, DmaProt, Error, IrqAction, IrqSetData, RegionReadOp};
use vfio_user_proto::wire::*;
use vfio_user_proto::{decode_request, Capabilities, Command, Request};
use vm_memory::ByteValued;

/// The fake server's half of a test of `n` reads in flight: takes all of them, then answers
/// each with its offset, last first, waiting `gap` between replies.
fn answer_reads_in_reverse(f: &mut Fake, n: u64, gap: std::time::Duration) {
    let mut reqs = Vec::new();
    for _ in 0..n {
        reqs.push(f.expect(Command::RegionRead));
    }
    let ids: std::collections::HashSet<u16> = reqs.iter().map(|m| m.header.msg_id).collect();
    assert_eq!(ids.len() as u64, n, "ids of requests in flight are distinct");
    for m in reqs.iter().rev() {
        let a: RegionAccess = read_at(&m.payload, 0).unwrap();
        f.reply(m, &[a.as_slice(), &(a.offset as u32).to_ne_bytes()]);
        std::thread::sleep(gap);
    }
}

/// `n` threads each reading 4 bytes at `4 * i` and checking they got their own reply.
fn read_from_threads(c: &Arc<Client>, n: u64) {
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 4];
                c.region_read(0, i * 4, &mut b).unwrap();
                assert_eq!(u32::from_ne_bytes(b), (i * 4) as u32);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn sixteen_requests_in_flight_answered_in_reverse_order() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        answer_reads_in_reverse(&mut f, 16, std::time::Duration::ZERO);
    });
    read_from_threads(&Arc::new(c), 16);
    h.join().unwrap();
}

/// More waiters than wake-up bits (32): callers whose ids share a bit are woken by each
/// other's replies, find nothing and must sleep again, and none may miss its own. A missed
/// wake-up would only be repaired by the background reader shortly before the deadline
/// (60 s here), so every reply must arrive long before that.
#[test]
fn forty_waiters_sharing_wake_bits_each_get_their_own_reply() {
    let started = std::time::Instant::now();
    // The fake server stays connected until every caller has its reply: a disconnect
    // would wake them all.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(Config::default().timeout(std::time::Duration::from_secs(60)), move |mut f| {
        f.handshake();
        // One reply at a time, so that every reply is a wake-up of its own.
        answer_reads_in_reverse(&mut f, 40, std::time::Duration::from_millis(2));
        let _ = done_rx.recv();
    });
    read_from_threads(&Arc::new(c), 40);
    assert!(started.elapsed() < std::time::Duration::from_secs(50), "a wake-up was missed");
    done_tx.send(()).unwrap();
    h.join().unwrap();
}

#[test]
fn a_batch_from_one_thread_has_all_its_reads_in_flight() {
    let caps = Capabilities { max_data_xfer_size: 8, ..Default::default() };
    let (c, h) = start(test_config(), move |mut f| {
        f.handshake_with(&caps, &[], default_info());
        // 3 reads of 4 bytes and one of 12 (two messages): 5 requests before any reply.
        let reqs: Vec<_> = (0..5).map(|_| f.expect(Command::RegionRead)).collect();
        for m in reqs.iter().rev() {
            let a: RegionAccess = read_at(&m.payload, 0).unwrap();
            let data: Vec<u8> = (0..a.count).map(|i| (a.offset as u32 + i) as u8).collect();
            f.reply(m, &[a.as_slice(), &data]);
        }
    });
    let (mut a, mut b, mut d, mut e) = ([0u8; 4], [0u8; 4], [0u8; 4], [0u8; 12]);
    let mut ops = [
        RegionReadOp { region: 0, offset: 0, data: &mut a },
        RegionReadOp { region: 0, offset: 100, data: &mut b },
        RegionReadOp { region: 0, offset: 200, data: &mut d },
        RegionReadOp { region: 0, offset: 50, data: &mut e },
    ];
    c.region_read_batch(&mut ops).unwrap();
    assert_eq!((a, b, d), ([0, 1, 2, 3], [100, 101, 102, 103], [200, 201, 202, 203]));
    assert_eq!(e, [50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61]);
    h.join().unwrap();
}

#[test]
fn a_server_that_stops_reading_cannot_block_a_sender_forever() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let config = test_config().timeout(std::time::Duration::from_millis(200));
    let (c, h) = start(config, move |mut f| {
        f.handshake();
        rx.recv().unwrap(); // never read again until the test is over
    });
    let big = vec![0u8; 8 << 20];
    let e = c.region_write(0, 0, &big).unwrap_err();
    assert!(matches!(e, Error::Disconnected(DisconnectReason::Io(libc::ETIMEDOUT))), "{e}");
    tx.send(()).unwrap();
    h.join().unwrap();
}

#[test]
fn server_dma_between_replies_is_served_by_whoever_reads() {
    let gm = Arc::new(vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 0x10000)]).unwrap());
    vm_memory::Bytes::write_slice(&*gm, b"guest!", vm_memory::GuestAddress(0x100)).unwrap();
    let config = test_config().twin_socket(false).guest_memory(gm);
    let (c, h) = start(config, |mut f| {
        f.handshake();
        let m = f.expect(Command::DmaMap);
        f.reply(&m, &[]);
        let reqs: Vec<_> = (0..8).map(|_| f.expect(Command::RegionRead)).collect();
        // With eight requests waiting, ask for DMA in between the replies.
        for (i, m) in reqs.iter().enumerate() {
            let h = vfio_user_proto::Header::command(1000 + i as u16, Command::DmaRead, 0);
            f.conn.send(h, &[DmaAccess { addr: 0x100, count: 6 }.as_slice()], &[]).unwrap();
            let r = f.conn.recv().unwrap();
            assert!(r.header.is_reply() && r.header.msg_id == 1000 + i as u16);
            assert_eq!(&r.payload[16..], b"guest!");
            let a: RegionAccess = read_at(&m.payload, 0).unwrap();
            f.reply(m, &[a.as_slice(), &[i as u8; 4]]);
        }
    });
    c.dma_map(0, 0x10000, DmaProt::READ).unwrap();
    let c = Arc::new(c);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || c.region_read(0, 0, &mut [0; 4]).unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    h.join().unwrap();
}

#[test]
fn shutdown_from_another_thread_wakes_a_waiter() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(test_config(), move |mut f| {
        f.handshake();
        f.expect(Command::DeviceReset);
        tx.send(()).unwrap();
        while f.conn.recv().is_ok() {}
    });
    let c = Arc::new(c);
    let c2 = c.clone();
    let waiter = std::thread::spawn(move || c2.reset().unwrap_err());
    rx.recv().unwrap(); // the reset is in flight
    c.shutdown().unwrap();
    let e = waiter.join().unwrap();
    assert!(matches!(e, Error::Disconnected(DisconnectReason::Shutdown)), "{e}");
    h.join().unwrap();
}

#[test]
fn disconnect_wakes_every_waiter() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        for _ in 0..8 {
            f.expect(Command::RegionRead);
        }
        // All eight are waiting: close.
    });
    let c = Arc::new(c);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || c.region_read(0, 0, &mut [0; 4]).unwrap_err())
        })
        .collect();
    for t in threads {
        let e = t.join().unwrap();
        assert!(matches!(e, Error::Disconnected(DisconnectReason::Closed)), "{e}");
    }
    h.join().unwrap();
    assert!(matches!(c.dma_map(0, 4096, DmaProt::READ), Err(Error::Disconnected(_))));
}

#[test]
fn a_posted_write_takes_effect_before_a_later_request() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let mut log = Vec::new();
        for _ in 0..3 {
            let m = f.recv();
            let r = decode_request(&m.header, &m.payload, 0, &f.limits).unwrap();
            log.push((r.command(), m.header.no_reply()));
            if !m.header.no_reply() {
                let a: RegionAccess = read_at(&m.payload, 0).unwrap();
                f.reply(&m, &[a.as_slice(), &[0; 4]]);
            }
        }
        assert_eq!(
            log,
            [(Command::RegionWrite, true), (Command::RegionWrite, true), (Command::RegionRead, false)],
            "posted writes first, in order"
        );
    });
    c.region_write_posted(1, 0, &[1; 4]).unwrap();
    c.region_write_posted(1, 4, &[2; 100]).unwrap();
    c.region_read(1, 0, &mut [0; 4]).unwrap();
    h.join().unwrap();
}

fn socket_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vfio-user-client-{tag}-{}.sock", std::process::id()))
}

#[test]
fn reconnect_replays_dma_mappings_irq_eventfds_and_masks() {
    let path = socket_path("reconnect");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let serve_first = {
        let l = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut f = Fake::new(l.accept().unwrap().0);
            f.handshake_with(&Capabilities { max_msg_fds: 2, ..Default::default() }, &[], default_info());
            let m = f.expect(Command::DmaMap);
            f.reply(&m, &[]);
            let m = f.expect(Command::DeviceGetIrqInfo);
            f.reply(&m, &[IrqInfo { argsz: 16, flags: IRQ_INFO_EVENTFD, index: 2, count: 4 }.as_slice()]);
            for _ in 0..3 {
                let m = f.expect(Command::DeviceSetIrqs);
                f.reply(&m, &[]);
            }
            // The server "crashes".
        })
    };
    let c = Client::connect(&path, test_config()).unwrap();
    let mem = memfd(0x2000);
    c.dma_map_fd(0x10000, 0x2000, mem.as_fd(), 0, DmaProt::READ_WRITE).unwrap();
    let efds: Vec<OwnedFd> = (0..2).map(|_| eventfd()).collect();
    c.enable_irq_eventfds(2, 1, &[efds[0].as_fd(), efds[1].as_fd()]).unwrap();
    // Vectors 0 and 3 masked, then 3 unmasked again: only 0 is masked at the crash.
    c.set_irqs(2, IrqAction::Mask, 0, IrqSetData::Bool(&[true, false, false, true])).unwrap();
    c.set_irqs(2, IrqAction::Unmask, 3, IrqSetData::None { count: 1 }).unwrap();
    assert!(!readable(c.disconnect_fd()), "connected: the disconnect fd is quiet");
    serve_first.join().unwrap();
    assert!(matches!(c.region_read(0, 0, &mut [0; 4]), Err(Error::Disconnected(_))));
    assert!(readable(c.disconnect_fd()), "the VMM's epoll loop learns of the crash");

    let serve_second = std::thread::spawn(move || {
        let mut f = Fake::new(listener.accept().unwrap().0);
        f.handshake_with(&Capabilities { max_msg_fds: 2, ..Default::default() }, &[], default_info());
        let m = f.expect(Command::DmaMap);
        let map = match decode_request(&m.header, &m.payload, 1, &f.limits).unwrap() {
            Request::DmaMap { map, fd: true } => map,
            r => panic!("{r:?}"),
        };
        assert_eq!((map.addr, map.size, map.flags), (0x10000, 0x2000, DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE));
        fd_write(&m.fds[0], 0x100, b"same memory");
        f.reply(&m, &[]);
        let m = f.expect(Command::DeviceSetIrqs);
        let set: IrqSet = read_at(&m.payload, 0).unwrap();
        assert_eq!((set.index, set.start, set.count, m.fds.len()), (2, 1, 2, 2));
        assert_eq!(set.flags, IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER);
        rustix::io::write(&m.fds[1], &1u64.to_ne_bytes()).unwrap();
        f.reply(&m, &[]);
        let m = f.expect(Command::DeviceSetIrqs);
        let set: IrqSet = read_at(&m.payload, 0).unwrap();
        assert_eq!((set.flags, set.index, set.start, set.count), (IRQ_SET_DATA_NONE | IRQ_SET_ACTION_MASK, 2, 0, 1));
        f.reply(&m, &[]);
        let m = f.expect(Command::RegionRead);
        let a: RegionAccess = read_at(&m.payload, 0).unwrap();
        f.reply(&m, &[a.as_slice(), b"new!"]);
        while f.conn.recv().is_ok() {}
    });
    c.reconnect().unwrap();
    assert_eq!(c.stats().reconnects, 1);
    assert!(!readable(c.disconnect_fd()), "a successful reconnect drains it");
    assert_eq!(fd_read(&mem, 0x100, 11), b"same memory");
    let mut b = [0u8; 8];
    assert_eq!(rustix::io::read(&efds[1], &mut b).unwrap(), 8, "the replayed eventfd is ours");
    let mut d = [0u8; 4];
    c.region_read(0, 0, &mut d).unwrap();
    assert_eq!(&d, b"new!");
    assert!(c.disconnected().is_none());
    c.shutdown().unwrap();
    assert!(readable(c.disconnect_fd()), "a local shutdown is a disconnect too");
    serve_second.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_client_made_from_an_fd_reconnects_over_a_socket_it_is_given() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DmaMap);
        f.reply(&m, &[]);
    });
    c.dma_map(0x1000, 0x1000, DmaProt::READ).unwrap();
    h.join().unwrap();
    assert!(matches!(c.reconnect(), Err(Error::Unsupported(_))), "no path to reconnect to");
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let h = std::thread::spawn(move || {
        let mut f = Fake::new(b);
        f.handshake();
        let m = f.expect(Command::DmaMap);
        assert!(m.fds.is_empty(), "a mapping without fd is replayed without one");
        f.reply(&m, &[]);
        while f.conn.recv().is_ok() {}
    });
    c.reconnect_with(a).unwrap();
    assert!(c.disconnected().is_none());
    c.shutdown().unwrap();
    h.join().unwrap();
}

/// Serves REGION_READ (and nothing else) until the client hangs up or `stop` is set.
fn serve_reads(mut f: Fake, stop: Arc<std::sync::atomic::AtomicBool>) {
    while let Ok(m) = f.conn.recv() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return; // "crash": drop the connection
        }
        if let Ok(Request::RegionRead(a)) = decode_request(&m.header, &m.payload, 0, &f.limits) {
            f.reply(&m, &[a.as_slice(), &vec![7; a.count as usize]]);
        }
    }
}

#[test]
fn reconnect_while_threads_keep_reading() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let path = socket_path("busy-reconnect");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let crash = Arc::new(AtomicBool::new(false));
    let first = {
        let (l, crash) = (listener.try_clone().unwrap(), crash.clone());
        std::thread::spawn(move || {
            let mut f = Fake::new(l.accept().unwrap().0);
            f.handshake();
            serve_reads(f, crash);
        })
    };
    let c = Arc::new(Client::connect(&path, test_config()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let ok_after = Arc::new(AtomicU64::new(0));
    let reconnected = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (c, done, ok_after, reconnected) = (c.clone(), done.clone(), ok_after.clone(), reconnected.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let after = reconnected.load(Ordering::SeqCst);
                    let mut b = [0u8; 4];
                    match c.region_read(0, 0, &mut b) {
                        Ok(()) => {
                            assert_eq!(b, [7; 4]);
                            if after {
                                ok_after.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(Error::Disconnected(_)) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    // Crash the server (it drops the connection at the next request, which the readers
    // keep sending), then bring up a new one.
    c.region_read(0, 0, &mut [0; 4]).unwrap();
    crash.store(true, Ordering::SeqCst);
    first.join().unwrap();
    let second = {
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            let mut f = Fake::new(listener.accept().unwrap().0);
            f.handshake();
            serve_reads(f, stop);
        })
    };
    c.reconnect().unwrap();
    reconnected.store(true, Ordering::SeqCst);
    while ok_after.load(Ordering::SeqCst) < 40 {
        std::thread::yield_now();
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    c.shutdown().unwrap();
    second.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn reconnect_refuses_a_different_device() {
    let path = socket_path("other-device");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let l = listener.try_clone().unwrap();
    let server = std::thread::spawn(move || {
        Fake::new(l.accept().unwrap().0).handshake();
        let mut f = Fake::new(listener.accept().unwrap().0);
        let other = DeviceInfo { num_regions: 10, ..default_info() };
        f.handshake_with(&Default::default(), &[], other);
        while f.conn.recv().is_ok() {}
    });
    let c = Client::connect(&path, test_config()).unwrap();
    let e = c.reconnect().unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    server.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_caller_parked_far_from_its_deadline_still_times_out() {
    // Long enough that a caller not reading the socket parks without a timeout at first.
    let config = test_config().timeout(std::time::Duration::from_millis(400));
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(config, move |mut f| {
        f.handshake();
        let reset = f.expect(Command::DeviceReset);
        seen_tx.send(()).unwrap();
        f.expect(Command::RegionRead);
        // Neither is answered until the read has timed out; then the reset is.
        go_rx.recv().unwrap();
        f.reply(&reset, &[]);
        while f.conn.recv().is_ok() {}
    });
    let c = Arc::new(c);
    // This caller, with a long timeout, waits for its reply reading the socket...
    let reader = {
        let c = c.clone();
        std::thread::spawn(move || c.reset_with_timeout(std::time::Duration::from_secs(60)))
    };
    seen_rx.recv().unwrap();
    // ...so this one, with a shorter one, parks; it must still time out.
    let e = c.region_read(0, 0, &mut [0; 4]).unwrap_err();
    assert!(matches!(e, Error::Timeout { command: Command::RegionRead, .. }), "{e}");
    go_tx.send(()).unwrap();
    reader.join().unwrap().unwrap();
    assert_eq!(c.stats().timeouts, 1);
    c.shutdown().unwrap();
    h.join().unwrap();
}
