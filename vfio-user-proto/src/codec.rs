// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What every command family shares to decode and encode: the wire-struct macro, reading a
//! struct at an offset, the size, fd and range checks the decoders are made of (each
//! written once, generic over the wire struct), and [`Payload`], a message body as borrowed
//! parts ready to be gathered into one `sendmsg`.

use vm_memory::ByteValued;

use crate::command::Command;
use crate::error::DecodeError;

/// Implements [`ByteValued`] for a wire struct and asserts its size.
macro_rules! wire_struct {
    ($t:ty, $size:expr) => {
        // SAFETY: the type is `repr(C)`, consists only of integers and byte arrays laid out
        // without padding (the size assertion below pins the sum of the fields), and every
        // bit pattern is a valid value.
        unsafe impl vm_memory::ByteValued for $t {}
        const _: () = assert!(std::mem::size_of::<$t>() == $size);
    };
}
pub(crate) use wire_struct;

/// Reads a `T` from `buf` at `off`, or `None` if `buf` is too short. Works at any alignment.
pub fn read_at<T: ByteValued + Default>(buf: &[u8], off: usize) -> Option<T> {
    let end = off.checked_add(std::mem::size_of::<T>())?;
    let bytes = buf.get(off..end)?;
    let mut v = T::default();
    v.as_mut_slice().copy_from_slice(bytes);
    Some(v)
}

/// Reads `buf` as exactly one `T`: `None` if it is shorter or longer.
pub fn read_exact<T: ByteValued + Default>(buf: &[u8]) -> Option<T> {
    read_at(buf, 0).filter(|_| buf.len() == std::mem::size_of::<T>())
}

/// Appends `head` followed by `len` zero bytes of room for data to `out`, and returns the
/// range of that room in `out`: for replies whose data is produced in place (REGION_READ,
/// MIG_DATA_READ).
pub fn append_with_room<T: ByteValued>(out: &mut Vec<u8>, head: &T, len: usize) -> std::ops::Range<usize> {
    out.extend_from_slice(head.as_slice());
    let start = out.len();
    out.resize(start + len, 0);
    start..start + len
}

/// Writes `head` at the start of `out` and returns the range of the `len` bytes of room for
/// data after it, growing `out` when it is shorter (never shrinking or zeroing it): for a
/// reply built in a scratch buffer kept from one message to the next.
pub fn put_with_room<T: ByteValued>(out: &mut Vec<u8>, head: &T, len: usize) -> std::ops::Range<usize> {
    let h = head.as_slice();
    let end = h.len() + len;
    if out.len() < end {
        out.resize(end, 0);
    }
    out[..h.len()].copy_from_slice(h);
    h.len()..end
}

/// `argsz` of a message part that is `T` followed by `extra` bytes (saturating at
/// `u32::MAX`).
pub(crate) fn argsz_of<T>(extra: usize) -> u32 {
    u32::try_from(std::mem::size_of::<T>().saturating_add(extra)).unwrap_or(u32::MAX)
}

// ---- Decoding ----

/// The fixed part of a payload, or `Truncated`.
pub(crate) fn fixed<T: ByteValued + Default>(cmd: Command, p: &[u8]) -> Result<T, DecodeError> {
    read_at(p, 0).ok_or(DecodeError::Truncated { cmd, need: std::mem::size_of::<T>(), got: p.len() })
}

/// Exactly `expect` bytes: fewer is `Truncated`, more is `SizeMismatch`.
pub(crate) fn exact(cmd: Command, p: &[u8], expect: usize) -> Result<(), DecodeError> {
    match p.len() {
        n if n < expect => Err(DecodeError::Truncated { cmd, need: expect, got: n }),
        n if n > expect => Err(DecodeError::SizeMismatch { cmd, expect, got: n }),
        _ => Ok(()),
    }
}

/// At most `max` fds came with the message (`expect` words the rule for the error).
pub(crate) fn fds_at_most(cmd: Command, nfds: usize, max: usize, expect: &'static str) -> Result<(), DecodeError> {
    if nfds > max {
        Err(DecodeError::BadFdCount { cmd, got: nfds, expect })
    } else {
        Ok(())
    }
}

/// No fd came with the message.
pub(crate) fn no_fds(cmd: Command, nfds: usize) -> Result<(), DecodeError> {
    fds_at_most(cmd, nfds, 0, "none")
}

/// `argsz` is at least `min`.
pub(crate) fn argsz_at_least(cmd: Command, argsz: u32, min: usize) -> Result<(), DecodeError> {
    if (argsz as usize) < min {
        Err(DecodeError::BadArgsz { cmd, argsz })
    } else {
        Ok(())
    }
}

/// `base + len` does not wrap.
pub(crate) fn no_wrap(cmd: Command, field: &'static str, base: u64, len: u64) -> Result<(), DecodeError> {
    base.checked_add(len).map(|_| ()).ok_or(DecodeError::BadField { cmd, field })
}

/// A transfer count within the receiver's `max_data_xfer_size` (`max`).
pub(crate) fn xfer(cmd: Command, count: u64, max: u32) -> Result<(), DecodeError> {
    if count > u64::from(max) {
        Err(DecodeError::TooBig { cmd, count, max: max.into() })
    } else {
        Ok(())
    }
}

/// A payload with no fds and nothing in it (the bodiless commands and replies).
pub(crate) fn empty(cmd: Command, p: &[u8], nfds: usize) -> Result<(), DecodeError> {
    no_fds(cmd, nfds)?;
    exact(cmd, p, 0)
}

/// A payload with no fds that is exactly one `T`.
pub(crate) fn only<T: ByteValued + Default>(cmd: Command, p: &[u8], nfds: usize) -> Result<T, DecodeError> {
    no_fds(cmd, nfds)?;
    let t = fixed(cmd, p)?;
    exact(cmd, p, std::mem::size_of::<T>())?;
    Ok(t)
}

/// A reply that echoes a `T` or, from lax peers, is empty (REGION_WRITE, DMA_WRITE).
pub(crate) fn echo<T: ByteValued + Default>(cmd: Command, p: &[u8], nfds: usize) -> Result<Option<T>, DecodeError> {
    if p.is_empty() {
        no_fds(cmd, nfds)?;
        return Ok(None);
    }
    only(cmd, p, nfds).map(Some)
}

/// Size rule of the query commands (GET_INFO, GET_REGION_INFO, GET_REGION_IO_FDS,
/// GET_IRQ_INFO), whose `argsz` is the largest reply the client accepts: no fds, `argsz`
/// must cover the fixed part `T`, and the payload is `T` possibly followed by up to `argsz`
/// bytes in all. libvfio-user's client sends its whole argsz-sized buffer (as the VFIO ioctl
/// takes it) when it retries GET_REGION_INFO for the capabilities; the extra bytes carry no
/// request data and are ignored.
pub(crate) fn query<T: ByteValued + Default>(
    cmd: Command,
    p: &[u8],
    nfds: usize,
    argsz: impl Fn(&T) -> u32,
) -> Result<T, DecodeError> {
    no_fds(cmd, nfds)?;
    let t: T = fixed(cmd, p)?;
    let argsz = argsz(&t);
    argsz_at_least(cmd, argsz, std::mem::size_of::<T>())?;
    if p.len() > argsz as usize {
        return Err(DecodeError::SizeMismatch { cmd, expect: argsz as usize, got: p.len() });
    }
    Ok(t)
}

/// The access header of a transfer command (REGION_READ/WRITE, DMA_READ/WRITE): where, how
/// many bytes, and the name of the range for errors. Lets one generic decoder serve both
/// families.
pub(crate) trait Transfer: ByteValued + Default {
    /// The field named by a wrapping range ("offset + count", "address + count").
    const RANGE: &'static str;
    /// The start of the range.
    fn base(&self) -> u64;
    /// The number of bytes.
    fn count(&self) -> u64;
}

/// A read request: exactly the access header, no fds, a count within `max`, a range that
/// does not wrap.
pub(crate) fn read_request<T: Transfer>(cmd: Command, p: &[u8], nfds: usize, max: u32) -> Result<T, DecodeError> {
    let a: T = only(cmd, p, nfds)?;
    xfer(cmd, a.count(), max)?;
    no_wrap(cmd, T::RANGE, a.base(), a.count())?;
    Ok(a)
}

/// A write request: the access header followed by exactly `count` bytes of data, no fds, a
/// count within `max`, a range that does not wrap.
pub(crate) fn write_request<T: Transfer>(
    cmd: Command,
    p: &[u8],
    nfds: usize,
    max: u32,
) -> Result<(T, &[u8]), DecodeError> {
    no_fds(cmd, nfds)?;
    let a: T = fixed(cmd, p)?;
    xfer(cmd, a.count(), max)?;
    let head = std::mem::size_of::<T>();
    exact(cmd, p, head + a.count() as usize)?;
    no_wrap(cmd, T::RANGE, a.base(), a.count())?;
    Ok((a, &p[head..]))
}

/// The reply to a read: the access header followed by exactly `count` bytes, no fds.
pub(crate) fn read_reply<T: Transfer>(cmd: Command, p: &[u8], nfds: usize) -> Result<(T, &[u8]), DecodeError> {
    no_fds(cmd, nfds)?;
    let a: T = fixed(cmd, p)?;
    let head = std::mem::size_of::<T>();
    let len = usize::try_from(a.count())
        .ok()
        .and_then(|c| c.checked_add(head))
        .ok_or(DecodeError::BadField { cmd, field: "count" })?;
    exact(cmd, p, len)?;
    Ok((a, &p[head..]))
}

// ---- Encoding ----

/// Most bytes of a payload's fixed head: DMA_UNMAP's entry and bitmap header (40).
const HEAD_MAX: usize = 40;

/// A message body ready to send, as the encoders of this crate produce it: the command, its
/// fixed head (the wire structs' bytes, copied: at most 40), borrowed variable data, and a
/// NUL terminator where the protocol wants one (VERSION's JSON).
///
/// Nothing is allocated and the data is not copied: [`parts`](Payload::parts) hands the
/// pieces to a gathering write (`sendmsg` iovecs); [`append_to`](Payload::append_to) puts
/// them in a buffer the caller keeps.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    command: Command,
    head: [u8; HEAD_MAX],
    head_len: usize,
    data: &'a [u8],
    nul: bool,
}

impl<'a> Payload<'a> {
    /// The empty body of a message of `command` that has none (DEVICE_RESET, and the
    /// replies to DMA_MAP, SET_IRQS, DEVICE_RESET and MIG_DATA_WRITE).
    pub fn empty(command: Command) -> Self {
        Payload { command, head: [0; HEAD_MAX], head_len: 0, data: &[], nul: false }
    }

    /// A body of `command` whose head is `head`.
    pub(crate) fn of<T: ByteValued>(command: Command, head: &T) -> Self {
        Payload::empty(command).then(head)
    }

    /// Appends `part` to the head. The encoders of this crate put at most [`HEAD_MAX`]
    /// bytes there (asserted at compile time for one struct, tested for every command for
    /// two).
    pub(crate) fn then<T: ByteValued>(mut self, part: &T) -> Self {
        const { assert!(std::mem::size_of::<T>() <= HEAD_MAX) };
        let b = part.as_slice();
        let end = self.head_len + b.len();
        debug_assert!(end <= HEAD_MAX, "payload head of {end} bytes");
        if let Some(dst) = self.head.get_mut(self.head_len..end) {
            dst.copy_from_slice(b);
            self.head_len = end;
        }
        self
    }

    /// Sets the variable data after the head.
    pub(crate) fn data(mut self, data: &'a [u8]) -> Self {
        self.data = data;
        self
    }

    /// Terminates the data with a NUL byte.
    pub(crate) fn nul_terminated(mut self) -> Self {
        self.nul = true;
        self
    }

    /// The command this body belongs to.
    pub fn command(&self) -> Command {
        self.command
    }

    /// The fixed head's bytes.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// Size of the whole body in bytes (what goes after the header).
    pub fn len(&self) -> usize {
        self.head_len + self.data.len() + usize::from(self.nul)
    }

    /// Size of the whole message: the header and this body.
    pub fn msg_size(&self) -> usize {
        crate::header::HEADER_SIZE + self.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body as consecutive pieces (head, data, terminator), empty pieces left out: for
    /// a gathering write.
    pub fn parts(&self) -> Parts<'_> {
        let mut p = Parts { parts: [&[]; 3], n: 0 };
        for piece in [self.head(), self.data, if self.nul { &[0u8][..] } else { &[] }] {
            if !piece.is_empty() {
                p.parts[p.n] = piece;
                p.n += 1;
            }
        }
        p
    }

    /// Appends the body to `out`.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        for piece in self.parts().iter() {
            out.extend_from_slice(piece);
        }
    }

    /// The body as a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.append_to(&mut out);
        out
    }
}

impl std::fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload").field("command", &self.command).field("len", &self.len()).finish()
    }
}

/// The pieces of a [`Payload`], at most three; dereferences to `[&[u8]]`.
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    parts: [&'a [u8]; 3],
    n: usize,
}

impl<'a> std::ops::Deref for Parts<'a> {
    type Target = [&'a [u8]];

    fn deref(&self) -> &Self::Target {
        &self.parts[..self.n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::DmaUnmapRequest;
    use crate::version::Version;

    #[test]
    fn parts_leave_out_empty_pieces_and_end_with_the_terminator() {
        let p = Payload::empty(Command::DeviceReset);
        assert!(p.is_empty() && p.parts().is_empty());
        assert_eq!(p.msg_size(), crate::header::HEADER_SIZE);
        let v = Version { major: 0, minor: 2, json: b"{}" }.payload();
        assert_eq!(v.command(), Command::Version);
        assert_eq!(v.parts().len(), 3);
        let mut expect = 0u16.to_ne_bytes().to_vec();
        expect.extend_from_slice(&2u16.to_ne_bytes());
        expect.extend_from_slice(b"{}\0");
        assert_eq!(v.to_vec(), expect);
        assert_eq!(v.len(), expect.len());
        let mut out = vec![9];
        v.append_to(&mut out);
        assert_eq!(out[1..], expect[..]);
    }

    #[test]
    fn the_largest_head_fits() {
        // DMA_UNMAP with its bitmap header: two structs, 40 bytes, nothing after them.
        let p = DmaUnmapRequest::with_dirty_bitmap(0x1000, 0x8000, 0x1000).unwrap().payload();
        assert_eq!(p.head().len(), HEAD_MAX);
        assert_eq!(p.parts().len(), 1);
    }

    #[test]
    fn put_with_room_grows_but_never_shrinks() {
        let mut out = vec![7u8; 64];
        let room = put_with_room(&mut out, &0x0102_0304u32, 8);
        assert_eq!((room, out.len()), (4..12, 64));
        assert_eq!(out[..4], 0x0102_0304u32.to_ne_bytes());
        assert_eq!(out[4..12], [7; 8]);
        let room = put_with_room(&mut out, &1u64, 100);
        assert_eq!((room, out.len()), (8..108, 108));
        assert_eq!(read_exact::<u64>(&out[..8]), Some(1));
        assert_eq!(read_exact::<u64>(&out[..9]), None);
    }
}
