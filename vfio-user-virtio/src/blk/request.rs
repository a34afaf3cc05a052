// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One virtio-blk request: the chain is split into its device-readable bytes (header,
//! then OUT data or range segments) and device-writable bytes (IN data or the ID, then
//! the status byte, the chain's last byte), checked, and executed on the image (IN and
//! OUT with `preadv` / `pwritev` straight on client memory, see the `io` module).

use std::os::unix::fs::FileExt;

use rustix::fs::{fallocate, FallocateFlags};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
    VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::config::{MAX_RANGE_SECTORS, MAX_RANGE_SEGMENTS, SECTOR_SIZE};
use super::{io, VirtioBlk, CHUNK};

/// Status: success.
pub const STATUS_OK: u8 = VIRTIO_BLK_S_OK as u8;
/// Status: I/O error (also: malformed request, out of range, write to a read-only disk).
pub const STATUS_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
/// Status: unsupported request type or flags.
pub const STATUS_UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// Bytes of the request header (`type`, `reserved`, `sector`).
const HEADER: u64 = 16;
/// Bytes of a discard / write-zeroes segment.
const SEGMENT: u64 = 16;

/// A byte stream over a list of buffers in client memory.
struct Stream {
    segs: Vec<(u64, u64)>,
    len: u64,
}

impl Stream {
    fn new(segs: Vec<(u64, u64)>) -> Self {
        let len = segs.iter().map(|s| s.1).sum();
        Stream { segs, len }
    }

    /// Calls `f(address, length, position)` for the pieces of `[pos, pos + len)`.
    fn pieces(&self, mut pos: u64, len: u64, mut f: impl FnMut(u64, usize, usize) -> Result<(), ()>) -> Result<(), ()> {
        let end = pos.checked_add(len).filter(|&e| e <= self.len).ok_or(())?;
        let start = pos;
        let mut base = 0u64;
        for &(addr, slen) in &self.segs {
            if pos >= end {
                break;
            }
            if pos < base + slen {
                let off = pos - base;
                let n = (slen - off).min(end - pos);
                let a = addr.checked_add(off).ok_or(())?;
                f(a, n as usize, (pos - start) as usize)?;
                pos += n;
            }
            base += slen;
        }
        Ok(())
    }

    /// The (address, length) pieces of `[pos, pos + len)`.
    fn ranges(&self, pos: u64, len: u64) -> Option<Vec<(u64, usize)>> {
        let mut out = Vec::new();
        self.pieces(pos, len, |a, n, _| {
            out.push((a, n));
            Ok(())
        })
        .ok()?;
        Some(out)
    }

    fn read<M: GuestMemory>(&self, mem: &M, pos: u64, out: &mut [u8]) -> Result<(), ()> {
        self.pieces(pos, out.len() as u64, |a, n, at| {
            mem.read_slice(&mut out[at..at + n], GuestAddress(a)).map_err(|_| ())
        })
    }

    fn write<M: GuestMemory>(&self, mem: &M, pos: u64, data: &[u8]) -> Result<(), ()> {
        self.pieces(pos, data.len() as u64, |a, n, at| {
            mem.write_slice(&data[at..at + n], GuestAddress(a)).map_err(|_| ())
        })
    }
}

/// A request split into its parts.
struct Parsed {
    readable: Stream,
    /// Writable bytes before the status byte.
    writable: Stream,
    status: u64,
}

/// Splits a chain; `Err(Some(status_address))` for a malformed chain whose status byte is
/// reachable, `Err(None)` when it is not.
fn parse<M: GuestMemory>(chain: DescriptorChain<&M>, max_len: usize) -> Result<Parsed, Option<u64>> {
    // A chain is at most as long as the queue (2.7.5.3.1), indirect tables included; the
    // iteration stops one descriptor further, so a longer one is seen (and refused below).
    let descs: Vec<Descriptor> = chain.take(max_len + 1).collect();
    let last = descs.last().ok_or(None)?;
    let status = (last.is_write_only() && last.len() > 0)
        .then(|| last.addr().0.checked_add(u64::from(last.len()) - 1))
        .flatten();
    let status = status.ok_or(None)?;
    // The iteration stops early on a loop, a chain longer than the queue, a next index
    // beyond the table or a descriptor outside memory: the last one still says NEXT.
    if last.has_next() || descs.len() > max_len {
        return Err(Some(status));
    }
    let mut readable = Vec::new();
    let mut writable = Vec::new();
    for (i, d) in descs.iter().enumerate() {
        let len = if i == descs.len() - 1 { u64::from(d.len()) - 1 } else { u64::from(d.len()) };
        if d.is_write_only() {
            writable.push((d.addr().0, len));
        } else if writable.is_empty() {
            readable.push((d.addr().0, len));
        } else {
            // A device-readable buffer after a writable one (2.7.4.2).
            return Err(Some(status));
        }
    }
    Ok(Parsed { readable: Stream::new(readable), writable: Stream::new(writable), status })
}

/// Serves one chain; returns the used length.
pub(super) fn serve<M: GuestMemory>(blk: &VirtioBlk, mem: &M, chain: DescriptorChain<&M>, buf: &mut Vec<u8>) -> u32 {
    let (status, written, at) = match parse(chain, usize::from(blk.cfg.queue_size)) {
        Err(None) => return 0,
        Err(Some(at)) => (STATUS_IOERR, 0, at),
        Ok(p) => {
            let (s, w) = execute(blk, mem, &p, buf);
            (s, w, p.status)
        }
    };
    match mem.write_obj(status, GuestAddress(at)) {
        Ok(()) => u32::try_from(written + 1).unwrap_or(u32::MAX),
        Err(_) => 0,
    }
}

/// Checks that `[sector, sector + bytes / 512)` lies on the disk; returns its byte offset.
fn range(blk: &VirtioBlk, sector: u64, bytes: u64) -> Option<u64> {
    let off = sector.checked_mul(SECTOR_SIZE)?;
    let end = off.checked_add(bytes)?;
    (end <= blk.capacity * SECTOR_SIZE).then_some(off)
}

fn ensure(buf: &mut Vec<u8>, n: usize) -> Option<()> {
    if buf.len() < n {
        buf.try_reserve_exact(n - buf.len()).ok()?;
        buf.resize(n, 0);
    }
    Some(())
}

/// Executes a well-formed request; returns (status, bytes written before the status).
fn execute<M: GuestMemory>(blk: &VirtioBlk, mem: &M, p: &Parsed, buf: &mut Vec<u8>) -> (u8, u64) {
    let mut header = [0u8; HEADER as usize];
    if p.readable.read(mem, 0, &mut header).is_err() {
        return (STATUS_IOERR, 0);
    }
    let kind = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let sector = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let ro = blk.cfg.read_only;
    let result = match kind {
        VIRTIO_BLK_T_IN => read_disk(blk, mem, p, sector),
        VIRTIO_BLK_T_OUT if !ro => write_disk(blk, mem, p, sector).map(|()| 0),
        VIRTIO_BLK_T_FLUSH => blk.file.sync_data().map(|()| 0).map_err(|_| STATUS_IOERR),
        VIRTIO_BLK_T_GET_ID => {
            let id = blk.id();
            let n = (id.len() as u64).min(p.writable.len);
            p.writable.write(mem, 0, &id[..n as usize]).map(|()| n).map_err(|()| STATUS_IOERR)
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES if !ro => {
            ranges(blk, mem, p, kind == VIRTIO_BLK_T_WRITE_ZEROES, buf).map(|()| 0)
        }
        VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => Err(STATUS_IOERR),
        _ => Err(STATUS_UNSUPP),
    };
    match result {
        Ok(written) => (STATUS_OK, written),
        Err(s) => (s, 0),
    }
}

fn read_disk<M: GuestMemory>(blk: &VirtioBlk, mem: &M, p: &Parsed, sector: u64) -> Result<u64, u8> {
    let len = p.writable.len;
    if len % SECTOR_SIZE != 0 {
        return Err(STATUS_IOERR);
    }
    let off = range(blk, sector, len).ok_or(STATUS_IOERR)?;
    let pieces = p.writable.ranges(0, len).ok_or(STATUS_IOERR)?;
    io::file_to_memory(&blk.file, off, mem, &pieces).ok_or(STATUS_IOERR)?;
    Ok(len)
}

fn write_disk<M: GuestMemory>(blk: &VirtioBlk, mem: &M, p: &Parsed, sector: u64) -> Result<(), u8> {
    let len = p.readable.len - HEADER;
    if len % SECTOR_SIZE != 0 {
        return Err(STATUS_IOERR);
    }
    let off = range(blk, sector, len).ok_or(STATUS_IOERR)?;
    let pieces = p.readable.ranges(HEADER, len).ok_or(STATUS_IOERR)?;
    io::memory_to_file(&blk.file, off, mem, &pieces).ok_or(STATUS_IOERR)
}

/// DISCARD / WRITE_ZEROES: the segments after the header.
fn ranges<M: GuestMemory>(blk: &VirtioBlk, mem: &M, p: &Parsed, zeroes: bool, buf: &mut Vec<u8>) -> Result<(), u8> {
    let body = p.readable.len - HEADER;
    let count = body / SEGMENT;
    if body % SEGMENT != 0 || count == 0 || count > u64::from(MAX_RANGE_SEGMENTS) {
        return Err(STATUS_IOERR);
    }
    for i in 0..count {
        let mut seg = [0u8; SEGMENT as usize];
        p.readable.read(mem, HEADER + i * SEGMENT, &mut seg).map_err(|()| STATUS_IOERR)?;
        let sector = u64::from_le_bytes(seg[0..8].try_into().expect("8 bytes"));
        let sectors = u32::from_le_bytes(seg[8..12].try_into().expect("4 bytes"));
        let flags = u32::from_le_bytes(seg[12..16].try_into().expect("4 bytes"));
        let allowed = if zeroes { VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP } else { 0 };
        if flags & !allowed != 0 {
            return Err(STATUS_UNSUPP);
        }
        if sectors > MAX_RANGE_SECTORS {
            return Err(STATUS_IOERR);
        }
        let len = u64::from(sectors) * SECTOR_SIZE;
        let off = range(blk, sector, len).ok_or(STATUS_IOERR)?;
        if len == 0 {
            continue;
        }
        if zeroes {
            zero(blk, off, len, buf)?;
        } else {
            // Discarding is advisory: a file system without hole punching keeps the data.
            let _ = fallocate(&blk.file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, off, len);
        }
    }
    Ok(())
}

/// Zeroes `[off, off + len)` of the image: in place by the file system when it can,
/// otherwise by writing zeros.
fn zero(blk: &VirtioBlk, off: u64, len: u64, buf: &mut Vec<u8>) -> Result<(), u8> {
    if fallocate(&blk.file, FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE, off, len).is_ok() {
        return Ok(());
    }
    ensure(buf, CHUNK.min(len as usize)).ok_or(STATUS_IOERR)?;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        buf[..n].fill(0);
        blk.file.write_all_at(&buf[..n], off + done).map_err(|_| STATUS_IOERR)?;
        done += n as u64;
    }
    Ok(())
}
