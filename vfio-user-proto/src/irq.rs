// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The IRQ family: DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS — their wire structs and flags,
//! typed forms (SET_IRQS as [`IrqAction`] × [`IrqData`]) and constructors, and the decoders
//! and encoders of each command and its reply.

use crate::codec::{argsz_at_least, argsz_of, empty, exact, fixed, no_fds, only, query, wire_struct, Payload};
use crate::command::Command;
use crate::error::DecodeError;

bitflags::bitflags! {
    /// The flags of an IRQ index (DEVICE_GET_IRQ_INFO). Bits this crate does not name are
    /// kept.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct IrqInfoFlags: u32 {
        /// Can be signalled through an eventfd.
        const EVENTFD = 1 << 0;
        /// MASK/UNMASK accepted.
        const MASKABLE = 1 << 1;
        /// Masks itself after firing.
        const AUTOMASKED = 1 << 2;
        /// Must be disabled before it can grow.
        const NORESIZE = 1 << 3;
    }
}

/// IRQ info flag [`IrqInfoFlags::EVENTFD`].
pub const IRQ_INFO_EVENTFD: u32 = IrqInfoFlags::EVENTFD.bits();
/// IRQ info flag [`IrqInfoFlags::MASKABLE`].
pub const IRQ_INFO_MASKABLE: u32 = IrqInfoFlags::MASKABLE.bits();
/// IRQ info flag [`IrqInfoFlags::AUTOMASKED`].
pub const IRQ_INFO_AUTOMASKED: u32 = IrqInfoFlags::AUTOMASKED.bits();
/// IRQ info flag [`IrqInfoFlags::NORESIZE`].
pub const IRQ_INFO_NORESIZE: u32 = IrqInfoFlags::NORESIZE.bits();

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

bitflags::bitflags! {
    /// The flags of DEVICE_SET_IRQS: exactly one `DATA_*` and one `ACTION_*` bit.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct IrqSetFlags: u32 {
        /// Data: none.
        const DATA_NONE = 1 << 0;
        /// Data: one boolean byte per vector follows.
        const DATA_BOOL = 1 << 1;
        /// Data: eventfds are attached.
        const DATA_EVENTFD = 1 << 2;
        /// Action: mask.
        const ACTION_MASK = 1 << 3;
        /// Action: unmask.
        const ACTION_UNMASK = 1 << 4;
        /// Action: trigger.
        const ACTION_TRIGGER = 1 << 5;
    }
}

impl IrqSetFlags {
    /// The data bits.
    pub const DATA: IrqSetFlags = IrqSetFlags::DATA_NONE.union(IrqSetFlags::DATA_BOOL).union(IrqSetFlags::DATA_EVENTFD);
    /// The action bits.
    pub const ACTION: IrqSetFlags =
        IrqSetFlags::ACTION_MASK.union(IrqSetFlags::ACTION_UNMASK).union(IrqSetFlags::ACTION_TRIGGER);

    /// Whether these are valid request flags: no unknown bit, one data bit, one action bit.
    pub fn is_valid(self) -> bool {
        self.bits() & !IrqSetFlags::all().bits() == 0
            && self.intersection(IrqSetFlags::DATA).bits().count_ones() == 1
            && self.intersection(IrqSetFlags::ACTION).bits().count_ones() == 1
    }
}

/// SET_IRQS data: none ([`IrqSetFlags::DATA_NONE`]).
pub const IRQ_SET_DATA_NONE: u32 = IrqSetFlags::DATA_NONE.bits();
/// SET_IRQS data: one boolean byte per vector follows ([`IrqSetFlags::DATA_BOOL`]).
pub const IRQ_SET_DATA_BOOL: u32 = IrqSetFlags::DATA_BOOL.bits();
/// SET_IRQS data: eventfds are attached ([`IrqSetFlags::DATA_EVENTFD`]).
pub const IRQ_SET_DATA_EVENTFD: u32 = IrqSetFlags::DATA_EVENTFD.bits();
/// SET_IRQS action: mask ([`IrqSetFlags::ACTION_MASK`]).
pub const IRQ_SET_ACTION_MASK: u32 = IrqSetFlags::ACTION_MASK.bits();
/// SET_IRQS action: unmask ([`IrqSetFlags::ACTION_UNMASK`]).
pub const IRQ_SET_ACTION_UNMASK: u32 = IrqSetFlags::ACTION_UNMASK.bits();
/// SET_IRQS action: trigger ([`IrqSetFlags::ACTION_TRIGGER`]).
pub const IRQ_SET_ACTION_TRIGGER: u32 = IrqSetFlags::ACTION_TRIGGER.bits();
/// Mask of the SET_IRQS data bits ([`IrqSetFlags::DATA`]).
pub const IRQ_SET_DATA_MASK: u32 = IrqSetFlags::DATA.bits();
/// Mask of the SET_IRQS action bits ([`IrqSetFlags::ACTION`]).
pub const IRQ_SET_ACTION_MASK_BITS: u32 = IrqSetFlags::ACTION.bits();

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

/// The data of a SET_IRQS request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqData<'a> {
    /// DATA_NONE.
    None,
    /// DATA_BOOL: one byte per vector.
    Bool(&'a [u8]),
    /// DATA_EVENTFD: this many fds are attached (0 = de-assign).
    Eventfd(usize),
}

impl IrqData<'_> {
    /// The data bit of the flags.
    pub fn flag(&self) -> IrqSetFlags {
        match self {
            IrqData::None => IrqSetFlags::DATA_NONE,
            IrqData::Bool(_) => IrqSetFlags::DATA_BOOL,
            IrqData::Eventfd(_) => IrqSetFlags::DATA_EVENTFD,
        }
    }

    /// The bytes that follow the fixed part (DATA_BOOL's; none otherwise).
    pub fn bytes(&self) -> &[u8] {
        match self {
            IrqData::Bool(b) => b,
            IrqData::None | IrqData::Eventfd(_) => &[],
        }
    }
}

/// The action of a SET_IRQS request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IrqAction {
    /// ACTION_MASK.
    Mask,
    /// ACTION_UNMASK.
    Unmask,
    /// ACTION_TRIGGER.
    Trigger,
}

impl IrqAction {
    /// The action bit of the flags.
    pub fn flag(self) -> IrqSetFlags {
        match self {
            IrqAction::Mask => IrqSetFlags::ACTION_MASK,
            IrqAction::Unmask => IrqSetFlags::ACTION_UNMASK,
            IrqAction::Trigger => IrqSetFlags::ACTION_TRIGGER,
        }
    }

    /// The action named by the action bits of `flags`, or `None` unless exactly one is set.
    pub fn from_flags(flags: IrqSetFlags) -> Option<IrqAction> {
        let a = flags.intersection(IrqSetFlags::ACTION);
        [IrqAction::Mask, IrqAction::Unmask, IrqAction::Trigger].into_iter().find(|x| x.flag() == a)
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

    /// The flags, typed (unnamed bits kept).
    pub fn irq_flags(&self) -> IrqInfoFlags {
        IrqInfoFlags::from_bits_retain(self.flags)
    }
}

impl IrqSet {
    /// A DEVICE_SET_IRQS fixed part followed by `data_len` bytes of data (DATA_BOOL).
    pub fn new(flags: u32, index: u32, start: u32, count: u32, data_len: usize) -> Self {
        IrqSet { argsz: argsz_of::<IrqSet>(data_len), flags, index, start, count }
    }

    /// The fixed part of a request of `action` with `data` on the vectors
    /// `start..start + count` of `index` (`argsz` covers DATA_BOOL's bytes).
    pub fn request(index: u32, action: IrqAction, start: u32, count: u32, data: &IrqData<'_>) -> Self {
        IrqSet::new((data.flag() | action.flag()).bits(), index, start, count, data.bytes().len())
    }

    /// The flags, typed; bits this crate does not know are kept (the decoder refuses them).
    pub fn set_flags(&self) -> IrqSetFlags {
        IrqSetFlags::from_bits_retain(self.flags)
    }
}

// ---- Decoding ----

/// DEVICE_GET_IRQ_INFO request: a query.
pub(crate) fn decode_info_request(p: &[u8], nfds: usize) -> Result<IrqInfo, DecodeError> {
    query(Command::DeviceGetIrqInfo, p, nfds, |i: &IrqInfo| i.argsz)
}

/// DEVICE_SET_IRQS request: valid flags, `start + count` not wrapping, and the data its
/// flags announce: none, `count` bytes (DATA_BOOL), or no bytes and 0 or `count` fds
/// (DATA_EVENTFD).
pub(crate) fn decode_set_request(p: &[u8], nfds: usize) -> Result<(IrqSet, IrqAction, IrqData<'_>), DecodeError> {
    let cmd = Command::DeviceSetIrqs;
    let set: IrqSet = fixed(cmd, p)?;
    let head = std::mem::size_of::<IrqSet>();
    argsz_at_least(cmd, set.argsz, head)?;
    let f = set.set_flags();
    let action =
        IrqAction::from_flags(f).filter(|_| f.is_valid()).ok_or(DecodeError::BadFlags { cmd, flags: set.flags })?;
    if set.start.checked_add(set.count).is_none() {
        return Err(DecodeError::BadField { cmd, field: "start + count" });
    }
    let data = if f.contains(IrqSetFlags::DATA_NONE) {
        no_fds(cmd, nfds)?;
        exact(cmd, p, head)?;
        IrqData::None
    } else if f.contains(IrqSetFlags::DATA_BOOL) {
        no_fds(cmd, nfds)?;
        exact(cmd, p, head + set.count as usize)?;
        IrqData::Bool(&p[head..])
    } else {
        exact(cmd, p, head)?;
        if nfds != 0 && nfds != set.count as usize {
            return Err(DecodeError::BadFdCount { cmd, got: nfds, expect: "0 or count" });
        }
        IrqData::Eventfd(nfds)
    };
    Ok((set, action, data))
}

/// DEVICE_GET_IRQ_INFO reply: exactly the info.
pub(crate) fn decode_info_reply(p: &[u8], nfds: usize) -> Result<IrqInfo, DecodeError> {
    only(Command::DeviceGetIrqInfo, p, nfds)
}

/// DEVICE_SET_IRQS reply: empty.
pub(crate) fn decode_set_reply(p: &[u8], nfds: usize) -> Result<(), DecodeError> {
    empty(Command::DeviceSetIrqs, p, nfds)
}

// ---- Encoding ----

impl IrqInfo {
    /// DEVICE_GET_IRQ_INFO request or reply (the same struct both ways).
    pub fn payload(&self) -> Payload<'static> {
        Payload::of(Command::DeviceGetIrqInfo, self)
    }
}

impl IrqSet {
    /// DEVICE_SET_IRQS request: this fixed part and DATA_BOOL's bytes (eventfds go as fds).
    pub fn payload<'a>(&self, data: &IrqData<'a>) -> Payload<'a> {
        let bytes: &'a [u8] = match *data {
            IrqData::Bool(b) => b,
            IrqData::None | IrqData::Eventfd(_) => &[],
        };
        Payload::of(Command::DeviceSetIrqs, self).data(bytes)
    }
}
