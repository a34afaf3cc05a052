// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The listener and the connection lifecycle: accept one client at a time, serve it, clean
//! up after it, accept the next.
//!
//! [`Server::handle_request`] is one non-blocking step for an event loop: it accepts a
//! pending connection, or processes every complete command available, and reports what
//! happened. [`Server::socket_fd`] is the descriptor to wait on for the next step (the
//! listener while no client is connected, the connection otherwise, `None` with neither; it changes on
//! [`Event::Connected`] and [`Event::Disconnected`]). [`Server::run`] is the blocking loop on
//! top, stopped by a [`ShutdownHandle`] from any thread or signal-handling thread.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use vfio_user_proto::connection::Connection;

use crate::answer::Next;
use crate::channel::{Channel, ChannelSlot, SocketTransport};
use crate::core::{Core, ServerLimits, Timeouts};
use crate::description::DeviceDescription;
use crate::device::Device;
use crate::dma::DmaHandle;
use crate::error::{Error, Result};
use crate::irq::IrqHandle;
use crate::socket_path::SocketPath;

/// A listening UNIX socket. A listener made by [`Listener::bind`] unlinks its path when
/// dropped, if the path still names the socket it bound ([`SocketPath`]).
#[derive(Debug)]
pub struct Listener {
    sock: UnixListener,
    /// Held for its drop: unlinks the socket file.
    _path: Option<SocketPath>,
}

impl Listener {
    /// Listens on `path`, replacing a stale socket file left there (one nobody listens on);
    /// a live one is `EADDRINUSE`, any other file `EEXIST` (never removed).
    pub fn bind(path: impl AsRef<Path>) -> Result<Self> {
        let (sock, path) = SocketPath::bind(path)?;
        sock.set_nonblocking(true)?;
        Ok(Listener { sock, _path: Some(path) })
    }

    /// Wraps an already listening socket (e.g. `--fd`); its path, if any, is left alone.
    pub fn from_listener(sock: UnixListener) -> Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Listener { sock, _path: None })
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
    stop: Arc<Stop>,
    channel: ChannelSlot,
}

#[derive(Debug)]
struct Stop {
    efd: OwnedFd,
    requested: AtomicBool,
}

impl ShutdownHandle {
    /// Asks the server to stop: `run()` drops the client, if any, and returns.
    pub fn shutdown(&self) {
        self.stop.requested.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(&self.stop.efd, &1u64.to_ne_bytes());
        // Wake a run() blocked receiving from the client.
        if let Ok(chan) = self.channel.get() {
            chan.close();
        }
    }
}

/// Serves one device to one client at a time.
pub struct Server<D: Device> {
    core: Core<D>,
    listener: Option<Listener>,
    pending: Option<UnixStream>,
    chan: Option<Arc<Channel>>,
    /// The current channel, for [`ShutdownHandle`]s.
    slot: ChannelSlot,
    stop: Arc<Stop>,
    timeouts: Timeouts,
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
        let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let stop = Arc::new(Stop { efd, requested: AtomicBool::new(false) });
        Ok(Server {
            core,
            listener: None,
            pending: None,
            chan: None,
            slot: ChannelSlot::default(),
            stop,
            timeouts: Timeouts::default(),
        })
    }

    /// Sets where clients come from (replacing any previous endpoint; a connected client
    /// stays connected).
    pub fn set_endpoint(&mut self, ep: Endpoint) {
        match ep {
            Endpoint::Listener(l) => self.listener = Some(l),
            Endpoint::Stream(s) => self.pending = Some(s),
        }
    }

    /// Sets how long the server waits for a client ([`Timeouts`]); applies from the next
    /// connection on.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.core.device
    }

    /// A handle to raise interrupts.
    pub fn irq_handle(&self) -> IrqHandle {
        self.core.irq.clone()
    }

    /// A handle to reach the client's memory (the device side of the server's
    /// [`DmaSpace`](vfio_user_dma::DmaSpace)).
    pub fn dma_handle(&self) -> DmaHandle {
        self.core.dma.clone()
    }

    /// A handle that stops [`run`](Self::run).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { stop: self.stop.clone(), channel: self.slot.clone() }
    }

    /// Whether a client is connected.
    pub fn is_connected(&self) -> bool {
        self.chan.is_some()
    }

    fn attach(&mut self, stream: UnixStream) {
        let chan = Arc::new(Channel::new(Connection::new(stream), self.core.limits.max_data_xfer_size, self.timeouts));
        // The thread that accepts is the one that handles requests (run(), or an event loop
        // calling handle_request(), which sets it again on every step).
        chan.set_dispatcher();
        self.slot.set(Some(chan.clone()));
        // Message-based DMA mappings are reached through this connection.
        self.core.dma.space.set_transport(Some(Arc::new(SocketTransport(chan.clone()))));
        self.core.dma.waits.set(Some(chan.clone()));
        self.chan = Some(chan);
        log::info!("vfio-user client connected");
    }

    /// Drops the current client, if any, releasing what it held.
    pub fn disconnect(&mut self) {
        if let Some(chan) = self.chan.take() {
            // Closing first wakes device threads waiting for a DMA reply, so that the
            // DmaSpace's clear() in Core::disconnect does not wait for them.
            chan.close();
            self.slot.set(None);
            self.core.dma.waits.set(None);
            self.core.disconnect();
            log::info!("vfio-user client disconnected; its DMA regions and eventfds were released");
        }
    }

    /// One non-blocking step: accept a waiting client, or read the socket once and process
    /// every complete command received. Call it again when [`socket_fd`](Self::socket_fd)
    /// is readable (level-triggered), or right away after [`Event::Connected`] and
    /// [`Event::Disconnected`].
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
            // One read from the socket per step: after the first message, only what is
            // already buffered (the descriptor shows whether more has arrived).
            match chan.next_command(n == 0) {
                Ok(Some(m)) => {
                    n += 1;
                    if self.core.handle(&chan, m) == Next::Close {
                        self.disconnect();
                        return Ok(Event::Disconnected);
                    }
                }
                Ok(None) => {
                    if chan.flush().is_err() {
                        self.disconnect();
                        return Ok(Event::Disconnected);
                    }
                    return Ok(if n == 0 { Event::Idle } else { Event::Processed(n) });
                }
                Err(e) => {
                    log::debug!("closing the connection: {e}");
                    self.disconnect();
                    return Ok(Event::Disconnected);
                }
            }
        }
    }

    /// Serves clients until the [`ShutdownHandle`] fires (once it has, `run()` returns at
    /// once), or, for a single-stream endpoint, until its client goes away. While a client is connected this blocks in `recvmsg` on
    /// its socket (the shutdown handle shuts that socket down to wake it); between clients
    /// it polls the listener and the shutdown eventfd.
    pub fn run(&mut self) -> Result<()> {
        if let Some(chan) = &self.chan {
            chan.set_dispatcher();
        }
        loop {
            if self.stop.requested.load(Ordering::SeqCst) {
                self.disconnect();
                return Ok(());
            }
            if let Some(chan) = &self.chan {
                // Replies are queued and leave when the channel is about to wait for the
                // client, so pipelined commands get theirs in one send.
                let next = match chan.next_command_blocking() {
                    Ok(m) => self.core.handle(chan, m),
                    Err(e) => {
                        log::debug!("closing the connection: {e}");
                        Next::Close
                    }
                };
                if next == Next::Close {
                    self.disconnect();
                }
                continue;
            }
            match self.handle_request()? {
                Event::Finished => return Ok(()),
                Event::Idle => {}
                _ => continue,
            }
            let Some(l) = &self.listener else { continue };
            let stop = self.stop.efd.as_fd();
            let mut fds = [PollFd::new(&l.sock, PollFlags::IN), PollFd::new(&stop, PollFlags::IN)];
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::from(e)),
            }
        }
    }
}

impl<D: Device> Server<D> {
    /// The descriptor to wait on (for readability) before the next
    /// [`handle_request`](Self::handle_request): the connection while a client is connected,
    /// else the listener; `None` when there is neither.
    pub fn socket_fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.chan, &self.listener) {
            (Some(c), _) => Some(c.sender.as_fd()),
            (None, Some(l)) => Some(l.sock.as_fd()),
            (None, None) => None,
        }
    }
}

impl<D: Device> std::fmt::Debug for Server<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("connected", &self.is_connected())
            .field("listener", &self.listener.as_ref().map(|l| l.sock.as_raw_fd()))
            .field("pending_stream", &self.pending.is_some())
            .field("limits", &self.core.limits)
            .field("mig_state", &self.core.mig_state)
            .field("dma_mappings", &self.core.dma.space.regions().len())
            .finish_non_exhaustive()
    }
}

impl<D: Device> Drop for Server<D> {
    fn drop(&mut self) {
        self.disconnect();
    }
}
