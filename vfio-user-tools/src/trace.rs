// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user trace`: a transparent proxy that prints every message both ways.
//!
//! The proxy listens on one socket path and, for each client, connects to the server's
//! socket. Two threads relay whole messages with their descriptors. When the server's
//! VERSION reply hands over a twin socket, the proxy puts a socket pair of its own in
//! between, so that the server-to-client channel is traced too.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use vfio_user_proto::{Capabilities, Command, Connection, FrameError, Message, Receiver, Sender};

use crate::describe::{describe, to_json};

/// Largest message the proxy relays (it does not enforce the peers' limits, only bounds
/// its own memory).
const MAX_RELAYED_MSG: usize = 64 << 20;

/// Where trace lines go.
pub struct Log {
    start: Instant,
    text: Mutex<Box<dyn Write + Send>>,
    json: Option<Mutex<File>>,
}

impl Log {
    /// A log printing to `text` and, optionally, JSON lines to `json`.
    pub fn new(text: Box<dyn Write + Send>, json: Option<File>) -> Self {
        Log { start: Instant::now(), text: Mutex::new(text), json: json.map(Mutex::new) }
    }

    fn record(&self, dir: &str, m: &Message) {
        let t = self.start.elapsed().as_secs_f64() * 1000.0;
        let line = describe(&m.header, &m.payload, m.fds.len());
        if let Ok(mut w) = self.text.lock() {
            let _ = writeln!(w, "{t:10.3} ms {dir:<9} {line}");
        }
        if let Some(j) = &self.json {
            if let Ok(mut f) = j.lock() {
                let _ = writeln!(f, "{}", to_json(t, dir, &m.header, &m.payload, m.fds.len()));
            }
        }
    }

    fn note(&self, what: &str) {
        if let Ok(mut w) = self.text.lock() {
            let _ = writeln!(w, "{:10.3} ms {what}", self.start.elapsed().as_secs_f64() * 1000.0);
        }
    }

    /// Flushes the text and JSON outputs.
    fn flush(&self) {
        if let Ok(mut w) = self.text.lock() {
            let _ = w.flush();
        }
        if let Some(j) = &self.json {
            if let Ok(mut f) = j.lock() {
                let _ = f.flush();
            }
        }
    }
}

/// Relays messages from `rx` to `tx` until either side closes; `on_msg` may replace the
/// descriptors of a message before it is forwarded.
fn relay(
    mut rx: Receiver,
    tx: Arc<Sender>,
    other: Arc<Sender>,
    dir: &'static str,
    log: Arc<Log>,
    mut on_msg: impl FnMut(&Message) -> Option<Vec<OwnedFd>>,
) {
    rx.set_max_msg_size(MAX_RELAYED_MSG);
    loop {
        let mut m = match rx.recv() {
            Ok(m) => m,
            Err(FrameError::Closed) => {
                log.note(&format!("{dir} closed"));
                break;
            }
            Err(e) => {
                log.note(&format!("{dir} framing error: {e}"));
                break;
            }
        };
        log.record(dir, &m);
        if let Some(replacement) = on_msg(&m) {
            m.fds = replacement;
        }
        let fds: Vec<_> = m.fds.iter().map(|f| f.as_fd()).collect();
        if let Err(e) = tx.send(m.header, &[&m.payload], &fds) {
            log.note(&format!("{dir} forward failed: {e}"));
            break;
        }
    }
    // Wake the relay running the other way.
    let _ = tx.shutdown();
    let _ = other.shutdown();
}

/// Proxies one client connection to the server at `server`.
pub fn proxy_one(client: UnixStream, server: &Path, log: Arc<Log>) -> io::Result<()> {
    let server = UnixStream::connect(server)?;
    let (c_tx, c_rx) = Connection::new(client).split();
    let (s_tx, s_rx) = Connection::new(server).split();
    let (c_tx, s_tx) = (Arc::new(c_tx), Arc::new(s_tx));
    let up = {
        let (s_tx, c_tx, log) = (s_tx.clone(), c_tx.clone(), log.clone());
        thread::spawn(move || relay(c_rx, s_tx, c_tx, "c→s", log, |_| None))
    };
    let twin_log = log.clone();
    let mut twins = Vec::new();
    relay(s_rx, c_tx.clone(), s_tx.clone(), "s→c", log, |m| {
        let twin = twin_fd(m)?;
        // Put a traced pair between the client and the server's twin socket.
        let (ours, theirs) = UnixStream::pair().ok()?;
        let server_twin = UnixStream::from(twin);
        let mut fds: Vec<OwnedFd> = Vec::new();
        for (i, fd) in m.fds.iter().enumerate() {
            fds.push(if Some(i) == twin_index(m) {
                OwnedFd::from(theirs.try_clone().ok()?)
            } else {
                fd.try_clone().ok()?
            });
        }
        twin_log.note("twin socket negotiated: tracing it too");
        let (o_tx, o_rx) = Connection::new(ours).split();
        let (t_tx, t_rx) = Connection::new(server_twin).split();
        let (o_tx, t_tx) = (Arc::new(o_tx), Arc::new(t_tx));
        let (l1, l2) = (twin_log.clone(), twin_log.clone());
        let (a, b) = (o_tx.clone(), t_tx.clone());
        twins.push(thread::spawn(move || relay(t_rx, o_tx, t_tx, "twin s→c", l1, |_| None)));
        twins.push(thread::spawn(move || relay(o_rx, b, a, "twin c→s", l2, |_| None)));
        drop(theirs);
        Some(fds)
    });
    let _ = up.join();
    for t in twins {
        let _ = t.join();
    }
    Ok(())
}

fn twin_index(m: &Message) -> Option<usize> {
    if m.header.command != Command::Version as u16 || !m.header.is_reply() || m.header.is_error() {
        return None;
    }
    let json = m.payload.get(4..)?;
    let json = json.strip_suffix(&[0]).unwrap_or(json);
    let caps = Capabilities::from_json(json).ok()?;
    let t = caps.twin_socket?;
    if !t.supported {
        return None;
    }
    let i = t.fd_index? as usize;
    (i < m.fds.len()).then_some(i)
}

fn twin_fd(m: &Message) -> Option<OwnedFd> {
    m.fds.get(twin_index(m)?)?.try_clone().ok()
}

/// Listens on `listen` and proxies every client, one at a time, to `connect`.
/// With `once`, returns after the first client disconnects.
/// Whatever is at `listen` is left alone, as `Listener::bind` does: a user's file is
/// `EEXIST`, a live server's socket `EADDRINUSE`; only a stale socket is replaced, and the
/// proxy's socket is removed at the end only if it is still there.
pub fn run(listen: &Path, connect: PathBuf, log: Arc<Log>, once: bool) -> io::Result<()> {
    // SIGINT / SIGTERM end the proxy; the socket it created goes with it. Caught before
    // the socket exists, so that none arriving once it does is lost.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let (listener, socket) = vfio_user_server::SocketPath::bind(listen)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", listen.display())))?;
    let socket = Arc::new(socket);
    let (on_signal, signal_log) = (socket.clone(), log.clone());
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            on_signal.remove();
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            signal_log.note(&format!("{name}: socket removed, exiting"));
            signal_log.flush();
            std::process::exit(0);
        }
    });
    log.note(&format!("listening on {}, forwarding to {}", listen.display(), connect.display()));
    for client in listener.incoming() {
        let client = client?;
        log.note("client connected");
        if let Err(e) = proxy_one(client, &connect, log.clone()) {
            log.note(&format!("cannot reach the server: {e}"));
        }
        log.note("client disconnected");
        if once {
            break;
        }
    }
    socket.remove();
    Ok(())
}
