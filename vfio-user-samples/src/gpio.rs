// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A 16-input PCI GPIO card in the spirit of libvfio-user's `gpio-pci-idio-16` sample:
//! vendor 0x494f, device 0x0dc8, a 256-byte BAR2 whose first two bytes are the input pins
//! (they toggle on every read, so a guest driver sees them change) and whose byte 4 is an
//! output latch, read back as written.
//!
//! It is also the smallest complete device of this workspace, a good first read for a
//! device author: a [`DeviceMut`] with two methods, a [`DeviceDescription`], a [`Server`].
//! The `gpio` binary serves it (`gpio [--socket-path=]PATH | --fd=FD`).

use std::io;
use std::sync::Mutex;

use vfio_user_server::{Bar, DeviceDescription, DeviceMut, Server};

/// PCI vendor ID of the card.
pub const VENDOR_ID: u16 = 0x494f;
/// PCI device ID of the card.
pub const DEVICE_ID: u16 = 0x0dc8;
/// Offset of the 16 input pins in BAR2.
pub const PINS: u64 = 0;
/// Offset of the output latch in BAR2.
pub const OUTPUTS: u64 = 4;

/// The card's state.
#[derive(Default)]
pub struct Gpio {
    pins: u16,
    outputs: u8,
}

impl DeviceMut for Gpio {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        if region != 2 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let pins = self.pins.to_le_bytes();
        let mut touched_pins = false;
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset + i as u64 {
                o @ (PINS | 1) => {
                    touched_pins = true;
                    pins[o as usize]
                }
                OUTPUTS => self.outputs,
                _ => 0,
            };
        }
        if touched_pins {
            self.pins = !self.pins;
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        if region != 2 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        for (i, b) in data.iter().enumerate() {
            if offset + i as u64 == OUTPUTS {
                self.outputs = *b;
            }
        }
        Ok(())
    }
}

/// The card's server (no endpoint set yet): class "other system peripheral", BAR2 of 256
/// bytes, INTx.
pub fn new_server() -> Result<Server<Mutex<Gpio>>, vfio_user_server::Error> {
    let desc = DeviceDescription::builder(VENDOR_ID, DEVICE_ID)
        .class_code(0x088000)
        .bar(2, Bar::memory32(0x100))
        .intx()
        .build()?;
    Server::new(desc, Mutex::new(Gpio::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_toggle_and_the_latch_holds() {
        let mut g = Gpio::default();
        let mut b = [0u8; 5];
        g.region_read(2, 0, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0, 0, 0]);
        g.region_write(2, OUTPUTS, &[0x5a]).unwrap();
        g.region_read(2, 0, &mut b).unwrap();
        assert_eq!(b, [0xff, 0xff, 0, 0, 0x5a]);
        assert!(g.region_read(0, 0, &mut b).is_err());
        assert!(g.region_write(1, 0, &b).is_err());
    }
}
