// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Counters of the events a VMM wants to see when a server misbehaves or is slow. Only
//! rare events are counted, so the request fast path pays nothing.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a client's counters (since it was created, across reconnects).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests that timed out.
    pub timeouts: u64,
    /// Late replies to requests that had timed out, dropped.
    pub late_replies: u64,
    /// Error replies to NO_REPLY commands (which the protocol says are not sent), dropped.
    pub posted_errors: u64,
    /// REGION_WRITE_MULTI messages sent.
    pub write_multi_messages: u64,
    /// Posted writes carried by REGION_WRITE_MULTI messages.
    pub write_multi_entries: u64,
    /// DMA_READ / DMA_WRITE requests from the server served successfully.
    pub dma_served: u64,
    /// DMA_READ / DMA_WRITE (or other) server commands refused with an error reply.
    pub dma_refused: u64,
    /// Connections closed because the server broke the protocol.
    pub violations: u64,
    /// Successful reconnects.
    pub reconnects: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) timeouts: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) posted_errors: AtomicU64,
    pub(crate) write_multi_messages: AtomicU64,
    pub(crate) write_multi_entries: AtomicU64,
    pub(crate) dma_served: AtomicU64,
    pub(crate) dma_refused: AtomicU64,
    pub(crate) violations: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            timeouts: g(&self.timeouts),
            late_replies: g(&self.late_replies),
            posted_errors: g(&self.posted_errors),
            write_multi_messages: g(&self.write_multi_messages),
            write_multi_entries: g(&self.write_multi_entries),
            dma_served: g(&self.dma_served),
            dma_refused: g(&self.dma_refused),
            violations: g(&self.violations),
            reconnects: g(&self.reconnects),
        }
    }
}
