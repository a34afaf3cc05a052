// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Writes the seed corpora of `server_session`, `client_replies` and `dma_space` in the
//! input layouts those targets read (see the doc comment at the top of each target).
//!
//! `cd fuzz && cargo run --example gen_corpus` (writes `corpus/<target>/seed-*`).

#[path = "../fuzz_targets/common/mod.rs"]
#[allow(dead_code)]
mod common;

use common::Out;

/// Index of a command in `server_session`'s table of structured commands.
fn srv_cmd(o: &mut Out, cmd: u16, fd_sel: u8) -> &mut Out {
    let table = [2u16, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18];
    let j = table.iter().position(|&c| c == cmd).unwrap() as u8;
    o.u8(j * 4 + 1).u8(fd_sel)
}

fn server_session() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    // Canned VERSION (json variant 1), then every query, then I/O on every region.
    let mut o = Out::default();
    o.u8(1).u8(1).u8(2);
    srv_cmd(&mut o, 4, 0).u8(0);
    for idx in 0..11u8 {
        srv_cmd(&mut o, 5, 0).u8(1).u8(idx);
    }
    for idx in [0u8, 2, 9] {
        srv_cmd(&mut o, 6, 0).u8(1).u8(idx);
    }
    for idx in 0..5u8 {
        srv_cmd(&mut o, 7, 0).u8(idx);
    }
    out.push(("seed-queries", o.0.clone()));

    let mut o = Out::default();
    o.u8(1).u8(0).u8(2);
    for (region, count) in [(0u8, 4u16), (1, 2), (2, 8), (4, 4), (6, 16), (7, 64), (9, 4), (10, 4)] {
        // REGION_READ: region, offset mode (0: u16 offset), offset, count.
        srv_cmd(&mut o, 9, 0).u8(region).u8(0).u16(0x10).u16(count);
        // REGION_WRITE: region, offset mode, offset, count (u8), data.
        srv_cmd(&mut o, 10, 0).u8(region).u8(0).u16(0x10).u8(4).bytes(&[1, 2, 3, 4]);
    }
    // Config space: command register, MSI-X control, the callback range.
    srv_cmd(&mut o, 10, 0).u8(7).u8(0).u16(4).u8(2).bytes(&[6, 0]);
    srv_cmd(&mut o, 9, 0).u8(7).u8(0).u16(0xe0).u16(8);
    srv_cmd(&mut o, 15, 0).u8(2).u8(0).u16(0x20).u8(4).u64(0x1122_3344).u8(9).u16(0).u8(8).u64(7);
    out.push(("seed-region-io", o.0.clone()));

    let mut o = Out::default();
    o.u8(1).u8(2).u8(2); // twin socket VERSION
                         // DMA_MAP with an fd (sel 1 = one eventfd; 5 = one memfd), then unmap, unmap all.
    srv_cmd(&mut o, 2, 5).u8(3).u8(0).u8(0).u8(0x10).u8(1);
    srv_cmd(&mut o, 2, 0).u8(3).u8(0).u8(0).u8(0x20).u8(0);
    srv_cmd(&mut o, 3, 0).u8(0).u8(0x10).u8(1);
    srv_cmd(&mut o, 3, 0).u8(2).u8(0).u8(0);
    // SET_IRQS: eventfds for MSI-X (sel: data eventfd, trigger; count = nfds), bool, none.
    srv_cmd(&mut o, 8, 2).u8(0x80 | (2 << 2) | 2).u8(2).u8(0).u8(0);
    srv_cmd(&mut o, 8, 0).u8((2 << 2) | 1).u8(0).u8(0).u8(1).u8(1);
    srv_cmd(&mut o, 8, 0).u8(0).u8(2).u8(0).u8(8);
    srv_cmd(&mut o, 13, 0);
    srv_cmd(&mut o, 16, 0).u8(1).u8(1).u8(0);
    srv_cmd(&mut o, 17, 0).u8(16);
    out.push(("seed-dma-irq", o.0.clone()));

    // A raw first message (fuzzed VERSION fields), then a raw unknown command.
    let mut o = Out::default();
    let json = br#"{"capabilities":{"max_msg_fds":4}}"#;
    let mut payload = vec![0u8, 0, 2, 0];
    payload.extend_from_slice(json);
    payload.push(0);
    o.u8(0).u8(0).u16(payload.len() as u16).bytes(&payload).u8(1).u8(0);
    o.u8(0).u8(19).u8(0).u16(4).bytes(&[1, 2, 3, 4]).u8(1).u8(0);
    out.push(("seed-raw", o.0.clone()));
    out
}

fn client_replies() -> Vec<(&'static str, Vec<u8>)> {
    // Plausible replies to everything, with default fields.
    let plain = vec![0u8; 400];
    // Twin socket on, VERSION reply with a twin socket and custom caps, then mmappable
    // regions with sparse areas and TYPE caps, IO fds, IRQ counts.
    let mut o = Out::default();
    o.u8(1);
    o.u8(0).u8(0x0d).u8(8).u8(4).u8(1).u8(2); // VERSION: caps + twin socket fd
    o.u8(0).u8(1); // DEVICE_GET_INFO: 10 regions
    for _ in 0..10 {
        o.u8(0).u8(0x0e).u8(2).u16(0).u16(0x10).u16(0x20).u16(0x10).u32(0x8086_0000).u32(1).u8(0);
    }
    for _ in 0..5 {
        o.u8(0).u8(2);
    }
    o.u8(0).u8(2).u8(0).u16(0x100).u8(3).u8(0).u16(0x104).u8(3).u8(1);
    o.bytes(&[0; 200]);
    let rich = o.0;
    // Error replies, fuzzed replies and server DMA.
    let mut o = Out::default();
    o.u8(0);
    o.bytes(&[0; 4]);
    for _ in 0..8 {
        o.u8(4).u8(22);
        o.u8(0x80).u8(8).u16(0x100).u8(0);
        o.u8(5).u8(0x21).u8(0).u16(4).bytes(&[0; 4]).u8(0);
    }
    let hostile = o.0;
    vec![("seed-plain", plain), ("seed-rich", rich), ("seed-hostile", hostile)]
}

fn dma_space() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    // cfg: max_maps 8, xfer 512.
    let map = |o: &mut Out, slot: u8, pages: u8, kind: u8, prot: u8| {
        o.u8(0).u8(slot).u8(pages - 1).u8(kind).u8(prot).u8(0).u8(0x11).u8(9);
    };
    let mut o = Out::default();
    o.u8(7 | (2 << 3));
    map(&mut o, 0, 2, 0, 2);
    map(&mut o, 2, 2, 1, 2);
    map(&mut o, 4, 2, 2, 2);
    // start logging (4 KiB, everything), writes across the regions, report, unmap+bitmap.
    o.u8(6).u8(2).u8(0);
    o.u8(4).u32(0x1ff0).u16(0x2100).u8(0).u8(3);
    o.u8(5).u32(0x100).u16(0x200).u8(1).u8(4);
    o.u8(3).u32(0x0).u16(0x6000).u8(0).u8(0);
    o.u8(7).u32(0).u8(2).u32(0x8000).u8(12);
    o.u8(4).u32(0x4010).u16(0x10).u8(0).u8(5);
    o.u8(9).u8(2).u8(12);
    o.u8(8);
    out.push(("seed-logging", o.0.clone()));

    let mut o = Out::default();
    o.u8(1);
    map(&mut o, 0, 1, 0, 0);
    map(&mut o, 1, 1, 2, 1);
    map(&mut o, 0, 1, 0, 2); // overlap
    map(&mut o, 5, 1, 1, 3); // no permission
    o.u8(0).u8(6).u8(0).u8(0).u8(2).u8(0).u8(0).u8(0).u8(5); // misaligned
    o.u8(3).u32(0x800).u16(0x1000).u8(0).u8(0);
    o.u8(4).u32(0x800).u16(0x1000).u8(0).u8(0);
    o.u8(1).u8(0).u8(0);
    o.u8(1).u8(0).u8(1);
    o.u8(2);
    out.push(("seed-errors", o.0.clone()));

    let mut o = Out::default();
    o.u8(5 | (1 << 3));
    map(&mut o, 3, 4, 2, 2);
    o.u8(6).u8(3).u8(2).u8(3).u8(1).u8(2).u16(0x3000).u8(8).u8(0).u8(2).u16(0x100);
    o.u8(4).u32(0x3000).u16(0x4000).u8(0).u8(9);
    o.u8(7).u32(0x3000).u8(0x82).u32(0x4000).u8(0);
    o.u8(7).u32(0x3000).u8(2).u32(0x4000).u8(15);
    out.push(("seed-message-ranges", o.0.clone()));

    // A hostile client shrinks mapped files: an unsealed one (pread/pwrite: reads past the
    // new end get EFAULT, a write grows it again) and a sealed, mmapped one (EPERM).
    let mut o = Out::default();
    o.u8(7 | (2 << 3));
    map(&mut o, 0, 2, 3, 2);
    map(&mut o, 4, 2, 0, 2);
    o.u8(4).u32(0).u16(0x2000).u8(0).u8(3);
    o.u8(10).u8(0).u16(0x1000);
    o.u8(3).u32(0x800).u16(0x1000).u8(0).u8(0);
    o.u8(3).u32(0).u16(0x800).u8(0).u8(0);
    o.u8(10).u8(1).u16(0);
    o.u8(4).u32(0x1800).u16(0x100).u8(0).u8(5);
    o.u8(3).u32(0x1000).u16(0x900).u8(0).u8(0);
    o.u8(3).u32(0x1000).u16(0x1000).u8(0).u8(0);
    o.u8(10).u8(0).u16(0);
    o.u8(3).u32(0).u16(8).u8(0).u8(0);
    o.u8(5).u32(0).u16(8).u8(0).u8(0);
    o.u8(3).u32(0x4000).u16(0x2000).u8(0).u8(0);
    out.push(("seed-shrink", o.0.clone()));
    out
}

/// virtio_blk seeds: a 16-entry queue (table 0x0, avail 0x1000, used 0x2000) holding one
/// well-formed request (header at 0x3000, data at 0x4000, status at 0x5000), notified.
fn virtio_blk() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let seed = |kind: u8, cfg: u8, req: u32, data_flags: u16, len: u32| {
        let mut mem = vec![0u8; 0x5001];
        let mut desc = |i: usize, addr: u64, l: u32, flags: u16, next: u16| {
            let d = &mut mem[i * 16..i * 16 + 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&l.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&next.to_le_bytes());
        };
        desc(0, 0x3000, 16, 1, 1);
        desc(1, 0x4000, len, 1 | data_flags, 2);
        desc(2, 0x5000, 1, 2, 0);
        mem[0x1002..0x1004].copy_from_slice(&1u16.to_le_bytes()); // avail idx 1, ring[0] = 0
        mem[0x3000..0x3004].copy_from_slice(&req.to_le_bytes());
        mem[0x3008..0x3010].copy_from_slice(&3u64.to_le_bytes());
        let mut o = Out::default();
        o.u8(kind | cfg | (3 << 4)).u32(0).u32(0x1000).u32(0x2000).u16(mem.len() as u16).bytes(&mem);
        o.u8(0).u8(2).u16(1).u8(0);
        o.0
    };
    out.push(("seed-read-mmap", seed(0, 0, 0, 2, 1024)));
    out.push(("seed-write-message", seed(2, 0, 1, 0, 512)));
    out.push(("seed-read-mixed-event-idx", seed(3, 8, 0, 2, 4096)));
    out.push(("seed-write-read-only-fileio", seed(1, 4, 1, 0, 512)));
    out.push(("seed-get-id", seed(0, 0, 8, 2, 20)));
    out
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in [
        ("server_session", server_session()),
        ("client_replies", client_replies()),
        ("dma_space", dma_space()),
        ("virtio_blk", virtio_blk()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
