// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A server answering with pseudo-random garbage: every call returns (Ok or Err), nothing
//! panics or hangs, whatever arrives.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use common::*;
use vfio_user_client::{DmaProt, IrqAction, IrqSetData, RegionReadOp};
use vfio_user_proto::wire::{RegionAccess, FEATURE_MIGRATION};
use vfio_user_proto::{Command, Header};
use vm_memory::ByteValued;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A reply to `m` that is wrong in a random way (or, sometimes, right). Send errors are
/// ignored: the client may well have closed the connection already.
fn hostile_reply(f: &Fake, m: &vfio_user_proto::Message, rng: &mut Rng) {
    let mut h = m.header.reply(0);
    let mut payload: Vec<u8> = (0..rng.below(80)).map(|_| rng.next() as u8).collect();
    match rng.below(10) {
        0 => h.msg_id = rng.next() as u16,
        1 => h.command = rng.below(20) as u16,
        2 => h.flags = rng.next() as u32,
        3 => {
            h.flags |= vfio_user_proto::header::FLAGS_ERROR;
            h.error = rng.next() as u32;
        }
        4 => {
            // A header announcing more than is sent: the stream stalls mid-message.
            h.msg_size = 16 + payload.len() as u32 + rng.below(64) as u32 + 1;
            use std::io::Write;
            let _ = (&f.sock).write_all(h.as_slice()).and_then(|()| (&f.sock).write_all(&payload));
            return;
        }
        5 => {
            // A well-formed reply for a region read of the asked size.
            if let Some(a) = vfio_user_proto::wire::read_at::<RegionAccess>(&m.payload, 0) {
                payload = a.as_slice().to_vec();
                payload.resize(16 + a.count as usize, 0xab);
            }
        }
        6 => {
            let fds: Vec<OwnedFd> = (0..=rng.below(2)).map(|_| eventfd()).collect();
            let refs: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
            let _ = f.conn.sender.send(h, &[&payload], &refs);
            return;
        }
        7 => {
            // A server-to-client command instead of a reply.
            let c = if rng.below(2) == 0 { Command::DmaRead } else { Command::DmaWrite };
            let _ = f.conn.sender.send(Header::command(rng.next() as u16, c, 0), &[&payload], &[]);
            return;
        }
        _ => {}
    }
    let _ = f.conn.sender.send(h, &[&payload], &[]);
}

#[test]
fn random_replies_never_panic_or_hang() {
    for seed in 1..=200u64 {
        let t = Duration::from_millis(20);
        // Short timeouts for the calls; the handshake (not what is tested) may take its time
        // on a loaded machine.
        let config =
            test_config().timeout(t).reset_timeout(t).connect_timeout(Duration::from_secs(10)).twin_socket(false);
        let (c, h) = start(config, move |mut f| {
            f.handshake();
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            while let Ok(m) = f.conn.recv() {
                if m.header.is_command() && !m.header.no_reply() {
                    hostile_reply(&f, &m, &mut rng);
                }
            }
        });
        let efd = eventfd();
        let mem = memfd(0x2000);
        let mut b = [0u8; 8];
        let _ = c.region_read(0, 0, &mut b);
        let _ = c.region_info(1);
        let _ = c.irq_info(2);
        let _ = c.dma_map_fd(0x10000, 0x1000, mem.as_fd(), 0, DmaProt::READ_WRITE);
        let _ = c.set_irqs(0, IrqAction::Trigger, 0, IrqSetData::Eventfds(&[Some(efd.as_fd())]));
        let _ = c.region_write(7, 4, &[1, 2, 3]);
        let _ = c.device_feature_probe(FEATURE_MIGRATION, true, false);
        let _ = c.region_io_fds(0);
        let (mut x, mut y) = ([0u8; 4], [0u8; 4]);
        let _ = c.region_read_batch(&mut [
            RegionReadOp { region: 0, offset: 0, data: &mut x },
            RegionReadOp { region: 1, offset: 8, data: &mut y },
        ]);
        let _ = c.reset();
        let _ = c.read_migration_data(&mut b);
        c.shutdown().unwrap();
        h.join().unwrap();
    }
}
