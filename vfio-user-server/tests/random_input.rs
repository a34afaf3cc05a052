// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Thousands of random, well-framed commands (deterministic seed): every one that asks for
//! a reply gets exactly one, with its msg_id, and the server neither panics nor desyncs.

mod common;

use std::os::fd::AsFd;

use common::*;
use vfio_user_proto::header::{FLAGS_NO_REPLY, FLAGS_TYPE_COMMAND};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A field value: usually small (to reach the deeper checks), sometimes anything.
    fn field(&mut self, small: u64) -> u64 {
        match self.below(8) {
            0 => u64::MAX - self.below(4),
            1 => self.next(),
            2 => 0,
            _ => self.below(small),
        }
    }
}

/// Fixed-part sizes of commands 0..=19 (0 and 19 are unknown).
const FIXED: [usize; 20] = [0, 4, 32, 24, 16, 32, 16, 16, 20, 16, 16, 16, 16, 0, 0, 8, 8, 8, 8, 0];

fn payload(rng: &mut Rng, cmd: u16) -> Vec<u8> {
    if rng.below(4) == 0 {
        let len = rng.below(80) as usize;
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    if let Some(p) = structured(rng, cmd) {
        return p;
    }
    let fixed = FIXED.get(cmd as usize).copied().unwrap_or(0);
    let mut p = Vec::new();
    // Fill the fixed part with plausible fields: alternate u32 and u64 slots.
    while p.len() < fixed {
        let v = rng.field(0x1100);
        if fixed - p.len() >= 8 && rng.below(2) == 0 {
            p.extend_from_slice(&v.to_ne_bytes());
        } else {
            p.extend_from_slice(&(v as u32).to_ne_bytes());
        }
    }
    p.truncate(fixed);
    // Sometimes a data tail.
    if rng.below(3) == 0 {
        let len = rng.below(16) as usize;
        p.extend((0..len).map(|_| rng.next() as u8));
    }
    p
}

/// Mostly-valid bodies for the commands with the most logic behind them.
fn structured(rng: &mut Rng, cmd: u16) -> Option<Vec<u8>> {
    let mut p = Vec::new();
    let page = |rng: &mut Rng| rng.field(16).wrapping_mul(0x1000);
    match cmd {
        2 => {
            p.extend_from_slice(&32u32.to_ne_bytes());
            p.extend_from_slice(&(rng.field(4) as u32).to_ne_bytes());
            for v in [page(rng), page(rng).wrapping_add(0x10000), page(rng).max(0x1000)] {
                p.extend_from_slice(&v.to_ne_bytes());
            }
        }
        3 => {
            p.extend_from_slice(&24u32.to_ne_bytes());
            p.extend_from_slice(&(rng.field(3) as u32).to_ne_bytes());
            p.extend_from_slice(&(page(rng).wrapping_add(0x10000)).to_ne_bytes());
            p.extend_from_slice(&page(rng).to_ne_bytes());
        }
        8 => {
            let data = 1u32 << rng.below(3);
            let action = 8u32 << rng.below(3);
            let count = rng.field(9) as u32;
            p.extend_from_slice(&20u32.wrapping_add(count).to_ne_bytes());
            p.extend_from_slice(&(data | action).to_ne_bytes());
            for v in [rng.field(6) as u32, rng.field(9) as u32, count] {
                p.extend_from_slice(&v.to_ne_bytes());
            }
            if data == 2 {
                p.extend((0..count.min(16)).map(|_| rng.below(2) as u8));
            }
        }
        9 | 10 => {
            let count = rng.field(9) as u32;
            p.extend_from_slice(&rng.field(0x1100).to_ne_bytes());
            p.extend_from_slice(&(rng.field(11) as u32).to_ne_bytes());
            p.extend_from_slice(&count.to_ne_bytes());
            if cmd == 10 {
                p.extend((0..count.min(16)).map(|_| rng.next() as u8));
            }
        }
        15 => {
            let n = rng.below(4) + 1;
            p.extend_from_slice(&n.to_ne_bytes());
            for _ in 0..n {
                p.extend_from_slice(&rng.field(0x1100).to_ne_bytes());
                p.extend_from_slice(&(rng.field(11) as u32).to_ne_bytes());
                p.extend_from_slice(&(rng.field(9) as u32).to_ne_bytes());
                p.extend_from_slice(&rng.next().to_ne_bytes());
            }
        }
        _ => return None,
    }
    Some(p)
}

#[test]
fn random_commands_never_break_the_server() {
    let mut h = spawn();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let efd = eventfd();
    let mem = memfd(0x10000);
    let mut replies = 0;
    for i in 0..20000 {
        let cmd = rng.below(20) as u16;
        let p = payload(&mut rng, cmd);
        let nfds = match rng.below(10) {
            0 => 1,
            1 => 2,
            _ => 0,
        };
        let fds: Vec<_> = [efd.as_fd(), mem.as_fd()].into_iter().take(nfds).collect();
        let no_reply = rng.below(5) == 0;
        let flags = if no_reply { FLAGS_NO_REPLY } else { FLAGS_TYPE_COMMAND };
        let id = h.client.send_raw(cmd, flags, &[&p], &fds);
        if no_reply {
            continue;
        }
        loop {
            let m = h.client.recv();
            if m.header.is_command() {
                // The device asked for DMA (a random DMA_MAP without fd made region 9
                // message-based): refuse it.
                h.client.conn.send(m.header.error_reply(libc::EFAULT), &[], &[]).unwrap();
                continue;
            }
            assert_eq!((m.header.msg_id, m.header.command), (id, cmd), "message {i}");
            if m.header.is_error() {
                assert_eq!(m.header.msg_size, 16);
            }
            replies += 1;
            break;
        }
        if i % 200 == 0 {
            h.client.assert_alive();
        }
    }
    h.client.assert_alive();
    assert!(replies > 12000);
}
