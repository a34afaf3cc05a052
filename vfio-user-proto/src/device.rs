// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device family: DEVICE_GET_INFO, DEVICE_GET_REGION_INFO (its capability chain is in
//! [`crate::region_caps`]), DEVICE_GET_REGION_IO_FDS and DEVICE_RESET — their wire structs
//! and flags, constructors, and the decoders and encoders of each command and its reply.

use crate::array::WireArray;
use crate::codec::{argsz_of, empty, fds_at_most, fixed, only, query, read_at, wire_struct, Payload};
use crate::command::Command;
use crate::error::DecodeError;

bitflags::bitflags! {
    /// The flags of DEVICE_GET_INFO (`VFIO_DEVICE_FLAGS_*`). A peer may set bits this crate
    /// does not name (VFIO defines more device types); they are kept.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct DeviceFlags: u32 {
        /// The device supports DEVICE_RESET.
        const RESET = 1 << 0;
        /// The device is a PCI device.
        const PCI = 1 << 1;
    }
}

/// DEVICE_GET_INFO flag [`DeviceFlags::RESET`].
pub const DEVICE_FLAGS_RESET: u32 = DeviceFlags::RESET.bits();
/// DEVICE_GET_INFO flag [`DeviceFlags::PCI`].
pub const DEVICE_FLAGS_PCI: u32 = DeviceFlags::PCI.bits();

/// DEVICE_GET_INFO request and reply body (`struct vfio_device_info`, 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Request: largest reply accepted; reply: 16.
    pub argsz: u32,
    /// `DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions (at least 9 for PCI).
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}
wire_struct!(DeviceInfo, 16);

bitflags::bitflags! {
    /// The flags of a region (DEVICE_GET_REGION_INFO). Bits this crate does not name are
    /// kept.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RegionFlags: u32 {
        /// Readable.
        const READ = 1 << 0;
        /// Writable.
        const WRITE = 1 << 1;
        /// Mappable through the fd attached to the reply.
        const MMAP = 1 << 2;
        /// A capability chain follows.
        const CAPS = 1 << 3;
    }
}

/// Region flag [`RegionFlags::READ`].
pub const REGION_FLAG_READ: u32 = RegionFlags::READ.bits();
/// Region flag [`RegionFlags::WRITE`].
pub const REGION_FLAG_WRITE: u32 = RegionFlags::WRITE.bits();
/// Region flag [`RegionFlags::MMAP`].
pub const REGION_FLAG_MMAP: u32 = RegionFlags::MMAP.bits();
/// Region flag [`RegionFlags::CAPS`].
pub const REGION_FLAG_CAPS: u32 = RegionFlags::CAPS.bits();

/// PCI region index: BAR0 (BAR1–BAR5 follow).
pub const PCI_BAR0_REGION_INDEX: u32 = 0;
/// PCI region index: the expansion ROM.
pub const PCI_ROM_REGION_INDEX: u32 = 6;
/// PCI region index: configuration space.
pub const PCI_CONFIG_REGION_INDEX: u32 = 7;
/// PCI region index: VGA.
pub const PCI_VGA_REGION_INDEX: u32 = 8;
/// Number of fixed PCI regions; device-specific regions start here.
pub const PCI_NUM_REGIONS: u32 = 9;

/// DEVICE_GET_REGION_INFO request and reply body (`struct vfio_region_info`, 32 bytes); in a
/// reply a capability chain may follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// Request: largest reply accepted; reply: size the full reply needs.
    pub argsz: u32,
    /// `REGION_FLAG_*`.
    pub flags: u32,
    /// Region index.
    pub index: u32,
    /// Offset of the first capability from the start of this struct (0: none).
    pub cap_offset: u32,
    /// Size of the region.
    pub size: u64,
    /// Offset to mmap the attached fd at (base of sparse areas).
    pub offset: u64,
}
wire_struct!(RegionInfo, 32);

/// DEVICE_GET_REGION_IO_FDS request and reply fixed part (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionIoFds {
    /// Request: largest reply accepted; reply: size the full reply needs.
    pub argsz: u32,
    /// Must be 0.
    pub flags: u32,
    /// Region index.
    pub index: u32,
    /// Request: 0; reply: number of sub-region entries.
    pub count: u32,
}
wire_struct!(RegionIoFds, 16);

/// Sub-region type: ioeventfd.
pub const IO_FD_TYPE_IOEVENTFD: u32 = 0;
/// Sub-region type: ioregionfd.
pub const IO_FD_TYPE_IOREGIONFD: u32 = 1;
/// Sub-region type (libvfio-user extension): shadow ioeventfd.
pub const IO_FD_TYPE_IOEVENTFD_SHADOW: u32 = 2;
/// ioeventfd flag: `datamatch` is valid.
pub const IOEVENTFD_FLAG_DATAMATCH: u32 = 1 << 0;
/// ioeventfd flag: port I/O.
pub const IOEVENTFD_FLAG_PIO: u32 = 1 << 1;
/// ioeventfd flag: virtio-ccw notify.
pub const IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY: u32 = 1 << 3;

/// One sub-region of a DEVICE_GET_REGION_IO_FDS reply as the spec lays it out (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoFdEntry {
    /// Offset within the region.
    pub offset: u64,
    /// Size of the access (0: any width).
    pub size: u64,
    /// Index of the fd among those attached to the reply.
    pub fd_index: u32,
    /// `IO_FD_TYPE_*`.
    pub type_: u32,
    /// `IOEVENTFD_FLAG_*` (or ioregionfd flags).
    pub flags: u32,
    /// Padding.
    pub padding: u32,
    /// Value to match (ioeventfd) or user data (ioregionfd).
    pub datamatch: u64,
}
wire_struct!(IoFdEntry, 40);

impl IoFdEntry {
    /// An ioeventfd entry: accesses of `size` bytes at `offset` signal the reply's fd number
    /// `fd_index`; with `datamatch`, only writes of that value do.
    pub fn ioeventfd(offset: u64, size: u64, fd_index: u32, datamatch: Option<u64>) -> Self {
        IoFdEntry {
            offset,
            size,
            fd_index,
            type_: IO_FD_TYPE_IOEVENTFD,
            flags: if datamatch.is_some() { IOEVENTFD_FLAG_DATAMATCH } else { 0 },
            padding: 0,
            datamatch: datamatch.unwrap_or(0),
        }
    }
}

/// One sub-region as libvfio-user lays it out (48 bytes, with shadow-memory fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoFdEntryShadow {
    /// Offset within the region.
    pub offset: u64,
    /// Size of the access.
    pub size: u64,
    /// Index of the fd among those attached to the reply.
    pub fd_index: u32,
    /// `IO_FD_TYPE_*`.
    pub type_: u32,
    /// `IOEVENTFD_FLAG_*`.
    pub flags: u32,
    /// Index of the shadow memory fd.
    pub shadow_mem_fd_index: u32,
    /// Offset into the shadow memory.
    pub shadow_offset: u64,
    /// Value to match.
    pub datamatch: u64,
}
wire_struct!(IoFdEntryShadow, 48);

impl DeviceInfo {
    /// A DEVICE_GET_INFO request body (`argsz`: the reply fits exactly).
    pub fn query() -> Self {
        DeviceInfo { argsz: argsz_of::<DeviceInfo>(0), ..Default::default() }
    }

    /// A DEVICE_GET_INFO reply body (`argsz` is its own size).
    pub fn reply(flags: u32, num_regions: u32, num_irqs: u32) -> Self {
        DeviceInfo { argsz: argsz_of::<DeviceInfo>(0), flags, num_regions, num_irqs }
    }

    /// The flags, typed (unnamed bits kept).
    pub fn device_flags(&self) -> DeviceFlags {
        DeviceFlags::from_bits_retain(self.flags)
    }
}

impl RegionInfo {
    /// The facts of region `index` for a reply; `argsz`, `cap_offset` and the CAPS flag are
    /// filled in by [`crate::build_region_info`] with the capabilities.
    pub fn new(index: u32, flags: u32, size: u64, offset: u64) -> Self {
        RegionInfo { argsz: 0, flags, index, cap_offset: 0, size, offset }
    }

    /// Whether `payload`, a region-info reply (as [`crate::build_region_info`] makes it),
    /// is the whole answer, capabilities included, rather than the fixed part saying how
    /// large a request must ask for.
    pub fn reply_is_whole(payload: &[u8]) -> bool {
        read_at::<RegionInfo>(payload, 0).is_some_and(|i| i.argsz as usize == payload.len())
    }

    /// A DEVICE_GET_REGION_INFO request for region `index` accepting a reply of up to
    /// `argsz` bytes (the info and its capability chain).
    pub fn query(index: u32, argsz: u32) -> Self {
        RegionInfo { argsz, index, ..Default::default() }
    }

    /// The flags, typed (unnamed bits kept).
    pub fn region_flags(&self) -> RegionFlags {
        RegionFlags::from_bits_retain(self.flags)
    }
}

impl RegionIoFds {
    /// A DEVICE_GET_REGION_IO_FDS request for `index` accepting up to `entries` spec-layout
    /// entries in the reply.
    pub fn query(index: u32, entries: usize) -> Self {
        RegionIoFds { count: 0, ..RegionIoFds::reply(index, entries) }
    }

    /// A DEVICE_GET_REGION_IO_FDS request for `index` accepting a reply of up to `argsz`
    /// bytes (the size a previous reply said it needs).
    pub fn query_argsz(index: u32, argsz: u32) -> Self {
        RegionIoFds { argsz, ..RegionIoFds::query(index, 0) }
    }

    /// The fixed part of a DEVICE_GET_REGION_IO_FDS reply with `count` spec-layout entries:
    /// `argsz` is what the whole reply needs.
    pub fn reply(index: u32, count: usize) -> Self {
        let argsz = argsz_of::<RegionIoFds>(count.saturating_mul(std::mem::size_of::<IoFdEntry>()));
        RegionIoFds { argsz, flags: 0, index, count: u32::try_from(count).unwrap_or(u32::MAX) }
    }
}

/// The sub-region entries of a DEVICE_GET_REGION_IO_FDS reply, in either layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoFdEntries<'a> {
    /// The spec's 40-byte entries.
    Spec(WireArray<'a, IoFdEntry>),
    /// libvfio-user's 48-byte entries.
    Shadow(WireArray<'a, IoFdEntryShadow>),
}

impl IoFdEntries<'_> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            IoFdEntries::Spec(a) => a.len(),
            IoFdEntries::Shadow(a) => a.len(),
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries in the spec's layout; shadow fields of the 48-byte layout are dropped
    /// (see [`IoFdEntries::Shadow`] to read them).
    pub fn to_vec(&self) -> Vec<IoFdEntry> {
        match self {
            IoFdEntries::Spec(a) => a.iter().collect(),
            IoFdEntries::Shadow(a) => a
                .iter()
                .map(|e| IoFdEntry {
                    offset: e.offset,
                    size: e.size,
                    fd_index: e.fd_index,
                    type_: e.type_,
                    flags: e.flags,
                    padding: 0,
                    datamatch: e.datamatch,
                })
                .collect(),
        }
    }
}

// ---- Decoding ----

/// DEVICE_GET_INFO request: a query ([`query`](crate::codec)'s size rule).
pub(crate) fn decode_info_request(p: &[u8], nfds: usize) -> Result<DeviceInfo, DecodeError> {
    query(Command::DeviceGetInfo, p, nfds, |i: &DeviceInfo| i.argsz)
}

/// DEVICE_GET_REGION_INFO request: a query.
pub(crate) fn decode_region_info_request(p: &[u8], nfds: usize) -> Result<RegionInfo, DecodeError> {
    query(Command::DeviceGetRegionInfo, p, nfds, |i: &RegionInfo| i.argsz)
}

/// DEVICE_GET_REGION_IO_FDS request: a query whose flags are 0.
pub(crate) fn decode_io_fds_request(p: &[u8], nfds: usize) -> Result<RegionIoFds, DecodeError> {
    let cmd = Command::DeviceGetRegionIoFds;
    let r = query(cmd, p, nfds, |r: &RegionIoFds| r.argsz)?;
    if r.flags != 0 {
        return Err(DecodeError::BadFlags { cmd, flags: r.flags });
    }
    Ok(r)
}

/// DEVICE_RESET request: empty.
pub(crate) fn decode_reset_request(p: &[u8], nfds: usize) -> Result<(), DecodeError> {
    empty(Command::DeviceReset, p, nfds)
}

/// DEVICE_GET_INFO reply: exactly the info.
pub(crate) fn decode_info_reply(p: &[u8], nfds: usize) -> Result<DeviceInfo, DecodeError> {
    only(Command::DeviceGetInfo, p, nfds)
}

/// DEVICE_GET_REGION_INFO reply: the info, then whatever the payload holds (the capability
/// chain, walked by [`crate::parse_region_caps`]); at most one fd (the region's).
pub(crate) fn decode_region_info_reply(p: &[u8], nfds: usize) -> Result<RegionInfo, DecodeError> {
    let cmd = Command::DeviceGetRegionInfo;
    fds_at_most(cmd, nfds, 1, "0 or 1")?;
    fixed(cmd, p)
}

/// DEVICE_GET_REGION_IO_FDS reply: the fixed part and `count` entries in either layout (or
/// none: the reply did not fit the request's `argsz`), each naming one of the fds sent.
pub(crate) fn decode_io_fds_reply(p: &[u8], nfds: usize) -> Result<(RegionIoFds, IoFdEntries<'_>), DecodeError> {
    let cmd = Command::DeviceGetRegionIoFds;
    let r: RegionIoFds = fixed(cmd, p)?;
    let rest = &p[std::mem::size_of::<RegionIoFds>()..];
    let n = r.count as usize;
    let entries = if rest.is_empty() || Some(rest.len()) == n.checked_mul(std::mem::size_of::<IoFdEntry>()) {
        IoFdEntries::Spec(WireArray::new(rest).ok_or(DecodeError::BadField { cmd, field: "entries" })?)
    } else if Some(rest.len()) == n.checked_mul(std::mem::size_of::<IoFdEntryShadow>()) {
        IoFdEntries::Shadow(WireArray::new(rest).ok_or(DecodeError::BadField { cmd, field: "entries" })?)
    } else {
        return Err(DecodeError::BadField { cmd, field: "count" });
    };
    if !entries.is_empty() && nfds == 0 {
        return Err(DecodeError::BadFdCount { cmd, got: 0, expect: "at least 1" });
    }
    for e in entries.to_vec() {
        if e.fd_index as usize >= nfds {
            return Err(DecodeError::BadField { cmd, field: "fd_index" });
        }
    }
    Ok((r, entries))
}

/// DEVICE_RESET reply: empty.
pub(crate) fn decode_reset_reply(p: &[u8], nfds: usize) -> Result<(), DecodeError> {
    empty(Command::DeviceReset, p, nfds)
}

// ---- Encoding ----

impl DeviceInfo {
    /// DEVICE_GET_INFO request or reply (the same struct both ways).
    pub fn payload(&self) -> Payload<'static> {
        Payload::of(Command::DeviceGetInfo, self)
    }
}

impl RegionInfo {
    /// DEVICE_GET_REGION_INFO request.
    pub fn request(&self) -> Payload<'static> {
        Payload::of(Command::DeviceGetRegionInfo, self)
    }

    /// DEVICE_GET_REGION_INFO reply: the whole payload, info and chain, as
    /// [`crate::build_region_info`] makes it.
    pub fn reply(whole: &[u8]) -> Payload<'_> {
        Payload::empty(Command::DeviceGetRegionInfo).data(whole)
    }
}

impl RegionIoFds {
    /// DEVICE_GET_REGION_IO_FDS request.
    pub fn request(&self) -> Payload<'static> {
        Payload::of(Command::DeviceGetRegionIoFds, self)
    }

    /// DEVICE_GET_REGION_IO_FDS reply: this fixed part and `entries`.
    pub fn reply_with<'a>(&self, entries: &IoFdEntries<'a>) -> Payload<'a> {
        let bytes: &'a [u8] = match entries {
            IoFdEntries::Spec(a) => a.as_bytes(),
            IoFdEntries::Shadow(a) => a.as_bytes(),
        };
        Payload::of(Command::DeviceGetRegionIoFds, self).data(bytes)
    }
}
