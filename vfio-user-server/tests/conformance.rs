// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Conformance of the server to bad input, table-driven, over a real listening socket.
//!
//! Each case (see `conformance/cases.rs`) is a name, the raw message to send (command code,
//! header flags, payload, descriptors), optional valid commands to send first, and what
//! must happen: an error reply with exactly this errno, no reply at all (NO_REPLY), or the
//! connection closing (framing errors). After every case the connection must still be in
//! sync — a valid command sent right after gets exactly its own reply — or, for framing
//! errors, only that connection closed and a client already waiting is served.
//!
//! Every case runs; the test fails at the end naming every case that failed.

#[path = "conformance/cases.rs"]
mod cases;
mod common;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use cases::{Case, Expect, Fds, Session};
use common::{description, eventfd, memfd, Client, TestDev};
use vfio_user_proto::command::Command;
use vfio_user_proto::header::FLAGS_TYPE_COMMAND;
use vfio_user_proto::wire::*;
use vfio_user_server::{Endpoint, Listener, Server, ServerLimits, ShutdownHandle};
use vm_memory::ByteValued;

/// The limits the suite runs with: small, so that E2BIG, too many fds and ENOSPC are cheap.
pub const LIMITS: ServerLimits =
    ServerLimits { max_msg_fds: 4, max_data_xfer_size: 0x10000, max_dma_maps: 4, pgsizes: 4096 };

/// A server on its own thread accepting clients on a socket path, one after another.
struct ListenServer {
    path: PathBuf,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl ListenServer {
    fn start(limits: ServerLimits) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vfio-user-conformance-{}-{n}.sock", std::process::id()));
        let dev = Arc::new(TestDev::new());
        let d2 = dev.clone();
        let mut server = Server::with_handles(description(), limits, |_, dma| {
            *d2.dma.lock().unwrap() = Some(dma);
            d2
        })
        .unwrap();
        server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        ListenServer { path, stop, thread: Some(thread) }
    }

    fn connect(&self) -> Client {
        Client::new(UnixStream::connect(&self.path).unwrap())
    }
}

impl Drop for ListenServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Outcome = Result<(), String>;

fn check(ok: bool, what: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Sends a valid command and requires exactly its reply as the next message.
fn call(c: &mut Client, cmd: Command, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Vec<u8>, String> {
    let id = c.send_raw(cmd as u16, FLAGS_TYPE_COMMAND, &[payload], fds);
    let m = c.conn.recv().map_err(|e| format!("{cmd}: no reply ({e})"))?;
    check(m.header.is_reply() && m.header.msg_id == id && m.header.command == cmd as u16, || {
        format!("{cmd}: next message is not its reply: {:?}", m.header)
    })?;
    check(!m.header.is_error(), || format!("{cmd} failed with errno {}", m.header.error))?;
    Ok(m.payload)
}

fn version(c: &mut Client) -> Outcome {
    let mut p = vec![0u8, 0, 2, 0];
    p.extend_from_slice(br#"{"capabilities":{"max_msg_fds":8}}"#);
    p.push(0);
    call(c, Command::Version, &p, &[]).map(|_| ())
}

/// The stream is in sync: DEVICE_GET_INFO is answered correctly, and a DMA_UNMAP of
/// everything (which also cleans up after the case) echoes its entry.
fn in_sync(c: &mut Client) -> Outcome {
    let p = call(c, Command::DeviceGetInfo, DeviceInfo { argsz: 16, ..Default::default() }.as_slice(), &[])?;
    let info: Option<DeviceInfo> = read_at(&p, 0);
    check(info.is_some_and(|i| i.num_regions == 10 && i.num_irqs == 5), || format!("bad GET_INFO reply {p:?}"))?;
    let u = DmaUnmap { argsz: 24, flags: DMA_UNMAP_FLAG_ALL, addr: 0, size: 0 };
    let p = call(c, Command::DmaUnmap, u.as_slice(), &[])?;
    check(p == u.as_slice(), || "DMA_UNMAP reply does not echo the entry".into())
}

fn make_fds(f: &Fds) -> Vec<OwnedFd> {
    match *f {
        Fds::None => Vec::new(),
        Fds::Eventfds(n) => (0..n).map(|_| eventfd()).collect(),
        Fds::Memfd => vec![memfd(0x10000)],
    }
}

/// Runs one case on `c` (a connection in the state the case needs).
fn run(c: &mut Client, case: &Case, server: &ListenServer) -> Outcome {
    for (cmd, payload, f) in &case.before {
        let fds = make_fds(f);
        let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        call(c, *cmd, payload, &b).map_err(|e| format!("setup: {e}"))?;
    }
    let fds = make_fds(&case.fds);
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    match case.expect {
        Expect::Errno(errno) | Expect::ErrnoThenClose(errno) => {
            let id = c.send_raw(case.cmd, case.flags, &[&case.payload], &borrowed);
            let m = c.conn.recv().map_err(|e| format!("no reply ({e})"))?;
            check(m.header.is_reply() && m.header.is_error(), || format!("not an error reply: {:?}", m.header))?;
            check((m.header.msg_id, m.header.command) == (id, case.cmd), || {
                format!("wrong id/command {:?}", m.header)
            })?;
            check(m.header.msg_size == 16 && m.payload.is_empty(), || "error reply with a payload".into())?;
            check(m.header.error as i32 == errno, || format!("errno {} instead of {errno}", m.header.error))?;
            if let Expect::ErrnoThenClose(_) = case.expect {
                return closed_and_next_served(c, server);
            }
            if case.session == Session::Fresh {
                version(c)?;
            }
            in_sync(c)
        }
        Expect::Silent => {
            c.send_raw(case.cmd, case.flags, &[&case.payload], &borrowed);
            in_sync(c)
        }
        Expect::Close | Expect::ClientHangsUp => Err("a framing case needs raw bytes".into()),
    }
}

/// Asserts that the server closes `c` (after the bad bytes were sent) while a second
/// client, already waiting, is then served normally.
fn closed_and_next_served(c: &mut Client, server: &ListenServer) -> Outcome {
    let mut next = server.connect();
    match c.conn.recv() {
        Err(_) => {}
        Ok(m) => return Err(format!("connection not closed; got {:?}", m.header)),
    }
    version(&mut next)?;
    in_sync(&mut next)?;
    *c = next;
    Ok(())
}

#[test]
fn bad_input_table() {
    let server = ListenServer::start(LIMITS);
    let table = cases::all();
    assert!(table.len() >= 60, "only {} cases", table.len());
    let mut failed = Vec::new();
    let mut c = server.connect();
    let mut fresh = true;
    for case in &table {
        // Fresh-session cases each get a new connection; the others share a negotiated one.
        if case.session == Session::Fresh || fresh {
            c = server.connect();
            fresh = false;
            if case.session == Session::Negotiated {
                if let Err(e) = version(&mut c) {
                    failed.push(format!("{}: VERSION before the case: {e}", case.name));
                    continue;
                }
            } else {
                fresh = true;
            }
        }
        let r = match &case.raw {
            Some(bytes) => raw_case(&mut c, bytes, case, &server),
            None => run(&mut c, case, &server),
        };
        if let Err(e) = r {
            failed.push(format!("{}: {e}", case.name));
            // Start over on a new connection.
            fresh = true;
        }
    }
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), table.len(), failed.join("\n"));
}

/// A case given as raw bytes (framing errors): written, then the connection must close
/// (or, when the case closes it itself, the next client must be served).
fn raw_case(c: &mut Client, bytes: &[u8], case: &Case, server: &ListenServer) -> Outcome {
    use std::io::Write;
    let mut next = server.connect();
    c.raw.write_all(bytes).map_err(|e| format!("write: {e}"))?;
    if case.expect == Expect::Close {
        match c.conn.recv() {
            Err(_) => {}
            Ok(m) => return Err(format!("connection not closed; got {:?}", m.header)),
        }
    } else {
        // The client hangs up itself in the middle of a message.
        let _ = c.raw.shutdown(std::net::Shutdown::Both);
    }
    version(&mut next)?;
    in_sync(&mut next)?;
    *c = next;
    Ok(())
}
