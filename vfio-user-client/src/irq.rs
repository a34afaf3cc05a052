// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! IRQs: the `Client` calls DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS for every data × action
//! combination (the types and the state they record are in `irq_state.rs`).

use crate::client::Client;
use crate::error::{Error, Result};
use crate::irq_state::*;
use crate::sync::lock;
use crate::transport::decode;
use std::os::fd::BorrowedFd;
use vfio_user_proto::wire::{self, IrqSetFlags, IRQ_SET_DATA_EVENTFD, IRQ_SET_DATA_MASK, IRQ_SET_DATA_NONE};
use vfio_user_proto::Reply;

/// The most vectors an IRQ index can have: for a PCI device INTx 1, MSI 32, MSI-X 2048, ERR
/// and REQ 1 (the PCI limits, as kernel VFIO reports them); 2048 for any other index. A
/// server claiming more is lying: nothing may be sized or looped by its count.
pub const fn max_irq_count(pci: bool, index: u32) -> u32 {
    match (pci, index) {
        (true, 0) | (true, 3) | (true, 4) => 1,
        (true, 1) => 32,
        _ => 2048,
    }
}

impl Client {
    /// DEVICE_GET_IRQ_INFO for `index` (cached after the first call). A count beyond
    /// [`max_irq_count`] is a protocol violation.
    pub fn irq_info(&self, index: u32) -> Result<IrqIndexInfo> {
        if index >= self.device.num_irqs {
            return Err(Error::InvalidInput("IRQ index out of range"));
        }
        if let Some(i) = lock(&self.irq_infos).get(&index) {
            return Ok(*i);
        }
        let (t, msg) = self.call(&wire::IrqInfo::query(index).payload(), &[], None)?;
        let info = match decode(&t, &msg)? {
            Reply::DeviceGetIrqInfo(i) if i.index == index => {
                let max = max_irq_count(self.device.is_pci(), index);
                if i.count > max {
                    return Err(t.violation(format!("IRQ index {index} claims {} vectors (at most {max})", i.count)));
                }
                IrqIndexInfo { index, flags: i.flags, count: i.count }
            }
            Reply::DeviceGetIrqInfo(i) => {
                return Err(t.violation(format!("IRQ info for index {} when {index} was asked", i.index)))
            }
            _ => return Err(t.violation("DEVICE_GET_IRQ_INFO reply of another kind".into())),
        };
        lock(&self.irq_infos).insert(index, info);
        Ok(info)
    }

    /// DEVICE_SET_IRQS: `action` on the vectors `start..start + count` of `index`, with
    /// `data`. Eventfds are split over several messages by the server's `max_msg_fds`, and
    /// runs of `None` go in messages without fds (which de-assign those vectors). Installed
    /// eventfds are remembered (duplicated) for [`reconnect`](Client::reconnect).
    pub fn set_irqs(&self, index: u32, action: IrqAction, start: u32, data: IrqSetData<'_>) -> Result<()> {
        let count = u32::try_from(data.count()).map_err(|_| Error::InvalidInput("too many vectors"))?;
        let end = start.checked_add(count).ok_or(Error::InvalidInput("start + count wraps"))?;
        let info = self.irq_info(index)?;
        if count > 0 && end > info.count {
            return Err(Error::InvalidInput("vectors beyond the IRQ index's count"));
        }
        let action = action_flag(action);
        let mut state = lock(&self.irqs);
        let t = self.transport();
        send_set_irqs(&t, index, action, start, &data, self.config.timeout)?;
        state.record(index, action, start, &data)
    }

    /// DEVICE_SET_IRQS with raw VFIO flags, as rust-vmm's `Client::set_irqs` takes them:
    /// exactly one `DATA_*` and one `ACTION_*` bit; with DATA_EVENTFD, `fds` holds `count`
    /// eventfds or none (de-assign). DATA_BOOL needs its flags: use
    /// [`set_irqs`](Client::set_irqs).
    pub fn set_irqs_raw(&self, index: u32, flags: u32, start: u32, count: u32, fds: &[BorrowedFd<'_>]) -> Result<()> {
        let typed = IrqSetFlags::from_bits_retain(flags);
        let action = match IrqAction::from_flags(typed) {
            Some(action) if typed.is_valid() => action,
            _ => return Err(Error::InvalidInput("SET_IRQS flags need one DATA and one ACTION bit")),
        };
        let data = flags & IRQ_SET_DATA_MASK;
        // Bound `count` before anything is allocated for it.
        if count > 0 {
            let max = self.irq_info(index)?.count;
            if !start.checked_add(count).is_some_and(|end| end <= max) {
                return Err(Error::InvalidInput("vectors beyond the IRQ index's count"));
            }
        }
        match data {
            IRQ_SET_DATA_NONE if fds.is_empty() => self.set_irqs(index, action, start, IrqSetData::None { count }),
            IRQ_SET_DATA_EVENTFD if fds.len() == count as usize => {
                let v: Vec<Option<BorrowedFd<'_>>> = fds.iter().map(|f| Some(*f)).collect();
                self.set_irqs(index, action, start, IrqSetData::Eventfds(&v))
            }
            IRQ_SET_DATA_EVENTFD if fds.is_empty() => {
                let v: Vec<Option<BorrowedFd<'_>>> = vec![None; count as usize];
                self.set_irqs(index, action, start, IrqSetData::Eventfds(&v))
            }
            _ => Err(Error::InvalidInput("SET_IRQS data does not match the flags")),
        }
    }

    /// Installs `fds` as the trigger eventfds of vectors `start..` of `index`.
    pub fn enable_irq_eventfds(&self, index: u32, start: u32, fds: &[BorrowedFd<'_>]) -> Result<()> {
        let v: Vec<Option<BorrowedFd<'_>>> = fds.iter().map(|f| Some(*f)).collect();
        self.set_irqs(index, IrqAction::Trigger, start, IrqSetData::Eventfds(&v))
    }

    /// Disables every vector of `index` (DATA_NONE | ACTION_TRIGGER, count 0).
    pub fn disable_irqs(&self, index: u32) -> Result<()> {
        self.set_irqs(index, IrqAction::Trigger, 0, IrqSetData::None { count: 0 })
    }
}
