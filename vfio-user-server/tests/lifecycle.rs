// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Listening, reconnecting, disconnect cleanup, framing errors, stopping, and the
//! non-blocking `handle_request` step.

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use vfio_user_proto::command::Command;
use vfio_user_proto::header::FLAGS_TYPE_REPLY;
use vfio_user_proto::wire::*;
use vfio_user_server::irq::MSIX;
use vfio_user_server::{Endpoint, Event, Listener, Server, ServerLimits};
use vm_memory::ByteValued;

fn sock_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vfio-user-server-{}-{name}.sock", std::process::id()))
}

struct Running {
    path: PathBuf,
    dev: Arc<TestDev>,
    stop: vfio_user_server::ShutdownHandle,
    irq: vfio_user_server::IrqHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(name: &str) -> Self {
        let path = sock_path(name);
        let dev = Arc::new(TestDev::new());
        let mut server = Server::new(description(), dev.clone()).unwrap();
        server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
        let (stop, irq) = (server.shutdown_handle(), server.irq_handle());
        let thread = Some(std::thread::spawn(move || server.run().unwrap()));
        Running { path, dev, stop, irq, thread }
    }

    fn connect(&self) -> Client {
        Client::new(UnixStream::connect(&self.path).unwrap())
    }

    fn stop(mut self) -> PathBuf {
        self.stop.shutdown();
        self.thread.take().unwrap().join().unwrap();
        self.path.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn reconnect_releases_client_state_and_keeps_device_state() {
    let r = Running::start("reconnect");
    let mut c = r.connect();
    c.version_ok();
    let mem = memfd(0x1000);
    c.dma_map(0x10000, 0x1000, Some(&mem)).unwrap();
    let e = eventfd();
    c.set_irqs(IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, MSIX, 0, 1, &[], &[&e]).unwrap();
    c.write(0, 0, b"keep").unwrap();
    c.write32(7, 0x10, 0xfe00_0000);
    assert!(r.irq.state(MSIX, 0).enabled);
    drop(c);
    // The next client is accepted; by the time it is answered the old one was cleaned up.
    let mut c = r.connect();
    c.version_ok();
    assert!(!r.irq.state(MSIX, 0).enabled, "eventfd released");
    let seen = r.dev.seen();
    assert!(seen.contains(&Seen::Unmap(0x10000, 0x1000)));
    assert!(seen.contains(&Seen::Connected(false)));
    assert_eq!(c.read(0, 0, 4).unwrap(), b"keep");
    assert_eq!(c.read32(7, 0x10), 0xfe00_0000);
    // The old DMA region is gone: mapping it again works.
    c.dma_map(0x10000, 0x1000, Some(&mem)).unwrap();
    r.irq.trigger_msix(0).unwrap();
    assert_eq!(efd_count(&e), 0);
}

/// Sends raw bytes, then checks that the connection is closed and the next one works.
fn framing_error_closes_only_that_connection(name: &str, bytes: &[u8], half_close: bool) {
    let r = Running::start(name);
    let mut c = r.connect();
    c.version_ok();
    let mut s = c.raw.try_clone().unwrap();
    s.write_all(bytes).unwrap();
    if half_close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    assert!(c.conn.recv().is_err(), "{name}: connection closed");
    let mut c2 = r.connect();
    c2.version_ok();
    c2.assert_alive();
}

fn header(msg_size: u32, command: u16, flags: u32) -> Vec<u8> {
    let h = vfio_user_proto::Header { msg_id: 1, command, msg_size, flags, error: 0 };
    h.as_slice().to_vec()
}

#[test]
fn undersized_message() {
    framing_error_closes_only_that_connection("undersize", &header(8, 4, 0), false);
}

#[test]
fn oversized_message() {
    framing_error_closes_only_that_connection("oversize", &header(u32::MAX, 10, 0), false);
}

#[test]
fn eof_in_the_middle_of_a_message() {
    let mut b = header(48, Command::DeviceGetInfo as u16, 0);
    b.extend_from_slice(&[0; 8]);
    framing_error_closes_only_that_connection("eof", &b, true);
}

#[test]
fn reply_sent_to_the_server() {
    let mut b = header(32, Command::RegionRead as u16, FLAGS_TYPE_REPLY);
    b.extend_from_slice(&[0; 16]);
    framing_error_closes_only_that_connection("reply", &b, false);
}

#[test]
fn undefined_message_type() {
    let mut b = header(32, Command::RegionRead as u16, 7);
    b.extend_from_slice(&[0; 16]);
    framing_error_closes_only_that_connection("type", &b, false);
}

#[test]
fn shutdown_stops_run_and_unlinks_the_socket() {
    let r = Running::start("shutdown");
    let mut c = r.connect();
    c.version_ok();
    assert!(r.path.exists());
    let path = r.stop();
    assert!(!path.exists(), "socket path unlinked on drop");
    assert!(c.conn.recv().is_err(), "client disconnected");
}

#[test]
fn endpoint_from_fd() {
    // A listening fd serves clients one after another.
    let path = sock_path("fromfd");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let mut server = Server::new(description(), TestDev::new()).unwrap();
    server.set_endpoint(Endpoint::from_fd(OwnedFd::from(l)).unwrap());
    let stop = server.shutdown_handle();
    let t = std::thread::spawn(move || server.run().unwrap());
    for _ in 0..2 {
        let mut c = Client::new(UnixStream::connect(&path).unwrap());
        c.version_ok();
        c.assert_alive();
    }
    stop.shutdown();
    t.join().unwrap();
    assert!(path.exists(), "a listener given as an fd is not unlinked");
    std::fs::remove_file(&path).unwrap();
    // A connected fd is served once; run() returns when the client leaves.
    let (a, b) = UnixStream::pair().unwrap();
    let mut server = Server::new(description(), TestDev::new()).unwrap();
    server.set_endpoint(Endpoint::from_fd(OwnedFd::from(b)).unwrap());
    let t = std::thread::spawn(move || server.run().unwrap());
    let mut c = Client::new(a);
    c.version_ok();
    drop(c);
    t.join().unwrap();
}

#[test]
fn handle_request_steps() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut server = Server::with_handles(description(), ServerLimits::default(), |_, _| TestDev::new()).unwrap();
    assert_eq!(server.handle_request().unwrap(), Event::Finished);
    server.set_endpoint(Endpoint::Stream(b));
    assert_eq!(server.handle_request().unwrap(), Event::Connected);
    assert!(server.is_connected());
    assert_eq!(server.handle_request().unwrap(), Event::Idle);
    let mut c = Client::new(a);
    let mut p = vec![0u8, 0, 0, 0];
    p.extend_from_slice(b"{}\0");
    let v = c.send(Command::Version, &p, &[]);
    let i = c.send(Command::DeviceGetInfo, DeviceInfo { argsz: 16, ..Default::default() }.as_slice(), &[]);
    // A partial message stays buffered.
    let half =
        vfio_user_proto::Header { msg_id: 9, command: Command::DeviceReset as u16, msg_size: 16, flags: 0, error: 0 };
    let mut s = c.raw.try_clone().unwrap();
    s.write_all(&half.as_slice()[..10]).unwrap();
    assert_eq!(server.handle_request().unwrap(), Event::Processed(2));
    c.reply_to(v, Command::Version);
    c.reply_to(i, Command::DeviceGetInfo);
    assert_eq!(server.handle_request().unwrap(), Event::Idle);
    s.write_all(&half.as_slice()[10..]).unwrap();
    assert_eq!(server.handle_request().unwrap(), Event::Processed(1));
    c.reply_to(9, Command::DeviceReset);
    drop(c);
    drop(s);
    assert_eq!(server.handle_request().unwrap(), Event::Disconnected);
    assert!(!server.is_connected());
    assert_eq!(server.handle_request().unwrap(), Event::Finished);
}

#[test]
fn many_devices_in_one_process() {
    let servers: Vec<_> = (0..4).map(|i| Running::start(&format!("multi{i}"))).collect();
    let mut clients: Vec<_> = servers.iter().map(|r| r.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.version_ok();
        c.write(0, 0, &[i as u8]).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.read(0, 0, 1).unwrap(), vec![i as u8]);
    }
}

#[test]
fn bind_replaces_stale_sockets_but_not_live_ones() {
    let path = sock_path("stale");
    let _ = std::fs::remove_file(&path);
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a stale socket file");
    let l = Listener::bind(&path).unwrap();
    assert_eq!(Listener::bind(&path).unwrap_err().errno(), libc::EADDRINUSE);
    drop(l);
    assert!(!path.exists());
}
