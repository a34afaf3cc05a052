// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user lspci`: inspect any vfio-user server like `lspci` inspects a PCI function.

use std::path::Path;
use std::time::{Duration, Instant};

use vfio_user_client::{Client, Config};

use crate::inspect;
use crate::pci::{self, DumpLevel};

/// The slot the dump claims (a vfio-user device has no bus address).
const SLOT: &str = "00:00.0";

/// The default of `--deadline`: the whole inspection, however many requests it makes.
pub const DEFAULT_DEADLINE_SECS: f64 = 15.0;

/// Parses `--deadline`: positive seconds, at most a day.
pub fn parse_deadline(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

/// Connects to `socket` and prints what it serves. Without `dump`: device info, regions,
/// IRQ indexes and the decoded config space (`verbose` adds the negotiated capabilities).
/// With `dump`: a record in the format of `lspci -x` that `lspci -F` reads back, with the
/// decoded lines indented by a tab between the slot line and the hex when `verbose`.
/// Everything, connect included, ends within `deadline` (a server trickling each reply just
/// inside the request timeout would otherwise hold it for minutes).
pub fn run(socket: &Path, verbose: bool, dump: Option<DumpLevel>, deadline: Duration) -> Result<(), String> {
    let start = Instant::now();
    let timeout = Duration::from_secs(5);
    let config = Config::default().timeout(timeout).connect_timeout(timeout.min(deadline));
    let client = Client::connect(socket, config).map_err(|e| format!("{}: {e}", socket.display()))?;
    let left = deadline.saturating_sub(start.elapsed());
    client.with_deadline(left, || inspect_device(&client, verbose, dump)).map_err(|e| {
        if start.elapsed() >= deadline {
            format!("{}: gave up after the --deadline of {deadline:?}: {e}", socket.display())
        } else {
            e
        }
    })
}

fn inspect_device(client: &Client, verbose: bool, dump: Option<DumpLevel>) -> Result<(), String> {
    let mut text = String::new();
    if verbose || dump.is_none() {
        if verbose {
            text.push_str(&inspect::negotiated(client));
        }
        text.push_str(&inspect::device_info(client));
        text.push_str(&inspect::regions(client).map_err(|e| format!("region info: {e}"))?);
        text.push_str(&inspect::irqs(client).map_err(|e| format!("IRQ info: {e}"))?);
    }
    let bars = inspect::size_bars(client).map_err(|e| format!("sizing BARs: {e}"))?;
    let config = inspect::read_config(client).map_err(|e| format!("reading config space: {e}"))?;
    if verbose || dump.is_none() {
        text.push_str(&inspect::config_summary(&config, &bars));
    }
    let _ = client.shutdown();
    match dump {
        None => print!("{text}"),
        Some(level) => {
            let record = pci::dump(SLOT, &config, level);
            let (slot_line, hex) = record.split_once('\n').unwrap_or((&record, ""));
            println!("{slot_line}");
            // lspci -F skips lines that are neither a slot nor hex; a blank line would end
            // the record, so none is printed inside it.
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                println!("\t{}", l.trim_start());
            }
            print!("{hex}");
        }
    }
    Ok(())
}
