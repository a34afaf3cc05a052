// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A whole live migration of one device between two servers, driven by two [`Client`]s:
//! the source device iterates in PRE_COPY while it keeps running (when it supports it),
//! stops in STOP_COPY, and its state streams into the destination in RESUMING, which then
//! goes to STOP (where it validates what it loaded) and RUNNING. Dirty logging runs on the
//! source meanwhile, and the pages the device wrote are handed back to the VMM.
//!
//! Data is streamed: every chunk read from the source is written to the destination at
//! once, so memory use is one chunk whatever the device's state size.
//!
//! The VMM owns everything else: guest memory (the destination's DMA mappings, which it
//! sets up itself before or after), interrupts (it registers its eventfds with the
//! destination), and what to do with the dirty pages (copy them again).
//!
//! ```no_run
//! use vfio_user_client::{migrate, Client, MigrateOptions};
//! # fn f(src: &Client, dst: &Client) -> vfio_user_client::Result<()> {
//! let report = migrate(src, dst, &MigrateOptions::default(), |p| eprintln!("{p}"))?;
//! for r in &report.dirty {
//!     println!("{:#x}+{:#x}: {} dirty pages", r.iova, r.size, r.dirty_pages());
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use vfio_user_proto::wire::{MIGRATION_PRE_COPY, MIGRATION_STOP_COPY};
use vfio_user_proto::MigState;

use crate::client::Client;
use crate::error::{Error, Result};

/// How [`migrate`] proceeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Largest MIG_DATA_READ / WRITE, further capped by both connections' limits.
    pub chunk: usize,
    /// Most PRE_COPY rounds before the device is stopped.
    pub max_precopy_rounds: usize,
    /// PRE_COPY ends early when a round yields fewer bytes than this.
    pub precopy_converged_below: usize,
    /// Dirty logging on the source at this page size (`None`: no logging; the VMM tracks
    /// device writes itself or does not care).
    pub dirty_page_size: Option<u64>,
    /// Put the destination in RUNNING at the end (otherwise it is left in STOP).
    pub resume: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            chunk: 1 << 20,
            max_precopy_rounds: 8,
            precopy_converged_below: 64 << 10,
            dirty_page_size: Some(4096),
            resume: true,
        }
    }
}

/// The dirty pages of one DMA mapping of the source, accumulated over the migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyRange {
    /// The mapping's DMA address.
    pub iova: u64,
    /// Its size.
    pub size: u64,
    /// Bytes per bit.
    pub page_size: u64,
    /// Page `p` of the range is bit `p % 64` of word `p / 64`.
    pub bitmap: Vec<u64>,
}

impl DirtyRange {
    /// How many pages are dirty.
    pub fn dirty_pages(&self) -> u64 {
        self.bitmap.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The DMA addresses of the dirty pages.
    pub fn dirty_addresses(&self) -> impl Iterator<Item = u64> + '_ {
        self.bitmap.iter().enumerate().flat_map(move |(i, &w)| {
            (0..64).filter(move |b| w & (1 << b) != 0).map(move |b| self.iova + (i as u64 * 64 + b) * self.page_size)
        })
    }
}

/// A step of [`migrate`], for progress output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The source is in PRE_COPY and the destination in RESUMING.
    Started {
        /// Whether the device iterates in PRE_COPY.
        pre_copy: bool,
    },
    /// One PRE_COPY round done.
    PreCopyRound {
        /// Round number, from 1.
        round: usize,
        /// Bytes streamed in this round.
        bytes: u64,
        /// Pages the device dirtied since the previous report.
        dirty_pages: u64,
    },
    /// The source device is stopped (STOP_COPY); its final state is streaming.
    Stopped,
    /// The final state was streamed.
    StopCopyDone {
        /// Bytes streamed in STOP_COPY.
        bytes: u64,
    },
    /// The destination loaded the state (and runs, if asked).
    Done,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Started { pre_copy: true } => write!(f, "source in PRE_COPY, destination in RESUMING"),
            Progress::Started { pre_copy: false } => write!(f, "destination in RESUMING (no PRE_COPY support)"),
            Progress::PreCopyRound { round, bytes, dirty_pages } => {
                write!(f, "pre-copy round {round}: {bytes} bytes, {dirty_pages} pages dirtied")
            }
            Progress::Stopped => write!(f, "source stopped (STOP_COPY)"),
            Progress::StopCopyDone { bytes } => write!(f, "final state: {bytes} bytes"),
            Progress::Done => write!(f, "destination loaded the state"),
        }
    }
}

/// What a migration did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// PRE_COPY rounds run.
    pub precopy_rounds: usize,
    /// Bytes streamed in PRE_COPY.
    pub precopy_bytes: u64,
    /// Bytes streamed in STOP_COPY.
    pub stopcopy_bytes: u64,
    /// The pages the source device wrote while logging ran, per source DMA mapping
    /// (empty without logging).
    pub dirty: Vec<DirtyRange>,
    /// From the source stopping to the destination loaded (and running, if asked).
    pub downtime: Duration,
}

/// A migration in progress, step by step; [`migrate`] runs all the steps.
pub struct Migration<'a> {
    src: &'a Client,
    dst: &'a Client,
    opts: MigrateOptions,
    pre_copy: bool,
    buf: Vec<u8>,
    report: MigrationReport,
}

impl<'a> Migration<'a> {
    /// Checks that both devices can migrate, starts dirty logging on the source, puts the
    /// destination in RESUMING and the source in PRE_COPY (if it supports it). On error
    /// both devices are put back where they were, as far as possible.
    pub fn start(src: &'a Client, dst: &'a Client, opts: &MigrateOptions) -> Result<Self> {
        let flags = src.migration_flags()?;
        if flags & MIGRATION_STOP_COPY == 0 {
            return Err(Error::InvalidInput("the source device does not support STOP_COPY"));
        }
        if dst.migration_flags()? & MIGRATION_STOP_COPY == 0 {
            return Err(Error::InvalidInput("the destination device does not support STOP_COPY"));
        }
        let chunk = opts.chunk.min(src.chunk(&src.transport())).min(dst.chunk(&dst.transport())).max(1);
        let mut m = Migration {
            src,
            dst,
            opts: opts.clone(),
            pre_copy: flags & MIGRATION_PRE_COPY != 0,
            buf: vec![0; chunk],
            report: MigrationReport::default(),
        };
        if let Some(ps) = opts.dirty_page_size {
            let chosen = src.start_dma_logging(ps, &[])?;
            m.opts.dirty_page_size = Some(chosen);
            m.report.dirty = src
                .dma_mappings()
                .iter()
                .map(|d| DirtyRange {
                    iova: d.iova,
                    size: d.size,
                    page_size: chosen,
                    bitmap: vec![0; d.size.div_ceil(chosen).div_ceil(64) as usize],
                })
                .collect();
        }
        let started = dst.set_migration_state(MigState::Resuming).and_then(|()| {
            if m.pre_copy {
                src.set_migration_state(MigState::PreCopy)
            } else {
                Ok(())
            }
        });
        if let Err(e) = started {
            m.abort();
            return Err(e);
        }
        Ok(m)
    }

    /// Whether the source iterates in PRE_COPY.
    pub fn pre_copy(&self) -> bool {
        self.pre_copy
    }

    /// Streams what the source has in a state until it has no more for now; returns the
    /// bytes streamed.
    fn stream(&mut self) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let n = self.src.read_migration_data(&mut self.buf)?;
            if n > 0 {
                self.dst.write_migration_data(&self.buf[..n])?;
            }
            total += n as u64;
            if n < self.buf.len() {
                return Ok(total);
            }
        }
    }

    /// Collects the source's dirty pages into the report; returns how many were new.
    fn collect_dirty(&mut self) -> Result<u64> {
        let Some(ps) = self.opts.dirty_page_size else { return Ok(0) };
        let mut pages = 0;
        for r in &mut self.report.dirty {
            let words = self.src.report_dma_logging(r.iova, r.size, ps)?;
            for (acc, w) in r.bitmap.iter_mut().zip(words) {
                pages += u64::from(w.count_ones());
                *acc |= w;
            }
        }
        Ok(pages)
    }

    /// One PRE_COPY round: stream what the running device has, then collect the pages it
    /// dirtied. Returns the bytes streamed and how many pages were dirty (both 0 without
    /// PRE_COPY support).
    pub fn precopy_round(&mut self) -> Result<(u64, u64)> {
        if !self.pre_copy {
            return Ok((0, 0));
        }
        let bytes = self.stream()?;
        self.report.precopy_rounds += 1;
        self.report.precopy_bytes += bytes;
        Ok((bytes, self.collect_dirty()?))
    }

    /// Stops the source (STOP_COPY), streams its final state, collects the last dirty pages
    /// and stops logging, takes the source to STOP and the destination to STOP (it
    /// validates the state there) and, if asked, RUNNING.
    pub fn finish(mut self, progress: &mut dyn FnMut(&Progress)) -> Result<MigrationReport> {
        let stopped_at = Instant::now();
        let r = (|| {
            self.src.set_migration_state(MigState::StopCopy)?;
            progress(&Progress::Stopped);
            let bytes = self.stream()?;
            self.report.stopcopy_bytes = bytes;
            progress(&Progress::StopCopyDone { bytes });
            // The device is stopped: this report is the last of its writes.
            self.collect_dirty()?;
            if self.opts.dirty_page_size.is_some() {
                self.src.stop_dma_logging()?;
            }
            self.src.set_migration_state(MigState::Stop)?;
            self.dst.set_migration_state(MigState::Stop)?;
            if self.opts.resume {
                self.dst.set_migration_state(MigState::Running)?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            self.abort();
            return Err(e);
        }
        self.report.downtime = stopped_at.elapsed();
        progress(&Progress::Done);
        Ok(std::mem::take(&mut self.report))
    }

    /// Best effort after a failure: the source back to RUNNING (the guest goes on where it
    /// was), logging stopped, the destination out of RESUMING.
    fn abort(&mut self) {
        let _ = self.src.set_migration_state(MigState::Running);
        if self.opts.dirty_page_size.is_some() {
            let _ = self.src.stop_dma_logging();
        }
        if !matches!(self.dst.migration_state(), Ok(MigState::Running | MigState::Stop)) {
            let _ = self.dst.reset();
        }
    }
}

/// Migrates the device behind `src` into the one behind `dst`: PRE_COPY rounds while the
/// source runs (until a round yields less than `precopy_converged_below` or
/// `max_precopy_rounds` ran), then STOP_COPY, then the destination to STOP and RUNNING.
/// `progress` is called at each step.
pub fn migrate(
    src: &Client,
    dst: &Client,
    opts: &MigrateOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<MigrationReport> {
    let mut m = Migration::start(src, dst, opts)?;
    progress(&Progress::Started { pre_copy: m.pre_copy });
    if m.pre_copy {
        for round in 1..=opts.max_precopy_rounds {
            let (bytes, dirty_pages) = match m.precopy_round() {
                Ok(r) => r,
                Err(e) => {
                    m.abort();
                    return Err(e);
                }
            };
            progress(&Progress::PreCopyRound { round, bytes, dirty_pages });
            if (bytes as usize) < opts.precopy_converged_below {
                break;
            }
        }
    }
    m.finish(&mut progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_range_counts_and_addresses() {
        let r = DirtyRange { iova: 0x10000, size: 0x100000, page_size: 0x1000, bitmap: vec![0b1001, 1 << 63, 0, 0] };
        assert_eq!(r.dirty_pages(), 3);
        assert_eq!(r.dirty_addresses().collect::<Vec<_>>(), vec![0x10000, 0x13000, 0x10000 + 127 * 0x1000]);
    }

    #[test]
    fn progress_reads_well() {
        assert_eq!(
            Progress::PreCopyRound { round: 2, bytes: 10, dirty_pages: 3 }.to_string(),
            "pre-copy round 2: 10 bytes, 3 pages dirtied"
        );
        assert_eq!(Progress::StopCopyDone { bytes: 8 }.to_string(), "final state: 8 bytes");
    }
}
