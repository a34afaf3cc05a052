// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `gpio [--socket-path=]PATH | --fd=FD`: serves the GPIO card of
//! `vfio_user_samples::gpio` until SIGTERM or SIGINT (the backend conventions: no
//! daemonizing, the socket it created removed on exit; a connected `--fd` until its client
//! leaves). Exit status 2 for bad arguments.

use std::process::ExitCode;

use vfio_user_samples::gpio;
use vfio_user_samples::signals::{catch_termination_signals, endpoint_from_fd, serve_until_signal};
use vfio_user_server::{Endpoint, Listener};

enum Arg {
    Path(String),
    Fd(i32),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Option<Arg> {
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
            return None; // one endpoint only
        }
    }
    found
}

fn main() -> ExitCode {
    let Some(arg) = parse_args(std::env::args().skip(1)) else {
        eprintln!("usage: gpio [--socket-path=]PATH | --fd=FD");
        return ExitCode::from(2);
    };
    let signals = catch_termination_signals();
    let endpoint = match arg {
        Arg::Path(p) => Listener::bind(&p).map(Endpoint::Listener).map_err(|e| format!("{p}: {e}")),
        Arg::Fd(fd) => endpoint_from_fd(fd),
    };
    let result = endpoint.and_then(|e| {
        let server = gpio::new_server().map_err(|e| e.to_string())?;
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
