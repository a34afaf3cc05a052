// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfio-user serve`: run a sample device on a socket until SIGTERM or SIGINT.
//!
//! Signal handling is `vfio_user_samples::signals` (signal-hook), logging env_logger; the
//! server unlinks the socket it bound when dropped.

use std::path::PathBuf;

use log::LevelFilter;
use vfio_user_samples::gpio::{self, control::Control};
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
    /// An ACCES PCI-IDIO-16 GPIO card (vendor 494f device 0dc8), as Linux's pci-idio-16
    /// driver programs it: 16 outputs, 16 inputs driven through --control, INTx on input
    /// change.
    Gpio,
    /// libvfio-user's sample `server` (dead:beef): a BAR0 timer that raises INTx and does
    /// DMA, BAR1 memory with sparse mmap areas, migration (`vfio_user_samples::server`).
    /// Like libvfio-user's, it resends its whole state at STOP_COPY and a destination takes
    /// one copy only: `vfio-user migrate` between two of them needs `--rounds 0` (otherwise
    /// MIG_DATA_WRITE fails with EINVAL).
    LvuServer,
    /// A virtio-blk disk (virtio-pci, vendor 1af4 device 1042) backed by the raw image
    /// `--image` (`vfio_user_virtio::blk`).
    VirtioBlk,
}

/// Options of the virtio-blk device.
#[derive(Clone, Debug, clap::Args)]
pub struct BlkArgs {
    /// virtio-blk: the raw image file to serve (its size, in 512-byte sectors, is the
    /// disk's capacity).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// virtio-blk: number of request queues (1 to 64), each served by its own thread.
    #[arg(long, default_value_t = 1)]
    pub queues: u16,
    /// virtio-blk: maximum size of each queue (a power of two).
    #[arg(long, default_value_t = 256)]
    pub queue_size: u16,
    /// virtio-blk: serve the image read-only (VIRTIO_BLK_F_RO; writes fail).
    #[arg(long)]
    pub read_only: bool,
    /// virtio-blk: the serial number the driver reads (GET_ID, at most 20 bytes).
    #[arg(long, default_value = "vfio-user-blk")]
    pub serial: String,
    /// virtio-blk: signal every completion at once, without interrupt moderation (which
    /// holds completions back while the driver goes on adding requests).
    #[arg(long)]
    pub no_interrupt_moderation: bool,
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
/// client leaves); the gpio card also serves its control socket at `control`, virtio-blk
/// takes its options from `blk`; `msi` gives the demo device MSI instead of MSI-X.
pub fn serve(sample: Sample, at: Where, control: Option<PathBuf>, msi: bool, blk: &BlkArgs) -> Result<(), String> {
    if control.is_some() && sample != Sample::Gpio {
        return Err("--control is for the gpio sample only".into());
    }
    if msi && sample != Sample::Demo {
        return Err("--msi is for the demo sample only".into());
    }
    let signals = catch_termination_signals();
    // The socket appears only once the device is made (its fds, threads and all), so that
    // whoever waits for the socket sees the server as it will stay.
    let open = move || -> Result<(Endpoint, &'static str, String), String> {
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
        Ok((endpoint, what, place))
    };
    // Said without -v, once the device is ready: where clients connect, and how it ends.
    let say = |what: &str, place: &str| {
        println!("vfio-user serve {}: {what} on {place} (SIGINT or SIGTERM stops it)", sample_name(sample))
    };
    match sample {
        Sample::Demo => {
            let irq = if msi { devices::DemoIrq::Msi } else { devices::DemoIrq::Msix };
            let s = devices::demo_server_with(irq).map_err(|e| e.to_string())?;
            let (endpoint, what, place) = open()?;
            log::info!("demo device {:04x}:{:04x}: {what}", devices::DEMO_VENDOR, devices::DEMO_DEVICE);
            say(what, &place);
            run(s, endpoint, signals)
        }
        Sample::Gpio => {
            let s = gpio::new_server().map_err(|e| e.to_string())?;
            let _control = match control {
                Some(p) => Some(Control::bind(&p, s.device().handle()).map_err(|e| format!("{}: {e}", p.display()))?),
                None => None,
            };
            let (endpoint, what, place) = open()?;
            log::info!("gpio device {:04x}:{:04x}: {what}", gpio::VENDOR_ID, gpio::DEVICE_ID);
            say(what, &place);
            run(s, endpoint, signals)
        }
        Sample::LvuServer => {
            use vfio_user_samples::server::{new_server, DEVICE_ID, VENDOR_ID};
            let s = new_server().map_err(|e| e.to_string())?;
            let (endpoint, what, place) = open()?;
            log::info!("libvfio-user sample server {VENDOR_ID:04x}:{DEVICE_ID:04x}: {what}");
            say(what, &place);
            run(s, endpoint, signals)
        }
        Sample::VirtioBlk => {
            use vfio_user_virtio::blk::{BlkConfig, VirtioBlk};
            let image = blk.image.as_ref().ok_or("virtio-blk needs --image FILE")?;
            let cfg = BlkConfig {
                queues: blk.queues,
                queue_size: blk.queue_size,
                read_only: blk.read_only,
                serial: blk.serial.clone(),
                interrupt_moderation: !blk.no_interrupt_moderation,
            };
            let dev = VirtioBlk::open(image, cfg).map_err(|e| format!("{}: {e}", image.display()))?;
            let sectors = dev.capacity();
            let s = vfio_user_virtio::VirtioPci::server(dev).map_err(|e| e.to_string())?;
            let (endpoint, what, place) = open()?;
            log::info!(
                "virtio-blk {}: {sectors} sectors, {} queue(s){}: {what}",
                image.display(),
                blk.queues,
                if blk.read_only { ", read-only" } else { "" }
            );
            say(what, &place);
            run(s, endpoint, signals)
        }
    }
}
