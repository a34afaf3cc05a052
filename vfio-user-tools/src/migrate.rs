// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user migrate`: moves a device's state from one server to another with
//! `vfio_user_client::migrate`, printing each step as it happens.

use std::path::Path;
use std::time::Instant;

use vfio_user_client::{migrate, Client, Config, MigState, MigrateOptions};

/// Migrates the device at `from` into the one at `to`; `resume` puts the destination in
/// RUNNING at the end (otherwise it stays in STOP).
pub fn run(from: &Path, to: &Path, rounds: usize, resume: bool) -> Result<(), String> {
    let connect = |p: &Path| Client::connect(p, Config::default()).map_err(|e| format!("{}: {e}", p.display()));
    let src = connect(from)?;
    let dst = connect(to)?;
    for (what, c) in [("source", &src), ("destination", &dst)] {
        let state = c.migration_state().map_err(|e| format!("{what}: device cannot migrate: {e}"))?;
        println!("{what}: device {state}");
    }
    // The tool has no guest memory of its own, so there are no DMA mappings to log.
    let opts = MigrateOptions { max_precopy_rounds: rounds, dirty_page_size: None, resume, ..Default::default() };
    let t0 = Instant::now();
    let report = migrate(&src, &dst, &opts, |p| println!("[{:8.3} s] {p}", t0.elapsed().as_secs_f64()))
        .map_err(|e| format!("migration failed: {e}"))?;
    println!(
        "migrated in {:.3} s: {} pre-copy round(s), {} bytes pre-copy, {} bytes stop-copy, downtime {:.3} ms",
        t0.elapsed().as_secs_f64(),
        report.precopy_rounds,
        report.precopy_bytes,
        report.stopcopy_bytes,
        report.downtime.as_secs_f64() * 1e3
    );
    let (s, d) = (src.migration_state(), dst.migration_state());
    println!(
        "source: device {}, destination: device {}",
        s.map_or_else(|e| e.to_string(), |s| s.to_string()),
        d.map_or_else(|e| e.to_string(), |s: MigState| s.to_string())
    );
    let _ = src.shutdown();
    let _ = dst.shutdown();
    Ok(())
}
