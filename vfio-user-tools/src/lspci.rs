// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user lspci`: inspect any vfio-user server like `lspci` inspects a PCI function.

use std::path::Path;
use std::time::Duration;

use vfio_user_client::{Client, Config};

use crate::inspect;
use crate::pci::{self, DumpLevel};

/// The slot the dump claims (a vfio-user device has no bus address).
const SLOT: &str = "00:00.0";

/// Connects to `socket` and prints what it serves. Without `dump`: device info, regions,
/// IRQ indexes and the decoded config space (`verbose` adds the negotiated capabilities).
/// With `dump`: a record in the format of `lspci -x` that `lspci -F` reads back, with the
/// decoded lines indented by a tab between the slot line and the hex when `verbose`.
pub fn run(socket: &Path, verbose: bool, dump: Option<DumpLevel>, json: bool) -> Result<(), String> {
    let client = crate::connect::connect(socket, Config::default().timeout(Duration::from_secs(5)))?;
    if json {
        let v = to_json(&client)?;
        let _ = client.shutdown();
        println!("{v}");
        return Ok(());
    }
    let mut text = String::new();
    if verbose || dump.is_none() {
        if verbose {
            text.push_str(&inspect::negotiated(&client));
        }
        text.push_str(&inspect::device_info(&client));
        text.push_str(&inspect::regions(&client).map_err(|e| format!("region info: {e}"))?);
        text.push_str(&inspect::irqs(&client).map_err(|e| format!("IRQ info: {e}"))?);
    }
    let bars = inspect::size_bars(&client).map_err(|e| format!("sizing BARs: {e}"))?;
    let config = inspect::read_config(&client).map_err(|e| format!("reading config space: {e}"))?;
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

/// Everything `lspci` shows, as one JSON object: the negotiated limits, device info, regions
/// (with sparse areas), IRQ indexes, and config space (IDs, sized BARs, capabilities, and
/// the bytes in hex).
fn to_json(client: &Client) -> Result<serde_json::Value, String> {
    let n = client.negotiated();
    let d = client.device_info();
    let mut regions = Vec::new();
    for r in client.regions().map_err(|e| format!("region info: {e}"))? {
        let areas: Vec<_> =
            r.sparse_mmap_areas().iter().map(|a| serde_json::json!({ "offset": a.offset, "size": a.size })).collect();
        regions.push(serde_json::json!({
            "index": r.index, "name": inspect::region_name(r.index), "size": r.size, "offset": r.offset,
            "flags": r.flags, "readable": r.readable(), "writable": r.writable(), "mappable": r.mappable(),
            "sparse_mmap_areas": areas,
        }));
    }
    let mut irqs = Vec::new();
    for i in 0..d.num_irqs {
        let info = client.irq_info(i).map_err(|e| format!("IRQ info: {e}"))?;
        irqs.push(
            serde_json::json!({ "index": i, "name": inspect::irq_name(i), "flags": info.flags, "count": info.count }),
        );
    }
    let bars = inspect::size_bars(client).map_err(|e| format!("sizing BARs: {e}"))?;
    let config = inspect::read_config(client).map_err(|e| format!("reading config space: {e}"))?;
    let word = |at: usize| config.get(at..at + 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let class = config.get(9..12).map_or(0, |b| u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16);
    let bars: Vec<_> = bars
        .iter()
        .map(|b| {
            serde_json::json!({ "index": b.index, "io": b.io, "is_64": b.is_64, "prefetchable": b.prefetchable,
                "address": b.address, "size": b.size })
        })
        .collect();
    let caps: Vec<_> = pci::capabilities(&config)
        .into_iter()
        .map(|(at, id)| serde_json::json!({ "offset": at, "id": id, "name": pci::cap_name(id) }))
        .collect();
    let ext: Vec<_> = pci::ext_capabilities(&config)
        .into_iter()
        .map(|(at, id, ver)| serde_json::json!({ "offset": at, "id": id, "version": ver, "name": pci::ext_cap_name(id) }))
        .collect();
    let hex: String = config.iter().map(|b| format!("{b:02x}")).collect();
    Ok(serde_json::json!({
        "negotiated": {
            "major": n.major, "minor": n.minor, "max_data_xfer_size": n.peer.max_data_xfer_size,
            "max_msg_fds": n.peer.max_msg_fds, "write_multiple": n.peer.write_multiple, "twin_socket": n.twin_socket,
        },
        "device": {
            "flags": d.flags, "num_regions": d.num_regions, "num_irqs": d.num_irqs,
            "resettable": d.resettable(), "pci": d.is_pci(),
        },
        "regions": regions,
        "irqs": irqs,
        "config": {
            "vendor": word(0), "device": word(2), "class": class,
            "subsystem_vendor": word(0x2c), "subsystem": word(0x2e),
            "bars": bars, "capabilities": caps, "extended_capabilities": ext, "hex": hex,
        },
    }))
}
