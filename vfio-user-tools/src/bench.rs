// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user bench`: latency and throughput of 4-byte config-space reads against a server,
//! beside a raw socketpair ping-pong of the same message sizes measured in the same run.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use vfio_user_client::{Config, RegionReadOp};
use vfio_user_proto::wire::{RegionAccess, PCI_CONFIG_REGION_INDEX};

use crate::stats::{us, Summary};

/// Requests in flight in the pipelined phases.
pub const DEPTH: usize = 16;
/// The sizes of a 4-byte REGION_READ request and of its reply (whole messages), which the
/// raw phases exchange.
fn msg_sizes() -> (usize, usize) {
    let a = RegionAccess::new(PCI_CONFIG_REGION_INDEX, 0, 4);
    (a.read_request().msg_size(), a.read_reply(&[0; 4]).msg_size())
}
/// Most samples kept per phase (the rest are counted, not kept).
const MAX_SAMPLES: usize = 20_000_000;

/// One phase's result.
struct Phase {
    /// Latency of one operation (lock-step) or one batch of [`DEPTH`] (pipelined).
    lat: Summary,
    ops_per_sec: f64,
}

fn measure(dur: Duration, per_iter: usize, mut op: impl FnMut() -> Result<(), String>) -> Result<Phase, String> {
    let mut samples = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let mut iters = 0u64;
    while start.elapsed() < dur {
        let t = Instant::now();
        op()?;
        if samples.len() < MAX_SAMPLES {
            samples.push(t.elapsed().as_nanos() as u64);
        }
        iters += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Phase { lat: Summary::of(&mut samples), ops_per_sec: (iters as f64 * per_iter as f64) / secs })
}

/// An echo server on a socketpair: answers every request-sized message with a reply-sized
/// one ([`msg_sizes`]), all replies to what one read brought in one write (as the vfio-user
/// server does).
fn raw_pair() -> std::io::Result<(UnixStream, std::thread::JoinHandle<()>)> {
    let (client, mut server) = UnixStream::pair()?;
    let (req_len, rep_len) = msg_sizes();
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; req_len * DEPTH * 4];
        let mut have = 0;
        let reply = vec![0u8; rep_len * DEPTH * 4];
        loop {
            let n = match server.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            have += n;
            let whole = have / req_len;
            if whole > 0 {
                if server.write_all(&reply[..whole * rep_len]).is_err() {
                    return;
                }
                buf.copy_within(whole * req_len..have, 0);
                have -= whole * req_len;
            }
        }
    });
    Ok((client, t))
}

fn row(name: &str, p: &Phase) -> String {
    format!("  {name:<34} {:>10} {:>10} {:>10} {:>12.0}", us(p.lat.p50), us(p.lat.p99), us(p.lat.p999), p.ops_per_sec)
}

fn ratio_row(a: &Phase, b: &Phase) -> String {
    let r = |x: u64, y: u64| if y == 0 { "-".to_string() } else { format!("{:.2}x", x as f64 / y as f64) };
    format!(
        "  {:<34} {:>10} {:>10} {:>10} {:>12}",
        "ratio vfio-user / raw",
        r(a.lat.p50, b.lat.p50),
        r(a.lat.p99, b.lat.p99),
        r(a.lat.p999, b.lat.p999),
        format!("{:.2}x", a.ops_per_sec / b.ops_per_sec.max(1e-9))
    )
}

/// One phase as JSON: latency percentiles in nanoseconds, throughput in operations per
/// second.
fn phase_json(p: &Phase) -> serde_json::Value {
    serde_json::json!({
        "samples": p.lat.n,
        "p50_ns": p.lat.p50,
        "p99_ns": p.lat.p99,
        "p999_ns": p.lat.p999,
        "max_ns": p.lat.max,
        "reads_per_s": p.ops_per_sec,
    })
}

/// Runs the four phases, `seconds / 4` each, and prints the table (or, with `json`, one
/// JSON object).
pub fn run(socket: &Path, seconds: f64, json: bool) -> Result<(), String> {
    if !(seconds > 0.0 && seconds < 86_400.0) {
        return Err("--seconds must be positive".into());
    }
    let phase = Duration::from_secs_f64(seconds / 4.0);
    let client = crate::connect::connect(socket, Config::default())?;
    let err = |e: vfio_user_client::Error| format!("config read: {e}");
    eprintln!("bench: 4 phases of {:.2} s each", phase.as_secs_f64());

    eprintln!("bench: [1/4] vfio-user lock-step 4-byte config reads ...");
    let mut b = [0u8; 4];
    let lock = measure(phase, 1, || client.region_read(PCI_CONFIG_REGION_INDEX, 0, &mut b).map_err(err))?;

    eprintln!("bench: [2/4] vfio-user pipelined, {DEPTH} in flight (region_read_batch) ...");
    let mut bufs = [[0u8; 4]; DEPTH];
    let piped = measure(phase, DEPTH, || {
        let mut ops: Vec<RegionReadOp<'_>> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, d)| RegionReadOp { region: PCI_CONFIG_REGION_INDEX, offset: (i as u64 % 16) * 4, data: d })
            .collect();
        client.region_read_batch(&mut ops).map_err(err)
    })?;
    let _ = client.shutdown();
    drop(client);

    let (mut raw, echo) = raw_pair().map_err(|e| format!("socketpair: {e}"))?;
    let (req_len, rep_len) = msg_sizes();
    let req = vec![0u8; req_len * DEPTH];
    let mut rep = vec![0u8; rep_len * DEPTH];
    eprintln!("bench: [3/4] raw socketpair lock-step ping-pong ({req_len}-byte request, {rep_len}-byte reply) ...");
    let raw_lock = measure(phase, 1, || {
        raw.write_all(&req[..req_len])
            .and_then(|()| raw.read_exact(&mut rep[..rep_len]))
            .map_err(|e| format!("raw: {e}"))
    })?;
    eprintln!("bench: [4/4] raw socketpair pipelined, {DEPTH} in flight ...");
    let raw_piped = measure(phase, DEPTH, || {
        raw.write_all(&req).and_then(|()| raw.read_exact(&mut rep)).map_err(|e| format!("raw: {e}"))
    })?;
    drop(raw);
    let _ = echo.join();

    if json {
        let v = serde_json::json!({
            "socket": socket.display().to_string(),
            "seconds_per_phase": phase.as_secs_f64(),
            "read_bytes": 4,
            "pipeline_depth": DEPTH,
            "lock_step": { "vfio_user": phase_json(&lock), "raw_socketpair": phase_json(&raw_lock) },
            "pipelined_per_batch": { "vfio_user": phase_json(&piped), "raw_socketpair": phase_json(&raw_piped) },
        });
        println!("{v}");
        return Ok(());
    }

    println!("4-byte config-space reads against {} ({:.2} s per phase)", socket.display(), phase.as_secs_f64());
    println!(
        "  {:<34} {:>10} {:>10} {:>10} {:>12}",
        "lock-step (latency of one read)", "p50", "p99", "p99.9", "reads/s"
    );
    println!("{}", row("vfio-user REGION_READ", &lock));
    println!("{}", row("raw socketpair ping-pong", &raw_lock));
    println!("{}", ratio_row(&lock, &raw_lock));
    println!(
        "  {:<34} {:>10} {:>10} {:>10} {:>12}",
        format!("pipelined, {DEPTH} in flight (per batch)"),
        "p50",
        "p99",
        "p99.9",
        "reads/s"
    );
    println!("{}", row("vfio-user region_read_batch", &piped));
    println!("{}", row("raw socketpair", &raw_piped));
    println!("{}", ratio_row(&piped, &raw_piped));
    Ok(())
}
