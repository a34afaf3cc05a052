// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Hostile input: the decoders never panic on arbitrary bytes, and every request they accept
//! re-encodes to exactly the bytes it came from (decode ∘ encode is the identity on accepted
//! input).

mod common;

use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use vfio_user_proto::{decode_reply, decode_request, parse_region_caps, DecodeLimits, Header};

/// Runs every decoder on one message and checks the identity property.
fn check(h: &Header, payload: &[u8], nfds: usize) {
    for limits in [DecodeLimits::default(), DecodeLimits { max_data_xfer_size: 64, max_msg_fds: 253 }] {
        if let Ok(r) = decode_request(h, payload, nfds, &limits) {
            if (4..=7).contains(&h.command) || h.command == 16 {
                // Queries and DEVICE_FEATURE ignore some bytes (a reply buffer up to argsz,
                // GET/PROBE/STOP data, MIG_DEVICE_STATE's unused data_fd): re-encoding
                // normalises them, and decoding the normal form gives the same request.
                let normal = ereq(&r);
                let again = decode_request(&req_hdr(h.command, &normal), &normal, nfds, &limits)
                    .unwrap_or_else(|e| panic!("normal form of {r:?} refused: {e}"));
                assert_eq!(again, r);
            } else {
                assert_eq!(ereq(&r), payload, "re-encoding {r:?}");
            }
            assert_eq!(r.command() as u16, h.command);
        }
    }
    if let Ok(r) = decode_reply(h, payload, nfds) {
        if h.command == 17 {
            // MIG_DATA_READ replies may be padded past `size`.
            assert!(payload.starts_with(&erep(&r)), "re-encoding reply {r:?}");
        } else {
            assert_eq!(erep(&r), payload, "re-encoding reply {r:?}");
        }
    }
    let _ = parse_region_caps(payload);
    #[cfg(feature = "serde")]
    let _ = vfio_user_proto::Capabilities::from_json(payload);
}

/// 2048 cases, or `NEVER_PANIC_CASES` for a long run.
fn cases() -> u32 {
    std::env::var("NEVER_PANIC_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2048)
}

/// One valid payload per command, to mutate.
fn seeds() -> Vec<(u16, Vec<u8>, usize)> {
    vec![
        (1, Bytes::new(4 + 3).raw(4, b"{}").0, 0),
        (2, Bytes::new(32).u32(0, 32).u32(4, 3).u64(16, 0x1000).u64(24, 0x1000).0, 1),
        (3, Bytes::new(24).u32(0, 24).u64(8, 0x1000).u64(16, 0x1000).0, 0),
        (3, Bytes::new(40).u32(0, 41).u32(4, 1).u64(8, 0).u64(16, 0x8000).u64(24, 0x1000).u64(32, 1).0, 0),
        (4, Bytes::new(16).u32(0, 16).0, 0),
        (5, Bytes::new(32).u32(0, 32).0, 0),
        (6, Bytes::new(16).u32(0, 16).0, 0),
        (7, Bytes::new(16).u32(0, 16).0, 0),
        (8, Bytes::new(22).u32(0, 22).u32(4, 2 | 32).u32(16, 2).0, 0),
        (9, Bytes::new(16).u32(12, 4).0, 0),
        (10, Bytes::new(18).u32(12, 2).0, 0),
        (11, Bytes::new(16).u64(8, 8).0, 0),
        (12, Bytes::new(17).u64(8, 1).0, 0),
        (13, vec![], 0),
        (15, Bytes::new(32).u64(0, 1).u32(20, 4).0, 0),
        (16, Bytes::new(16).u32(0, 16).u32(4, (1 << 17) | 2).u32(8, 1).0, 0),
        (16, Bytes::new(40).u32(0, 40).u32(4, (1 << 17) | 6).u64(8, 4096).u32(16, 1).u64(32, 4096).0, 0),
        (16, Bytes::new(32).u32(0, 40).u32(4, (1 << 16) | 8).u64(16, 4096).u64(24, 4096).0, 0),
        (16, Bytes::new(8).u32(0, 8).u32(4, (1 << 18) | (1 << 16) | 1).0, 0),
        (16, Bytes::new(8).u32(0, 16).u32(4, (1 << 16) | 1).0, 0),
        (16, Bytes::new(8).u32(0, 8).u32(4, (1 << 17) | 7).0, 0),
        (17, Bytes::new(8).u32(0, 16).u32(4, 8).0, 0),
        (18, Bytes::new(10).u32(0, 10).u32(4, 2).0, 0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_messages_never_panic(
        command in prop_oneof![0u16..20, any::<u16>()],
        msg_id: u16,
        flags: u32,
        error: u32,
        size_lie in prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)],
        payload in vec(any::<u8>(), 0..512),
        nfds in 0usize..4,
    ) {
        let msg_size = size_lie.unwrap_or(16 + payload.len() as u32);
        let h = Header { msg_id, command, msg_size, flags, error };
        check(&h, &payload, nfds);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        seed in 0usize..23,
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in prop_oneof![3 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)],
        extra in vec(any::<u8>(), 0..3),
        nfds_delta in 0usize..3,
    ) {
        let (command, mut payload, nfds) = seeds().swap_remove(seed);
        // The seed itself is accepted.
        let h = req_hdr(command, &payload);
        let limits = DecodeLimits { max_msg_fds: 253, ..DecodeLimits::default() };
        prop_assert!(decode_request(&h, &payload, nfds, &limits).is_ok(), "seed {} rejected", seed);
        if !payload.is_empty() {
            for (i, b) in &edits {
                let i = i.index(payload.len());
                payload[i] = *b;
            }
        }
        if let Some(c) = cut {
            payload.truncate(c.index(payload.len() + 1));
        }
        payload.extend_from_slice(&extra);
        check(&req_hdr(command, &payload), &payload, nfds.saturating_sub(1) + nfds_delta);
    }
}
