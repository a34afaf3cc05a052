// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Input: a 16-byte header, one byte whose value mod 8 is the number of fds, then the
//! payload. Runs every decoder on it. An accepted message must re-encode to the payload, or,
//! for the messages whose decoding ignores some bytes (queries up to argsz, DEVICE_FEATURE
//! data on GET/PROBE/STOP and `data_fd`, padded MIG_DATA_READ replies), to a normal form that
//! decodes to the same value.

#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use vfio_user_proto::{decode_reply, decode_request, parse_region_caps, Capabilities, DecodeLimits, Header};

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let u16_at = |o: usize| u16::from_ne_bytes([data[o], data[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
    let header =
        Header { msg_id: u16_at(0), command: u16_at(2), msg_size: u32_at(4), flags: u32_at(8), error: u32_at(12) };
    let nfds = usize::from(data[16] % 8);
    let payload = &data[17..];
    let limits = DecodeLimits::default();
    match decode_request(&header, payload, nfds, &limits) {
        Ok(req) => {
            let mut out = Vec::with_capacity(payload.len());
            req.encode_payload(&mut out);
            if (4..=7).contains(&header.command) || header.command == 16 {
                let mut h = header;
                h.msg_size = (out.len() + 16) as u32;
                let again = decode_request(&h, &out, nfds, &limits);
                assert_eq!(again.as_ref(), Ok(&req), "normal form decodes differently: {req:?}");
            } else {
                assert_eq!(out, payload, "accepted request re-encodes differently: {req:?}");
            }
            black_box(req);
        }
        Err(e) => {
            black_box(e.errno());
        }
    }
    match decode_reply(&header, payload, nfds) {
        Ok(rep) => {
            let mut out = Vec::with_capacity(payload.len());
            rep.encode_payload(&mut out);
            if header.command == 17 {
                assert!(payload.starts_with(&out), "padded reply re-encodes differently: {rep:?}");
            } else {
                assert_eq!(out, payload, "accepted reply re-encodes differently: {rep:?}");
            }
            black_box(rep);
        }
        Err(e) => {
            black_box(e.errno());
        }
    }
    let _ = black_box(parse_region_caps(black_box(payload)));
    let _ = black_box(Capabilities::from_json(black_box(payload)));
});
