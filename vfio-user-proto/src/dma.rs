// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The DMA family: DMA_MAP, DMA_UNMAP and the server-to-client DMA_READ / DMA_WRITE — their
//! wire structs and flags, typed forms and constructors, and the decoders and encoders of
//! each command and its reply.

use crate::codec::{
    argsz_at_least, echo, empty, exact, fixed, no_fds, no_wrap, read_at, read_reply, read_request, wire_struct,
    write_request, Payload, Transfer,
};
use crate::command::Command;
use crate::error::DecodeError;

bitflags::bitflags! {
    /// The flags of DMA_MAP.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct DmaMapFlags: u32 {
        /// The server may read the region.
        const READ = 1 << 0;
        /// The server may write the region.
        const WRITE = 1 << 1;
        /// libvfio-user extension, not in the spec: mmap the attached fd.
        const MMAP = 1 << 2;
        /// libvfio-user extension, not in the spec: access the attached fd with
        /// `pread`/`pwrite` instead of mapping it.
        const FILE_IO = 1 << 3;
    }
}

/// DMA_MAP flag: the server may read the region ([`DmaMapFlags::READ`]).
pub const DMA_MAP_FLAG_READ: u32 = DmaMapFlags::READ.bits();
/// DMA_MAP flag: the server may write the region ([`DmaMapFlags::WRITE`]).
pub const DMA_MAP_FLAG_WRITE: u32 = DmaMapFlags::WRITE.bits();
/// DMA_MAP flag (libvfio-user extension, not in the spec): mmap the attached fd.
pub const DMA_MAP_FLAG_MMAP: u32 = DmaMapFlags::MMAP.bits();
/// DMA_MAP flag (libvfio-user extension, not in the spec): access the attached fd with
/// `pread`/`pwrite` instead of mapping it.
pub const DMA_MAP_FLAG_FILE_IO: u32 = DmaMapFlags::FILE_IO.bits();
/// Every DMA_MAP flag this crate understands.
pub const DMA_MAP_FLAGS_KNOWN: u32 = DmaMapFlags::all().bits();

bitflags::bitflags! {
    /// What the server may do with a DMA region: the permission bits of DMA_MAP's flags.
    /// The one permission type of the workspace (the client maps with it, the DMA space
    /// enforces it).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct DmaProt: u32 {
        /// The server may read (DMA_READ, device reads of guest memory).
        const READ = DMA_MAP_FLAG_READ;
        /// The server may write.
        const WRITE = DMA_MAP_FLAG_WRITE;
    }
}

impl DmaProt {
    /// Read and write.
    pub const READ_WRITE: DmaProt = DmaProt::READ.union(DmaProt::WRITE);
    /// Read only.
    pub const READ_ONLY: DmaProt = DmaProt::READ;
    /// Write only.
    pub const WRITE_ONLY: DmaProt = DmaProt::WRITE;

    /// The permission bits of DMA_MAP flags (other bits are ignored).
    pub fn from_map_flags(flags: u32) -> DmaProt {
        DmaProt::from_bits_truncate(flags)
    }

    /// Whether reads are allowed.
    pub fn read(self) -> bool {
        self.contains(DmaProt::READ)
    }

    /// Whether writes are allowed.
    pub fn write(self) -> bool {
        self.contains(DmaProt::WRITE)
    }
}

impl From<DmaProt> for DmaMapFlags {
    fn from(p: DmaProt) -> DmaMapFlags {
        DmaMapFlags::from_bits_retain(p.bits())
    }
}

/// The DMA_MAP request body (32 bytes, one region per message).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaMap {
    /// Size of this struct: 32.
    pub argsz: u32,
    /// `DMA_MAP_FLAG_*`.
    pub flags: u32,
    /// Offset of the region within the attached fd (0 without an fd).
    pub offset: u64,
    /// DMA (IO virtual) address of the region.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
}
wire_struct!(DmaMap, 32);

impl DmaMap {
    /// A DMA_MAP body granting `prot` (`argsz` is its own size); `offset` is 0 without an fd.
    pub fn new(prot: DmaProt, offset: u64, addr: u64, size: u64) -> Self {
        let flags = DmaMapFlags::from(prot).bits();
        DmaMap { argsz: std::mem::size_of::<DmaMap>() as u32, flags, offset, addr, size }
    }

    /// The flags, typed; bits this crate does not know are kept (the decoder refuses them).
    pub fn map_flags(&self) -> DmaMapFlags {
        DmaMapFlags::from_bits_retain(self.flags)
    }

    /// The permissions the mapping grants.
    pub fn prot(&self) -> DmaProt {
        DmaProt::from_map_flags(self.flags)
    }
}

bitflags::bitflags! {
    /// The flags of DMA_UNMAP (Linux's values).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct DmaUnmapFlags: u32 {
        /// Kept by libvfio-user, from the 2021 protocol: the request carries a
        /// [`DmaBitmap`] and the reply returns the region's dirty bitmap.
        const GET_DIRTY_BITMAP = 1 << 0;
        /// Sent by QEMU: unmap every region; address and size are 0.
        const ALL = 1 << 1;
    }
}

/// DMA_UNMAP flag [`DmaUnmapFlags::GET_DIRTY_BITMAP`].
pub const DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = DmaUnmapFlags::GET_DIRTY_BITMAP.bits();
/// DMA_UNMAP flag [`DmaUnmapFlags::ALL`].
pub const DMA_UNMAP_FLAG_ALL: u32 = DmaUnmapFlags::ALL.bits();
/// Every DMA_UNMAP flag this crate understands.
pub const DMA_UNMAP_FLAGS_KNOWN: u32 = DmaUnmapFlags::all().bits();

/// The DMA_UNMAP request body, echoed by the reply (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaUnmap {
    /// In the request: the largest reply payload accepted.
    pub argsz: u32,
    /// `DMA_UNMAP_FLAG_*`.
    pub flags: u32,
    /// DMA address of the region.
    pub addr: u64,
    /// Size of the region.
    pub size: u64,
}
wire_struct!(DmaUnmap, 24);

impl DmaUnmap {
    /// The flags, typed; bits this crate does not know are kept (the decoder refuses them).
    pub fn unmap_flags(&self) -> DmaUnmapFlags {
        DmaUnmapFlags::from_bits_retain(self.flags)
    }
}

/// `struct vfio_user_bitmap`: follows [`DmaUnmap`] when `GET_DIRTY_BITMAP` is set (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaBitmap {
    /// Page size one bit stands for.
    pub pgsize: u64,
    /// Size of the bitmap in bytes.
    pub size: u64,
}
wire_struct!(DmaBitmap, 16);

/// The DMA_READ / DMA_WRITE access header (16 bytes); data follows in DMA_READ replies and
/// DMA_WRITE requests.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaAccess {
    /// DMA address.
    pub addr: u64,
    /// Number of bytes.
    pub count: u64,
}
wire_struct!(DmaAccess, 16);

impl DmaAccess {
    /// Bytes of the access header on the wire.
    pub const SIZE: usize = std::mem::size_of::<DmaAccess>();

    /// A DMA_READ / DMA_WRITE access of `count` bytes at `addr`.
    pub fn new(addr: u64, count: u64) -> Self {
        DmaAccess { addr, count }
    }

    /// The payload size of a message that moves `count` bytes after the access header (a
    /// DMA_WRITE request, a DMA_READ reply), saturating.
    pub fn payload_len(count: usize) -> usize {
        DmaAccess::SIZE.saturating_add(count)
    }
}

impl Transfer for DmaAccess {
    const RANGE: &'static str = "address + count";

    fn base(&self) -> u64 {
        self.addr
    }

    fn count(&self) -> u64 {
        self.count
    }
}

impl DmaBitmap {
    /// The bytes of a DMA_UNMAP dirty bitmap over `size` bytes of memory, one bit per
    /// `pgsize` page (`pgsize` a power of two; checked by the decoder and the client).
    pub fn bytes_for(size: u64, pgsize: u64) -> u64 {
        size.div_ceil(pgsize).div_ceil(8)
    }
}

/// Bytes of the DMA_UNMAP entry (request and reply echo).
pub const DMA_UNMAP_SIZE: u32 = 24;
/// Bytes of the DMA_UNMAP entry followed by the bitmap header (before the bitmap itself).
pub const DMA_UNMAP_WITH_BITMAP_SIZE: u64 = 40;

/// A DMA_UNMAP request, typed by its flags (the decoder accepts exactly these three forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaUnmapOp {
    /// Unmap the one mapping at exactly `addr`..`addr + size` (no flags).
    One {
        /// DMA address of the mapping.
        addr: u64,
        /// Its size.
        size: u64,
    },
    /// `UNMAP_ALL`: unmap every mapping (address and size are 0 on the wire).
    All,
    /// `GET_DIRTY_BITMAP` (2021 protocol): unmap one mapping and return its dirty bitmap.
    WithDirtyBitmap {
        /// DMA address of the mapping.
        addr: u64,
        /// Its size.
        size: u64,
        /// The bitmap asked for (page size and bytes).
        bitmap: DmaBitmap,
    },
}

/// A decoded DMA_UNMAP request: the typed operation and the request's `argsz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaUnmapRequest {
    /// The largest reply payload accepted.
    pub argsz: u32,
    /// What is asked.
    pub op: DmaUnmapOp,
}

impl DmaUnmapRequest {
    /// Unmap the one mapping at `addr`/`size` (`argsz` = the 24-byte echo).
    pub fn one(addr: u64, size: u64) -> Self {
        DmaUnmapRequest { argsz: DMA_UNMAP_SIZE, op: DmaUnmapOp::One { addr, size } }
    }

    /// Unmap everything (`UNMAP_ALL`).
    pub fn all() -> Self {
        DmaUnmapRequest { argsz: DMA_UNMAP_SIZE, op: DmaUnmapOp::All }
    }

    /// Unmap `addr`/`size` and return its dirty bitmap at `pgsize` (a power of two dividing
    /// `size`): `argsz` covers the echo, the bitmap header and the bitmap; `None` if that
    /// does not fit in a `u32`.
    pub fn with_dirty_bitmap(addr: u64, size: u64, pgsize: u64) -> Option<Self> {
        let bytes = DmaBitmap::bytes_for(size, pgsize);
        let argsz = u32::try_from(bytes.checked_add(DMA_UNMAP_WITH_BITMAP_SIZE)?).ok()?;
        let bitmap = DmaBitmap { pgsize, size: bytes };
        Some(DmaUnmapRequest { argsz, op: DmaUnmapOp::WithDirtyBitmap { addr, size, bitmap } })
    }

    /// The typed form of a wire entry and optional bitmap header; `None` for flag bits outside
    /// the three forms (unknown bits, both ALL and GET_DIRTY_BITMAP, a bitmap header without
    /// GET_DIRTY_BITMAP or the reverse). Sizes and ranges are the decoder's to check.
    pub fn from_wire(unmap: DmaUnmap, bitmap: Option<DmaBitmap>) -> Option<Self> {
        let op = match (unmap.flags, bitmap) {
            (0, None) => DmaUnmapOp::One { addr: unmap.addr, size: unmap.size },
            (DMA_UNMAP_FLAG_ALL, None) if unmap.addr == 0 && unmap.size == 0 => DmaUnmapOp::All,
            (DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, Some(bitmap)) => {
                DmaUnmapOp::WithDirtyBitmap { addr: unmap.addr, size: unmap.size, bitmap }
            }
            _ => return None,
        };
        Some(DmaUnmapRequest { argsz: unmap.argsz, op })
    }

    /// The 24-byte wire entry (which the reply echoes) and the bitmap header, if any.
    pub fn to_wire(&self) -> (DmaUnmap, Option<DmaBitmap>) {
        let argsz = self.argsz;
        match self.op {
            DmaUnmapOp::One { addr, size } => (DmaUnmap { argsz, flags: 0, addr, size }, None),
            DmaUnmapOp::All => (DmaUnmap { argsz, flags: DMA_UNMAP_FLAG_ALL, addr: 0, size: 0 }, None),
            DmaUnmapOp::WithDirtyBitmap { addr, size, bitmap } => {
                (DmaUnmap { argsz, flags: DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, addr, size }, Some(bitmap))
            }
        }
    }
}

// ---- Decoding ----

/// DMA_MAP request: exactly one [`DmaMap`] with `argsz` 32, no fd or one, known flags (the
/// libvfio-user MMAP / FILE_IO bits only with an fd, never both), a non-empty range that
/// does not wrap. Returns the body and whether an fd is attached.
pub(crate) fn decode_map_request(p: &[u8], nfds: usize) -> Result<(DmaMap, bool), DecodeError> {
    let cmd = Command::DmaMap;
    let map: DmaMap = fixed(cmd, p)?;
    exact(cmd, p, std::mem::size_of::<DmaMap>())?;
    if map.argsz as usize != std::mem::size_of::<DmaMap>() {
        return Err(DecodeError::BadArgsz { cmd, argsz: map.argsz });
    }
    let fd = match nfds {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::BadFdCount { cmd, got: nfds, expect: "0 or 1" }),
    };
    let bad = || DecodeError::BadFlags { cmd, flags: map.flags };
    let f = DmaMapFlags::from_bits(map.flags).ok_or_else(bad)?;
    let ext = DmaMapFlags::MMAP | DmaMapFlags::FILE_IO;
    if f.contains(ext) || (f.intersects(ext) && !fd) {
        return Err(bad());
    }
    if map.size == 0 {
        return Err(DecodeError::BadField { cmd, field: "size" });
    }
    no_wrap(cmd, "address + size", map.addr, map.size)?;
    if fd {
        no_wrap(cmd, "offset + size", map.offset, map.size)?;
    }
    Ok((map, fd))
}

/// DMA_UNMAP request, typed by its flags: one mapping (24 bytes), all of them (24 bytes,
/// address and size 0), or one with its dirty bitmap (40 bytes, a power-of-two page size
/// dividing the size, a bitmap and an `argsz` large enough for the reply).
pub(crate) fn decode_unmap_request(p: &[u8], nfds: usize) -> Result<DmaUnmapRequest, DecodeError> {
    let cmd = Command::DmaUnmap;
    no_fds(cmd, nfds)?;
    let unmap: DmaUnmap = fixed(cmd, p)?;
    let f = DmaUnmapFlags::from_bits(unmap.flags)
        .filter(|f| !f.is_all())
        .ok_or(DecodeError::BadFlags { cmd, flags: unmap.flags })?;
    let argsz = unmap.argsz;
    let entry = std::mem::size_of::<DmaUnmap>();
    if f.contains(DmaUnmapFlags::ALL) {
        exact(cmd, p, entry)?;
        argsz_at_least(cmd, argsz, entry)?;
        if unmap.addr != 0 || unmap.size != 0 {
            return Err(DecodeError::BadField { cmd, field: "address/size with UNMAP_ALL" });
        }
        return Ok(DmaUnmapRequest { argsz, op: DmaUnmapOp::All });
    }
    if unmap.size == 0 {
        return Err(DecodeError::BadField { cmd, field: "size" });
    }
    no_wrap(cmd, "address + size", unmap.addr, unmap.size)?;
    let (addr, size) = (unmap.addr, unmap.size);
    if !f.contains(DmaUnmapFlags::GET_DIRTY_BITMAP) {
        exact(cmd, p, entry)?;
        argsz_at_least(cmd, argsz, entry)?;
        return Ok(DmaUnmapRequest { argsz, op: DmaUnmapOp::One { addr, size } });
    }
    let whole = DMA_UNMAP_WITH_BITMAP_SIZE as usize;
    exact(cmd, p, whole)?;
    let bm: DmaBitmap = read_at(p, entry).ok_or(DecodeError::Truncated { cmd, need: whole, got: p.len() })?;
    if !bm.pgsize.is_power_of_two() || size % bm.pgsize != 0 {
        return Err(DecodeError::BadField { cmd, field: "bitmap pgsize" });
    }
    if bm.size < DmaBitmap::bytes_for(size, bm.pgsize) {
        return Err(DecodeError::BadField { cmd, field: "bitmap size" });
    }
    // The reply carries entry + bitmap header + bitmap; argsz must allow it.
    if u64::from(argsz) < DMA_UNMAP_WITH_BITMAP_SIZE.saturating_add(bm.size) {
        return Err(DecodeError::BadArgsz { cmd, argsz });
    }
    Ok(DmaUnmapRequest { argsz, op: DmaUnmapOp::WithDirtyBitmap { addr, size, bitmap: bm } })
}

/// DMA_READ request (server to client): one [`DmaAccess`], a count within `max`.
pub(crate) fn decode_read_request(p: &[u8], nfds: usize, max: u32) -> Result<DmaAccess, DecodeError> {
    read_request(Command::DmaRead, p, nfds, max)
}

/// DMA_WRITE request (server to client): a [`DmaAccess`] and its `count` bytes.
pub(crate) fn decode_write_request(p: &[u8], nfds: usize, max: u32) -> Result<(DmaAccess, &[u8]), DecodeError> {
    write_request(Command::DmaWrite, p, nfds, max)
}

/// DMA_MAP reply: empty.
pub(crate) fn decode_map_reply(p: &[u8], nfds: usize) -> Result<(), DecodeError> {
    empty(Command::DmaMap, p, nfds)
}

/// The echoed entry of a DMA_UNMAP reply and the dirty bitmap that follows it.
pub(crate) type UnmapReply<'a> = (Option<DmaUnmap>, Option<(DmaBitmap, &'a [u8])>);

/// DMA_UNMAP reply: empty (peers following the 2021 text), the echoed entry, or the entry
/// with GET_DIRTY_BITMAP followed by the bitmap header and exactly its bytes.
pub(crate) fn decode_unmap_reply(p: &[u8], nfds: usize) -> Result<UnmapReply<'_>, DecodeError> {
    let cmd = Command::DmaUnmap;
    no_fds(cmd, nfds)?;
    if p.is_empty() {
        return Ok((None, None));
    }
    let u: DmaUnmap = fixed(cmd, p)?;
    let entry = std::mem::size_of::<DmaUnmap>();
    if !u.unmap_flags().contains(DmaUnmapFlags::GET_DIRTY_BITMAP) {
        exact(cmd, p, entry)?;
        return Ok((Some(u), None));
    }
    let whole = DMA_UNMAP_WITH_BITMAP_SIZE as usize;
    let bm: DmaBitmap = read_at(p, entry).ok_or(DecodeError::Truncated { cmd, need: whole, got: p.len() })?;
    let len = usize::try_from(bm.size)
        .ok()
        .and_then(|s| s.checked_add(whole))
        .ok_or(DecodeError::BadField { cmd, field: "bitmap size" })?;
    exact(cmd, p, len)?;
    Ok((Some(u), Some((bm, &p[whole..]))))
}

/// DMA_READ reply (client to server): the access and its `count` bytes.
pub(crate) fn decode_read_reply(p: &[u8], nfds: usize) -> Result<(DmaAccess, &[u8]), DecodeError> {
    read_reply(Command::DmaRead, p, nfds)
}

/// DMA_WRITE reply: the echoed access, or nothing (QEMU sends a bare header).
pub(crate) fn decode_write_reply(p: &[u8], nfds: usize) -> Result<Option<DmaAccess>, DecodeError> {
    echo(Command::DmaWrite, p, nfds)
}

// ---- Encoding ----

impl DmaMap {
    /// The DMA_MAP request carrying this body.
    pub fn request(&self) -> Payload<'static> {
        Payload::of(Command::DmaMap, self)
    }
}

impl DmaUnmapRequest {
    /// The DMA_UNMAP request: the entry, and the bitmap header when it asks for one.
    pub fn payload(&self) -> Payload<'static> {
        let (unmap, bitmap) = self.to_wire();
        let p = Payload::of(Command::DmaUnmap, &unmap);
        match bitmap {
            Some(b) => p.then(&b),
            None => p,
        }
    }
}

impl DmaUnmap {
    /// The DMA_UNMAP reply: the echoed `entry` (none from peers following the 2021 text),
    /// then the bitmap header and the bitmap's bytes when the request asked for them.
    pub fn reply<'a>(entry: Option<&DmaUnmap>, bitmap: Option<(&DmaBitmap, &'a [u8])>) -> Payload<'a> {
        let mut p = Payload::empty(Command::DmaUnmap);
        if let Some(u) = entry {
            p = p.then(u);
        }
        if let Some((b, bits)) = bitmap {
            p = p.then(b).data(bits);
        }
        p
    }
}

impl DmaAccess {
    /// The DMA_READ request for this access.
    pub fn read_request(&self) -> Payload<'static> {
        Payload::of(Command::DmaRead, self)
    }

    /// The DMA_WRITE request of `data` (`count` is `data.len()`).
    pub fn write_request<'a>(&self, data: &'a [u8]) -> Payload<'a> {
        Payload::of(Command::DmaWrite, self).data(data)
    }

    /// The DMA_READ reply: this access echoed and the bytes read.
    pub fn read_reply<'a>(&self, data: &'a [u8]) -> Payload<'a> {
        Payload::of(Command::DmaRead, self).data(data)
    }

    /// The DMA_WRITE reply: this access echoed.
    pub fn write_reply(&self) -> Payload<'static> {
        Payload::of(Command::DmaWrite, self)
    }
}
