// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Opening a connection: the VERSION exchange, the twin socket, and receive limits derived
//! from what we may ask for.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use vfio_user_proto::version::{client_check_reply, PROTOCOL_MAJOR, PROTOCOL_MINOR};
use vfio_user_proto::{
    decode_reply, Capabilities, Command, Connection, FrameError, Header, Message, Negotiated, Receiver, Reply, Version,
};

use crate::config::{Config, MAX_INFO_ARGSZ};
use crate::dma_serve::DmaServer;
use crate::error::{Error, Result};
use crate::stats::Counters;
use crate::transport::{Link, Transport, RECV_TICK};

/// Bound on the VERSION reply (a capability JSON is a few hundred bytes).
const VERSION_REPLY_MAX: usize = 64 * 1024;

/// The largest message a server obeying our requests can send us on the main socket: a
/// reply to the largest read we issue (`max_data_xfer_size`), a capability chain or IO-fds
/// table (bounded by [`MAX_INFO_ARGSZ`]), or a DMA_WRITE within our `max_data_xfer_size`.
pub(crate) fn max_msg_size(local: &Capabilities) -> usize {
    let limits = vfio_user_proto::DecodeLimits { max_data_xfer_size: local.max_data_xfer_size, max_msg_fds: 0 };
    limits.max_reply_size(MAX_INFO_ARGSZ)
}

/// Connects to the server's socket at `path`, waiting at most `timeout` (a server that
/// never accepts and has a full backlog would otherwise block `connect` forever).
pub(crate) fn connect_path(path: &std::path::Path, timeout: std::time::Duration) -> std::io::Result<UnixStream> {
    use rustix::net::{sockopt, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, Some(timeout))?;
    match rustix::net::connect(&fd, &SocketAddrUnix::new(path)?) {
        Ok(()) => {}
        Err(rustix::io::Errno::AGAIN) => return Err(std::io::ErrorKind::TimedOut.into()),
        Err(e) => return Err(e.into()),
    }
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, None)?;
    Ok(UnixStream::from(fd))
}

/// Negotiates on `sock` and starts the connection's threads.
pub(crate) fn open(sock: UnixStream, config: &Config, dma: Arc<DmaServer>, stats: Arc<Counters>) -> Result<Link> {
    // Blocking, with a receive timeout: readers block in `recvmsg` and still see deadlines.
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(RECV_TICK))?;
    let poll_sock = sock.try_clone()?;
    let (sender, mut rx) = Connection::new(sock).split();
    rx.set_max_msg_size(VERSION_REPLY_MAX);
    let offered = config.capabilities();
    let json = offered.to_json();
    let json = json.strip_suffix(&[0]).unwrap_or(&json);
    let p = Version { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR, json }.payload();
    sender.send(Header::command(0, p.command(), 0), &p.parts(), &[]).map_err(Error::Send)?;
    let deadline = Instant::now() + config.connect_timeout;
    let msg = recv_until(&mut rx, &poll_sock, deadline).map_err(|e| match e {
        RecvError::Timeout => Error::Timeout { command: Command::Version, timeout: config.connect_timeout },
        RecvError::Frame(e) => Error::Protocol(format!("VERSION: {e}")),
    })?;
    let (negotiated, twin_fd) = check_version_reply(msg, &offered)?;
    rx.set_max_msg_size(max_msg_size(&negotiated.local));
    let (twin, twin_rx) = match twin_fd {
        Some(fd) => {
            let (s, mut r) = Connection::from_fd(fd).split();
            let limits = vfio_user_proto::DecodeLimits {
                max_data_xfer_size: negotiated.local.max_data_xfer_size,
                max_msg_fds: 0,
            };
            r.set_max_msg_size(limits.max_msg_size());
            (Some(s), Some(r))
        }
        None => (None, None),
    };
    log::info!(
        "vfio-user: negotiated {}.{}, server max_data_xfer_size {} max_msg_fds {} write_multiple {} twin_socket {}",
        negotiated.major,
        negotiated.minor,
        negotiated.peer.max_data_xfer_size,
        negotiated.peer.max_msg_fds,
        negotiated.peer.write_multiple,
        negotiated.twin_socket
    );
    drop(poll_sock);
    let transport = Transport::new(sender, rx, twin, negotiated, dma, config.timeout, stats);
    Link::start(transport, twin_rx)
}

fn check_version_reply(mut msg: Message, offered: &Capabilities) -> Result<(Negotiated, Option<OwnedFd>)> {
    let h = msg.header;
    if !h.is_reply() || h.msg_id != 0 || h.command != Command::Version as u16 {
        return Err(Error::Protocol(format!(
            "expected the VERSION reply, got command {} msg_id {} flags {:#x}",
            h.command, h.msg_id, h.flags
        )));
    }
    if h.is_error() {
        return Err(Error::Server { command: Command::Version, errno: h.errno() });
    }
    let (major, minor, caps) = match decode_reply(&h, &msg.payload, msg.fds.len())? {
        Reply::Version(v) => (v.major, v.minor, Capabilities::from_json(v.json)?),
        _ => return Err(Error::Protocol("VERSION reply of another command".into())),
    };
    let n = client_check_reply(PROTOCOL_MINOR, offered, major, minor, &caps, msg.fds.len())?;
    let twin = match caps.twin_socket.and_then(|t| t.fd_index) {
        Some(i) if n.twin_socket => Some(msg.fds.swap_remove(i as usize)),
        _ => None,
    };
    if !msg.fds.is_empty() {
        return Err(Error::Protocol("stray file descriptor with the VERSION reply".into()));
    }
    if let Some(fd) = &twin {
        check_twin_fd(fd)?;
    }
    Ok((n, twin))
}

/// Refuses a twin "socket" that is not a connected-kind UNIX stream socket (a pipe, a file,
/// a datagram socket...): it would only fail at first use, in the middle of a DMA.
fn check_twin_fd(fd: &OwnedFd) -> Result<()> {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let refuse = |what: String| Err(Error::Protocol(format!("the twin socket offered by the server is {what}")));
    let st = rustix::fs::fstat(fd).map_err(|e| Error::Io(e.into()))?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if kind != rustix::fs::FileType::Socket {
        return refuse(format!("not a socket but a {kind:?}"));
    }
    match (sockopt::socket_domain(fd), sockopt::socket_type(fd)) {
        (Ok(AddressFamily::UNIX), Ok(SocketType::STREAM)) => Ok(()),
        (Ok(d), Ok(t)) => refuse(format!("a socket of domain {d:?} and type {t:?}, not a UNIX stream socket")),
        (Err(e), _) | (_, Err(e)) => refuse(format!("a socket whose domain or type cannot be read: {e}")),
    }
}

pub(crate) enum RecvError {
    Timeout,
    Frame(FrameError),
}

/// Receives one message before `deadline`.
pub(crate) fn recv_until(
    rx: &mut Receiver,
    sock: &UnixStream,
    deadline: Instant,
) -> std::result::Result<Message, RecvError> {
    loop {
        if !rx.has_buffered_message() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            let ts = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as _ };
            let mut fds = [PollFd::new(sock, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(RecvError::Frame(FrameError::Io(e.into()))),
            }
        }
        match rx.try_recv() {
            Ok(m) => return Ok(m),
            Err(FrameError::WouldBlock) => {}
            Err(e) => return Err(RecvError::Frame(e)),
        }
    }
}
