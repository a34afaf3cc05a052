// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The error type of every client call.

use std::io;
use std::time::Duration;

use vfio_user_proto::{Command, DecodeError, FrameError, NegotiationError};

/// Why the connection to the server is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The server closed the socket (EOF), possibly in the middle of a message.
    Closed,
    /// The local side shut the connection down ([`Client::shutdown`](crate::Client::shutdown)
    /// or drop).
    Shutdown,
    /// An I/O error on the socket, with its errno.
    Io(i32),
    /// The server broke the protocol; the connection was closed. The text says how.
    ProtocolViolation(String),
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::Closed => f.write_str("closed by the server"),
            DisconnectReason::Shutdown => f.write_str("shut down locally"),
            DisconnectReason::Io(e) => write!(f, "I/O error (errno {e})"),
            DisconnectReason::ProtocolViolation(s) => write!(f, "protocol violation: {s}"),
        }
    }
}

/// An error of a client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting to the server's socket failed.
    #[error("cannot connect to the server: {0}")]
    Connect(#[source] io::Error),
    /// The VERSION exchange failed.
    #[error("version negotiation failed: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The server answered with an error reply carrying this errno (`EIO` when the server
    /// left it 0).
    #[error("{command} failed on the server: errno {errno} ({})", io::Error::from_raw_os_error(*errno))]
    Server {
        /// The command that failed.
        command: Command,
        /// The server's errno.
        errno: i32,
    },
    /// No reply arrived within the timeout. The connection stays up; a late reply is
    /// discarded.
    #[error("{command}: no reply within {timeout:?}")]
    Timeout {
        /// The command that timed out.
        command: Command,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connection is gone; every call fails with this until
    /// [`Client::reconnect`](crate::Client::reconnect) succeeds.
    #[error("not connected: {0}")]
    Disconnected(DisconnectReason),
    /// The server sent something the protocol does not allow; the connection has been closed.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// A reply that does not decode; the connection has been closed.
    #[error("malformed reply: {0}")]
    Decode(#[from] DecodeError),
    /// Sending failed.
    #[error("cannot send: {0}")]
    Send(#[source] FrameError),
    /// The call's arguments are invalid (checked locally, nothing was sent).
    #[error("invalid argument: {0}")]
    InvalidInput(&'static str),
    /// The call is not possible with what the server negotiated or reported (e.g. no such
    /// region, a limit the server set); nothing was sent.
    #[error("not supported by the server: {0}")]
    Unsupported(&'static str),
    /// A local resource failed (mapping a region, duplicating a descriptor...).
    #[error("local I/O error: {0}")]
    Io(#[from] io::Error),
    /// Every message id is in use (65536 requests in flight or abandoned after timeouts).
    #[error("no free message id")]
    NoMessageId,
}

impl Error {
    /// The errno closest to this error, e.g. for a VMM that must report one to its guest.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Server { errno, .. } => *errno,
            Error::Timeout { .. } => libc::ETIMEDOUT,
            Error::Disconnected(_) => libc::ENOTCONN,
            Error::Connect(e) | Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            Error::Negotiation(e) => e.errno(),
            Error::Protocol(_) | Error::Decode(_) => libc::EPROTO,
            Error::Send(e) => e.errno(),
            Error::InvalidInput(_) => libc::EINVAL,
            Error::Unsupported(_) => libc::ENOTSUP,
            Error::NoMessageId => libc::EAGAIN,
        }
    }
}

/// The result of a client call.
pub type Result<T> = std::result::Result<T, Error>;
