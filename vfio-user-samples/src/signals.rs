// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Serving until SIGTERM or SIGINT, the backend convention: the signals are caught with
//! signal-hook (registered before the server starts, so none is lost) and a thread waiting
//! for them stops the server through its `ShutdownHandle`. The server unlinks the socket it
//! bound when it is dropped.

use std::os::fd::{FromRawFd, OwnedFd};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use vfio_user_server::{Device, Endpoint, Server};

/// SIGTERM and SIGINT, caught from the moment [`catch_termination_signals`] returned: they
/// no longer end the process, [`serve_until_signal`] waits for them.
pub struct TerminationSignals(std::io::Result<Signals>);

/// Catches SIGTERM and SIGINT from now on (call it first), for [`serve_until_signal`]. If
/// the handlers cannot be registered, serving fails with that error.
pub fn catch_termination_signals() -> TerminationSignals {
    TerminationSignals(Signals::new([SIGTERM, SIGINT]))
}

/// An endpoint from a socket the parent passed as descriptor `fd` (a listening socket:
/// clients one after another; a connected one: that client only). `fd` must be above 2 and
/// open.
pub fn endpoint_from_fd(fd: i32) -> Result<Endpoint, String> {
    if fd <= 2 {
        return Err(format!("--fd {fd}: not a passed socket (must be > 2)"));
    }
    // SAFETY: fcntl(F_GETFD) on any integer is harmless; it only reports EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("--fd {fd}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: by the backend convention the parent passed us this open socket; nothing else
    // in this process owns it, and it is taken over exactly once here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Endpoint::from_fd(fd).map_err(|e| format!("--fd: {e}"))
}

/// Serves on `endpoint` until one of `signals` arrives (or, for a connected endpoint, the
/// client leaves).
pub fn serve_until_signal<D: Device + 'static>(
    mut server: Server<D>,
    endpoint: Endpoint,
    signals: TerminationSignals,
) -> Result<(), String> {
    let mut signals = signals.0.map_err(|e| format!("catching SIGTERM and SIGINT: {e}"))?;
    server.set_endpoint(endpoint);
    // DMA mappings that keep an fd, and eventfds, count against RLIMIT_NOFILE.
    if let Err(e) = vfio_user_server::raise_fd_limit() {
        log::warn!("could not raise RLIMIT_NOFILE: {e}");
    }
    let stop = server.shutdown_handle();
    let worker = std::thread::spawn(move || server.run());
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            log::info!("{name}: shutting down");
        }
        stop.shutdown();
    });
    match worker.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the server thread panicked".into()),
    }
}
