// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `gpio [--socket-path=]PATH | --fd=FD [--control=PATH]`: serves the GPIO card of
//! `vfio_user_samples::gpio` until SIGTERM or SIGINT (the backend conventions: no
//! daemonizing, the socket it created removed on exit; a connected `--fd` until its client
//! leaves), and with `--control` the card's control socket
//! (`vfio_user_samples::gpio::control`). Exit status 2 for bad arguments.

use std::process::ExitCode;

use vfio_user_samples::gpio::{self, control::Control};
use vfio_user_samples::signals::{catch_termination_signals, endpoint_from_fd, serve_until_signal};
use vfio_user_server::{Endpoint, Listener};

enum Arg {
    Path(String),
    Fd(i32),
}

/// The endpoint, and the control socket's path if any.
fn parse_args(mut args: impl Iterator<Item = String>) -> Option<(Arg, Option<String>)> {
    let mut found = None;
    let mut control = None;
    while let Some(a) = args.next() {
        if let Some(p) = a.strip_prefix("--control=") {
            if control.replace(p.to_string()).is_some() {
                return None;
            }
            continue;
        } else if a == "--control" {
            if control.replace(args.next()?).is_some() {
                return None;
            }
            continue;
        }
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
            return None; // one endpoint only
        }
    }
    Some((found?, control))
}

fn main() -> ExitCode {
    let Some((arg, control)) = parse_args(std::env::args().skip(1)) else {
        eprintln!("usage: gpio [--socket-path=]PATH | --fd=FD [--control=PATH]");
        return ExitCode::from(2);
    };
    let signals = catch_termination_signals();
    let endpoint = match arg {
        Arg::Path(p) => Listener::bind(&p).map(Endpoint::Listener).map_err(|e| format!("{p}: {e}")),
        Arg::Fd(fd) => endpoint_from_fd(fd),
    };
    let result = endpoint.and_then(|e| {
        let server = gpio::new_server().map_err(|e| e.to_string())?;
        let _control = match control {
            Some(p) => Some(Control::bind(&p, server.device().handle()).map_err(|e| format!("{p}: {e}"))?),
            None => None,
        };
        serve_until_signal(server, e, signals)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpio: {e}");
            ExitCode::FAILURE
        }
    }
}
