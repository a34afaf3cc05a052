// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user`: the command-line tool of the vfio-user crates.
//!
//! Argument parsing uses `clap` (derive): subcommands with generated `--help` are exactly what
//! it is for, and hand-written parsing of them would be longer and worse.
//!
//! Well-kept crates rather than hand-written code: `serve` catches SIGTERM/SIGINT with
//! signal-hook and logs with env_logger; `demo` makes its temporary directory with tempfile.

mod bench;
mod connect;
mod demo;
mod demo_migration;
mod describe;
mod devices;
mod errno;
mod inspect;
mod lspci;
mod migrate;
mod pci;
mod serve;
mod stats;
mod trace;

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
    /// Runs the whole protocol end to end with no set-up: serves a sample DMA device from a
    /// thread of this process on a socket in a fresh temporary directory, connects the client
    /// to it, prints the negotiated capabilities, device info, regions, IRQs and config space,
    /// then maps a memfd as DMA memory, rings the device's doorbell, waits for its MSI-X
    /// interrupt, checks the pattern it wrote by DMA, and measures config-read latency.
    ///
    /// Exits non-zero with a message if any step fails.
    Demo,
    /// Serves a sample device, or a virtio-blk disk, until SIGTERM or SIGINT (the socket it
    /// bound is removed).
    ///
    /// Examples: vfio-user serve demo --socket-path /tmp/demo.sock -v;
    /// vfio-user serve virtio-blk --image disk.img --queues 2 --socket-path /tmp/blk.sock
    Serve {
        /// Which device.
        #[arg(value_enum)]
        sample: serve::Sample,
        /// Listen on this socket path.
        #[arg(long, conflicts_with = "fd", required_unless_present = "fd")]
        socket_path: Option<PathBuf>,
        /// Use this inherited socket instead: a listening one (clients one after another)
        /// or a connected one (that client only).
        #[arg(long)]
        fd: Option<i32>,
        /// gpio only: serve the card's control socket here (drive its inputs, read its
        /// outputs: `inputs HEX`, `state`; see vfio_user_samples::gpio::control).
        #[arg(long)]
        control: Option<PathBuf>,
        /// demo only: MSI (2 vectors) instead of MSI-X, so that QEMU 11.1 can unplug the
        /// device (its vfio-user-pci aborts on device_del of any device with MSI-X).
        #[arg(long)]
        msi: bool,
        /// Log more on stderr: -v info, -vv debug, -vvv trace (default: warnings).
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
        #[command(flatten)]
        blk: serve::BlkArgs,
    },
    /// Inspects a vfio-user server: device info, regions (flags, size, sparse mmap areas,
    /// capabilities), IRQ indexes and counts, and the config space decoded (IDs, BARs sized
    /// by writing all-ones, capability list).
    ///
    /// With -x (64 bytes), -xxx (256) or -xxxx (4096) it prints config space in the format
    /// of `lspci -x` instead, which pciutils decodes: `vfio-user lspci S -xxxx > d; lspci -vv -F d`.
    Lspci {
        /// The server's socket.
        socket: PathBuf,
        /// Also show the negotiated capabilities (and, with -x, the decoded lines).
        #[arg(short, long)]
        verbose: bool,
        /// Hex dump of config space: -x header, -xxx conventional space, -xxxx extended space.
        #[arg(short = 'x', action = clap::ArgAction::Count)]
        x: u8,
        /// Print everything as one JSON object instead (config space in hex).
        #[arg(long, conflicts_with_all = ["x", "verbose"])]
        json: bool,
        /// Give up when the whole inspection (connect included) takes longer than this many
        /// seconds, however promptly each reply arrives within its own 5 s timeout.
        #[arg(long, default_value_t = lspci::DEFAULT_DEADLINE_SECS, value_parser = lspci::parse_deadline)]
        deadline: f64,
    },
    /// Measures 4-byte config-read latency (p50/p99/p99.9) and throughput against a server,
    /// lock-step and pipelined (16 in flight), beside a raw socketpair ping-pong of the same
    /// message sizes run in the same process, and prints the ratios.
    Bench {
        /// The server's socket.
        socket: PathBuf,
        /// Total measuring time in seconds, split evenly between the four phases.
        #[arg(long, default_value_t = 8.0)]
        seconds: f64,
        /// Print one JSON object (latencies in ns, reads per second) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Migrates a device's state from one server to another (live migration v2): the
    /// source iterates in PRE_COPY while it runs, stops in STOP_COPY, and its state streams
    /// into the destination in RESUMING, which then goes to STOP and RUNNING. Each step is
    /// printed as it happens.
    ///
    /// Example: vfio-user migrate --from /tmp/a.sock --to /tmp/b.sock
    Migrate {
        /// The source server's socket.
        #[arg(long)]
        from: PathBuf,
        /// The destination server's socket.
        #[arg(long)]
        to: PathBuf,
        /// Most PRE_COPY rounds before the source is stopped; 0 skips PRE_COPY (needed
        /// between two `serve lvu-server`, which resend their whole state at STOP_COPY).
        #[arg(long, default_value_t = 8)]
        rounds: usize,
        /// Leave the destination in STOP instead of RUNNING.
        #[arg(long)]
        no_resume: bool,
        /// Print one JSON object per line (each step, then the summary) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A transparent proxy between a client and a server that prints every message both ways,
    /// decoded (like strace for vfio-user), passing file descriptors through.
    ///
    /// Point the client at the --listen path; the proxy connects to the server at --connect
    /// for each client. A twin socket negotiated in VERSION is traced as well. Times are
    /// milliseconds since the start. SIGINT or SIGTERM ends it (exit status 0) and removes
    /// the socket it created.
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
    /// Prints a shell completion script for this command.
    ///
    /// Example: vfio-user completions bash > /etc/bash_completion.d/vfio-user
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff) of this command, or of one subcommand.
    ///
    /// Example: vfio-user man > vfio-user.1; vfio-user man serve > vfio-user-serve.1; man ./vfio-user.1
    Man {
        /// A subcommand (default: the whole command).
        subcommand: Option<String>,
    },
}

/// The man page of the command, or of `sub`.
fn man_page(sub: Option<&str>) -> Result<(), String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let page = match sub {
        None => cmd,
        Some(name) => {
            let found = cmd.get_subcommands().find(|c| c.get_name() == name).cloned();
            found
                .ok_or_else(|| format!("man: no subcommand {name:?}"))?
                .display_name(format!("vfio-user-{name}"))
                .bin_name(format!("vfio-user {name}"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out).map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut std::io::stdout().lock(), &out).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo => demo::run(),
        Cmd::Serve { sample, socket_path, fd, control, msi, verbose, blk } => {
            serve::init_logging(verbose);
            let at = match (socket_path, fd) {
                (Some(p), _) => serve::Where::Path(p),
                (None, Some(fd)) => serve::Where::Fd(fd),
                (None, None) => unreachable!("clap requires one"),
            };
            serve::serve(sample, at, control, msi, &blk)
        }
        Cmd::Lspci { socket, verbose, x, json, deadline } => {
            lspci::run(&socket, verbose, pci::DumpLevel::from_count(x), json, Duration::from_secs_f64(deadline))
        }
        Cmd::Bench { socket, seconds, json } => bench::run(&socket, seconds, json),
        Cmd::Migrate { from, to, rounds, no_resume, json } => migrate::run(&from, &to, rounds, !no_resume, json),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "vfio-user", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man { subcommand } => man_page(subcommand.as_deref()),
        Cmd::Trace { listen, connect, json, once } => (|| {
            let json = json.map(File::create).transpose()?;
            let log = Arc::new(trace::Log::new(Box::new(std::io::stdout()), json));
            trace::run(&listen, connect, log, once)
        })()
        .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfio-user: {e}");
            ExitCode::FAILURE
        }
    }
}
