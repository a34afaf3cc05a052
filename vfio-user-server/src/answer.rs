// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What a command handler returns: its reply (a payload, or an error), the descriptors that
//! go with it, and what the connection does next. Handlers build nothing on the side;
//! `Core::handle` sends the answer.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use vfio_user_proto::Header;

use crate::error::Error;

/// What the connection should do after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Continue,
    Close,
}

/// A descriptor to attach to a reply.
pub(crate) enum ReplyFd {
    Shared(Arc<OwnedFd>),
    Owned(OwnedFd),
}

impl ReplyFd {
    pub(crate) fn borrow(&self) -> BorrowedFd<'_> {
        match self {
            ReplyFd::Shared(f) => f.as_fd(),
            ReplyFd::Owned(f) => f.as_fd(),
        }
    }
}

/// A reply message under construction: room for the header, then the payload. Handlers
/// append the payload with the wire crate's encoders; the header is filled in when sent.
/// The buffer is recycled from one command to the next (see `Core::reply_buf`).
pub(crate) struct ReplyBuf(pub(crate) Vec<u8>);

impl ReplyBuf {
    /// An empty reply in `buf` (cleared), with room for the header.
    pub(crate) fn new(mut buf: Vec<u8>) -> Self {
        buf.clear();
        Header::reserve(&mut buf);
        ReplyBuf(buf)
    }

    /// The payload built so far.
    pub(crate) fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

/// A handler's answer to one command.
pub(crate) struct Answer {
    /// The reply: a message (header room + payload), or the error to answer with.
    pub(crate) reply: Result<ReplyBuf, Error>,
    /// Descriptors sent with a successful reply.
    pub(crate) fds: Vec<ReplyFd>,
    /// What the connection does after the reply.
    pub(crate) next: Next,
}

impl Answer {
    /// A successful reply with `buf` as its message.
    pub(crate) fn reply(buf: ReplyBuf) -> Self {
        Answer { reply: Ok(buf), fds: Vec::new(), next: Next::Continue }
    }

    /// An error reply.
    pub(crate) fn error(e: Error) -> Self {
        Answer { reply: Err(e), fds: Vec::new(), next: Next::Continue }
    }

    /// The same answer with `fds` attached.
    pub(crate) fn with_fds(mut self, fds: impl IntoIterator<Item = ReplyFd>) -> Self {
        self.fds.extend(fds);
        self
    }

    /// The same answer, after which the connection is closed.
    pub(crate) fn then_close(mut self) -> Self {
        self.next = Next::Close;
        self
    }
}
