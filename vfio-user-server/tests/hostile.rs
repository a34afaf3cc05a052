// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Malformed commands: each gets an error reply with the right errno, descriptors that came
//! with it are closed, and the next valid command is answered correctly.

mod common;

use std::os::fd::AsFd;

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::header::FLAGS_TYPE_COMMAND;
use vfio_user_proto::wire::*;
use vm_memory::ByteValued;

fn expect_errno(c: &mut Client, cmd: u16, payload: &[u8], errno: i32) {
    let id = c.send_raw(cmd, FLAGS_TYPE_COMMAND, &[payload], &[]);
    let m = c.recv();
    assert_eq!((m.header.msg_id, m.header.command), (id, cmd));
    assert!(m.header.is_reply() && m.header.is_error(), "command {cmd}: {:?}", m.header);
    assert_eq!(m.header.error as i32, errno, "command {cmd}");
    assert_eq!(m.header.msg_size, 16);
    c.assert_alive();
}

#[test]
fn truncated_and_oversized_payloads() {
    let mut h = spawn();
    for cmd in Command::ALL {
        expect_errno(&mut h.client, cmd as u16, &[1, 2, 3], libc::EINVAL);
        if cmd != Command::DeviceReset && cmd != Command::Version && cmd != Command::DeviceFeature {
            expect_errno(&mut h.client, cmd as u16, &[0u8; 200], libc::EINVAL);
        }
    }
    expect_errno(&mut h.client, Command::DeviceReset as u16, &[0], libc::EINVAL);
}

#[test]
fn unknown_and_removed_commands() {
    let mut h = spawn();
    expect_errno(&mut h.client, 0, &[], libc::EINVAL);
    expect_errno(&mut h.client, 14, &[0; 16], libc::ENOTSUP);
    expect_errno(&mut h.client, 19, &[], libc::EINVAL);
    expect_errno(&mut h.client, u16::MAX, &[0; 64], libc::EINVAL);
}

#[test]
fn hostile_field_values() {
    let mut h = spawn();
    let c = &mut h.client;
    // REGION_WRITE whose count disagrees with the payload.
    let a = RegionAccess { offset: 0, region: 0, count: 100 };
    expect_errno(c, Command::RegionWrite as u16, &[a.as_slice(), &[0; 4]].concat(), libc::EINVAL);
    // A count over max_data_xfer_size.
    let a = RegionAccess { offset: 0, region: 0, count: u32::MAX };
    expect_errno(c, Command::RegionRead as u16, a.as_slice(), libc::E2BIG);
    // An offset that wraps.
    let a = RegionAccess { offset: u64::MAX, region: 0, count: 4 };
    expect_errno(c, Command::RegionRead as u16, a.as_slice(), libc::EINVAL);
    // REGION_WRITE_MULTI with a huge wr_cnt, zero entries, a 9-byte entry.
    expect_errno(c, Command::RegionWriteMulti as u16, &u64::MAX.to_ne_bytes(), libc::EINVAL);
    expect_errno(c, Command::RegionWriteMulti as u16, &0u64.to_ne_bytes(), libc::EINVAL);
    let e = WriteMultiEntry { offset: 0, region: 0, count: 9, data: [0; 8] };
    expect_errno(c, Command::RegionWriteMulti as u16, &[&1u64.to_ne_bytes()[..], e.as_slice()].concat(), libc::EINVAL);
    // SET_IRQS claiming u32::MAX booleans.
    let s =
        IrqSet { argsz: 20, flags: IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, index: 2, start: 0, count: u32::MAX };
    expect_errno(c, Command::DeviceSetIrqs as u16, s.as_slice(), libc::EINVAL);
    let s =
        IrqSet { argsz: 20, flags: IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, index: 2, start: u32::MAX, count: 2 };
    expect_errno(c, Command::DeviceSetIrqs as u16, s.as_slice(), libc::EINVAL);
    // DMA_MAP with unknown flags, bad argsz, a wrapping range.
    let m = DmaMap { argsz: 32, flags: 1 << 9, offset: 0, addr: 0, size: 0x1000 };
    expect_errno(c, Command::DmaMap as u16, m.as_slice(), libc::EINVAL);
    let m = DmaMap { argsz: 16, flags: 3, offset: 0, addr: 0, size: 0x1000 };
    expect_errno(c, Command::DmaMap as u16, m.as_slice(), libc::EINVAL);
    let m = DmaMap { argsz: 32, flags: 3, offset: 0, addr: u64::MAX - 0xfff, size: 0x2000 };
    expect_errno(c, Command::DmaMap as u16, m.as_slice(), libc::EINVAL);
    // DMA_UNMAP with the legacy dirty bitmap, of no mapping.
    let u = DmaUnmap { argsz: 4096, flags: DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, addr: 0, size: 0x1000 };
    let b = DmaBitmap { pgsize: 4096, size: 8 };
    expect_errno(c, Command::DmaUnmap as u16, &[u.as_slice(), b.as_slice()].concat(), libc::ENOENT);
    // Region info / irq info with a tiny argsz.
    let r = RegionInfo { argsz: 8, index: 0, ..Default::default() };
    expect_errno(c, Command::DeviceGetRegionInfo as u16, r.as_slice(), libc::EINVAL);
    // DEVICE_FEATURE with GET and SET together.
    let f = DeviceFeature { argsz: 16, flags: 1 | DEVICE_FEATURE_GET | DEVICE_FEATURE_SET };
    expect_errno(c, Command::DeviceFeature as u16, f.as_slice(), libc::EINVAL);
    // VERSION JSON with an interior NUL.
    expect_errno(c, Command::Version as u16, b"\0\0\0\0{}\0{}\0", libc::EINVAL);
}

#[test]
fn stray_fds_are_closed() {
    let mut h = spawn();
    let (mut rd, wr) = std::os::unix::net::UnixStream::pair().unwrap();
    let a = RegionAccess { offset: 0, region: 7, count: 4 };
    assert_eq!(h.client.errno(Command::RegionRead, a.as_slice(), &[wr.as_fd()]), libc::EINVAL);
    drop(wr);
    h.client.assert_alive();
    // The server closed its copy of the other end: this end reads EOF.
    let mut b = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut rd, &mut b).unwrap(), 0);
    // The same for a SET_IRQS that fails validation.
    let (mut rd, wr) = std::os::unix::net::UnixStream::pair().unwrap();
    let s = IrqSet { argsz: 20, flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, index: 9, start: 0, count: 1 };
    assert_eq!(h.client.errno(Command::DeviceSetIrqs, s.as_slice(), &[wr.as_fd()]), libc::EINVAL);
    drop(wr);
    h.client.assert_alive();
    assert_eq!(std::io::Read::read(&mut rd, &mut b).unwrap(), 0);
}

/// Regression (issue 16, item 5): SET_IRQS took any fd as an eventfd (memfd, directory,
/// socket, /dev/null, pipe). Kernel VFIO answers EINVAL; so do we, before any vector
/// changes, and the fds are closed.
#[test]
fn set_irqs_refuses_fds_that_are_not_eventfds() {
    let mut h = spawn();
    let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let (pipe_r, _pipe_w) = rustix::pipe::pipe().unwrap();
    let not_eventfds: Vec<std::os::fd::OwnedFd> = vec![
        memfd(0x1000),
        std::fs::File::open("/").unwrap().into(),
        sock.into(),
        std::fs::File::open("/dev/null").unwrap().into(),
        pipe_r,
    ];
    let good = eventfd();
    for bad in &not_eventfds {
        let flags = IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER;
        assert_eq!(h.client.set_irqs(flags, 4, 0, 1, &[], &[bad]), Err(libc::EINVAL));
        // One bad fd among good ones: nothing is taken.
        assert_eq!(h.client.set_irqs(flags, 2, 0, 2, &[], &[&good, bad]), Err(libc::EINVAL));
        h.client.assert_alive();
    }
    // An eventfd is taken: INTx signals it.
    h.client.set_irqs(IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, 0, 0, 1, &[], &[&good]).unwrap();
    h.irq.trigger_intx().unwrap();
    assert_eq!(efd_count(&good), 1);
}

#[test]
fn flooding_while_the_server_waits_for_dma_is_bounded() {
    let mut h = spawn();
    h.client.dma_map(0x10000, 0x1000, None).unwrap();
    let rd = RegionAccess { offset: 0, region: 9, count: 4 };
    h.client.send(Command::RegionRead, rd.as_slice(), &[]);
    let m = h.client.recv();
    assert_eq!(m.header.command, Command::DmaRead as u16);
    // Never answer; send more commands than the server will set aside.
    let reset = vfio_user_proto::Header::command(1, Command::DeviceReset, 0);
    let flood: Vec<u8> = (0..5000).flat_map(|_| reset.as_slice().to_vec()).collect();
    let _ = std::io::Write::write_all(&mut h.client.raw, &flood);
    assert!(h.client.conn.recv().is_err(), "the server dropped the connection");
}

/// Regression (issue 16, item 1): a client mapped a 1 MiB memfd, truncated it to 0 and let
/// the device DMA into it: the server died with SIGBUS, and every device it served with
/// it. The device now gets EFAULT and the server goes on serving.
#[test]
fn a_client_shrinking_mapped_memory_does_not_kill_the_server() {
    let mut h = spawn();
    let mem = unsealed_memfd(1 << 20);
    h.client.dma_map(0x10_0000, 1 << 20, Some(&mem)).unwrap();
    rustix::fs::ftruncate(&mem, 0).unwrap();
    let dma = h.dma.clone();
    let e = dma.read_obj::<u64>(0x10_0000).unwrap_err();
    assert_eq!(e.errno(), libc::EFAULT, "{e}");
    let mut buf = vec![0u8; 64 << 10];
    assert_eq!(dma.read(0x10_0000, &mut buf).unwrap_err().errno(), libc::EFAULT);
    // No host mapping a device could fault on.
    assert_eq!(dma.translate(0x10_0000, 4096, true).unwrap_err().errno(), libc::ENOTSUP);
    h.client.assert_alive();
    h.client.dma_unmap(0, 0x10_0000, 1 << 20).unwrap();
    h.client.assert_alive();
}

/// Regression (issue 16, item 4): a REGION_WRITE one byte over max_data_xfer_size, payload
/// complete, dropped the connection with no errno. A message over the size limit is read
/// and discarded, answered E2BIG (as a count over max_data_xfer_size is), and the stream
/// stays in sync; its descriptors are closed.
#[test]
fn a_message_over_the_size_limit_gets_e2big_and_the_stream_stays_in_sync() {
    let mut h = spawn();
    let max = vfio_user_server::ServerLimits::default().max_data_xfer_size;
    for (count, fds) in [(max + 1, 0usize), (max + 4096, 1), (4 * max, 2)] {
        let a = RegionAccess { offset: 0, region: 0, count };
        let data = vec![0x5a; count as usize];
        let mems: Vec<_> = (0..fds).map(|_| memfd(0x1000)).collect();
        let borrowed: Vec<_> = mems.iter().map(|m| m.as_fd()).collect();
        let id = h.client.send_raw(Command::RegionWrite as u16, FLAGS_TYPE_COMMAND, &[a.as_slice(), &data], &borrowed);
        let m = h.client.recv();
        assert_eq!((m.header.msg_id, m.header.command), (id, Command::RegionWrite as u16));
        assert!(m.header.is_error(), "{:?}", m.header);
        assert_eq!(m.header.error as i32, libc::E2BIG);
        h.client.assert_alive();
    }
    // A NO_REPLY one is discarded silently, and the next command is answered.
    let a = RegionAccess { offset: 0, region: 0, count: max + 1 };
    let flags = FLAGS_TYPE_COMMAND | vfio_user_proto::header::FLAGS_NO_REPLY;
    h.client.send_raw(Command::RegionWrite as u16, flags, &[a.as_slice(), &vec![0; max as usize + 1]], &[]);
    h.client.assert_alive();
}

/// Timeouts short enough for a test; idle time between messages stays unbounded.
fn short_timeouts() -> vfio_user_server::Timeouts {
    let t = std::time::Duration::from_millis(300);
    vfio_user_server::Timeouts { handshake: t, stall: t, send: t, dma_reply: t }
}

/// The server closes `c`'s connection (reads reach end of stream; replies before it are
/// skipped). A guard of 60 s turns a hang into a failure.
fn wait_closed(c: &mut Client) -> usize {
    c.raw.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let mut replies = 0;
    loop {
        match c.conn.recv() {
            Ok(_) => replies += 1,
            Err(vfio_user_proto::FrameError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the server did not close the connection")
            }
            Err(_) => return replies,
        }
    }
}

/// Regression (issue 16, item 3): a client that never sends VERSION held the server (and
/// every client queued behind it) forever; so did one stopping in the middle of a message.
#[test]
fn a_client_stalling_in_the_handshake_or_mid_message_is_dropped() {
    let limits = vfio_user_server::ServerLimits::default();
    // No VERSION at all.
    let mut h = spawn_with_timeouts(limits, short_timeouts());
    wait_closed(&mut h.client);
    // Half a header, before and after VERSION.
    let mut h = spawn_with_timeouts(limits, short_timeouts());
    std::io::Write::write_all(&mut h.client.raw, &[1, 0, 4, 0]).unwrap();
    wait_closed(&mut h.client);
    let mut h = spawn_with_timeouts(limits, short_timeouts());
    h.client.version_ok();
    let a = RegionAccess { offset: 0, region: 0, count: 64 };
    let hdr = vfio_user_proto::Header::command(9, Command::RegionWrite, 0);
    let hdr = vfio_user_proto::Header { msg_size: 16 + 16 + 64, ..hdr };
    std::io::Write::write_all(&mut h.client.raw, &[hdr.as_slice(), a.as_slice(), &[1; 10]].concat()).unwrap();
    wait_closed(&mut h.client);
}

/// Idle time between messages after VERSION is not a stall: a VMM may stay silent.
#[test]
fn an_idle_client_is_kept() {
    let mut h = spawn_with_timeouts(vfio_user_server::ServerLimits::default(), short_timeouts());
    h.client.version_ok();
    std::thread::sleep(std::time::Duration::from_millis(900));
    h.client.assert_alive();
}

/// Regression (issue 16, item 3): a client that never reads its replies blocked the
/// server's send forever.
#[test]
fn a_client_that_never_reads_its_replies_is_dropped() {
    let mut h = spawn_with_timeouts(vfio_user_server::ServerLimits::default(), short_timeouts());
    h.client.version_ok();
    // 4 KiB replies to 32-byte requests: the server's sends fill the socket long before
    // our requests do.
    let a = RegionAccess { offset: 0, region: 2, count: 4096 };
    h.client.raw.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let hdr = vfio_user_proto::Header { msg_size: 32, ..vfio_user_proto::Header::command(0, Command::RegionRead, 0) };
    let msg = [hdr.as_slice(), a.as_slice()].concat();
    while sent < 20_000 {
        match std::io::Write::write(&mut h.client.raw, &msg) {
            Ok(32) => sent += 1,
            Ok(_) => panic!("partial request"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(_) => break, // the server closed the connection
        }
        if sent % 1000 == 0 && h.thread.as_ref().is_some_and(|t| t.is_finished()) {
            break;
        }
    }
    h.client.raw.set_nonblocking(false).unwrap();
    let replies = wait_closed(&mut h.client);
    assert!(replies < sent, "{replies} replies to {sent} requests: the server gave up on a client that does not read");
}

/// Regression (issue 16, item 3): a device's DMA_READ to a client that never answers
/// waited forever; now the device gets ETIMEDOUT and the connection is closed.
#[test]
fn a_client_that_never_answers_dma_times_out() {
    let mut h = spawn_with_timeouts(vfio_user_server::ServerLimits::default(), short_timeouts());
    h.client.version_ok();
    h.client.dma_map(0x10_0000, 0x1000, None).unwrap();
    let dma = h.dma.clone();
    let device = std::thread::spawn(move || dma.read_obj::<u64>(0x10_0000));
    // The DMA_READ arrives; we do not answer.
    let m = h.client.recv();
    assert_eq!(m.header.command, Command::DmaRead as u16);
    let e = device.join().unwrap().unwrap_err();
    assert_eq!(e.errno(), libc::ETIMEDOUT, "{e}");
    wait_closed(&mut h.client);
}
