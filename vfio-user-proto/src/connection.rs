// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Framing: whole messages with their SCM_RIGHTS file descriptors over a UNIX stream socket.
//!
//! The receive side ([`Receiver`], `receiver.rs`) reads into a buffer, so that several
//! pipelined small messages cost one system call, and bounds every message by
//! `max_msg_size` before allocating for it. A message with a large payload is not copied out
//! of that buffer: once its header is known, the rest is received straight into the payload
//! it is returned with, or (`direct.rs`) with [`Receiver::recv_into`] into buffers of the
//! caller (e.g. a DMA_READ reply into the device's destination), or through a
//! [`PayloadTail`] into memory the caller manages (the client receives a DMA_WRITE's data
//! straight into guest memory so). File descriptors travel with the first bytes of the
//! `sendmsg` that carried them, and Linux ends a `recvmsg` right after the segment that
//! carried descriptors; so the descriptors of one `recvmsg` belong to the message that
//! contains the last byte it returned. Received descriptors are `OwnedFd`s opened
//! close-on-exec (`MSG_CMSG_CLOEXEC`): dropping a message closes any the receiver did not
//! take.
//!
//! The send side ([`Sender`], `sender.rs`) writes a message with one `sendmsg` (header, body
//! parts and descriptors), or, when it is small and has no descriptors, copies it into one
//! buffer for a cheaper `send`, continuing after short writes; a mutex keeps concurrent
//! senders from interleaving. A [`SendGuard`] lends its socket and
//! [`wait_writable`](SendGuard::wait_writable) to a caller with a send path of its own
//! (the client's batches and its sends out of guest memory).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::error::{Damage, FrameError};
use crate::header::{Header, HEADER_SIZE};
use crate::version::SCM_MAX_FD;

mod direct;
mod raw;
mod receiver;
mod sender;
mod wait;

pub use direct::PayloadTail;
pub use receiver::Receiver;
pub use sender::{SendGuard, Sender, MAX_SEND_PARTS};

/// The most file descriptors one message may carry before the connection is considered
/// broken (Linux's per-`sendmsg` maximum). The negotiated `max_msg_fds` is enforced by the
/// decoder, with an error reply; this is the hard bound of the framing layer.
pub const MAX_FDS_PER_MESSAGE: usize = SCM_MAX_FD as usize;

/// Default bound on `msg_size`: a 1 MiB transfer plus headers.
pub const DEFAULT_MAX_MSG_SIZE: usize = HEADER_SIZE + 16 + (1 << 20);
/// Most iovecs one `sendmsg` or `recvmsg` takes (Linux `UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

/// One whole message as received.
#[derive(Debug)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The `msg_size - 16` bytes after the header.
    pub payload: Vec<u8>,
    /// The descriptors that came with the message.
    pub fds: Vec<OwnedFd>,
    /// Set when the message arrived whole but damaged (descriptors lost, or a payload over
    /// the limit that was discarded): answer it with an error, do not decode it. Only a
    /// receiver with [`Receiver::set_deliver_damaged`] returns such messages.
    pub damage: Option<Damage>,
}

impl Message {
    /// Returns the message if it is a command, [`FrameError::UnexpectedType`] otherwise.
    pub fn expect_command(self) -> Result<Message, FrameError> {
        if self.header.is_command() {
            Ok(self)
        } else {
            Err(FrameError::UnexpectedType { flags: self.header.flags, command: self.header.command })
        }
    }
}

/// Both halves of a connection over one UNIX stream socket.
#[derive(Debug)]
pub struct Connection {
    /// The sending half.
    pub sender: Sender,
    /// The receiving half.
    pub receiver: Receiver,
}

impl Connection {
    /// Wraps a connected UNIX stream socket. The socket's blocking mode is left as it is;
    /// both halves cope with either.
    pub fn new(sock: UnixStream) -> Self {
        let sock = std::sync::Arc::new(sock);
        Connection { sender: Sender::new(sock.clone()), receiver: Receiver::new(sock) }
    }

    /// Wraps a connected socket given as an owned descriptor.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Connection::new(UnixStream::from(fd))
    }

    /// Sends one message; see [`Sender::send`].
    pub fn send(&self, header: Header, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<(), FrameError> {
        self.sender.send(header, parts, fds)
    }

    /// Receives one message, blocking; see [`Receiver::recv`].
    pub fn recv(&mut self) -> Result<Message, FrameError> {
        self.receiver.recv()
    }

    /// Receives one message without blocking; see [`Receiver::try_recv`].
    pub fn try_recv(&mut self) -> Result<Message, FrameError> {
        self.receiver.try_recv()
    }

    /// Splits into the two halves, e.g. to receive on one thread and send from others.
    pub fn split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.receiver.as_raw_fd()
    }
}
