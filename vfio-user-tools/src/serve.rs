// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user serve`: run a sample device on a socket until SIGTERM or SIGINT.
//!
//! Signal handling is `vfio_user_samples::signals` (signal-hook), logging env_logger; the
//! server unlinks the socket it bound when dropped.

use std::path::PathBuf;

use log::LevelFilter;
use vfio_user_samples::gpio;
use vfio_user_samples::signals::{catch_termination_signals, endpoint_from_fd, serve_until_signal as run};
use vfio_user_server::{Endpoint, Listener};

use crate::devices;

/// Logs to stderr with env_logger: warnings by default, `-v` info, `-vv` debug, `-vvv`
/// trace; `RUST_LOG` adds its directives on top.
pub fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    let _ = env_logger::Builder::new().filter_level(level).parse_default_env().try_init();
}

/// The sample devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sample {
    /// The demo device: a DMA doorbell in BAR0 that writes a pattern into client memory and
    /// raises MSI-X vector 0; BAR2 memory with a sparse mmap area.
    Demo,
    /// A 16-input GPIO card (vendor 494f device 0dc8): BAR2 byte 0-1 are input pins that
    /// toggle on each read, byte 4 an output latch.
    Gpio,
    /// libvfio-user's sample `server` (dead:beef): a BAR0 timer that raises INTx and does
    /// DMA, BAR1 memory with sparse mmap areas, migration (`vfio_user_samples::server`).
    /// Like libvfio-user's, it resends its whole state at STOP_COPY and a destination takes
    /// one copy only: `vfio-user migrate` between two of them needs `--rounds 0` (otherwise
    /// MIG_DATA_WRITE fails with EINVAL).
    LvuServer,
}

/// The name `serve` takes for `sample`.
fn sample_name(sample: Sample) -> String {
    use clap::ValueEnum;
    sample.to_possible_value().map_or_else(|| format!("{sample:?}"), |v| v.get_name().to_string())
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
/// client leaves).
pub fn serve(sample: Sample, at: Where) -> Result<(), String> {
    let signals = catch_termination_signals();
    let (endpoint, place) = match at {
        Where::Path(p) => (
            Listener::bind(&p).map(Endpoint::Listener).map_err(|e| format!("{}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        Where::Fd(fd) => (endpoint_from_fd(fd)?, format!("inherited fd {fd}")),
    };
    let what = match &endpoint {
        Endpoint::Listener(_) => "listening",
        Endpoint::Stream(_) => "serving one connected client",
    };
    // Said without -v: where clients connect, and how it ends.
    println!("vfio-user serve {}: {what} on {place} (SIGINT or SIGTERM stops it)", sample_name(sample));
    match sample {
        Sample::Demo => {
            let s = devices::demo_server().map_err(|e| e.to_string())?;
            log::info!("demo device {:04x}:{:04x}: {what}", devices::DEMO_VENDOR, devices::DEMO_DEVICE);
            run(s, endpoint, signals)
        }
        Sample::Gpio => {
            let s = gpio::new_server().map_err(|e| e.to_string())?;
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
