// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user serve`: run a sample device on a socket until SIGTERM or SIGINT.
//!
//! Signal handling is `vfio_user_samples::signals` (no dependency: the signals are blocked
//! in every thread and taken with `sigwait`); the server unlinks the socket it bound when
//! dropped.

use std::io::Write;
use std::path::PathBuf;

use log::{LevelFilter, Log, Metadata, Record};
use vfio_user_samples::gpio::{self, control::Control};
use vfio_user_samples::signals::{block_termination_signals, endpoint_from_fd, serve_until_signal as run};
use vfio_user_server::{Endpoint, Listener};

use crate::devices;

/// A minimal logger: `LEVEL target: message` lines on stderr.
struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(std::io::stderr().lock(), "{:<5} {}: {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the stderr logger: warnings by default, `-v` info, `-vv` debug, `-vvv` trace.
pub fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// The sample devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sample {
    /// The demo device: a DMA doorbell in BAR0 that writes a pattern into client memory and
    /// raises MSI-X vector 0; BAR2 memory with a sparse mmap area.
    Demo,
    /// An ACCES PCI-IDIO-16 GPIO card (vendor 494f device 0dc8), as Linux's pci-idio-16
    /// driver programs it: 16 outputs, 16 inputs driven through --control, INTx on input
    /// change.
    Gpio,
    /// libvfio-user's sample `server` (dead:beef): a BAR0 timer that raises INTx and does
    /// DMA, BAR1 memory with sparse mmap areas, migration (`vfio_user_samples::server`).
    LvuServer,
}

/// Where the server takes its clients from.
pub enum Where {
    /// Bind a listening socket here (removed again on exit).
    Path(PathBuf),
    /// A socket passed by the parent: listening (clients one after another) or connected
    /// (one client).
    Fd(i32),
}

/// Serves `sample` at `at` until SIGTERM / SIGINT (or, for a connected `--fd`, until its
/// client leaves); the gpio card also serves its control socket at `control`.
pub fn serve(sample: Sample, at: Where, control: Option<PathBuf>) -> Result<(), String> {
    if control.is_some() && sample != Sample::Gpio {
        return Err("--control is for the gpio sample only".into());
    }
    let signals = block_termination_signals();
    let endpoint = match at {
        Where::Path(p) => Listener::bind(&p).map(Endpoint::Listener).map_err(|e| format!("{}: {e}", p.display()))?,
        Where::Fd(fd) => endpoint_from_fd(fd)?,
    };
    let what = match &endpoint {
        Endpoint::Listener(_) => "listening",
        Endpoint::Stream(_) => "serving one connected client",
    };
    match sample {
        Sample::Demo => {
            let s = devices::demo_server().map_err(|e| e.to_string())?;
            log::info!("demo device {:04x}:{:04x}: {what}", devices::DEMO_VENDOR, devices::DEMO_DEVICE);
            run(s, endpoint, signals)
        }
        Sample::Gpio => {
            let s = gpio::new_server().map_err(|e| e.to_string())?;
            let _control = match control {
                Some(p) => Some(Control::bind(&p, s.device().handle()).map_err(|e| format!("{}: {e}", p.display()))?),
                None => None,
            };
            log::info!("gpio device {:04x}:{:04x}: {what}", gpio::VENDOR_ID, gpio::DEVICE_ID);
            run(s, endpoint, signals)
        }
        Sample::LvuServer => {
            use vfio_user_samples::server::{new_server, DEVICE_ID, VENDOR_ID};
            let s = new_server().map_err(|e| e.to_string())?;
            log::info!("libvfio-user sample server {VENDOR_ID:04x}:{DEVICE_ID:04x}: {what}");
            run(s, endpoint, signals)
        }
    }
}
