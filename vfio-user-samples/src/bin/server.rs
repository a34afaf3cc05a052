// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `server [-v] <socketpath>`: the sample device of `vfio_user_samples::server`, served to
//! one client on a socket created at `socketpath`; exits 0 when the client goes away.

use std::process::ExitCode;

fn main() -> ExitCode {
    match vfio_user_samples::server::run(std::env::args().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}
