// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Waiting for a socket to become ready, with a timeout or a deadline.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::error::FrameError;

/// Waits (`poll`) until `fd` is ready for `what`, or at most `timeout`; a signal ends the
/// wait early. The caller looks again either way.
pub(super) fn wait_for(fd: BorrowedFd<'_>, what: PollFlags, timeout: Option<Duration>) -> Result<(), FrameError> {
    let mut fds = [PollFd::new(&fd, what)];
    let ts = timeout.map(|t| rustix::event::Timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ });
    match poll(&mut fds, ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(FrameError::Io(e.into())),
    }
}

/// Waits (`poll`) until `fd` is ready for `what`; past `deadline` (if any) fails with
/// `ETIMEDOUT`. A signal ends the wait early; the caller looks again either way.
pub(super) fn wait_ready(fd: BorrowedFd<'_>, what: PollFlags, deadline: Option<Instant>) -> Result<(), FrameError> {
    let left = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) {
            Some(l) => Some(l),
            None => return Err(FrameError::Io(io::Error::from_raw_os_error(libc::ETIMEDOUT))),
        },
    };
    wait_for(fd, what, left)
}
