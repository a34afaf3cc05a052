// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The descriptor table as a resource: raising `RLIMIT_NOFILE` at start-up, and the budget
//! of descriptors a client's DMA mappings may keep open.
//!
//! A server holds an fd only for DMA mappings reached with `pread`/`pwrite` (libvfio-user's
//! `FILE_IO` flag, or an fd not sealed against shrinking); mmapped ones close theirs. When
//! the table is full, the kernel drops the descriptors of the next message (`MSG_CTRUNC`),
//! which the server answers with `EMFILE`; the budget keeps DMA mappings from getting there.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource};

/// Descriptors kept free for everything but DMA mappings: the sockets, the descriptors of
/// one message in flight, eventfds of interrupts, files the device opens.
const RESERVE: usize = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as daemons do (the usual soft limit,
/// 1024, would otherwise bound a server's open DMA mappings and eventfds), and returns the
/// new soft limit. A server binary calls it once at start-up; the library never changes
/// the process's limits by itself. With an unlimited hard limit the soft one is left as it
/// is (Linux's `nr_open` caps it anyway).
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum) {
        if cur < max {
            lim.current = Some(max);
            setrlimit(Resource::Nofile, lim)?;
        }
    }
    Ok(lim.current.unwrap_or(u64::MAX))
}

/// How many more descriptors the DMA mappings of a client may keep open: the soft
/// `RLIMIT_NOFILE` less the descriptors open now, less [`RESERVE`] and `extra` (eventfds the
/// client may pass, descriptors of one message).
pub(crate) fn dma_fd_budget(extra: usize) -> usize {
    let soft = getrlimit(Resource::Nofile).current.map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    soft.saturating_sub(open).saturating_sub(RESERVE).saturating_sub(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_the_budget_is_below_it() {
        let soft = raise_fd_limit().unwrap();
        let lim = getrlimit(Resource::Nofile);
        assert_eq!(lim.current, Some(soft));
        assert!(lim.maximum.is_none_or(|m| m == soft));
        let budget = dma_fd_budget(10) as u64;
        assert!(budget < soft, "{budget} {soft}");
        assert_eq!(dma_fd_budget(usize::MAX), 0);
    }
}
