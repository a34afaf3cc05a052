// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user migrate`: moves a device's state from one server to another with
//! `vfio_user_client::migrate`, printing each step as it happens.

use std::path::Path;
use std::time::Instant;

use vfio_user_client::{migrate, Config, MigState, MigrateOptions, Progress};
use vfio_user_proto::Command;

/// Migrates the device at `from` into the one at `to`; `resume` puts the destination in
/// RUNNING at the end (otherwise it stays in STOP). Each step is printed as it happens, with
/// the bytes moved and the rate; `json` prints one JSON object per line instead.
pub fn run(from: &Path, to: &Path, rounds: usize, resume: bool, json: bool) -> Result<(), String> {
    let connect = |p: &Path| crate::connect::connect(p, Config::default());
    let src = connect(from)?;
    let dst = connect(to)?;
    for (what, c) in [("source", &src), ("destination", &dst)] {
        let state = c.migration_state().map_err(|e| format!("{what}: device cannot migrate: {e}"))?;
        if json {
            println!("{}", serde_json::json!({ "event": "connected", "side": what, "state": state.to_string() }));
        } else {
            println!("{what}: device {state}");
        }
    }
    // The tool has no guest memory of its own, so there are no DMA mappings to log.
    let opts = MigrateOptions { max_precopy_rounds: rounds, dirty_page_size: None, resume, ..Default::default() };
    let t0 = Instant::now();
    let mut last = t0;
    let mut total = 0u64;
    let report = migrate(&src, &dst, &opts, |p| {
        let now = Instant::now();
        let (t, step) = (now.duration_since(t0).as_secs_f64(), now.duration_since(last).as_secs_f64());
        last = now;
        let bytes = match *p {
            Progress::PreCopyRound { bytes, .. } | Progress::StopCopyDone { bytes } => Some(bytes),
            _ => None,
        };
        total += bytes.unwrap_or(0);
        let rate = bytes.map(|b| b as f64 / step.max(1e-9));
        if json {
            let mut v = serde_json::json!({ "event": event_name(p), "t_s": t, "message": p.to_string() });
            if let Progress::PreCopyRound { round, dirty_pages, .. } = *p {
                v["round"] = round.into();
                v["dirty_pages"] = dirty_pages.into();
            }
            if let (Some(b), Some(r)) = (bytes, rate) {
                v["bytes"] = b.into();
                v["total_bytes"] = total.into();
                v["rate_bytes_per_s"] = r.into();
            }
            println!("{v}");
        } else {
            match rate {
                Some(r) => println!("[{t:8.3} s] {p} in {:.3} ms ({}/s); {total} bytes so far", step * 1e3, size(r)),
                None => println!("[{t:8.3} s] {p}"),
            }
        }
    })
    .map_err(|e| explain(&e))?;
    let secs = t0.elapsed().as_secs_f64();
    let bytes = report.precopy_bytes + report.stopcopy_bytes;
    let (s, d) = (src.migration_state(), dst.migration_state());
    let show = |r: Result<MigState, vfio_user_client::Error>| r.map_or_else(|e| e.to_string(), |s| s.to_string());
    if json {
        println!(
            "{}",
            serde_json::json!({
                "event": "migrated",
                "t_s": secs,
                "precopy_rounds": report.precopy_rounds,
                "precopy_bytes": report.precopy_bytes,
                "stopcopy_bytes": report.stopcopy_bytes,
                "rate_bytes_per_s": bytes as f64 / secs.max(1e-9),
                "downtime_ms": report.downtime.as_secs_f64() * 1e3,
                "source_state": show(s),
                "destination_state": show(d),
            })
        );
    } else {
        println!(
            "migrated in {secs:.3} s: {} pre-copy round(s), {} bytes pre-copy, {} bytes stop-copy ({}/s overall), downtime {:.3} ms",
            report.precopy_rounds,
            report.precopy_bytes,
            report.stopcopy_bytes,
            size(bytes as f64 / secs.max(1e-9)),
            report.downtime.as_secs_f64() * 1e3
        );
        println!("source: device {}, destination: device {}", show(s), show(d));
    }
    let _ = src.shutdown();
    let _ = dst.shutdown();
    Ok(())
}

/// The `event` of a progress step in `--json` output.
fn event_name(p: &Progress) -> &'static str {
    match p {
        Progress::Started { .. } => "started",
        Progress::PreCopyRound { .. } => "pre_copy_round",
        Progress::Stopped => "stopped",
        Progress::StopCopyDone { .. } => "stop_copy_done",
        _ => "done",
    }
}

/// A byte count with a binary unit.
fn size(bytes: f64) -> String {
    match bytes {
        b if b >= (1u64 << 30) as f64 => format!("{:.2} GiB", b / (1u64 << 30) as f64),
        b if b >= (1u64 << 20) as f64 => format!("{:.2} MiB", b / (1u64 << 20) as f64),
        b if b >= 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b => format!("{b:.0} B"),
    }
}

/// The message for a failed migration, with the likely cause of the common failure.
fn explain(e: &vfio_user_client::Error) -> String {
    match e {
        vfio_user_client::Error::Server { command: Command::MigDataWrite, errno: libc::EINVAL } => format!(
            "migration failed: {e}. The destination refused the data: servers that resend their whole state \
             at STOP_COPY (libvfio-user's sample server, `serve lvu-server`) accept one copy of it only, so \
             PRE_COPY data followed by the STOP_COPY data is too much. Migrate with --rounds 0."
        ),
        e => format!("migration failed: {e}"),
    }
}
