// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Helpers shared by the integration tests: byte buffers built field by field at the offsets
//! the specification documents (host-endian), and short-hands for the decoders.

#![allow(dead_code)]

use vfio_user_proto::{decode_reply, decode_request, Command, DecodeError, DecodeLimits, Header, Reply, Request};

/// A zero-filled byte buffer of a documented size, filled in at documented offsets.
#[derive(Clone, Debug)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn new(len: usize) -> Self {
        Bytes(vec![0; len])
    }
    pub fn u16(mut self, off: usize, v: u16) -> Self {
        self.0[off..off + 2].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u32(mut self, off: usize, v: u32) -> Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u64(mut self, off: usize, v: u64) -> Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn raw(mut self, off: usize, v: &[u8]) -> Self {
        self.0[off..off + v.len()].copy_from_slice(v);
        self
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The 16-byte header, built from the spec's table: msg_id @0, command @2, msg_size @4,
/// flags @8, error @12.
pub fn header_bytes(msg_id: u16, command: u16, msg_size: u32, flags: u32, error: u32) -> Vec<u8> {
    Bytes::new(16).u16(0, msg_id).u16(2, command).u32(4, msg_size).u32(8, flags).u32(12, error).0
}

/// A command header for `payload`.
pub fn req_hdr(cmd: u16, payload: &[u8]) -> Header {
    Header { msg_id: 1, command: cmd, msg_size: (16 + payload.len()) as u32, flags: 0, error: 0 }
}

/// A reply header for `payload`.
pub fn rep_hdr(cmd: u16, payload: &[u8]) -> Header {
    Header { msg_id: 1, command: cmd, msg_size: (16 + payload.len()) as u32, flags: 1, error: 0 }
}

/// Decodes a request with the default limits.
pub fn dreq(cmd: Command, payload: &[u8], nfds: usize) -> Result<Request<'_>, DecodeError> {
    decode_request(&req_hdr(cmd as u16, payload), payload, nfds, &DecodeLimits::default())
}

/// Decodes a request with generous fd limits.
pub fn dreq_fds(cmd: Command, payload: &[u8], nfds: usize) -> Result<Request<'_>, DecodeError> {
    let limits = DecodeLimits { max_msg_fds: 253, ..DecodeLimits::default() };
    decode_request(&req_hdr(cmd as u16, payload), payload, nfds, &limits)
}

/// Decodes a reply.
pub fn drep(cmd: Command, payload: &[u8], nfds: usize) -> Result<Reply<'_>, DecodeError> {
    decode_reply(&rep_hdr(cmd as u16, payload), payload, nfds)
}

/// Encodes a request payload.
pub fn ereq(r: &Request<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    r.encode_payload(&mut v);
    v
}

/// Encodes a reply payload.
pub fn erep(r: &Reply<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    r.encode_payload(&mut v);
    v
}

/// The whole message as the crate frames it: header for `cmd` + payload.
pub fn framed_command(msg_id: u16, cmd: Command, payload: &[u8]) -> Vec<u8> {
    let mut v = vm_memory::ByteValued::as_slice(&Header::command(msg_id, cmd, payload.len())).to_vec();
    v.extend_from_slice(payload);
    v
}

/// Asserts that a request payload built by hand decodes to `expect` and that `expect`
/// encodes to exactly those bytes; returns the decoded value for further checks.
pub fn both_ways_req<'a>(cmd: Command, wire: &'a [u8], nfds: usize, expect: &Request<'_>) -> Request<'a> {
    let got = dreq_fds(cmd, wire, nfds).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert_eq!(&got, expect, "{cmd}: decoded value");
    assert_eq!(ereq(expect), wire, "{cmd}: encoded bytes");
    assert_eq!(got.command(), cmd);
    got
}

/// The same for replies.
pub fn both_ways_rep<'a>(cmd: Command, wire: &'a [u8], nfds: usize, expect: &Reply<'_>) -> Reply<'a> {
    let got = drep(cmd, wire, nfds).unwrap_or_else(|e| panic!("{cmd} reply: {e}"));
    assert_eq!(&got, expect, "{cmd}: decoded reply");
    assert_eq!(erep(expect), wire, "{cmd}: encoded reply bytes");
    assert_eq!(got.command(), cmd);
    got
}

/// Reads an eventfd's counter (8 bytes).
pub fn efd_read(fd: &std::os::fd::OwnedFd) -> u64 {
    let mut b = [0u8; 8];
    assert_eq!(rustix::io::read(fd, &mut b).unwrap(), 8);
    u64::from_ne_bytes(b)
}

/// Sends raw bytes with fds in one sendmsg (no framing), as a hostile or slow peer would.
pub fn raw_send(sock: &std::os::unix::net::UnixStream, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(253))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    let n = sendmsg(sock, &[std::io::IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL).unwrap();
    assert_eq!(n, bytes.len());
}

/// The typed DMA_UNMAP request of a wire entry and bitmap header (valid flags only).
pub fn unmap_req(
    unmap: vfio_user_proto::wire::DmaUnmap,
    bitmap: Option<vfio_user_proto::wire::DmaBitmap>,
) -> vfio_user_proto::Request<'static> {
    vfio_user_proto::Request::DmaUnmap(vfio_user_proto::wire::DmaUnmapRequest::from_wire(unmap, bitmap).unwrap())
}
