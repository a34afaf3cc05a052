// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An ACCES PCI-IDIO-16 card (vendor 0x494f, device 0x0dc8): 16 FET outputs and 16
//! isolated inputs, with a change-of-state interrupt on INTx, emulated faithfully enough
//! that Linux's own `pci-idio-16` driver (`drivers/gpio/gpio-pci-idio-16.c` on top of
//! `gpio-idio-16.c`) drives it: a guest sets outputs with `gpioset`, reads inputs with
//! `gpioget` and sees input changes with `gpiomon`.
//!
//! The driver uses BAR2 (here 256 bytes of memory space), one byte per register:
//!
//! | offset | read | write |
//! |---|---|---|
//! | 0 | outputs 0-7 | outputs 0-7 |
//! | 1 | inputs 0-7 | clear the interrupt |
//! | 2 | enable the interrupt | disable the interrupt |
//! | 3 | activate the input filters | deactivate the input filters |
//! | 4 | outputs 8-15 | outputs 8-15 |
//! | 5 | inputs 8-15 | (ignored) |
//! | 6 | interrupt status | (ignored) |
//!
//! Every other byte reads 0 and ignores writes; the value a register read or write carries
//! is irrelevant where the table names an action. The interrupt status byte is this model's
//! reading of the card: bit 2 is set while an interrupt is pending, bits 0 and 1 say that
//! inputs 0-7 or 8-15 changed since the last clear (the older, pre-regmap Linux driver
//! wanted bit 2 and one of bits 0-1; the current one looks at bit 2 only).
//!
//! The inputs are driven from outside the guest: [`GpioHandle::set_inputs`], which the
//! `gpio` binary and `vfio-user serve gpio` expose on a control socket ([`control`]).
//! While the interrupt is enabled, a change of any input latches the status and, if no
//! interrupt was pending, raises INTx once; the guest's handler clears it by writing
//! register 1. (QEMU turns the INTx eventfd into a level it lowers at the guest's next BAR
//! access, so one signal per pending interrupt is what the guest needs.)
//!
//! It is also the smallest complete device of this workspace, a good first read for a
//! device author: a [`Device`] with two methods, a [`DeviceDescription`], a [`Server`] made
//! with the [`IrqHandle`] it raises INTx with.

pub mod control;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use vfio_user_server::{Bar, Device, DeviceDescription, IrqHandle, ResetKind, Server, ServerLimits};

/// PCI vendor ID of the card (ACCES I/O Products).
pub const VENDOR_ID: u16 = 0x494f;
/// PCI device ID of the card (PCI-IDIO-16).
pub const DEVICE_ID: u16 = 0x0dc8;
/// The BAR the registers live in (the one Linux's driver maps).
pub const BAR: u32 = 2;
/// Size of that BAR.
pub const BAR_SIZE: u64 = 0x100;
/// Register: outputs 0-7 (read and write).
pub const OUT0_7: u64 = 0;
/// Register: inputs 0-7 (read); writing clears the interrupt.
pub const IN0_7: u64 = 1;
/// Register: reading enables the interrupt, writing disables it.
pub const IRQ_CTL: u64 = 2;
/// Register: reading activates the input filters, writing deactivates them.
pub const FILTER_CTL: u64 = 3;
/// Register: outputs 8-15 (read and write).
pub const OUT8_15: u64 = 4;
/// Register: inputs 8-15 (read).
pub const IN8_15: u64 = 5;
/// Register: interrupt status (read).
pub const IRQ_STATUS: u64 = 6;
/// Interrupt status bit: inputs 0-7 changed.
pub const STATUS_IN0_7: u8 = 1 << 0;
/// Interrupt status bit: inputs 8-15 changed.
pub const STATUS_IN8_15: u8 = 1 << 1;
/// Interrupt status bit: an interrupt is pending.
pub const STATUS_PENDING: u8 = 1 << 2;

/// The card's registers and pins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpioState {
    /// The 16 outputs (bit n = OUTn).
    pub outputs: u16,
    /// The 16 inputs (bit n = IINn), as driven from outside.
    pub inputs: u16,
    /// The change-of-state interrupt is enabled.
    pub irq_enabled: bool,
    /// The interrupt status byte ([`STATUS_PENDING`] and the change bits).
    pub irq_status: u8,
    /// The input filters are active (the reset state).
    pub filters: bool,
    /// Interrupts raised since the server started.
    pub interrupts: u64,
}

impl GpioState {
    fn power_on() -> Self {
        GpioState { filters: true, ..Default::default() }
    }

    fn read(&mut self, offset: u64) -> u8 {
        match offset {
            OUT0_7 => self.outputs as u8,
            IN0_7 => self.inputs as u8,
            IRQ_CTL => {
                self.irq_enabled = true;
                0
            }
            FILTER_CTL => {
                self.filters = true;
                0
            }
            OUT8_15 => (self.outputs >> 8) as u8,
            IN8_15 => (self.inputs >> 8) as u8,
            IRQ_STATUS => self.irq_status,
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, value: u8) {
        match offset {
            OUT0_7 => self.outputs = (self.outputs & 0xff00) | u16::from(value),
            IN0_7 => self.irq_status = 0,
            IRQ_CTL => self.irq_enabled = false,
            FILTER_CTL => self.filters = false,
            OUT8_15 => self.outputs = (self.outputs & 0x00ff) | (u16::from(value) << 8),
            _ => {}
        }
    }

    /// Drives the inputs; returns whether an interrupt must be raised.
    fn drive(&mut self, inputs: u16) -> bool {
        let changed = self.inputs ^ inputs;
        self.inputs = inputs;
        if changed == 0 || !self.irq_enabled {
            return false;
        }
        if changed & 0x00ff != 0 {
            self.irq_status |= STATUS_IN0_7;
        }
        if changed & 0xff00 != 0 {
            self.irq_status |= STATUS_IN8_15;
        }
        let raise = self.irq_status & STATUS_PENDING == 0;
        self.irq_status |= STATUS_PENDING;
        if raise {
            self.interrupts += 1;
        }
        raise
    }

    /// A reset: outputs off, interrupt disabled and cleared, filters active; the inputs are
    /// what the outside drives and stay.
    fn reset(&mut self) {
        *self = GpioState { inputs: self.inputs, interrupts: self.interrupts, ..GpioState::power_on() };
    }
}

/// The card: its state, shared with [`GpioHandle`]s, and the INTx it raises.
pub struct Gpio {
    state: Arc<Mutex<GpioState>>,
    irq: IrqHandle,
}

/// Drives the card from outside the guest: its inputs, and a look at its registers.
#[derive(Clone)]
pub struct GpioHandle {
    state: Arc<Mutex<GpioState>>,
    irq: IrqHandle,
}

fn lock(state: &Mutex<GpioState>) -> MutexGuard<'_, GpioState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl GpioHandle {
    /// Sets the 16 inputs (bit n = IINn); raises INTx when an enabled interrupt becomes
    /// pending.
    pub fn set_inputs(&self, inputs: u16) {
        let raise = lock(&self.state).drive(inputs);
        if raise {
            if let Err(e) = self.irq.trigger_intx() {
                log::warn!("gpio: raising INTx: {e}");
            }
        }
    }

    /// The card's registers and pins now.
    pub fn state(&self) -> GpioState {
        *lock(&self.state)
    }
}

impl Gpio {
    /// A card at power-on whose interrupt is raised through `irq`.
    pub fn new(irq: IrqHandle) -> Self {
        Gpio { state: Arc::new(Mutex::new(GpioState::power_on())), irq }
    }

    /// A handle that drives the inputs and reads the state.
    pub fn handle(&self) -> GpioHandle {
        GpioHandle { state: self.state.clone(), irq: self.irq.clone() }
    }
}

impl Device for Gpio {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        if region != BAR {
            return Err(vfio_user_server::errno(libc::EINVAL));
        }
        let mut s = lock(&self.state);
        for (i, b) in data.iter_mut().enumerate() {
            *b = s.read(offset + i as u64);
        }
        Ok(())
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        if region != BAR {
            return Err(vfio_user_server::errno(libc::EINVAL));
        }
        let mut s = lock(&self.state);
        for (i, b) in data.iter().enumerate() {
            s.write(offset + i as u64, *b);
        }
        Ok(())
    }

    fn reset(&self, _kind: ResetKind) -> io::Result<()> {
        lock(&self.state).reset();
        Ok(())
    }
}

/// The card's description: class "other system peripheral", BAR2 of 256 bytes, INTx.
pub fn description() -> Result<DeviceDescription, vfio_user_server::Error> {
    DeviceDescription::builder(VENDOR_ID, DEVICE_ID)
        .class_code(0x088000)
        .bar(BAR as usize, Bar::memory32(BAR_SIZE))
        .intx()
        .build()
}

/// The card's server (no endpoint set yet); [`Gpio::handle`] on `server.device()` drives it.
pub fn new_server() -> Result<Server<Gpio>, vfio_user_server::Error> {
    Server::with_handles(description()?, ServerLimits::default(), |irq, _dma| Gpio::new(irq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_as_the_linux_driver_programs_them() {
        let mut s = GpioState::power_on();
        assert!(s.filters);
        s.write(FILTER_CTL, 0);
        assert!(!s.filters, "a write deactivates the filters");
        s.write(OUT0_7, 0xa5);
        s.write(OUT8_15, 0x3c);
        assert_eq!((s.read(OUT0_7), s.read(OUT8_15), s.outputs), (0xa5, 0x3c, 0x3ca5));
        assert!(!s.drive(0x1234), "no interrupt while disabled");
        assert_eq!((s.read(IN0_7), s.read(IN8_15), s.read(IRQ_STATUS)), (0x34, 0x12, 0));
        s.write(IN0_7, 0); // clear
        assert_eq!(s.read(IRQ_CTL), 0);
        assert!(s.irq_enabled, "a read enables the interrupt");
        assert!(s.drive(0x1235), "a change raises it");
        assert_eq!(s.read(IRQ_STATUS), STATUS_PENDING | STATUS_IN0_7);
        assert!(!s.drive(0x0235), "still pending: no second edge");
        assert_eq!(s.read(IRQ_STATUS), STATUS_PENDING | STATUS_IN0_7 | STATUS_IN8_15);
        assert!(!s.drive(0x0235), "no change, no interrupt");
        s.write(IN0_7, 0);
        assert_eq!(s.read(IRQ_STATUS), 0, "cleared");
        assert!(s.drive(0x0234));
        s.write(IRQ_CTL, 0);
        assert!(!s.irq_enabled);
        assert_eq!(s.interrupts, 2);
        assert_eq!((s.read(0x7), s.read(0xff)), (0, 0));
        s.write(0x7, 0xff);
        s.reset();
        assert_eq!(s, GpioState { inputs: 0x0234, interrupts: 2, filters: true, ..Default::default() });
    }
}
