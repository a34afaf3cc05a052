// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Device, region, IRQ and region-access bodies.

use super::wire_struct;

/// DEVICE_GET_INFO flag: the device supports DEVICE_RESET.
pub const DEVICE_FLAGS_RESET: u32 = 1 << 0;
/// DEVICE_GET_INFO flag: the device is a PCI device.
pub const DEVICE_FLAGS_PCI: u32 = 1 << 1;

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

/// Region flag: readable.
pub const REGION_FLAG_READ: u32 = 1 << 0;
/// Region flag: writable.
pub const REGION_FLAG_WRITE: u32 = 1 << 1;
/// Region flag: mappable through the fd attached to the reply.
pub const REGION_FLAG_MMAP: u32 = 1 << 2;
/// Region flag: a capability chain follows.
pub const REGION_FLAG_CAPS: u32 = 1 << 3;

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

/// Region capability ID: sparse mmap areas.
pub const REGION_INFO_CAP_SPARSE_MMAP: u16 = 1;
/// Region capability ID: region type and subtype.
pub const REGION_INFO_CAP_TYPE: u16 = 2;

/// Header of every region capability (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapHeader {
    /// Capability ID.
    pub id: u16,
    /// Capability version.
    pub version: u16,
    /// Offset of the next capability from the start of the region info (0 ends the chain).
    pub next: u32,
}
wire_struct!(CapHeader, 8);

/// The fixed part of the SPARSE_MMAP capability after its [`CapHeader`] (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseMmapCap {
    /// Number of [`SparseArea`]s that follow.
    pub nr_areas: u32,
    /// Reserved.
    pub reserved: u32,
}
wire_struct!(SparseMmapCap, 8);

/// One sparse mmap area (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseArea {
    /// Offset of the area from the region's `offset`.
    pub offset: u64,
    /// Size of the area.
    pub size: u64,
}
wire_struct!(SparseArea, 16);

/// The TYPE capability after its [`CapHeader`] (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionTypeCap {
    /// Region type.
    pub type_: u32,
    /// Region subtype.
    pub subtype: u32,
}
wire_struct!(RegionTypeCap, 8);

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

/// IRQ info flag: can be signalled through an eventfd.
pub const IRQ_INFO_EVENTFD: u32 = 1 << 0;
/// IRQ info flag: MASK/UNMASK accepted.
pub const IRQ_INFO_MASKABLE: u32 = 1 << 1;
/// IRQ info flag: masks itself after firing.
pub const IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
/// IRQ info flag: must be disabled before it can grow.
pub const IRQ_INFO_NORESIZE: u32 = 1 << 3;

/// PCI IRQ index: INTx.
pub const PCI_INTX_IRQ_INDEX: u32 = 0;
/// PCI IRQ index: MSI.
pub const PCI_MSI_IRQ_INDEX: u32 = 1;
/// PCI IRQ index: MSI-X.
pub const PCI_MSIX_IRQ_INDEX: u32 = 2;
/// PCI IRQ index: error reporting.
pub const PCI_ERR_IRQ_INDEX: u32 = 3;
/// PCI IRQ index: device request.
pub const PCI_REQ_IRQ_INDEX: u32 = 4;
/// Number of PCI IRQ indexes.
pub const PCI_NUM_IRQS: u32 = 5;

/// DEVICE_GET_IRQ_INFO request and reply body (`struct vfio_irq_info`, 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqInfo {
    /// Request: largest reply accepted; reply: 16.
    pub argsz: u32,
    /// `IRQ_INFO_*` (reply).
    pub flags: u32,
    /// IRQ index.
    pub index: u32,
    /// Number of vectors (reply).
    pub count: u32,
}
wire_struct!(IrqInfo, 16);

/// SET_IRQS data: none.
pub const IRQ_SET_DATA_NONE: u32 = 1 << 0;
/// SET_IRQS data: one boolean byte per vector follows.
pub const IRQ_SET_DATA_BOOL: u32 = 1 << 1;
/// SET_IRQS data: eventfds are attached.
pub const IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
/// SET_IRQS action: mask.
pub const IRQ_SET_ACTION_MASK: u32 = 1 << 3;
/// SET_IRQS action: unmask.
pub const IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
/// SET_IRQS action: trigger.
pub const IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
/// Mask of the SET_IRQS data bits.
pub const IRQ_SET_DATA_MASK: u32 = IRQ_SET_DATA_NONE | IRQ_SET_DATA_BOOL | IRQ_SET_DATA_EVENTFD;
/// Mask of the SET_IRQS action bits.
pub const IRQ_SET_ACTION_MASK_BITS: u32 = IRQ_SET_ACTION_MASK | IRQ_SET_ACTION_UNMASK | IRQ_SET_ACTION_TRIGGER;

/// DEVICE_SET_IRQS request fixed part (`struct vfio_irq_set` without data, 20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqSet {
    /// Size of the request payload, data included.
    pub argsz: u32,
    /// One `IRQ_SET_DATA_*` and one `IRQ_SET_ACTION_*`.
    pub flags: u32,
    /// IRQ index.
    pub index: u32,
    /// First vector.
    pub start: u32,
    /// Number of vectors.
    pub count: u32,
}
wire_struct!(IrqSet, 20);

/// REGION_READ / REGION_WRITE access header (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionAccess {
    /// Offset within the region.
    pub offset: u64,
    /// Region index.
    pub region: u32,
    /// Number of bytes.
    pub count: u32,
}
wire_struct!(RegionAccess, 16);

/// Most data bytes in one REGION_WRITE_MULTI entry.
pub const WRITE_MULTI_DATA_MAX: usize = 8;

/// One REGION_WRITE_MULTI entry (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteMultiEntry {
    /// Offset within the region.
    pub offset: u64,
    /// Region index.
    pub region: u32,
    /// Number of valid bytes in `data` (at most 8).
    pub count: u32,
    /// The bytes to write.
    pub data: [u8; WRITE_MULTI_DATA_MAX],
}
wire_struct!(WriteMultiEntry, 24);

/// REGION_WRITE_MULTI request fixed part and the whole reply (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteMulti {
    /// Request: number of entries; reply: number of writes completed.
    pub wr_cnt: u64,
}
wire_struct!(WriteMulti, 8);

/// `argsz` of a reply that is `T` followed by `extra` bytes (saturating at `u32::MAX`).
fn argsz_of<T>(extra: usize) -> u32 {
    u32::try_from(std::mem::size_of::<T>().saturating_add(extra)).unwrap_or(u32::MAX)
}

impl DeviceInfo {
    /// A DEVICE_GET_INFO request body (`argsz`: the reply fits exactly).
    pub fn query() -> Self {
        DeviceInfo { argsz: argsz_of::<DeviceInfo>(0), ..Default::default() }
    }

    /// A DEVICE_GET_INFO reply body (`argsz` is its own size).
    pub fn reply(flags: u32, num_regions: u32, num_irqs: u32) -> Self {
        DeviceInfo { argsz: argsz_of::<DeviceInfo>(0), flags, num_regions, num_irqs }
    }
}

impl IrqInfo {
    /// A DEVICE_GET_IRQ_INFO request body for `index` (`argsz`: the reply fits exactly).
    pub fn query(index: u32) -> Self {
        IrqInfo { argsz: argsz_of::<IrqInfo>(0), index, ..Default::default() }
    }

    /// A DEVICE_GET_IRQ_INFO reply body (`argsz` is its own size).
    pub fn reply(flags: u32, index: u32, count: u32) -> Self {
        IrqInfo { argsz: argsz_of::<IrqInfo>(0), flags, index, count }
    }
}

impl IrqSet {
    /// A DEVICE_SET_IRQS fixed part followed by `data_len` bytes of data (DATA_BOOL).
    pub fn new(flags: u32, index: u32, start: u32, count: u32, data_len: usize) -> Self {
        IrqSet { argsz: argsz_of::<IrqSet>(data_len), flags, index, start, count }
    }
}

impl RegionIoFds {
    /// A DEVICE_GET_REGION_IO_FDS request for `index` accepting up to `entries` spec-layout
    /// entries in the reply.
    pub fn query(index: u32, entries: usize) -> Self {
        RegionIoFds { count: 0, ..RegionIoFds::reply(index, entries) }
    }

    /// The fixed part of a DEVICE_GET_REGION_IO_FDS reply with `count` spec-layout entries:
    /// `argsz` is what the whole reply needs.
    pub fn reply(index: u32, count: usize) -> Self {
        let argsz = argsz_of::<RegionIoFds>(count.saturating_mul(std::mem::size_of::<IoFdEntry>()));
        RegionIoFds { argsz, flags: 0, index, count: u32::try_from(count).unwrap_or(u32::MAX) }
    }
}
