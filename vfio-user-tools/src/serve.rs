// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user serve`: run a sample device on a socket until SIGTERM or SIGINT.
//!
//! Signals are handled without a new dependency: SIGTERM and SIGINT are blocked in every
//! thread (before any is spawned) and one thread takes them with `sigwait`, then stops the
//! server through its `ShutdownHandle`. The server unlinks the socket it bound when dropped.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use log::{LevelFilter, Log, Metadata, Record};
use vfio_user_server::{Device, Endpoint, Listener, Server};

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
    /// A 16-input GPIO card (vendor 494f device 0dc8): BAR2 byte 0-1 are input pins that
    /// toggle on each read, byte 4 an output latch.
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

fn run<D: Device + 'static>(mut server: Server<D>, endpoint: Endpoint, signals: libc::sigset_t) -> Result<(), String> {
    server.set_endpoint(endpoint);
    let stop = server.shutdown_handle();
    let worker = std::thread::spawn(move || server.run());
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `signals` is an initialised sigset_t and `sig` a valid out-pointer.
        unsafe { libc::sigwait(&signals, &mut sig) };
        log::info!("signal {sig}: shutting down");
        stop.shutdown();
    });
    match worker.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the server thread panicked".into()),
    }
}

/// Serves `sample` at `at` until SIGTERM / SIGINT (or, for a connected `--fd`, until its
/// client leaves).
pub fn serve(sample: Sample, at: Where) -> Result<(), String> {
    let signals = block_termination_signals();
    let endpoint = match at {
        Where::Path(p) => Listener::bind(&p).map(Endpoint::Listener).map_err(|e| format!("{}: {e}", p.display()))?,
        Where::Fd(fd) if fd > 2 => {
            // Check the descriptor is open before taking ownership of it.
            // SAFETY: fcntl(F_GETFD) on any integer is harmless; it only reports EBADF.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(format!("--fd {fd}: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: by the backend convention the parent passed us this open socket;
            // nothing else in this process owns it, and it is taken over exactly once here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Endpoint::from_fd(fd).map_err(|e| format!("--fd: {e}"))?
        }
        Where::Fd(fd) => return Err(format!("--fd {fd}: not a passed socket (must be > 2)")),
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
            let s = devices::gpio_server().map_err(|e| e.to_string())?;
            log::info!("gpio device {:04x}:{:04x}: {what}", devices::GPIO_VENDOR, devices::GPIO_DEVICE);
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
