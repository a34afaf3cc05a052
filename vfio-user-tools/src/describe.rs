// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One-line, human-readable descriptions of vfio-user messages, and their JSON form.

use std::fmt::Write;

use serde_json::{json, Value};
use vfio_user_proto::request::FeatureRequest;
use vfio_user_proto::{decode_reply, decode_request, DecodeLimits, Header, IrqData, Reply, Request};

use crate::errno;

/// Decode limits wide enough to describe anything a frame can hold: a tracer reports
/// what was sent, it does not enforce a receiver's limits.
const WIDE: DecodeLimits = DecodeLimits { max_data_xfer_size: u32::MAX, max_msg_fds: 253 };

fn hex_prefix(data: &[u8]) -> String {
    let mut s = String::new();
    for b in data.iter().take(16) {
        let _ = write!(s, "{b:02x}");
    }
    if data.len() > 16 {
        s.push('…');
    }
    s
}

fn describe_request(r: &Request<'_>) -> String {
    match r {
        Request::Version(v) => format!("version {}.{} {}", v.major, v.minor, String::from_utf8_lossy(v.json)),
        Request::DmaMap { map, fd } => format!(
            "addr={:#x} size={:#x} offset={:#x} flags={:#x}{}",
            map.addr,
            map.size,
            map.offset,
            map.flags,
            if *fd { " fd" } else { " (message DMA)" }
        ),
        Request::DmaUnmap(r) => {
            let (unmap, bitmap) = r.to_wire();
            format!(
                "addr={:#x} size={:#x} flags={:#x}{}",
                unmap.addr,
                unmap.size,
                unmap.flags,
                bitmap.map(|b| format!(" bitmap pgsize={:#x} size={}", b.pgsize, b.size)).unwrap_or_default()
            )
        }
        Request::DeviceGetInfo(i) => format!("argsz={}", i.argsz),
        Request::DeviceGetRegionInfo(i) => format!("index={} argsz={}", i.index, i.argsz),
        Request::DeviceGetRegionIoFds(i) => format!("index={} argsz={}", i.index, i.argsz),
        Request::DeviceGetIrqInfo(i) => format!("index={}", i.index),
        Request::DeviceSetIrqs { set, action, data } => format!(
            "index={} start={} count={} {:?} {}",
            set.index,
            set.start,
            set.count,
            action,
            match data {
                IrqData::None => "none".to_string(),
                IrqData::Bool(b) => format!("bool={}", hex_prefix(b)),
                IrqData::Eventfd(n) => format!("eventfds={n}"),
            }
        ),
        Request::RegionRead(a) => format!("region={} offset={:#x} count={}", a.region, a.offset, a.count),
        Request::RegionWrite(a, d) => {
            format!("region={} offset={:#x} count={} data={}", a.region, a.offset, a.count, hex_prefix(d))
        }
        Request::DmaRead(a) => format!("addr={:#x} count={}", a.addr, a.count),
        Request::DmaWrite(a, d) => format!("addr={:#x} count={} data={}", a.addr, a.count, hex_prefix(d)),
        Request::DeviceReset => String::new(),
        Request::RegionWriteMulti(e) => format!("{} writes", e.len()),
        Request::DeviceFeature(f, feat) => match feat {
            FeatureRequest::Probe { feature, get, set } => format!("probe feature={feature} get={get} set={set}"),
            FeatureRequest::MigStateSet(s) => format!("set MIG_DEVICE_STATE={s}"),
            FeatureRequest::DmaLoggingStart { control, ranges } => {
                format!("set DMA_LOGGING_START page_size={:#x} ranges={}", control.page_size, ranges.len())
            }
            FeatureRequest::DmaLoggingReport(r) => {
                format!("get DMA_LOGGING_REPORT iova={:#x} length={:#x} page_size={:#x}", r.iova, r.length, r.page_size)
            }
            other => format!("{other:?} argsz={}", f.argsz),
        },
        Request::MigDataRead(m) => format!("size={}", m.size),
        Request::MigDataWrite(m, _) => format!("size={}", m.size),
    }
}

fn describe_reply(r: &Reply<'_>) -> String {
    match r {
        Reply::Version(v) => format!("version {}.{} {}", v.major, v.minor, String::from_utf8_lossy(v.json)),
        Reply::DeviceGetInfo(i) => {
            format!("flags={:#x} regions={} irqs={}", i.flags, i.num_regions, i.num_irqs)
        }
        Reply::DeviceGetRegionInfo(i, _) => format!(
            "index={} flags={:#x} size={:#x} offset={:#x} argsz={} cap_offset={}",
            i.index, i.flags, i.size, i.offset, i.argsz, i.cap_offset
        ),
        Reply::DeviceGetRegionIoFds(r, e) => format!("index={} count={} entries={}", r.index, r.count, e.len()),
        Reply::DeviceGetIrqInfo(i) => format!("index={} flags={:#x} count={}", i.index, i.flags, i.count),
        Reply::RegionRead(a, d) => format!("count={} data={}", a.count, hex_prefix(d)),
        Reply::DmaRead(a, d) => format!("count={} data={}", a.count, hex_prefix(d)),
        Reply::MigDataRead(m, _) => format!("size={}", m.size),
        Reply::DeviceFeature(f, d) => format!("flags={:#x} data={}", f.flags, hex_prefix(d)),
        Reply::RegionWriteMulti(w) => format!("completed={}", w.wr_cnt),
        Reply::DmaUnmap(_, Some((b, _))) => format!("bitmap pgsize={:#x} size={}", b.pgsize, b.size),
        _ => String::new(),
    }
}

/// A one-line description of a message: command name, type, id, size, fds and fields.
pub fn describe(h: &Header, payload: &[u8], nfds: usize) -> String {
    let name = h.cmd().map(|c| c.name().to_string()).unwrap_or_else(|_| format!("command {}", h.command));
    let mut line = format!("#{:<5} {}", h.msg_id, name);
    let detail = if h.is_command() {
        let tag = if h.no_reply() { " (no reply)" } else { "" };
        let body = match decode_request(h, payload, nfds, &WIDE) {
            Ok(r) => describe_request(&r),
            Err(e) => format!("undecodable: {e}"),
        };
        format!("{tag} {body}")
    } else if h.is_reply() && h.is_error() {
        format!(" ERROR {}", errno::describe(h.error as i32))
    } else if h.is_reply() {
        match decode_reply(h, payload, nfds) {
            Ok(r) => format!(" reply {}", describe_reply(&r)),
            Err(e) => format!(" reply undecodable: {e}"),
        }
    } else {
        format!(" unknown type flags={:#x}", h.flags)
    };
    line.push_str(&detail);
    let _ = write!(line, " [{} bytes", h.msg_size);
    if nfds > 0 {
        let _ = write!(line, ", {nfds} fd{}", if nfds == 1 { "" } else { "s" });
    }
    line.push(']');
    line
}

/// The JSON-lines form of a message.
pub fn to_json(t_ms: f64, dir: &str, h: &Header, payload: &[u8], nfds: usize) -> Value {
    json!({
        "t_ms": t_ms,
        "dir": dir,
        "msg_id": h.msg_id,
        "command": h.command,
        "name": h.cmd().map(|c| c.name()).unwrap_or("unknown"),
        "type": if h.is_command() { "command" } else if h.is_reply() { "reply" } else { "unknown" },
        "no_reply": h.no_reply(),
        "error": h.is_error().then(|| json!({"errno": h.error, "name": errno::name(h.error as i32)})),
        "msg_size": h.msg_size,
        "fds": nfds,
        "summary": describe(h, payload, nfds),
        "header_hex": hex(vm_memory::ByteValued::as_slice(h)),
        "payload_hex": hex(payload),
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use vfio_user_proto::wire::RegionAccess;
    use vfio_user_proto::Command;
    use vm_memory::ByteValued;

    use super::*;

    #[test]
    fn describes_commands_replies_and_errors() {
        let a = RegionAccess { offset: 0x10, region: 7, count: 4 };
        let p = a.as_slice().to_vec();
        let h = Header::command(3, Command::RegionRead, p.len());
        let s = describe(&h, &p, 0);
        assert!(s.contains("VFIO_USER_REGION_READ") && s.contains("region=7 offset=0x10 count=4"), "{s}");
        let e = h.error_reply(libc::EINVAL);
        assert!(describe(&e, &[], 0).contains("ERROR EINVAL (22)"));
        let mut rp = p.clone();
        rp.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let r = h.reply(rp.len());
        assert!(describe(&r, &rp, 0).contains("data=deadbeef"));
        let j = to_json(1.5, "c2s", &e, &[], 0);
        assert_eq!(j["error"]["name"], "EINVAL");
        assert_eq!(j["dir"], "c2s");
    }

    #[test]
    fn undecodable_messages_are_described_not_rejected() {
        let h = Header::command(1, Command::DmaMap, 3);
        assert!(describe(&h, &[1, 2, 3], 0).contains("undecodable"));
        let mut u = Header::command(1, Command::DeviceReset, 0);
        u.command = 99;
        assert!(describe(&u, &[], 0).contains("command 99"));
    }
}
