// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The listener and the connection lifecycle: accept one client at a time, serve it, clean
//! up after it, accept the next.
//!
//! [`Server::handle_request`] is one non-blocking step for an event loop: it accepts a
//! pending connection, or processes every complete command available, and reports what
//! happened. [`Server::as_raw_fd`] is the descriptor to wait on for the next step (the
//! listener while no client is connected, the connection otherwise; it changes on
//! [`Event::Connected`] and [`Event::Disconnected`]). [`Server::run`] is the blocking loop on
//! top, stopped by a [`ShutdownHandle`] from any thread or signal-handling thread.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use vfio_user_proto::connection::Connection;

use crate::channel::Channel;
use crate::description::DeviceDescription;
use crate::device::Device;
use crate::dispatch::{Core, Next, ServerLimits};
use crate::dma::DmaHandle;
use crate::error::{Error, Result};
use crate::irq::IrqHandle;

/// A listening UNIX socket. A listener made by [`Listener::bind`] unlinks its path when
/// dropped.
#[derive(Debug)]
pub struct Listener {
    sock: UnixListener,
    path: Option<PathBuf>,
}

impl Listener {
    /// Listens on `path`, replacing a stale socket file left there.
    pub fn bind(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path)?;
        }
        let sock = UnixListener::bind(path)?;
        sock.set_nonblocking(true)?;
        Ok(Listener { sock, path: Some(path.to_path_buf()) })
    }

    /// Wraps an already listening socket (e.g. `--fd`); its path, if any, is left alone.
    pub fn from_listener(sock: UnixListener) -> Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Listener { sock, path: None })
    }

    fn accept(&self) -> io::Result<Option<UnixStream>> {
        match self.sock.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                Ok(Some(s))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Where clients come from.
#[derive(Debug)]
pub enum Endpoint {
    /// Accept clients one after another.
    Listener(Listener),
    /// Serve this one connected client.
    Stream(UnixStream),
}

impl Endpoint {
    /// A socket given as a descriptor (`--fd`): listening sockets accept clients, connected
    /// ones are served once.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        if rustix::net::sockopt::socket_acceptconn(&fd)? {
            Ok(Endpoint::Listener(Listener::from_listener(UnixListener::from(fd))?))
        } else {
            Ok(Endpoint::Stream(UnixStream::from(fd)))
        }
    }
}

/// What one [`Server::handle_request`] step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing was ready.
    Idle,
    /// This many commands were processed.
    Processed(usize),
    /// A client connected.
    Connected,
    /// The client went away (or broke the protocol and was dropped); the device's DMA
    /// regions and eventfds were released.
    Disconnected,
    /// No client is connected and none can come (the endpoint was a single stream).
    Finished,
}

/// Stops [`Server::run`] from any thread.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    efd: Arc<OwnedFd>,
}

impl ShutdownHandle {
    /// Asks the server to stop; `run()` returns soon after.
    pub fn shutdown(&self) {
        let _ = rustix::io::write(&*self.efd, &1u64.to_ne_bytes());
    }
}

/// Serves one device to one client at a time.
pub struct Server<D: Device> {
    core: Core<D>,
    listener: Option<Listener>,
    pending: Option<UnixStream>,
    chan: Option<Arc<Channel>>,
    stop: Arc<OwnedFd>,
}

impl<D: Device> Server<D> {
    /// A server for `device`, described by `desc`.
    pub fn new(desc: DeviceDescription, device: D) -> Result<Self> {
        Self::with_handles(desc, ServerLimits::default(), |_, _| device)
    }

    /// A server whose device is made by `make` from the interrupt and DMA handles it
    /// needs, with the given protocol limits.
    pub fn with_handles(
        desc: DeviceDescription,
        limits: ServerLimits,
        make: impl FnOnce(IrqHandle, DmaHandle) -> D,
    ) -> Result<Self> {
        let core = Core::new(desc, limits, make)?;
        let stop = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        Ok(Server { core, listener: None, pending: None, chan: None, stop })
    }

    /// Sets where clients come from (replacing any previous endpoint; a connected client
    /// stays connected).
    pub fn set_endpoint(&mut self, ep: Endpoint) {
        match ep {
            Endpoint::Listener(l) => self.listener = Some(l),
            Endpoint::Stream(s) => self.pending = Some(s),
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.core.device
    }

    /// A handle to raise interrupts.
    pub fn irq_handle(&self) -> IrqHandle {
        self.core.irq.clone()
    }

    /// A handle to reach guest memory.
    pub fn dma_handle(&self) -> DmaHandle {
        self.core.dma.clone()
    }

    /// A handle that stops [`run`](Self::run).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { efd: self.stop.clone() }
    }

    /// Whether a client is connected.
    pub fn is_connected(&self) -> bool {
        self.chan.is_some()
    }

    fn attach(&mut self, stream: UnixStream) {
        let chan = Arc::new(Channel::new(Connection::new(stream), self.core.limits.max_data_xfer_size));
        self.core.dma.channel.set(Some(chan.clone()));
        self.chan = Some(chan);
    }

    /// Drops the current client, if any, releasing what it held.
    pub fn disconnect(&mut self) {
        if let Some(chan) = self.chan.take() {
            chan.close();
            self.core.dma.channel.set(None);
            self.core.disconnect();
        }
    }

    /// One non-blocking step: accept a waiting client, or process every complete command
    /// that has arrived.
    pub fn handle_request(&mut self) -> Result<Event> {
        let Some(chan) = self.chan.clone() else {
            if let Some(s) = self.pending.take() {
                self.attach(s);
                return Ok(Event::Connected);
            }
            return match &self.listener {
                Some(l) => match l.accept()? {
                    Some(s) => {
                        self.attach(s);
                        Ok(Event::Connected)
                    }
                    None => Ok(Event::Idle),
                },
                None => Ok(Event::Finished),
            };
        };
        chan.set_dispatcher();
        let mut n = 0;
        loop {
            match chan.next_command() {
                Ok(Some(m)) => {
                    n += 1;
                    if self.core.handle(&chan, m) == Next::Close {
                        self.disconnect();
                        return Ok(Event::Disconnected);
                    }
                }
                Ok(None) => return Ok(if n == 0 { Event::Idle } else { Event::Processed(n) }),
                Err(e) => {
                    log::debug!("closing the connection: {e}");
                    self.disconnect();
                    return Ok(Event::Disconnected);
                }
            }
        }
    }

    /// Serves clients until the [`ShutdownHandle`] fires, or, for a single-stream endpoint,
    /// until its client goes away.
    pub fn run(&mut self) -> Result<()> {
        loop {
            if self.stop_requested() {
                self.disconnect();
                return Ok(());
            }
            match self.handle_request()? {
                Event::Idle => {}
                Event::Finished => return Ok(()),
                _ => continue,
            }
            if self.chan.as_ref().is_some_and(|c| c.has_buffered()) {
                continue;
            }
            let fd = self.as_raw_fd();
            if fd < 0 {
                return Ok(());
            }
            // SAFETY: `fd` is owned by `self` (listener or connection) and stays open for
            // the duration of the poll, which only borrows it.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let stop = self.stop.as_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN), PollFd::new(&stop, PollFlags::IN)];
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::from(e)),
            }
        }
    }

    fn stop_requested(&self) -> bool {
        let mut b = [0u8; 8];
        matches!(rustix::io::read(&*self.stop, &mut b), Ok(8))
    }
}

impl<D: Device> AsRawFd for Server<D> {
    /// The descriptor to wait on for the next [`Server::handle_request`]: the connection
    /// while a client is connected, else the listener (-1 without one).
    fn as_raw_fd(&self) -> RawFd {
        match (&self.chan, &self.listener) {
            (Some(c), _) => c.sender.as_raw_fd(),
            (None, Some(l)) => l.as_raw_fd(),
            (None, None) => -1,
        }
    }
}

impl<D: Device> Drop for Server<D> {
    fn drop(&mut self) {
        self.disconnect();
    }
}
