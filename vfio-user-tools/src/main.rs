// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user`: the command-line tool of the vfio-user crates.
//!
//! Argument parsing uses `clap` (derive): subcommands with generated `--help` are exactly what
//! it is for, and hand-written parsing of them would be longer and worse.

mod describe;
mod errno;
mod trace;

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

/// Tools for vfio-user: the protocol by which a VMM drives a PCI device emulated in another
/// process over a UNIX socket.
#[derive(Parser)]
#[command(name = "vfio-user", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A transparent proxy between a client and a server that prints every message both ways,
    /// decoded (like strace for vfio-user), passing file descriptors through.
    ///
    /// Point the client at the --listen path; the proxy connects to the server at --connect
    /// for each client. A twin socket negotiated in VERSION is traced as well.
    Trace {
        /// Socket path to listen on (the client connects here).
        #[arg(long)]
        listen: PathBuf,
        /// Socket path of the server.
        #[arg(long)]
        connect: PathBuf,
        /// Also write every message as a JSON line to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Exit after the first client disconnects.
        #[arg(long)]
        once: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Trace { listen, connect, json, once } => (|| {
            let json = json.map(File::create).transpose()?;
            let log = Arc::new(trace::Log::new(Box::new(std::io::stdout()), json));
            trace::run(&listen, connect, log, once)
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfio-user: {e}");
            ExitCode::FAILURE
        }
    }
}
