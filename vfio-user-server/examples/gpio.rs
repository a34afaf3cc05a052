// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A 16-input PCI GPIO card in the spirit of libvfio-user's `gpio-pci-idio-16` sample:
//! vendor 0x494f, device 0x0dc8, a 256-byte BAR2 whose first two bytes are the input pins.
//! Reading the pins toggles them, so a guest driver sees them change.
//!
//! ```text
//! cargo run -p vfio-user-server --example gpio -- /tmp/gpio.sock
//! cargo run -p vfio-user-server --example gpio -- --socket-path=/tmp/gpio.sock
//! cargo run -p vfio-user-server --example gpio -- --fd=3
//! ```
//!
//! The backend conventions apply: it does not daemonize and exits cleanly (removing the
//! socket it created) on SIGTERM or SIGINT.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::Mutex;

use vfio_user_server::{Bar, DeviceDescription, DeviceMut, Endpoint, Listener, Server};

/// Offset of the 16 input pins in BAR2.
const PINS: u64 = 0;
/// Offset of the output latch (read back as written).
const OUTPUTS: u64 = 4;

#[derive(Default)]
struct Gpio {
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

fn usage() -> ExitCode {
    eprintln!("usage: gpio [--socket-path=]PATH | --fd=FD");
    ExitCode::from(2)
}

enum Arg {
    Path(String),
    Fd(i32),
}

fn parse_args() -> Option<Arg> {
    let mut args = std::env::args().skip(1);
    let mut found = None;
    while let Some(a) = args.next() {
        let parsed = if let Some(p) = a.strip_prefix("--socket-path=") {
            Arg::Path(p.to_string())
        } else if a == "--socket-path" {
            Arg::Path(args.next()?)
        } else if let Some(fd) = a.strip_prefix("--fd=") {
            Arg::Fd(fd.parse().ok()?)
        } else if a == "--fd" {
            Arg::Fd(args.next()?.parse().ok()?)
        } else if !a.starts_with('-') {
            Arg::Path(a)
        } else {
            return None;
        };
        if found.replace(parsed).is_some() {
            return None; // --socket-path and --fd are mutually exclusive
        }
    }
    found
}

/// Blocks SIGTERM and SIGINT in this thread and every thread it spawns afterwards, and
/// returns the set, for `sigwait`.
fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: `sigset_t` is a plain C struct for which all-zero is a valid value; it is
    // initialised by `sigemptyset` before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the calls only write to it
    // and to this thread's signal mask.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

fn main() -> ExitCode {
    let Some(arg) = parse_args() else { return usage() };
    let signals = block_termination_signals();
    let endpoint = match arg {
        Arg::Path(p) => Listener::bind(&p).map(Endpoint::Listener),
        Arg::Fd(fd) if fd > 2 => {
            // SAFETY: by the backend convention the parent passed us this socket; nothing
            // else in this process owns it, and it is taken over exactly once here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Endpoint::from_fd(fd)
        }
        Arg::Fd(_) => return usage(),
    };
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(e) => {
            eprintln!("gpio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let desc = DeviceDescription::builder(0x494f, 0x0dc8)
        .class_code(0x088000)
        .bar(2, Bar::memory32(0x100))
        .intx()
        .build()
        .expect("a valid description");
    let mut server = match Server::new(desc, Mutex::new(Gpio::default())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gpio: {e}");
            return ExitCode::FAILURE;
        }
    };
    server.set_endpoint(endpoint);
    let stop = server.shutdown_handle();
    let worker = std::thread::spawn(move || server.run());
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `signals` is an initialised sigset_t and `sig` a valid out-pointer.
        unsafe { libc::sigwait(&signals, &mut sig) };
        stop.shutdown();
    });
    match worker.join() {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("gpio: {e}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}
