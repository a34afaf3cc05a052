// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The committed fuzz seed corpus (written by `examples/fuzz_corpus.rs`) stays valid: every
//! `req-*` file is an accepted request and every `rep-*` file an accepted reply, in the fuzz
//! target's input format (header, fd count byte, payload).

use vfio_user_proto::{decode_reply, decode_request, DecodeLimits, Header};
use vm_memory::ByteValued;

#[test]
fn seed_corpus_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/proto_decode");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let mut h = Header::default();
        h.as_mut_slice().copy_from_slice(&bytes[..16]);
        let nfds = usize::from(bytes[16] % 8);
        let payload = &bytes[17..];
        let limits = DecodeLimits { max_msg_fds: 8, ..DecodeLimits::default() };
        if name.starts_with("req-") {
            assert!(h.is_command(), "{name}");
            decode_request(&h, payload, nfds, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            assert!(h.is_reply(), "{name}");
            decode_reply(&h, payload, nfds).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        seen += 1;
    }
    // One request per command (17) plus variants, and the replies.
    assert!(seen >= 17 + 5, "only {seen} seeds in {}", dir.display());
}
