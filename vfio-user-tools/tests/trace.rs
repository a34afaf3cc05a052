// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user trace` between a scripted client and a scripted server over real sockets.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{eventfd, EventfdFlags};
use vfio_user_proto::{Capabilities, Command, Connection, Header, TwinSocket};

mod common;

/// Waits until a socket listens at `path` (the path exists a moment before it listens).
fn wait_for(path: &Path) {
    let t = Instant::now();
    while !common::listening(path) {
        assert!(t.elapsed() < Duration::from_secs(20), "nothing listened on {}", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn version_payload(caps: &Capabilities) -> Vec<u8> {
    let mut p = vec![0, 0, 2, 0];
    p.extend_from_slice(&caps.to_json());
    p
}

#[test]
fn relays_and_decodes_both_ways_including_fds_and_the_twin_socket() {
    let dir = std::env::temp_dir().join(format!("vfu-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (listen, server_path): (PathBuf, PathBuf) = (dir.join("proxy.sock"), dir.join("server.sock"));
    let json_path = dir.join("trace.jsonl");
    let listener = UnixListener::bind(&server_path).unwrap();

    // The scripted server: VERSION with a twin socket, then echo an eventfd value and
    // send one DMA_READ over the twin socket.
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut c = Connection::new(s);
        let m = c.recv().unwrap();
        assert_eq!(m.header.command, Command::Version as u16);
        let (twin_ours, twin_theirs) = UnixStream::pair().unwrap();
        let caps =
            Capabilities { twin_socket: Some(TwinSocket { supported: true, fd_index: Some(0) }), ..Default::default() };
        let p = version_payload(&caps);
        c.send(m.header.reply(p.len()), &[&p], &[twin_theirs.as_fd()]).unwrap();
        // A command with an eventfd: the fd must arrive through the proxy.
        let m = c.recv().unwrap();
        assert_eq!(m.fds.len(), 1);
        let mut v = [0u8; 8];
        rustix::io::read(&m.fds[0], &mut v).unwrap();
        assert_eq!(u64::from_ne_bytes(v), 42);
        c.send(m.header.error_reply(libc::EINVAL), &[], &[]).unwrap();
        // Server-to-client DMA_READ over the twin socket, answered by the client.
        let mut twin = Connection::new(twin_ours);
        let a = [0x1000u64.to_ne_bytes(), 4u64.to_ne_bytes()].concat();
        twin.send(Header::command(9, Command::DmaRead, a.len()), &[&a], &[]).unwrap();
        let r = twin.recv().unwrap();
        assert_eq!(&r.payload[16..], &[1, 2, 3, 4]);
    });

    let mut proxy = Proc::new(env!("CARGO_BIN_EXE_vfio-user"))
        .args(["trace", "--once", "--listen"])
        .arg(&listen)
        .arg("--connect")
        .arg(&server_path)
        .arg("--json")
        .arg(&json_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&listen);

    let mut c = Connection::new(UnixStream::connect(&listen).unwrap());
    let offer =
        Capabilities { twin_socket: Some(TwinSocket { supported: true, fd_index: None }), ..Default::default() };
    let p = version_payload(&offer);
    c.send(Header::command(1, Command::Version, p.len()), &[&p], &[]).unwrap();
    let r = c.recv().unwrap();
    assert_eq!(r.fds.len(), 1, "the twin socket reaches the client");
    let mut twin = Connection::new(UnixStream::from(r.fds.into_iter().next().unwrap()));
    let efd = eventfd(0, EventfdFlags::CLOEXEC).unwrap();
    rustix::io::write(&efd, &42u64.to_ne_bytes()).unwrap();
    let set = [20u32, 4 | 32, 1, 0, 1].iter().flat_map(|v| v.to_ne_bytes()).collect::<Vec<u8>>();
    c.send(Header::command(2, Command::DeviceSetIrqs, set.len()), &[&set], &[efd.as_fd()]).unwrap();
    let r = c.recv().unwrap();
    assert!(r.header.is_error() && r.header.error == libc::EINVAL as u32);
    let d = twin.recv().unwrap();
    assert_eq!(d.header.command, Command::DmaRead as u16);
    let mut reply = d.payload.clone();
    reply.extend_from_slice(&[1, 2, 3, 4]);
    twin.send(d.header.reply(reply.len()), &[&reply], &[]).unwrap();
    server.join().unwrap();
    drop(c);
    drop(twin);

    let mut out = String::new();
    proxy.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(proxy.wait().unwrap().success());
    for want in [
        "c→s       #1     VFIO_USER_VERSION",
        "twin socket negotiated",
        "VFIO_USER_DEVICE_SET_IRQS",
        "Trigger eventfds=1",
        "1 fd]",
        "ERROR EINVAL (22)",
        "twin s→c  #9     VFIO_USER_DMA_READ addr=0x1000 count=4",
        "twin c→s  #9     VFIO_USER_DMA_READ reply count=4 data=01020304",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let json = std::fs::read_to_string(&json_path).unwrap();
    let lines: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    // Relay threads of the main and twin sockets log concurrently: find, don't index.
    assert_eq!(lines.iter().filter(|l| l["error"]["name"] == "EINVAL").count(), 1);
    assert!(lines.iter().all(|l| l["header_hex"].as_str().is_some_and(|h| h.len() == 32)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_ends_the_proxy_and_removes_the_socket_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let listen = dir.path().join("proxy.sock");
    let mut child = Proc::new(env!("CARGO_BIN_EXE_vfio-user"))
        .args(["trace", "--listen"])
        .arg(&listen)
        .arg("--connect")
        .arg(dir.path().join("nobody.sock"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&listen);
    // SAFETY: kill() on the pid of our own, not yet reaped, child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "trace did not exit on SIGINT");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success(), "{status:?}\n{out}");
    assert!(!listen.exists(), "the socket it created is removed");
    assert!(out.contains(" ms SIGINT: socket removed"), "{out}");
}

/// Regression (issue 16, item 7): `trace --listen P` unlinked whatever was at P: a
/// regular file became the proxy's socket, a live server's socket was unlinked and that
/// server orphaned. Both are now refused and left as they were.
#[test]
fn listen_refuses_a_path_that_holds_a_file_or_a_live_socket() {
    let dir = std::env::temp_dir().join(format!("vfu-trace-refuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("notes.txt");
    std::fs::write(&file, b"a user's file").unwrap();
    let live = dir.join("live.sock");
    let server = UnixListener::bind(&live).unwrap();
    for p in [&file, &live] {
        let out = Proc::new(env!("CARGO_BIN_EXE_vfio-user"))
            .args(["trace", "--once", "--listen"])
            .arg(p)
            .arg("--connect")
            .arg(dir.join("nowhere.sock"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}: trace accepted it", p.display());
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"a user's file");
    // The live server's socket is still in place and still reaches it.
    let _c = UnixStream::connect(&live).unwrap();
    server.accept().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
