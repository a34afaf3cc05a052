// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Real traffic: every message of a whole session between libvfio-user's sample client and
//! sample server (commit 7e7a0a6: negotiation, regions, DMA maps with fds, message DMA both
//! ways, IRQs, dirty logging, live migration), captured with `vfio-user trace --json`,
//! decodes. The capture is data only (headers and payloads as hex).

use std::collections::BTreeSet;

use vfio_user_proto::{decode_reply, decode_request, Command, DecodeLimits, Header};
use vm_memory::ByteValued;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn libvfio_user_sample_session_decodes() {
    let text = include_str!("data/libvfio-user-sample-session.jsonl");
    let limits = DecodeLimits { max_data_xfer_size: 1 << 20, max_msg_fds: 32 };
    let mut seen = BTreeSet::new();
    let mut messages = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut h = Header::default();
        h.as_mut_slice().copy_from_slice(&unhex(v["header_hex"].as_str().unwrap()));
        let payload = unhex(v["payload_hex"].as_str().unwrap());
        let nfds = v["fds"].as_u64().unwrap() as usize;
        assert_eq!(h.payload_len(), Some(payload.len()));
        let cmd = Command::try_from(h.command).unwrap();
        if h.is_command() {
            let r = decode_request(&h, &payload, nfds, &limits);
            assert!(r.is_ok(), "{} {cmd} refused: {r:?}", v["dir"]);
            seen.insert((cmd as u16, "command"));
        } else if !h.is_error() {
            let r = decode_reply(&h, &payload, nfds);
            assert!(r.is_ok(), "{} {cmd} reply refused: {r:?}", v["dir"]);
            seen.insert((cmd as u16, "reply"));
        }
        messages += 1;
    }
    assert!(messages > 200);
    // The session exercises these commands, request and reply each (MIG_DATA_WRITE goes to
    // the migration destination, which the sample client reaches directly).
    for cmd in [1u16, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 16, 17] {
        assert!(seen.contains(&(cmd, "command")) && seen.contains(&(cmd, "reply")), "command {cmd} missing: {seen:?}");
    }
}
