// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A malicious or broken server: every reply is hostile, none may hurt the client.

mod common;

use std::time::Duration;

use common::*;
use vfio_user_client::{DisconnectReason, DmaProt, Error};
use vfio_user_proto::header::FLAGS_TYPE_REPLY;
use vfio_user_proto::wire::*;
use vfio_user_proto::{Capabilities, Command, Header};
use vm_memory::ByteValued;

/// Waits until the client closes the connection.
fn drain(mut f: Fake) {
    while f.conn.recv().is_ok() {}
}

fn is_violation(e: &Error) -> bool {
    matches!(e, Error::Protocol(_) | Error::Disconnected(DisconnectReason::ProtocolViolation(_)))
}

/// After a violation the connection is closed and calls fail fast.
fn assert_closed(c: &vfio_user_client::Client) {
    assert!(matches!(c.disconnected(), Some(DisconnectReason::ProtocolViolation(_))), "{:?}", c.disconnected());
    assert!(matches!(c.region_read(0, 0, &mut [0; 4]), Err(Error::Disconnected(_))));
}

#[test]
fn oversized_reply_closes_the_connection() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::RegionRead);
        // Announce 2 MiB: more than anything we could have asked for.
        let mut hd = m.header.reply(0);
        hd.msg_size = 2 << 20;
        f.write_bytes(hd.as_slice());
        f.write_bytes(&[0u8; 64]);
        drain(f);
    });
    let e = c.region_read(0, 0, &mut [0; 4]).unwrap_err();
    assert!(
        matches!(e, Error::Disconnected(DisconnectReason::ProtocolViolation(ref s)) if s.contains("exceeds")),
        "{e}"
    );
    h.join().unwrap();
}

#[test]
fn read_reply_with_more_than_requested_is_refused() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::RegionRead);
        let a = RegionAccess { offset: 0, region: 0, count: 8 };
        f.reply(&m, &[a.as_slice(), &[0xaa; 8]]);
        drain(f);
    });
    let mut buf = [0u8; 4];
    let e = c.region_read(0, 0, &mut buf).unwrap_err();
    assert!(is_violation(&e), "{e}");
    assert_eq!(buf, [0; 4], "nothing was copied");
    assert_closed(&c);
    h.join().unwrap();
}

#[test]
fn lying_region_and_irq_counts_fail_the_connect() {
    for (regions, irqs) in [(1000, 5), (9, 51)] {
        let info = DeviceInfo { num_regions: regions, num_irqs: irqs, ..default_info() };
        let (e, h) = start_err(test_config(), move |mut f| {
            f.handshake_with(&Capabilities::default(), &[], info);
            drain(f);
        });
        assert!(is_violation(&e), "{e}");
        h.join().unwrap();
    }
}

fn region_reply(payload: Vec<u8>) -> (vfio_user_client::Client, std::thread::JoinHandle<()>) {
    start(test_config(), move |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceGetRegionInfo);
        f.reply(&m, &[&payload]);
        drain(f);
    })
}

fn info(flags: u32, argsz: u32, cap_offset: u32) -> Vec<u8> {
    RegionInfo { argsz, flags, index: 0, cap_offset, size: 0x1000, offset: 0 }.as_slice().to_vec()
}

#[test]
fn capability_chain_loop_is_refused() {
    let mut p = info(REGION_FLAG_READ | REGION_FLAG_CAPS, 48, 32);
    p.extend_from_slice(CapHeader { id: 2, version: 1, next: 32 }.as_slice());
    p.extend_from_slice(&[0; 8]);
    let (c, h) = region_reply(p);
    let e = c.region_info(0).unwrap_err();
    assert!(is_violation(&e), "{e}");
    assert_closed(&c);
    h.join().unwrap();
}

#[test]
fn sparse_area_outside_the_region_is_refused() {
    let mut p = info(REGION_FLAG_READ | REGION_FLAG_CAPS, 64, 32);
    p.extend_from_slice(CapHeader { id: 1, version: 1, next: 0 }.as_slice());
    p.extend_from_slice(SparseMmapCap { nr_areas: 1, reserved: 0 }.as_slice());
    p.extend_from_slice(SparseArea { offset: 0x800, size: 0x1000 }.as_slice());
    let (c, h) = region_reply(p);
    assert!(is_violation(&c.region_info(0).unwrap_err()));
    h.join().unwrap();
}

#[test]
fn region_reply_larger_than_argsz_or_growing_argsz_is_refused() {
    // 2000 bytes of "caps" where we allowed 1024.
    let mut p = info(REGION_FLAG_READ, 2000, 0);
    p.resize(2000, 0);
    let (c, h) = region_reply(p);
    assert!(is_violation(&c.region_info(0).unwrap_err()));
    h.join().unwrap();
    // A server asking for more than MAX_INFO_ARGSZ.
    let (c, h) = region_reply(info(REGION_FLAG_READ, 1 << 30, 0));
    assert!(is_violation(&c.region_info(0).unwrap_err()));
    h.join().unwrap();
}

#[test]
fn a_mmap_fd_shorter_than_the_region_is_not_mapped() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        // Not sealed: a server could shrink it further.
        let short = rustix::fs::memfd_create("short", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&short, 0x1000).unwrap();
        let m = f.expect(Command::DeviceGetRegionInfo);
        let flags = REGION_FLAG_READ | REGION_FLAG_WRITE | REGION_FLAG_MMAP;
        let info = RegionInfo { argsz: 32, flags, index: 0, cap_offset: 0, size: 0x4000, offset: 0 };
        f.reply_fds(&m, &[info.as_slice()], &[&short]);
        // Region 1: sealed against shrinking.
        let sealed =
            rustix::fs::memfd_create("sealed", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)
                .unwrap();
        rustix::fs::ftruncate(&sealed, 0x1000).unwrap();
        rustix::fs::fcntl_add_seals(&sealed, rustix::fs::SealFlags::SHRINK).unwrap();
        let m = f.expect(Command::DeviceGetRegionInfo);
        let info = RegionInfo { index: 1, size: 0x1000, ..info };
        f.reply_fds(&m, &[info.as_slice()], &[&sealed]);
        drain(f);
    });
    let r0 = c.region_info(0).unwrap();
    assert!(r0.mappable() && !r0.sealed_against_shrink());
    let e = c.map_region(0).unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    let r1 = c.region_info(1).unwrap();
    assert!(r1.sealed_against_shrink());
    let map = c.map_region(1).unwrap();
    map.store::<u64>(0xff8, 7).unwrap();
    c.shutdown().unwrap();
    h.join().unwrap();
}

#[test]
fn reply_to_a_msg_id_not_pending_closes_the_connection() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceReset);
        let mut r = m.header.reply(0);
        r.msg_id = m.header.msg_id.wrapping_add(1000);
        f.raw(r, &[]);
        drain(f);
    });
    let e = c.reset().unwrap_err();
    assert!(matches!(e, Error::Disconnected(DisconnectReason::ProtocolViolation(_))), "{e}");
    assert_closed(&c);
    assert_eq!(c.stats().violations, 1);
    h.join().unwrap();
}

#[test]
fn reply_of_another_command_or_undefined_type_closes_the_connection() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceReset);
        let mut r = m.header.reply(0);
        r.command = Command::DmaMap as u16;
        f.raw(r, &[]);
        drain(f);
    });
    assert!(is_violation(&c.reset().unwrap_err()));
    assert_closed(&c);
    h.join().unwrap();
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceReset);
        let mut r = m.header.reply(0);
        r.flags = 7;
        f.raw(r, &[]);
        drain(f);
    });
    assert!(is_violation(&c.reset().unwrap_err()));
    h.join().unwrap();
}

#[test]
fn stray_fds_are_refused() {
    // An fd with the DMA_MAP reply.
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DmaMap);
        let fd = eventfd();
        f.reply_fds(&m, &[], &[&fd]);
        drain(f);
    });
    assert!(is_violation(&c.dma_map(0x1000, 0x1000, DmaProt::READ).unwrap_err()));
    assert!(c.dma_mappings().is_empty(), "a failed map is not recorded");
    h.join().unwrap();
    // An fd with region info that is not MMAP.
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceGetRegionInfo);
        let fd = memfd(0x1000);
        f.reply_fds(&m, &[&info(REGION_FLAG_READ, 32, 0)], &[&fd]);
        drain(f);
    });
    assert!(is_violation(&c.region_info(0).unwrap_err()));
    h.join().unwrap();
    // An fd with the VERSION reply when twin-socket was not offered.
    let (e, h) = start_err(test_config().twin_socket(false), |mut f| {
        let m = f.expect(Command::Version);
        let fd = eventfd();
        let v = vfio_user_proto::request::VersionWire { major: 0, minor: 0 };
        f.reply_fds(&m, &[v.as_slice(), b"{}\0"], &[&fd]);
        drain(f);
    });
    assert!(is_violation(&e), "{e}");
    h.join().unwrap();
}

#[test]
fn io_fds_with_missing_fds_or_lying_count_are_refused() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceGetRegionInfo);
        f.reply(&m, &[&info(REGION_FLAG_READ, 32, 0)]);
        let m = f.expect(Command::DeviceGetRegionIoFds);
        let mut p = RegionIoFds { argsz: 56, flags: 0, index: 0, count: 1 }.as_slice().to_vec();
        p.extend_from_slice(IoFdEntry { offset: 0, size: 4, ..Default::default() }.as_slice());
        f.reply(&m, &[&p]); // an entry but no fd
        drain(f);
    });
    assert!(is_violation(&c.region_io_fds(0).unwrap_err()));
    h.join().unwrap();
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceGetRegionInfo);
        f.reply(&m, &[&info(REGION_FLAG_READ, 32, 0)]);
        let m = f.expect(Command::DeviceGetRegionIoFds);
        // "A million entries, ask again with 40 MB".
        f.reply(&m, &[RegionIoFds { argsz: 40_000_016, flags: 0, index: 0, count: 1_000_000 }.as_slice()]);
        drain(f);
    });
    assert!(is_violation(&c.region_io_fds(0).unwrap_err()));
    h.join().unwrap();
}

#[test]
fn early_eof_wakes_the_waiter_and_later_calls_fail_fast() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::RegionRead);
        // Half a reply, then EOF.
        let mut r = m.header.reply(0);
        r.msg_size = 36;
        f.write_bytes(r.as_slice());
        f.write_bytes(&[0u8; 4]);
    });
    let e = c.region_read(0, 0, &mut [0; 4]).unwrap_err();
    assert!(matches!(e, Error::Disconnected(DisconnectReason::Closed)), "{e}");
    h.join().unwrap();
    assert!(matches!(c.reset(), Err(Error::Disconnected(DisconnectReason::Closed))));
}

#[test]
fn a_server_that_never_answers_times_out_and_a_late_reply_is_dropped() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let config = test_config().timeout(Duration::from_millis(50));
    let (c, h) = start(config, move |mut f| {
        f.handshake();
        let late = f.expect(Command::DeviceReset);
        rx.recv().unwrap(); // the client has given up
        f.reply(&late, &[]);
        let m = f.expect(Command::RegionRead);
        let a = RegionAccess { offset: 0, region: 0, count: 2 };
        f.reply(&m, &[a.as_slice(), b"ok"]);
        drain(f);
    });
    let e = c.reset_with_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, Error::Timeout { command: Command::DeviceReset, .. }), "{e}");
    assert_eq!(e.errno(), libc::ETIMEDOUT);
    tx.send(()).unwrap();
    let mut b = [0u8; 2];
    // Generous timeout for this one: only the error above is under test.
    let c2 = &c;
    c2.region_read(0, 0, &mut b).unwrap();
    assert_eq!(&b, b"ok");
    assert!(c.disconnected().is_none(), "a late reply is not a violation");
    let st = c.stats();
    assert_eq!((st.timeouts, st.late_replies, st.violations), (1, 1, 0));
    c.shutdown().unwrap();
    h.join().unwrap();
}

#[test]
fn a_server_trickling_its_reply_cannot_hold_a_caller_past_the_timeout() {
    let config = test_config().timeout(Duration::from_millis(100));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(config, move |mut f| {
        f.handshake();
        let m = f.expect(Command::RegionRead);
        let a: RegionAccess = vfio_user_proto::wire::read_at(&m.payload, 0).unwrap();
        let mut bytes = m.header.reply(16 + a.count as usize).as_slice().to_vec();
        bytes.extend_from_slice(a.as_slice());
        bytes.resize(bytes.len() + a.count as usize, 0x5a);
        // One byte every few milliseconds (the whole reply would take minutes) until the
        // client has given up; then the rest at once.
        let mut sent = 0;
        while rx.try_recv().is_err() && sent < bytes.len() - 1 {
            f.write_bytes(&bytes[sent..sent + 1]);
            sent += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        f.write_bytes(&bytes[sent..]);
        let m = f.expect(Command::DeviceReset);
        f.reply(&m, &[]);
        drain(f);
    });
    let e = c.region_read(0, 0, &mut [0; 4096]).unwrap_err();
    assert!(matches!(e, Error::Timeout { command: Command::RegionRead, .. }), "{e}");
    tx.send(()).unwrap();
    c.reset_with_timeout(Duration::from_secs(10)).unwrap();
    assert!(c.disconnected().is_none(), "the late, whole reply was dropped");
    c.shutdown().unwrap();
    h.join().unwrap();
}

#[test]
fn a_server_that_never_accepts_makes_connect_time_out() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let path = std::env::temp_dir().join(format!("vfio-user-client-backlog-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener =
        rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap();
    rustix::net::bind(&listener, &SocketAddrUnix::new(&path).unwrap()).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    // Fill the backlog (length 0 admits one pending connection), never accept.
    let _filler = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let config = test_config().connect_timeout(Duration::from_millis(100));
    let e = vfio_user_client::Client::connect(&path, config).unwrap_err();
    assert!(matches!(&e, Error::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut), "{e}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_server_that_accepts_but_never_answers_version_times_out() {
    let path = std::env::temp_dir().join(format!("vfio-user-client-silent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let config = test_config().connect_timeout(Duration::from_millis(100));
    let e = vfio_user_client::Client::connect(&path, config).unwrap_err();
    assert!(matches!(e, Error::Timeout { command: Command::Version, .. }), "{e}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn error_replies_to_posted_writes_are_tolerated() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::RegionWrite);
        assert!(m.header.no_reply());
        f.error(&m, 0); // rust-vmm's server answers errors even to NO_REPLY
        let m = f.expect(Command::DeviceReset);
        f.reply(&m, &[]);
        drain(f);
    });
    c.region_write_posted(0, 0, &[1, 2, 3, 4]).unwrap();
    c.reset().unwrap();
    assert!(c.disconnected().is_none());
    assert_eq!(c.stats().posted_errors, 1);
    c.shutdown().unwrap();
    h.join().unwrap();
}

#[test]
fn mig_data_read_returning_more_than_asked_is_refused() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::MigDataRead);
        f.reply(&m, &[MigData { argsz: 8 + 16, size: 16 }.as_slice(), &[0; 16]]);
        drain(f);
    });
    assert!(is_violation(&c.read_migration_data(&mut [0; 8]).unwrap_err()));
    h.join().unwrap();
}

#[test]
fn server_commands_with_fds_or_of_the_wrong_direction_get_error_replies() {
    let (c, h) = start(test_config().twin_socket(false), |mut f| {
        f.handshake();
        // A client-to-server command sent to the client.
        f.raw(Header::command(9, Command::DeviceReset, 0), &[]);
        let r = f.conn.recv().unwrap();
        assert!(r.header.is_reply() && r.header.msg_id == 9);
        assert_eq!(r.header.errno(), libc::EINVAL);
        // DMA_READ with a stray fd.
        let fd = eventfd();
        use std::os::fd::AsFd;
        f.conn
            .send(
                Header::command(10, Command::DmaRead, 0),
                &[DmaAccess { addr: 0, count: 1 }.as_slice()],
                &[fd.as_fd()],
            )
            .unwrap();
        let r = f.conn.recv().unwrap();
        assert_eq!((r.header.msg_id, r.header.errno()), (10, libc::EINVAL));
        // A reply type nobody defined, as a "command".
        f.raw(Header { flags: FLAGS_TYPE_REPLY | 2, ..Header::command(11, Command::DmaRead, 0) }, &[]);
        drain(f);
    });
    h.join().unwrap();
    assert!(c.disconnected().is_some());
}

/// Regression (issue 16, item 6): an error reply carrying a payload was accepted; the
/// spec's error reply is the header alone, so it is a protocol violation.
#[test]
fn an_error_reply_with_a_payload_is_a_violation() {
    let (c, h) = start(test_config(), |mut f| {
        f.handshake();
        let m = f.expect(Command::DeviceReset);
        f.raw(m.header.error_reply(libc::EIO), &[&[0xee; 8]]);
        drain(f);
    });
    let e = c.reset().unwrap_err();
    assert!(is_violation(&e), "{e}");
    assert_closed(&c);
    h.join().unwrap();
}
