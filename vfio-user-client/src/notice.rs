// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The disconnect notice: an eventfd that becomes readable when the connection is lost, for
//! a VMM's epoll loop ([`Client::disconnect_fd`](crate::Client::disconnect_fd)).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, EventfdFlags};

/// An eventfd, signalled on disconnect and drained on a successful reconnect.
#[derive(Debug)]
pub(crate) struct DisconnectNotice {
    fd: OwnedFd,
}

impl DisconnectNotice {
    pub(crate) fn new() -> std::io::Result<DisconnectNotice> {
        Ok(DisconnectNotice { fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)? })
    }

    /// Makes the fd readable (adds 1 to its count; cannot block: the count stays far below
    /// its limit, as it is drained on every reconnect and signalled once per connection).
    pub(crate) fn signal(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Drains the count: the fd is no longer readable.
    pub(crate) fn clear(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut b);
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
