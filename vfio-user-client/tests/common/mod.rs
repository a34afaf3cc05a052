// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A scripted fake server over a real socketpair: it reads requests with vfio-user-proto's
//! `Connection` and writes whatever replies a test wants, well-formed or hostile.

#![allow(dead_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::Duration;

use vfio_user_client::{Client, Config};
use vfio_user_proto::request::VersionWire;
use vfio_user_proto::wire::{self, DeviceInfo};
use vfio_user_proto::{decode_request, Capabilities, Command, Connection, DecodeLimits, Header, Message, Request};
use vm_memory::ByteValued;

/// The server end of a connection.
pub struct Fake {
    pub conn: Connection,
    /// The same socket, for bytes that bypass the framing.
    pub sock: UnixStream,
    pub limits: DecodeLimits,
}

pub fn default_info() -> DeviceInfo {
    DeviceInfo { argsz: 16, flags: wire::DEVICE_FLAGS_PCI | wire::DEVICE_FLAGS_RESET, num_regions: 9, num_irqs: 5 }
}

impl Fake {
    pub fn new(sock: UnixStream) -> Fake {
        let raw = sock.try_clone().unwrap();
        Fake {
            conn: Connection::new(sock),
            sock: raw,
            limits: DecodeLimits { max_data_xfer_size: 1 << 20, max_msg_fds: 253 },
        }
    }

    /// Receives one command.
    pub fn recv(&mut self) -> Message {
        let m = self.conn.recv().expect("fake server: recv");
        assert!(m.header.is_command(), "fake server got a non-command {:?}", m.header);
        m
    }

    /// Receives one command and checks it decodes as a valid request of `cmd`.
    pub fn expect(&mut self, cmd: Command) -> Message {
        let m = self.recv();
        assert_eq!(m.header.cmd(), Ok(cmd), "fake server expected {cmd}");
        decode_request(&m.header, &m.payload, m.fds.len(), &self.limits).expect("client sent an invalid request");
        m
    }

    pub fn reply(&self, to: &Message, parts: &[&[u8]]) {
        self.reply_fds(to, parts, &[]);
    }

    pub fn reply_fds(&self, to: &Message, parts: &[&[u8]], fds: &[&OwnedFd]) {
        let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        self.conn.send(to.header.reply(0), parts, &fds).expect("fake server: send");
    }

    pub fn error(&self, to: &Message, errno: i32) {
        self.conn.send(to.header.error_reply(errno), &[], &[]).expect("fake server: send");
    }

    /// Writes bytes as they are, bypassing the framing (hostile sizes). Errors are ignored:
    /// the client may already have hung up on what came before.
    pub fn write_bytes(&self, bytes: &[u8]) {
        use std::io::Write;
        let _ = (&self.sock).write_all(bytes);
    }

    /// Sends a message with a hand-made header (its msg_size is recomputed).
    pub fn raw(&self, h: Header, parts: &[&[u8]]) {
        self.conn.send(h, parts, &[]).expect("fake server: send");
    }

    /// Answers VERSION with `caps` (fds attached: e.g. the twin socket) and DEVICE_GET_INFO
    /// with `info`.
    pub fn handshake_with(&mut self, caps: &Capabilities, fds: &[&OwnedFd], info: DeviceInfo) -> Capabilities {
        let m = self.expect(Command::Version);
        let offered = match decode_request(&m.header, &m.payload, 0, &self.limits).unwrap() {
            Request::Version(v) => Capabilities::from_json(v.json).unwrap(),
            _ => unreachable!(),
        };
        let v = VersionWire { major: 0, minor: 2 };
        self.reply_fds(&m, &[v.as_slice(), &caps.to_json()], fds);
        let m = self.expect(Command::DeviceGetInfo);
        self.reply(&m, &[info.as_slice()]);
        offered
    }

    pub fn handshake(&mut self) -> Capabilities {
        self.handshake_with(&Capabilities::default(), &[], default_info())
    }

    /// The handshake with a twin socket negotiated: returns the server's end of it.
    pub fn handshake_twin(&mut self) -> Connection {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let theirs = OwnedFd::from(theirs);
        let twin = vfio_user_proto::TwinSocket { supported: true, fd_index: Some(0) };
        let caps = Capabilities { twin_socket: Some(twin), ..Default::default() };
        self.handshake_with(&caps, &[&theirs], default_info());
        Connection::new(mine)
    }

    /// Answers the next `n` DMA_MAPs with success.
    pub fn accept_maps(&mut self, n: usize) {
        for _ in 0..n {
            let m = self.expect(Command::DmaMap);
            self.reply(&m, &[]);
        }
    }
}

/// A session of server-initiated DMA: the fake server accepts the client's two DMA_MAPs
/// (made by `map`), then runs `exchange` on the main socket or, with `twin`, on the twin
/// socket, and stays connected until the client closes. Returns the client's counters of
/// DMA requests served and refused.
pub fn dma_session(config: Config, twin: bool, map: fn(&Client), exchange: fn(&mut Connection)) -> (u64, u64) {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (c, h) = start(config.twin_socket(twin), move |mut f| {
        let mut twin_conn = match twin {
            true => Some(f.handshake_twin()),
            false => {
                f.handshake();
                None
            }
        };
        f.accept_maps(2);
        go_rx.recv().unwrap();
        exchange(twin_conn.as_mut().unwrap_or(&mut f.conn));
        done_tx.send(()).unwrap();
        // Keep the sockets open until the client closes.
        while f.conn.recv().is_ok() {}
    });
    assert_eq!(c.negotiated().twin_socket, twin);
    map(&c);
    go_tx.send(()).unwrap();
    done_rx.recv().unwrap();
    let st = c.stats();
    c.shutdown().unwrap();
    h.join().unwrap();
    (st.dma_served, st.dma_refused)
}

/// 1 MiB.
pub const MIB: u64 = 1 << 20;
/// Start of the guest memory of the DMA tests: two regions of 1 MiB back to back, so that
/// a DMA may span both.
pub const BASE: u64 = 0x10_0000;

/// A recognisable byte pattern of `len` bytes (changing every byte and every 4 KiB page).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add((i >> 12) as u8).wrapping_add(seed)).collect()
}

/// Guest memory of two regions of 1 MiB from [`BASE`], zeroed.
pub fn two_region_memory() -> std::sync::Arc<vm_memory::GuestMemoryMmap> {
    let ranges = [(vm_memory::GuestAddress(BASE), MIB as usize), (vm_memory::GuestAddress(BASE + MIB), MIB as usize)];
    std::sync::Arc::new(vm_memory::GuestMemoryMmap::<()>::from_ranges(&ranges).unwrap())
}

pub fn test_config() -> Config {
    Config::default().timeout(Duration::from_secs(10))
}

/// Starts a client against a fake server running `script` in a thread.
pub fn start<F>(config: Config, script: F) -> (Client, JoinHandle<()>)
where
    F: FnOnce(Fake) + Send + 'static,
{
    let (a, b) = UnixStream::pair().unwrap();
    let h = std::thread::spawn(move || script(Fake::new(b)));
    let c = Client::from_fd(OwnedFd::from(a), config).expect("client connect");
    (c, h)
}

/// Connects a client to a fake whose script is expected to make the connection fail.
pub fn start_err<F>(config: Config, script: F) -> (vfio_user_client::Error, JoinHandle<()>)
where
    F: FnOnce(Fake) + Send + 'static,
{
    let (a, b) = UnixStream::pair().unwrap();
    let h = std::thread::spawn(move || script(Fake::new(b)));
    let e = Client::from_fd(OwnedFd::from(a), config).expect_err("connect should fail");
    (e, h)
}

pub fn memfd(size: u64) -> OwnedFd {
    let fd = rustix::fs::memfd_create(
        "vfio-user-test",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).unwrap();
    fd
}

pub fn eventfd() -> OwnedFd {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK).unwrap()
}

pub fn fd_read(fd: &OwnedFd, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0; len];
    rustix::io::pread(fd, &mut b, off).unwrap();
    b
}

pub fn fd_write(fd: &OwnedFd, off: u64, data: &[u8]) {
    rustix::io::pwrite(fd, data, off).unwrap();
}

/// Whether `fd` is readable now (poll with a zero timeout).
pub fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut p = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    rustix::event::poll(&mut p, Some(&zero)).unwrap() == 1
}
