// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Malformed and hostile messages, request and reply side: each is refused with the exact
//! `DecodeError` variant and the errno that goes into the error reply.

mod common;

use common::*;
use libc::{E2BIG, EINVAL, ENOTSUP};
use vfio_user_proto::command::CommandError;
use vfio_user_proto::{
    decode_reply, decode_request, parse_region_caps, Command, DecodeError, DecodeLimits, Header, Reply,
};

/// The variant of a decode error, by name.
fn class(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Command(CommandError::Unknown(_)) => "Unknown",
        DecodeError::Command(CommandError::Removed(_)) => "Removed",
        DecodeError::Command(_) => "another CommandError",
        DecodeError::Truncated { .. } => "Truncated",
        DecodeError::SizeMismatch { .. } => "SizeMismatch",
        DecodeError::BadArgsz { .. } => "BadArgsz",
        DecodeError::BadFlags { .. } => "BadFlags",
        DecodeError::BadField { .. } => "BadField",
        DecodeError::TooBig { .. } => "TooBig",
        DecodeError::BadFdCount { .. } => "BadFdCount",
        DecodeError::BadJson(_) => "BadJson",
        DecodeError::WrongDirection(_) => "WrongDirection",
        // The enum is #[non_exhaustive]: a variant added later shows up here.
        _ => "a variant this test does not know",
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, DecodeError>, expect: &str, errno: i32) {
    match r {
        Ok(v) => panic!("accepted, expected {expect}: {v:?}"),
        Err(e) => assert_eq!((class(&e), e.errno()), (expect, errno), "{e}"),
    }
}

/// A request decoded with `max_msg_fds` = 253, so that fd-count rules of the command itself
/// are what is checked.
#[track_caller]
fn bad_req(cmd: Command, payload: &[u8], nfds: usize, expect: &str, errno: i32) {
    refused(dreq_fds(cmd, payload, nfds), expect, errno);
}

#[track_caller]
fn bad_rep(cmd: Command, payload: &[u8], nfds: usize, expect: &str, errno: i32) {
    refused(drep(cmd, payload, nfds), expect, errno);
}

#[track_caller]
fn ok_req(cmd: Command, payload: &[u8], nfds: usize) {
    if let Err(e) = dreq_fds(cmd, payload, nfds) {
        panic!("{cmd} refused: {e}");
    }
}

#[test]
fn unknown_removed_codes_and_msg_size_mismatch() {
    let lim = DecodeLimits::default();
    for code in [0u16, 19, 20, 0x100, u16::MAX] {
        let h = Header { command: code, msg_size: 16, ..Default::default() };
        refused(decode_request(&h, &[], 0, &lim), "Unknown", EINVAL);
        refused(decode_reply(&h, &[], 0), "Unknown", EINVAL);
    }
    let h = Header { command: 14, msg_size: 16 + 40, ..Default::default() };
    refused(decode_request(&h, &[0; 40], 0, &lim), "Removed", ENOTSUP);
    refused(decode_reply(&h, &[0; 40], 0), "Removed", ENOTSUP);
    // msg_size says one more / one less byte than the payload, or less than a header.
    for msg_size in [16 + 15, 16 + 17, 0, 15, u32::MAX] {
        let h = Header { command: 4, msg_size, ..Default::default() };
        refused(decode_request(&h, &[0; 16], 0, &lim), "SizeMismatch", EINVAL);
        refused(decode_reply(&h, &[0; 16], 0), "SizeMismatch", EINVAL);
    }
    // More fds than the receiver's max_msg_fds (default 1).
    let p = Bytes::new(20).u32(0, 20).u32(4, 4 | 32).u32(16, 2).0;
    refused(dreq(Command::DeviceSetIrqs, &p, 2), "BadFdCount", EINVAL);
}

#[test]
fn version() {
    let c = Command::Version;
    bad_req(c, &[0; 3], 0, "Truncated", EINVAL);
    bad_req(c, b"\0\0\0\0{}\0", 1, "BadFdCount", EINVAL);
    bad_req(c, b"\0\0\0\0{}", 0, "BadJson", EINVAL);
    bad_req(c, b"\0\0\0\0\0", 0, "BadJson", EINVAL);
    bad_req(c, b"\0\0\0\0{\0}\0", 0, "BadJson", EINVAL);
    bad_rep(c, b"\0\0\0\0{}", 0, "BadJson", EINVAL);
    bad_rep(c, b"\0\0\0\0{}\0", 2, "BadFdCount", EINVAL);
    bad_rep(c, &[0; 2], 0, "Truncated", EINVAL);
}

#[test]
fn dma_map() {
    let c = Command::DmaMap;
    let ok = Bytes::new(32).u32(0, 32).u32(4, 3).u64(8, 0x1000).u64(16, 0x10_0000).u64(24, 0x1000);
    ok_req(c, ok.bytes(), 1);
    bad_req(c, &ok.0[..31], 0, "Truncated", EINVAL);
    bad_req(c, &[&ok.0[..], &[0]].concat(), 0, "SizeMismatch", EINVAL);
    bad_req(c, ok.clone().u32(0, 31).bytes(), 0, "BadArgsz", EINVAL);
    bad_req(c, ok.clone().u32(0, 48).bytes(), 0, "BadArgsz", EINVAL);
    bad_req(c, ok.bytes(), 2, "BadFdCount", EINVAL);
    refused(dreq(c, ok.bytes(), 2), "BadFdCount", EINVAL);
    for flags in [1 << 4, 1 << 31, 0xffff_ffff] {
        bad_req(c, ok.clone().u32(4, flags).bytes(), 1, "BadFlags", EINVAL);
    }
    bad_req(c, ok.clone().u32(4, 1 | 4 | 8).bytes(), 1, "BadFlags", EINVAL); // MMAP | FILE_IO
    bad_req(c, ok.clone().u32(4, 1 | 4).bytes(), 0, "BadFlags", EINVAL); // MMAP without fd
    bad_req(c, ok.clone().u64(24, 0).bytes(), 1, "BadField", EINVAL);
    // address + size wraps u64.
    bad_req(c, ok.clone().u64(16, u64::MAX - 0xfff).bytes(), 1, "BadField", EINVAL);
    ok_req(c, ok.clone().u64(16, u64::MAX - 0x1000).bytes(), 1);
    // offset + size wraps: an error with an fd; without one the offset is unused.
    bad_req(c, ok.clone().u64(8, u64::MAX).bytes(), 1, "BadField", EINVAL);
    ok_req(c, ok.clone().u64(8, u64::MAX).bytes(), 0);
    bad_rep(c, &[0], 0, "SizeMismatch", EINVAL);
    bad_rep(c, &[], 1, "BadFdCount", EINVAL);
}

#[test]
fn dma_unmap() {
    let c = Command::DmaUnmap;
    let ok = Bytes::new(24).u32(0, 24).u64(8, 0x10_0000).u64(16, 0x1000);
    ok_req(c, ok.bytes(), 0);
    bad_req(c, &ok.0[..23], 0, "Truncated", EINVAL);
    bad_req(c, &[&ok.0[..], &[0]].concat(), 0, "SizeMismatch", EINVAL);
    bad_req(c, ok.bytes(), 1, "BadFdCount", EINVAL);
    bad_req(c, ok.clone().u32(0, 23).bytes(), 0, "BadArgsz", EINVAL);
    bad_req(c, ok.clone().u32(4, 4).bytes(), 0, "BadFlags", EINVAL);
    bad_req(c, ok.clone().u32(4, 3).bytes(), 0, "BadFlags", EINVAL); // ALL | GET_DIRTY_BITMAP
    bad_req(c, ok.clone().u64(16, 0).bytes(), 0, "BadField", EINVAL);
    bad_req(c, ok.clone().u64(8, u64::MAX).bytes(), 0, "BadField", EINVAL);
    // UNMAP_ALL requires address = size = 0 and no trailing bytes.
    let all = Bytes::new(24).u32(0, 24).u32(4, 2);
    ok_req(c, all.bytes(), 0);
    bad_req(c, all.clone().u64(8, 0x1000).bytes(), 0, "BadField", EINVAL);
    bad_req(c, all.clone().u64(16, 0x1000).bytes(), 0, "BadField", EINVAL);
    bad_req(c, &[&all.0[..], &[0; 16]].concat(), 0, "SizeMismatch", EINVAL);
    // GET_DIRTY_BITMAP: 8 pages of 4 KiB -> 1 byte of bitmap; reply needs 40 + 1.
    let bm = Bytes::new(40).u32(0, 41).u32(4, 1).u64(8, 0x10_0000).u64(16, 0x8000).u64(24, 4096).u64(32, 1);
    ok_req(c, bm.bytes(), 0);
    bad_req(c, &bm.0[..24], 0, "Truncated", EINVAL);
    bad_req(c, bm.clone().u64(24, 3000).bytes(), 0, "BadField", EINVAL); // pgsize not a power of 2
    bad_req(c, bm.clone().u64(24, 0).bytes(), 0, "BadField", EINVAL);
    bad_req(c, bm.clone().u64(24, 0x10000).bytes(), 0, "BadField", EINVAL); // size % pgsize != 0
    bad_req(c, bm.clone().u64(32, 0).bytes(), 0, "BadField", EINVAL); // bitmap too small
    bad_req(c, bm.clone().u32(0, 40).bytes(), 0, "BadArgsz", EINVAL); // reply would not fit
    bad_req(c, bm.clone().u64(32, u64::MAX).bytes(), 0, "BadArgsz", EINVAL);
    // Replies: the echo must be exact, the bitmap size must match the bytes present.
    bad_rep(c, &ok.0[..20], 0, "Truncated", EINVAL);
    bad_rep(c, &[&ok.0[..], &[0]].concat(), 0, "SizeMismatch", EINVAL);
    bad_rep(c, ok.bytes(), 1, "BadFdCount", EINVAL);
    let rep = Bytes::new(41).raw(0, &bm.0).raw(40, &[0xff]);
    assert!(drep(c, rep.bytes(), 0).is_ok());
    bad_rep(c, rep.clone().u64(32, 2).bytes(), 0, "Truncated", EINVAL);
    bad_rep(c, rep.clone().u64(32, 0).bytes(), 0, "SizeMismatch", EINVAL);
    bad_rep(c, rep.clone().u64(32, u64::MAX).bytes(), 0, "BadField", EINVAL);
    bad_rep(c, &bm.0[..30], 0, "Truncated", EINVAL);
}

#[test]
fn info_queries_sizes_argsz_flags_and_fds() {
    for (c, len) in [
        (Command::DeviceGetInfo, 16),
        (Command::DeviceGetRegionInfo, 32),
        (Command::DeviceGetIrqInfo, 16),
        (Command::DeviceGetRegionIoFds, 16),
    ] {
        let ok = Bytes::new(len).u32(0, len as u32);
        ok_req(c, ok.bytes(), 0);
        bad_req(c, &ok.0[..len - 1], 0, "Truncated", EINVAL);
        bad_req(c, &[&ok.0[..], &[0]].concat(), 0, "SizeMismatch", EINVAL);
        // Trailing bytes up to argsz are the client's reply buffer (libvfio-user's client
        // sends one): accepted and ignored; one more than argsz is not.
        let roomy = Bytes::new(len + 48).u32(0, len as u32 + 48);
        ok_req(c, roomy.bytes(), 0);
        bad_req(c, &[&roomy.0[..], &[0]].concat(), 0, "SizeMismatch", EINVAL);
        bad_req(c, ok.clone().u32(0, len as u32 - 1).bytes(), 0, "BadArgsz", EINVAL);
        bad_req(c, ok.bytes(), 1, "BadFdCount", EINVAL);
        bad_rep(c, &ok.0[..len - 1], 0, "Truncated", EINVAL);
    }
    bad_req(Command::DeviceGetRegionIoFds, Bytes::new(16).u32(0, 16).u32(4, 1).bytes(), 0, "BadFlags", EINVAL);
    bad_rep(Command::DeviceGetInfo, &[0; 17], 0, "SizeMismatch", EINVAL);
    bad_rep(Command::DeviceGetIrqInfo, &[0; 16], 1, "BadFdCount", EINVAL);
    bad_rep(Command::DeviceGetRegionInfo, &[0; 32], 2, "BadFdCount", EINVAL);
}

#[test]
fn set_irqs() {
    let c = Command::DeviceSetIrqs;
    let efd = Bytes::new(20).u32(0, 20).u32(4, 4 | 32).u32(8, 2).u32(12, 0).u32(16, 3);
    ok_req(c, efd.bytes(), 3);
    ok_req(c, efd.bytes(), 0);
    bad_req(c, efd.bytes(), 2, "BadFdCount", EINVAL);
    bad_req(c, efd.bytes(), 4, "BadFdCount", EINVAL);
    bad_req(c, &efd.0[..19], 0, "Truncated", EINVAL);
    bad_req(c, &[&efd.0[..], &[0; 4]].concat(), 3, "SizeMismatch", EINVAL);
    bad_req(c, efd.clone().u32(0, 19).bytes(), 3, "BadArgsz", EINVAL);
    // Two DATA flags, two ACTION flags, none of either, unknown bits.
    for flags in [1 | 2 | 32, 4 | 8 | 32, 32, 4, 0, 4 | 32 | (1 << 6), 0xffff_ffff] {
        bad_req(c, efd.clone().u32(4, flags).bytes(), 0, "BadFlags", EINVAL);
    }
    // start + count wraps u32.
    bad_req(c, efd.clone().u32(12, u32::MAX - 1).bytes(), 0, "BadField", EINVAL);
    ok_req(c, efd.clone().u32(12, u32::MAX - 3).bytes(), 0);
    // DATA_NONE / DATA_BOOL take no fds; BOOL needs exactly count bytes.
    let none = Bytes::new(20).u32(0, 20).u32(4, 1 | 32).u32(16, 1);
    ok_req(c, none.bytes(), 0);
    bad_req(c, none.bytes(), 1, "BadFdCount", EINVAL);
    bad_req(c, &[&none.0[..], &[1]].concat(), 0, "SizeMismatch", EINVAL);
    let b = Bytes::new(24).u32(0, 24).u32(4, 2 | 16).u32(16, 4).raw(20, &[1; 4]);
    ok_req(c, b.bytes(), 0);
    bad_req(c, b.bytes(), 1, "BadFdCount", EINVAL);
    bad_req(c, &b.0[..22], 0, "Truncated", EINVAL);
    bad_req(c, &[&b.0[..], &[1]].concat(), 0, "SizeMismatch", EINVAL);
    bad_req(c, b.clone().u32(16, u32::MAX).u32(12, 0).bytes(), 0, "Truncated", EINVAL);
    bad_rep(c, &[0], 0, "SizeMismatch", EINVAL);
}

#[test]
fn region_and_dma_access_limits_and_wraps() {
    let max = DecodeLimits::default().max_data_xfer_size;
    // REGION_READ
    let c = Command::RegionRead;
    let rd = Bytes::new(16).u64(0, 0x100).u32(8, 0).u32(12, max);
    ok_req(c, rd.bytes(), 0);
    bad_req(c, rd.clone().u32(12, max + 1).bytes(), 0, "TooBig", E2BIG);
    bad_req(c, rd.clone().u32(12, u32::MAX).bytes(), 0, "TooBig", E2BIG);
    bad_req(c, rd.clone().u64(0, u64::MAX - 2).u32(12, 4).bytes(), 0, "BadField", EINVAL);
    bad_req(c, &rd.0[..15], 0, "Truncated", EINVAL);
    bad_req(c, &[&rd.0[..], &[0]].concat(), 0, "SizeMismatch", EINVAL);
    bad_req(c, rd.bytes(), 1, "BadFdCount", EINVAL);
    // The reply's count must match the data present.
    let rep = Bytes::new(20).u32(12, 4);
    assert!(drep(c, rep.bytes(), 0).is_ok());
    bad_rep(c, rep.clone().u32(12, 5).bytes(), 0, "Truncated", EINVAL);
    bad_rep(c, rep.clone().u32(12, u32::MAX).bytes(), 0, "Truncated", EINVAL);
    bad_rep(c, rep.clone().u32(12, 3).bytes(), 0, "SizeMismatch", EINVAL);
    bad_rep(c, rep.bytes(), 1, "BadFdCount", EINVAL);
    // REGION_WRITE: the limit is checked before the size, so a huge count costs nothing.
    let c = Command::RegionWrite;
    let wr = Bytes::new(20).u64(0, 0).u32(12, 4).raw(16, &[1, 2, 3, 4]);
    ok_req(c, wr.bytes(), 0);
    bad_req(c, wr.clone().u32(12, u32::MAX).bytes(), 0, "TooBig", E2BIG);
    bad_req(c, wr.clone().u32(12, 5).bytes(), 0, "Truncated", EINVAL);
    bad_req(c, wr.clone().u32(12, 3).bytes(), 0, "SizeMismatch", EINVAL);
    bad_req(c, wr.clone().u64(0, u64::MAX - 1).bytes(), 0, "BadField", EINVAL);
    let small = DecodeLimits { max_data_xfer_size: 3, ..DecodeLimits::default() };
    refused(decode_request(&req_hdr(10, wr.bytes()), wr.bytes(), 0, &small), "TooBig", E2BIG);
    bad_rep(c, &[0; 15], 0, "Truncated", EINVAL);
    bad_rep(c, &[0; 20], 0, "SizeMismatch", EINVAL);
    // DMA_READ / DMA_WRITE: u64 count.
    let c = Command::DmaRead;
    let rd = Bytes::new(16).u64(0, 0x1000).u64(8, 8);
    ok_req(c, rd.bytes(), 0);
    bad_req(c, rd.clone().u64(8, u64::from(max) + 1).bytes(), 0, "TooBig", E2BIG);
    bad_req(c, rd.clone().u64(8, u64::MAX).bytes(), 0, "TooBig", E2BIG);
    bad_req(c, rd.clone().u64(0, u64::MAX - 4).bytes(), 0, "BadField", EINVAL);
    bad_rep(c, Bytes::new(20).u64(8, 5).bytes(), 0, "Truncated", EINVAL);
    bad_rep(c, Bytes::new(20).u64(8, u64::MAX).bytes(), 0, "BadField", EINVAL);
    let c = Command::DmaWrite;
    let wr = Bytes::new(18).u64(0, 0x1000).u64(8, 2);
    ok_req(c, wr.bytes(), 0);
    bad_req(c, wr.clone().u64(8, u64::MAX).bytes(), 0, "TooBig", E2BIG);
    bad_req(c, wr.clone().u64(8, 3).bytes(), 0, "Truncated", EINVAL);
    bad_req(c, wr.clone().u64(0, u64::MAX).bytes(), 0, "BadField", EINVAL);
    bad_rep(c, &[0; 8], 0, "Truncated", EINVAL);
    bad_rep(c, &[0; 24], 0, "SizeMismatch", EINVAL);
}

#[test]
fn device_reset_and_write_multi() {
    bad_req(Command::DeviceReset, &[0], 0, "SizeMismatch", EINVAL);
    bad_req(Command::DeviceReset, &[], 1, "BadFdCount", EINVAL);
    bad_rep(Command::DeviceReset, &[0], 0, "SizeMismatch", EINVAL);
    let c = Command::RegionWriteMulti;
    let ok = Bytes::new(32).u64(0, 1).u64(8, 0x10).u32(16, 0).u32(20, 8);
    ok_req(c, ok.bytes(), 0);
    bad_req(c, &ok.0[..7], 0, "Truncated", EINVAL);
    bad_req(c, ok.clone().u64(0, 2).bytes(), 0, "Truncated", EINVAL);
    bad_req(c, &[&ok.0[..], &[0; 24]].concat(), 0, "SizeMismatch", EINVAL);
    bad_req(c, ok.clone().u64(0, u64::MAX).bytes(), 0, "BadField", EINVAL);
    bad_req(c, ok.clone().u64(0, u64::MAX / 24 + 1).bytes(), 0, "BadField", EINVAL);
    bad_req(c, &ok.clone().u64(0, 0).0[..8], 0, "BadField", EINVAL);
    bad_req(c, ok.clone().u32(20, 9).bytes(), 0, "BadField", EINVAL);
    bad_req(c, ok.clone().u32(20, 0).bytes(), 0, "BadField", EINVAL);
    bad_req(c, ok.clone().u64(8, u64::MAX - 2).bytes(), 0, "BadField", EINVAL);
    bad_req(c, ok.bytes(), 1, "BadFdCount", EINVAL);
    bad_rep(c, &[0; 7], 0, "Truncated", EINVAL);
    bad_rep(c, &[0; 9], 0, "SizeMismatch", EINVAL);
}

const GET: u32 = 1 << 16;
const SET: u32 = 1 << 17;
const PROBE: u32 = 1 << 18;

#[test]
fn device_feature() {
    let c = Command::DeviceFeature;
    let f = |argsz: u32, flags: u32, data: &[u8]| Bytes::new(8 + data.len()).u32(0, argsz).u32(4, flags).raw(8, data).0;
    ok_req(c, &f(8, PROBE | GET | SET | 2, &[]), 0);
    bad_req(c, &f(8, GET | SET | 2, &[]), 0, "BadFlags", EINVAL); // GET|SET without PROBE
    bad_req(c, &f(8, 2, &[]), 0, "BadFlags", EINVAL); // no operation
    bad_req(c, &f(8, GET | 2 | (1 << 19), &[]), 0, "BadFlags", EINVAL);
    bad_req(c, &f(16, SET | 1, &[0; 8]), 0, "BadFlags", EINVAL); // MIGRATION is GET only
    bad_req(c, &f(8, GET | 6, &[]), 0, "BadFlags", EINVAL); // LOGGING_START is SET only
    bad_req(c, &f(8, GET | 7, &[]), 0, "BadFlags", EINVAL);
    bad_req(c, &f(32, SET | 8, &[0; 24]), 0, "BadFlags", EINVAL); // REPORT is GET only
    bad_req(c, &f(7, GET | 1, &[]), 0, "BadArgsz", EINVAL);
    bad_req(c, &[0; 7], 0, "Truncated", EINVAL);
    bad_req(c, &f(8, GET | 1, &[]), 1, "BadFdCount", EINVAL);
    // Data where the request needs none is ignored (a GET may carry its reply buffer;
    // libvfio-user's client sends DMA_LOGGING_STOP with the START control block).
    ok_req(c, &f(16, PROBE | SET | 2, &[0; 8]), 0);
    ok_req(c, &f(16, GET | 1, &[0; 8]), 0);
    ok_req(c, &f(16, GET | 2, &[0; 8]), 0);
    ok_req(c, &f(24, SET | 7, &Bytes::new(16).u64(0, 4096).0), 0);
    // MIG_DEVICE_STATE SET.
    let st = |s: u32, fd: u32| Bytes::new(8).u32(0, s).u32(4, fd).0;
    ok_req(c, &f(16, SET | 2, &st(4, 0)), 0);
    bad_req(c, &f(16, SET | 2, &st(4, 0)[..4]), 0, "Truncated", EINVAL);
    bad_req(c, &f(16, SET | 2, &[&st(4, 0)[..], &[0]].concat()), 0, "SizeMismatch", EINVAL);
    bad_req(c, &f(16, SET | 2, &st(8, 0)), 0, "BadField", EINVAL);
    bad_req(c, &f(16, SET | 2, &st(u32::MAX, 0)), 0, "BadField", EINVAL);
    // data_fd is unused; libvfio-user's client sends -1.
    assert_eq!(
        decode_request(
            &req_hdr(16, &f(16, SET | 2, &st(1, u32::MAX))),
            &f(16, SET | 2, &st(1, u32::MAX)),
            0,
            &DecodeLimits::default()
        ),
        Ok(vfio_user_proto::Request::DeviceFeature(
            vfio_user_proto::wire::DeviceFeature { argsz: 16, flags: SET | 2 },
            vfio_user_proto::FeatureRequest::MigStateSet(vfio_user_proto::MigState::Stop)
        ))
    );
    // DMA_LOGGING_START.
    let start = |page: u64, n: u32, ranges: &[(u64, u64)]| {
        let mut b = Bytes::new(16 + 16 * ranges.len()).u64(0, page).u32(8, n);
        for (i, (iova, len)) in ranges.iter().enumerate() {
            b = b.u64(16 + 16 * i, *iova).u64(24 + 16 * i, *len);
        }
        b.0
    };
    ok_req(c, &f(40, SET | 6, &start(4096, 1, &[(0, 0x1000)])), 0);
    bad_req(c, &f(40, SET | 6, &start(4095, 1, &[(0, 0x1000)])), 0, "BadField", EINVAL);
    bad_req(c, &f(40, SET | 6, &start(0, 1, &[(0, 0x1000)])), 0, "BadField", EINVAL);
    bad_req(c, &f(40, SET | 6, &start(4096, 2, &[(0, 0x1000)])), 0, "Truncated", EINVAL);
    bad_req(c, &f(40, SET | 6, &start(4096, 0, &[(0, 0x1000)])), 0, "SizeMismatch", EINVAL);
    bad_req(c, &f(40, SET | 6, &start(4096, u32::MAX, &[(0, 0x1000)])), 0, "Truncated", EINVAL);
    bad_req(c, &f(40, SET | 6, &start(4096, 1, &[(0, 0)])), 0, "BadField", EINVAL);
    bad_req(c, &f(40, SET | 6, &start(4096, 1, &[(u64::MAX, 2)])), 0, "BadField", EINVAL);
    bad_req(c, &f(40, SET | 6, &start(4096, 1, &[(0, 0x1000)])[..8]), 0, "Truncated", EINVAL);
    // DMA_LOGGING_REPORT: 64 pages -> one u64 word, so the reply needs 32 + 8.
    let rep = |iova: u64, len: u64, page: u64| Bytes::new(24).u64(0, iova).u64(8, len).u64(16, page).0;
    ok_req(c, &f(40, GET | 8, &rep(0, 64 * 4096, 4096)), 0);
    bad_req(c, &f(39, GET | 8, &rep(0, 64 * 4096, 4096)), 0, "BadArgsz", EINVAL);
    bad_req(c, &f(40, GET | 8, &rep(0, 64 * 4096, 3)), 0, "BadField", EINVAL);
    bad_req(c, &f(40, GET | 8, &rep(0, 0, 4096)), 0, "BadField", EINVAL);
    bad_req(c, &f(40, GET | 8, &rep(u64::MAX, 2, 1)), 0, "BadField", EINVAL);
    bad_req(c, &f(u32::MAX, GET | 8, &rep(0, u64::MAX, 1)), 0, "BadArgsz", EINVAL);
    bad_req(c, &f(40, GET | 8, &rep(0, 4096, 4096)[..16]), 0, "Truncated", EINVAL);
    bad_req(c, &f(40, GET | 8, &[&rep(0, 4096, 4096)[..], &[0]].concat()), 0, "SizeMismatch", EINVAL);
    bad_rep(c, &[0; 7], 0, "Truncated", EINVAL);
    bad_rep(c, &[0; 8], 1, "BadFdCount", EINVAL);
}

#[test]
fn mig_data() {
    let max = DecodeLimits::default().max_data_xfer_size;
    let c = Command::MigDataRead;
    let rd = Bytes::new(8).u32(0, 8 + 16).u32(4, 16);
    ok_req(c, rd.bytes(), 0);
    bad_req(c, rd.clone().u32(4, max + 1).bytes(), 0, "TooBig", E2BIG);
    bad_req(c, rd.clone().u32(0, 7).bytes(), 0, "BadArgsz", EINVAL);
    bad_req(c, rd.clone().u32(0, 8 + 15).bytes(), 0, "BadArgsz", EINVAL); // reply cannot hold `size`
    bad_req(c, &rd.0[..7], 0, "Truncated", EINVAL);
    bad_req(c, &[&rd.0[..], &[0]].concat(), 0, "SizeMismatch", EINVAL);
    bad_req(c, rd.bytes(), 1, "BadFdCount", EINVAL);
    bad_rep(c, Bytes::new(10).u32(0, 10).u32(4, 3).bytes(), 0, "Truncated", EINVAL);
    // A reply padded past `size` (libvfio-user pads to the size asked for): the data is
    // the first `size` bytes.
    let padded = Bytes::new(10).u32(0, 9).u32(4, 1).raw(8, &[7, 0]);
    match decode_reply(&rep_hdr(c as u16, padded.bytes()), padded.bytes(), 0) {
        Ok(Reply::MigDataRead(m, d)) => assert_eq!((m.size, d), (1, &[7u8][..])),
        other => panic!("padded MIG_DATA_READ reply: {other:?}"),
    }
    bad_rep(c, Bytes::new(10).u32(0, 10).u32(4, u32::MAX).bytes(), 0, "Truncated", EINVAL);
    let c = Command::MigDataWrite;
    let wr = Bytes::new(11).u32(0, 11).u32(4, 3).raw(8, &[1, 2, 3]);
    ok_req(c, wr.bytes(), 0);
    bad_req(c, wr.clone().u32(4, u32::MAX).bytes(), 0, "TooBig", E2BIG);
    bad_req(c, wr.clone().u32(4, 4).bytes(), 0, "Truncated", EINVAL);
    bad_req(c, wr.clone().u32(4, 2).bytes(), 0, "SizeMismatch", EINVAL);
    bad_req(c, wr.clone().u32(0, 10).bytes(), 0, "BadArgsz", EINVAL);
    bad_rep(c, &[0], 0, "SizeMismatch", EINVAL);
}

#[test]
fn region_io_fds_reply_hostile() {
    let c = Command::DeviceGetRegionIoFds;
    let one = Bytes::new(56).u32(0, 56).u32(8, 1).u32(12, 1).u32(32, 0).u64(24, 4);
    assert!(drep(c, one.bytes(), 1).is_ok());
    // fd_index >= nfds.
    bad_rep(c, one.clone().u32(32, 1).bytes(), 1, "BadField", EINVAL);
    bad_rep(c, one.clone().u32(32, u32::MAX).bytes(), 3, "BadField", EINVAL);
    // Entries but no fd at all.
    bad_rep(c, one.bytes(), 0, "BadFdCount", EINVAL);
    // count matching neither 40- nor 48-byte entries.
    bad_rep(c, one.clone().u32(12, 2).bytes(), 1, "BadField", EINVAL);
    bad_rep(c, one.clone().u32(12, 0).bytes(), 1, "BadField", EINVAL);
    bad_rep(c, one.clone().u32(12, u32::MAX).bytes(), 1, "BadField", EINVAL);
    bad_rep(c, &[&one.0[..], &[0; 3]].concat(), 1, "BadField", EINVAL);
    // 48-byte entries: fd_index is checked too.
    let shadow = Bytes::new(64).u32(0, 64).u32(12, 1).u32(32, 2);
    bad_rep(c, shadow.bytes(), 2, "BadField", EINVAL);
    assert!(drep(c, shadow.bytes(), 3).is_ok());
    bad_rep(c, &[0; 15], 1, "Truncated", EINVAL);
}

#[test]
fn region_caps_hostile_chains() {
    let info = |argsz: u32, cap: u32, len: usize| Bytes::new(len).u32(0, argsz).u32(4, 8).u32(12, cap);
    let bad_field = |p: &[u8]| refused(parse_region_caps(p), "BadField", EINVAL);
    // A self-loop and a two-element loop.
    bad_field(info(64, 32, 64).u16(32, 2).u32(36, 32).bytes());
    bad_field(info(64, 32, 64).u16(32, 2).u32(36, 48).u16(48, 2).u32(52, 32).bytes());
    // A long loop through distinct offsets (every 8 bytes) is still caught.
    let mut p = info(4096, 32, 4096);
    for off in (32..4088).step_by(8) {
        p = p.u16(off, 99).u32(off + 4, if off + 8 < 4088 { off as u32 + 8 } else { 32 });
    }
    bad_field(p.bytes());
    // Pointing into the fixed part, past argsz, past the payload.
    bad_field(info(64, 8, 64).bytes());
    bad_field(info(36, 32, 64).bytes());
    bad_field(info(64, 60, 64).bytes());
    bad_field(info(u32::MAX, u32::MAX, 64).bytes());
    // nr_areas too large for the bytes present, or overflowing.
    bad_field(info(64, 32, 64).u16(32, 1).u32(40, 2).bytes());
    bad_field(info(64, 32, 64).u16(32, 1).u32(40, u32::MAX).bytes());
    // A TYPE cap cut short.
    bad_field(info(44, 32, 64).u16(32, 2).bytes());
    refused(parse_region_caps(&[0; 31]), "Truncated", EINVAL);
    // A maximal non-looping chain (a capability every 8 bytes) is walked in linear time and
    // yields one entry per capability (was quadratic: 1.5 s for a 1 MiB reply).
    let len = 256 * 1024;
    let mut p = info(len as u32, 32, len);
    for off in (32..len).step_by(8) {
        p = p.u16(off, 99).u32(off + 4, if off + 8 < len { off as u32 + 8 } else { 0 });
    }
    assert_eq!(parse_region_caps(p.bytes()).unwrap().len(), (len - 32) / 8);
    // Without the CAPS flag the chain is not read.
    assert!(parse_region_caps(Bytes::new(32).u32(12, 5).bytes()).unwrap().is_empty());
}

#[test]
fn every_error_maps_to_a_positive_errno() {
    let errs = [
        DecodeError::Command(CommandError::Unknown(99)),
        DecodeError::Command(CommandError::Removed(14)),
        DecodeError::TooBig { cmd: Command::RegionRead, count: 2, max: 1 },
        DecodeError::BadJson("x".into()),
        DecodeError::WrongDirection(Command::DmaRead),
    ];
    let got: Vec<i32> = errs.iter().map(DecodeError::errno).collect();
    assert_eq!(got, vec![EINVAL, ENOTSUP, E2BIG, EINVAL, EINVAL]);
}
