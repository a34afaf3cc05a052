// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Serving until SIGTERM or SIGINT, the backend convention, without a dependency: the
//! signals are blocked in every thread (before any is spawned) and one thread takes them
//! with `sigwait`, then stops the server through its `ShutdownHandle`. The server unlinks
//! the socket it bound when it is dropped.

use std::os::fd::{FromRawFd, OwnedFd};

use vfio_user_server::{Device, Endpoint, Server};

/// Blocks SIGTERM and SIGINT in this thread and in every thread it spawns afterwards (call
/// it first), and returns the set, for [`serve_until_signal`].
pub fn block_termination_signals() -> libc::sigset_t {
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
    signals: libc::sigset_t,
) -> Result<(), String> {
    server.set_endpoint(endpoint);
    // DMA mappings that keep an fd, and eventfds, count against RLIMIT_NOFILE.
    if let Err(e) = vfio_user_server::raise_fd_limit() {
        log::warn!("could not raise RLIMIT_NOFILE: {e}");
    }
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
