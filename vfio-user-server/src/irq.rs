// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Interrupt state: the client's eventfds (DEVICE_SET_IRQS), the mask state from SET_IRQS
//! and from the emulated MSI / MSI-X registers, pending bits, and [`IrqHandle`], with which
//! a device raises vectors from any thread.
//!
//! A vector is *masked* when SET_IRQS masked it, or when the emulated hardware masks it:
//! INTx while Interrupt Disable is set in the command register; an MSI vector while MSI is
//! enabled in the emulated capability and its per-vector mask bit is set; an MSI-X vector
//! while MSI-X is enabled in the emulated capability and the function mask is set, or its
//! table entry's mask bit is set *and the client uses the emulated table*. QEMU and Cloud
//! Hypervisor keep the MSI-X table themselves: they write the capability's control word
//! through to the server but never its table, whose entries stay masked from reset; so the
//! table's mask bits count only once the client has written the table (until it
//! disconnects). Raising a masked vector sets its pending bit (visible in the MSI-X PBA and
//! the MSI Pending Bits register); unmasking a pending vector fires it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use vfio_user_proto::request::{IrqAction, IrqData};

use crate::description::DeviceDescription;
use crate::error::{Error, Result};
use crate::pci::msix::MsixTable;

/// IRQ index of INTx.
pub const INTX: u32 = 0;
/// IRQ index of MSI.
pub const MSI: u32 = 1;
/// IRQ index of MSI-X.
pub const MSIX: u32 = 2;
/// IRQ index of error reporting.
pub const ERR: u32 = 3;
/// IRQ index of device requests.
pub const REQ: u32 = 4;

/// The IRQ indexes whose vectors the emulated configuration space can mask (INTx by the
/// command register, MSI and MSI-X by their capabilities).
pub(crate) const EMULATED_MASKS: [u32; 3] = [INTX, MSI, MSIX];

/// One vector whose state changed: IRQ index, vector, new state.
pub(crate) type IrqChange = (u32, u32, VectorState);

/// What a device sees of one vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorState {
    /// The client installed a trigger eventfd.
    pub enabled: bool,
    /// The vector is masked (by SET_IRQS or by the emulated registers).
    pub masked: bool,
}

#[derive(Debug, Default)]
struct Vector {
    trigger: Option<OwnedFd>,
    on_mask: Option<OwnedFd>,
    on_unmask: Option<OwnedFd>,
    masked: bool,
    pending: bool,
}

/// The whole interrupt state of a device.
#[derive(Debug)]
pub(crate) struct IrqState {
    vectors: [Vec<Vector>; 5],
    pub(crate) intx_disabled: bool,
    pub(crate) msi_enabled: bool,
    pub(crate) msi_mask: u32,
    pub(crate) msi_per_vector: bool,
    pub(crate) msix_enabled: bool,
    pub(crate) msix_function_mask: bool,
    pub(crate) msix_table: MsixTable,
    /// The client wrote the emulated MSI-X table: its mask bits apply.
    pub(crate) msix_table_used: bool,
}

/// Signals an interrupt eventfd without ever blocking. The descriptor's flags are shared
/// with the client's own copy (one open file), so they are left as the client made them —
/// libvfio-user's client reads its eventfd blocking. A write could block only when the
/// counter is at its maximum (the interrupt is pending anyway) or the client passed
/// something else, a full pipe say: `poll` first, and skip the write when it would block.
fn signal(fd: &Option<OwnedFd>) {
    if let Some(fd) = fd {
        let mut p = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::OUT)];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        if matches!(rustix::event::poll(&mut p, Some(&zero)), Ok(1)) {
            let _ = rustix::io::write(fd.as_fd(), &1u64.to_ne_bytes());
        }
    }
}

impl IrqState {
    pub(crate) fn new(desc: &DeviceDescription) -> Self {
        let mk = |n: u32| (0..n).map(|_| Vector::default()).collect::<Vec<_>>();
        IrqState {
            vectors: [
                mk(desc.irq_count(0)),
                mk(desc.irq_count(1)),
                mk(desc.irq_count(2)),
                mk(desc.irq_count(3)),
                mk(desc.irq_count(4)),
            ],
            intx_disabled: false,
            msi_enabled: false,
            msi_mask: 0,
            msi_per_vector: desc.msi.is_some_and(|m| m.per_vector_mask),
            msix_enabled: false,
            msix_function_mask: false,
            msix_table: MsixTable::new(desc.msix.map_or(0, |m| m.vectors)),
            msix_table_used: false,
        }
    }

    pub(crate) fn count(&self, index: u32) -> usize {
        self.vectors.get(index as usize).map_or(0, Vec::len)
    }

    fn hw_masked(&self, index: u32, v: usize) -> bool {
        match index {
            INTX => self.intx_disabled,
            MSI => self.msi_enabled && self.msi_per_vector && v < 32 && self.msi_mask & (1 << v) != 0,
            MSIX => {
                self.msix_enabled
                    && (self.msix_function_mask || (self.msix_table_used && self.msix_table.vector_masked(v)))
            }
            _ => false,
        }
    }

    pub(crate) fn state(&self, index: u32, v: usize) -> VectorState {
        match self.vectors.get(index as usize).and_then(|vs| vs.get(v)) {
            Some(x) => VectorState { enabled: x.trigger.is_some(), masked: x.masked || self.hw_masked(index, v) },
            None => VectorState::default(),
        }
    }

    pub(crate) fn states(&self, index: u32) -> Vec<VectorState> {
        (0..self.count(index)).map(|v| self.state(index, v)).collect()
    }

    /// The state of every vector of every index.
    fn snapshot(&self) -> Vec<Vec<VectorState>> {
        (0..self.vectors.len() as u32).map(|i| self.states(i)).collect()
    }

    /// Applies `change` and returns its result with the vectors whose state it changed,
    /// in index and vector order. For the indexes in `mask_effects`, vectors whose mask
    /// state changed have their MASK / UNMASK eventfds signalled and newly unmasked
    /// pending vectors fire (see [`after_mask_change`](Self::after_mask_change)).
    pub(crate) fn change<R>(
        &mut self,
        mask_effects: &[u32],
        change: impl FnOnce(&mut Self) -> R,
    ) -> (R, Vec<IrqChange>) {
        let before = self.snapshot();
        let r = change(self);
        for &i in mask_effects {
            self.after_mask_change(i, &before[i as usize]);
        }
        let changed = before
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                let i = i as u32;
                b.iter()
                    .zip(self.states(i))
                    .enumerate()
                    .filter(|(_, (b, a))| *b != a)
                    .map(move |(v, (_, a))| (i, v as u32, a))
            })
            .collect();
        (r, changed)
    }

    pub(crate) fn pending(&self, index: u32, v: usize) -> bool {
        self.vectors.get(index as usize).and_then(|vs| vs.get(v)).is_some_and(|x| x.pending)
    }

    /// The MSI Pending Bits register.
    pub(crate) fn msi_pending(&self) -> u32 {
        (0..self.count(MSI).min(32)).fold(0u32, |acc, v| acc | (u32::from(self.pending(MSI, v)) << v))
    }

    /// Raises vector `v`: fires it, or marks it pending while masked.
    pub(crate) fn trigger(&mut self, index: u32, v: usize) -> Result<()> {
        let masked = self.state(index, v).masked;
        let x = self
            .vectors
            .get_mut(index as usize)
            .and_then(|vs| vs.get_mut(v))
            .ok_or(Error::InvalidArgument("no such interrupt vector"))?;
        if masked {
            x.pending = true;
        } else {
            signal(&x.trigger);
        }
        Ok(())
    }

    /// Fires every pending vector of `index` that is no longer masked.
    pub(crate) fn deliver_pending(&mut self, index: u32) {
        for v in 0..self.count(index) {
            if self.pending(index, v) && !self.state(index, v).masked {
                let x = &mut self.vectors[index as usize][v];
                x.pending = false;
                signal(&x.trigger);
            }
        }
    }

    /// Signals the MASK / UNMASK notification eventfds of vectors whose mask state changed
    /// between `before` and now, and fires newly unmasked pending vectors.
    pub(crate) fn after_mask_change(&mut self, index: u32, before: &[VectorState]) {
        for (v, b) in before.iter().enumerate() {
            let now = self.state(index, v);
            if now.masked != b.masked {
                let x = &self.vectors[index as usize][v];
                signal(if now.masked { &x.on_mask } else { &x.on_unmask });
            }
        }
        self.deliver_pending(index);
    }

    /// Applies a DEVICE_SET_IRQS request. `fds` are the eventfds that came with it.
    pub(crate) fn set_irqs(
        &mut self,
        index: u32,
        start: u32,
        count: u32,
        action: IrqAction,
        data: IrqData<'_>,
        fds: Vec<OwnedFd>,
    ) -> Result<()> {
        if index as usize >= self.vectors.len() {
            return Err(Error::InvalidArgument("IRQ index"));
        }
        let n = self.count(index);
        if count == 0 {
            // DATA_NONE with count 0 disables the whole index for the action's signalling
            // (the spec leaves the action open; Linux and libvfio-user use TRIGGER).
            if !matches!(data, IrqData::None) || start != 0 {
                return Err(Error::InvalidArgument("SET_IRQS count 0"));
            }
            let before = self.states(index);
            for x in &mut self.vectors[index as usize] {
                match action {
                    IrqAction::Trigger => {
                        x.trigger = None;
                        x.pending = false;
                        x.masked = false;
                    }
                    IrqAction::Mask => x.on_mask = None,
                    IrqAction::Unmask => x.on_unmask = None,
                }
            }
            self.after_mask_change(index, &before);
            return Ok(());
        }
        let (start, count) = (start as usize, count as usize);
        if start.checked_add(count).map_or(true, |end| end > n) {
            return Err(Error::InvalidArgument("SET_IRQS start + count beyond the index"));
        }
        if matches!(data, IrqData::Eventfd(_)) {
            // As kernel VFIO (eventfd_ctx_fdget): anything but an eventfd is EINVAL, checked
            // for every fd before any vector changes. A socket or pipe taken as one could
            // block the server or raise SIGPIPE when written.
            if let Some(bad) = fds.iter().position(|fd| !is_eventfd(fd)) {
                log::debug!("SET_IRQS: fd {bad} of the message is not an eventfd");
                return Err(Error::InvalidArgument("SET_IRQS fd is not an eventfd"));
            }
        }
        let before = self.states(index);
        match data {
            IrqData::Eventfd(_) => {
                let mut fds = fds.into_iter();
                for v in start..start + count {
                    let fd = fds.next();
                    let x = &mut self.vectors[index as usize][v];
                    match action {
                        IrqAction::Trigger => {
                            x.trigger = fd;
                            if x.trigger.is_none() {
                                x.pending = false;
                            }
                        }
                        IrqAction::Mask => x.on_mask = fd,
                        IrqAction::Unmask => x.on_unmask = fd,
                    }
                }
                // A pending vector fires as soon as it has somewhere to go.
                self.deliver_pending(index);
            }
            IrqData::None | IrqData::Bool(_) => {
                for v in start..start + count {
                    let selected = match data {
                        IrqData::Bool(b) => b.get(v - start).is_some_and(|&b| b != 0),
                        _ => true,
                    };
                    if !selected {
                        continue;
                    }
                    match action {
                        IrqAction::Trigger => self.trigger(index, v)?,
                        IrqAction::Mask => self.vectors[index as usize][v].masked = true,
                        IrqAction::Unmask => self.vectors[index as usize][v].masked = false,
                    }
                }
                self.after_mask_change(index, &before);
            }
        }
        Ok(())
    }

    /// Drops every eventfd and SET_IRQS mask (the client went away). The emulated
    /// registers (device state) are kept.
    pub(crate) fn release_client(&mut self) {
        for x in self.vectors.iter_mut().flatten() {
            *x = Vector::default();
        }
        self.msix_table_used = false;
    }

    /// Reset: pending bits, SET_IRQS masks and the MSI-X table go back to their initial
    /// state; the eventfds stay (the client owns those).
    pub(crate) fn reset(&mut self) {
        for x in self.vectors.iter_mut().flatten() {
            x.pending = false;
            x.masked = false;
        }
        self.msix_table.reset();
        self.intx_disabled = false;
        self.msi_enabled = false;
        self.msi_mask = 0;
        self.msix_enabled = false;
        self.msix_function_mask = false;
    }
}

/// A cloneable, thread-safe handle with which a device raises interrupts.
#[derive(Clone, Debug)]
pub struct IrqHandle {
    pub(crate) state: Arc<Mutex<IrqState>>,
}

impl IrqHandle {
    pub(crate) fn lock(&self) -> MutexGuard<'_, IrqState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raises vector `vector` of IRQ index `index` (see the module documentation for
    /// masking). Raising a vector without an eventfd is not an error: the interrupt is lost,
    /// as on hardware with interrupts disabled.
    pub fn trigger(&self, index: u32, vector: u32) -> Result<()> {
        self.lock().trigger(index, vector as usize)
    }

    /// Raises INTx.
    pub fn trigger_intx(&self) -> Result<()> {
        self.trigger(INTX, 0)
    }

    /// Raises MSI vector `vector`.
    pub fn trigger_msi(&self, vector: u32) -> Result<()> {
        self.trigger(MSI, vector)
    }

    /// Raises MSI-X vector `vector`.
    pub fn trigger_msix(&self, vector: u32) -> Result<()> {
        self.trigger(MSIX, vector)
    }

    /// The state of a vector (a nonexistent vector is disabled and unmasked).
    pub fn state(&self, index: u32, vector: u32) -> VectorState {
        self.lock().state(index, vector as usize)
    }

    /// Whether a vector is pending (raised while masked).
    pub fn pending(&self, index: u32, vector: u32) -> bool {
        self.lock().pending(index, vector as usize)
    }

    /// The message address and data the guest programmed into MSI-X table entry `vector`.
    pub fn msix_message(&self, vector: u32) -> Option<(u64, u32)> {
        self.lock().msix_table.message(vector as usize)
    }
}

/// Whether `fd` is an eventfd: its `/proc/self/fd` link names the eventfd anonymous
/// inode (the kernel's own test compares the file operations, which user space cannot see).
fn is_eventfd(fd: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|l| l.as_os_str() == "anon_inode:[eventfd]")
}
