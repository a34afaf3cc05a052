// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Errors of decoding and framing, each with the errno a peer should be told.

use std::io;

use crate::command::{Command, CommandError};

/// A message that arrived whole but is not a valid instance of its command.
///
/// Decoding errors never desynchronise the stream: the framing layer has already read the
/// whole message, so the receiver replies with [`DecodeError::errno`] and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The command code is unknown or removed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The payload is shorter than the command's fixed part or than its own fields say.
    #[error("{cmd}: payload of {got} bytes, need {need}")]
    Truncated {
        /// The command.
        cmd: Command,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// The payload is longer than the command's fields account for.
    #[error("{cmd}: payload of {got} bytes, expected {expect}")]
    SizeMismatch {
        /// The command.
        cmd: Command,
        /// Bytes expected.
        expect: usize,
        /// Bytes present.
        got: usize,
    },
    /// `argsz` contradicts the payload or is below the fixed size.
    #[error("{cmd}: argsz {argsz} invalid")]
    BadArgsz {
        /// The command.
        cmd: Command,
        /// The `argsz` sent.
        argsz: u32,
    },
    /// Flag bits that are unknown or combined in a way the protocol forbids.
    #[error("{cmd}: invalid flags {flags:#x}")]
    BadFlags {
        /// The command.
        cmd: Command,
        /// The flags sent.
        flags: u32,
    },
    /// A field has a value the protocol forbids (zero size, wrapping range, bad page size...).
    #[error("{cmd}: invalid {field}")]
    BadField {
        /// The command.
        cmd: Command,
        /// Which field.
        field: &'static str,
    },
    /// A transfer count above the receiver's `max_data_xfer_size`.
    #[error("{cmd}: count {count} exceeds max_data_xfer_size {max}")]
    TooBig {
        /// The command.
        cmd: Command,
        /// The count asked for.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// File descriptors where the command allows none, or not as many as it needs.
    #[error("{cmd}: {got} file descriptors, expected {expect}")]
    BadFdCount {
        /// The command.
        cmd: Command,
        /// Descriptors received.
        got: usize,
        /// What the command allows.
        expect: &'static str,
    },
    /// The VERSION JSON is not valid UTF-8 / JSON / the capability schema.
    #[error("VERSION: invalid capabilities: {0}")]
    BadJson(String),
    /// The command is valid but not a request this side accepts (e.g. DMA_READ at a server).
    #[error("{0} is not accepted in this direction")]
    WrongDirection(Command),
}

impl DecodeError {
    /// The errno to put in the error reply.
    pub fn errno(&self) -> i32 {
        match self {
            DecodeError::Command(CommandError::Unknown(_)) => libc::EINVAL,
            DecodeError::Command(CommandError::Removed(_)) => libc::ENOTSUP,
            DecodeError::TooBig { .. } => libc::E2BIG,
            _ => libc::EINVAL,
        }
    }
}

/// What went wrong with a message that was nevertheless received whole, so that the stream
/// is still in sync: the receiver answers it with an error reply ([`Damage::errno`]) instead
/// of closing the connection. Delivered only by a receiver that asks for it
/// ([`Receiver::set_deliver_damaged`](crate::connection::Receiver::set_deliver_damaged)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    /// The kernel could not pass every file descriptor (`MSG_CTRUNC`): this process's
    /// descriptor table is full (`RLIMIT_NOFILE`). Those that did arrive were closed.
    #[error("file descriptors of the message were lost (descriptor table full)")]
    FdsTruncated,
    /// `msg_size` exceeds the receiver's limit; the payload was read and discarded.
    #[error("msg_size {size} exceeds the limit of {max} bytes; payload discarded")]
    Oversize {
        /// The size announced.
        size: u32,
        /// The limit.
        max: usize,
    },
}

impl Damage {
    /// The errno for the error reply: `EMFILE` for lost descriptors (the receiving
    /// process has too many open files; the sender's own fds were fine), `E2BIG` for an
    /// oversized message (as for a count over `max_data_xfer_size`).
    pub fn errno(&self) -> i32 {
        match self {
            Damage::FdsTruncated => libc::EMFILE,
            Damage::Oversize { .. } => libc::E2BIG,
        }
    }
}

/// A failure to receive or send a whole message. Every receive-side variant except
/// [`FrameError::WouldBlock`] leaves the stream unusable: the connection must be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the connection between messages.
    #[error("connection closed by peer")]
    Closed,
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed in the middle of a message ({got} of {need} bytes)")]
    EofMidMessage {
        /// Bytes of the message received.
        got: usize,
        /// Bytes of the message expected.
        need: usize,
    },
    /// `msg_size` is smaller than a header.
    #[error("msg_size {0} is smaller than the 16-byte header")]
    Undersize(u32),
    /// `msg_size` exceeds the negotiated limit.
    #[error("msg_size {size} exceeds the limit of {max} bytes")]
    Oversize {
        /// The size announced.
        size: u32,
        /// The limit.
        max: usize,
    },
    /// More file descriptors arrived with one message than the receiver accepts.
    #[error("{got} file descriptors with one message, limit {max}")]
    TooManyFds {
        /// Descriptors received.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The kernel truncated the ancillary data (descriptors were lost).
    #[error("ancillary data truncated: file descriptors were lost")]
    FdsTruncated,
    /// A message type that is not valid here: a reply where a command was expected, or an
    /// undefined type value.
    #[error("unexpected message type (flags {flags:#x}) for command {command}")]
    UnexpectedType {
        /// The header flags.
        flags: u32,
        /// The command code.
        command: u16,
    },
    /// A non-blocking receive found no complete message.
    #[error("no complete message available")]
    WouldBlock,
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// The errno closest to this error, for callers that must report one.
    pub fn errno(&self) -> i32 {
        match self {
            FrameError::Closed | FrameError::EofMidMessage { .. } => libc::ENOTCONN,
            FrameError::Undersize(_) | FrameError::UnexpectedType { .. } => libc::EINVAL,
            FrameError::Oversize { .. } => libc::E2BIG,
            FrameError::TooManyFds { .. } | FrameError::FdsTruncated => libc::EINVAL,
            FrameError::WouldBlock => libc::EAGAIN,
            FrameError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}
