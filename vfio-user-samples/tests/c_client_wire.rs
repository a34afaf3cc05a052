// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `server` binary against a raw client that speaks as libvfio-user's sample client
//! does on the wire: a 1 KiB `max_data_xfer_size`, no twin socket, one thread that, once
//! INTx fires, expects exactly four DMA_WRITE and then four DMA_READ messages of 1 KiB on
//! the main socket and answers them itself from its memfd.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vfio_user_proto::wire::{
    DmaAccess, DmaMap, IrqSet, RegionAccess, DMA_MAP_FLAG_READ, DMA_MAP_FLAG_WRITE, IRQ_SET_ACTION_TRIGGER,
    IRQ_SET_DATA_EVENTFD,
};
use vfio_user_proto::{Command, Connection, Header, Message};
use vm_memory::ByteValued;

const PAGE: u64 = 4096;

struct Raw {
    conn: Connection,
    id: u16,
}

impl Raw {
    fn call(&mut self, cmd: Command, parts: &[&[u8]], fds: &[std::os::fd::BorrowedFd<'_>]) -> Message {
        self.id += 1;
        self.conn.send(Header::command(self.id, cmd, 0), parts, fds).unwrap();
        let m = self.conn.recv().unwrap();
        assert!(m.header.is_reply() && m.header.msg_id == self.id, "{:?}", m.header);
        assert!(!m.header.is_error(), "{cmd} failed: errno {}", m.header.error);
        m
    }
}

#[test]
fn dma_messages_as_libvfio_user_sample_client_expects_them() {
    let dir = std::env::temp_dir().join(format!("vfio-user-samples-wire-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("sock");
    let mut server = Process::new(env!("CARGO_BIN_EXE_server")).arg(&sock).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("connecting: {e}"),
        }
    };
    let mut c = Raw { conn: Connection::new(stream), id: 0 };

    let json = br#"{"capabilities":{"max_msg_fds":32,"max_data_xfer_size":1024}}"#;
    let v = c.call(Command::Version, &[&[0, 0, 2, 0], json, &[0]], &[]);
    let reply = String::from_utf8_lossy(&v.payload[4..]);
    assert!(reply.contains(r#""max_msg_fds":8"#), "libvfio-user's limit: {reply}");
    // Two one-page DMA regions from one memfd, as the C client maps them.
    let mem =
        rustix::fs::memfd_create("client", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)
            .unwrap();
    rustix::fs::ftruncate(&mem, 2 * PAGE).unwrap();
    rustix::fs::fcntl_add_seals(&mem, rustix::fs::SealFlags::SHRINK).unwrap();
    for i in 0..2 {
        let map = DmaMap {
            argsz: 32,
            flags: DMA_MAP_FLAG_READ | DMA_MAP_FLAG_WRITE,
            offset: i * PAGE,
            addr: i * PAGE,
            size: PAGE,
        };
        c.call(Command::DmaMap, &[map.as_slice()], &[mem.as_fd()]);
    }
    // A blocking eventfd for INTx, as the C client's.
    let irq: OwnedFd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let set = IrqSet { argsz: 20, flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, index: 0, start: 0, count: 1 };
    c.call(Command::DeviceSetIrqs, &[set.as_slice()], &[irq.as_fd()]);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + 1;
    let bar0 = RegionAccess { offset: 0, region: 0, count: 8 };
    c.call(Command::RegionWrite, &[bar0.as_slice(), &t.to_ne_bytes()], &[]);

    let mut fds = [rustix::event::PollFd::new(&irq, rustix::event::PollFlags::IN)];
    let five = rustix::event::Timespec { tv_sec: 5, tv_nsec: 0 };
    assert_eq!(rustix::event::poll(&mut fds, Some(&five)).unwrap(), 1, "INTx within 5 s");

    // Exactly 4 DMA_WRITE of 1 KiB to the first region, then 4 DMA_READ of 1 KiB.
    for (i, cmd) in [[Command::DmaWrite; 4], [Command::DmaRead; 4]].concat().into_iter().enumerate() {
        let m = c.conn.recv().unwrap();
        assert!(m.header.is_command(), "{:?}", m.header);
        assert_eq!(m.header.command, cmd as u16, "message {i}");
        let a = DmaAccess::from_slice(&m.payload[..16]).copied().unwrap();
        assert_eq!((a.addr, a.count), (1024 * (i as u64 % 4), 1024), "message {i}");
        if cmd == Command::DmaWrite {
            assert_eq!(m.payload.len(), 16 + 1024);
            assert_eq!(rustix::io::pwrite(&mem, &m.payload[16..], a.addr).unwrap(), 1024);
            c.conn.send(m.header.reply(0), &[a.as_slice()], &[]).unwrap();
        } else {
            let mut data = vec![0u8; 1024];
            assert_eq!(rustix::io::pread(&mem, &mut data, a.addr).unwrap(), 1024);
            c.conn.send(m.header.reply(0), &[a.as_slice(), &data], &[]).unwrap();
        }
    }
    // Both pages now hold A, B, C, D: the second written by the server directly, the
    // first by the client on the server's request.
    let abcd: Vec<u8> = (0..4u8).flat_map(|i| vec![b'A' + i; 1024]).collect();
    let mut page = vec![0u8; PAGE as usize];
    for i in 0..2 {
        rustix::io::pread(&mem, &mut page, i * PAGE).unwrap();
        assert_eq!(page, abcd, "page {i}");
    }
    // Nothing else was sent: the next message is the reply to the next command.
    let m = c.call(Command::RegionRead, &[bar0.as_slice()], &[]);
    assert_eq!(m.payload.len(), 16 + 8);

    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "the DMA run succeeded");
    let _ = std::fs::remove_dir_all(&dir);
}
