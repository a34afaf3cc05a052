// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `server [-v] <socketpath>` command, as libvfio-user's sample: create the socket,
//! serve one client, exit when it goes away.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use log::LevelFilter;
use vfio_user_server::socket_path::clear_stale;
use vfio_user_server::{Endpoint, SocketPath};

/// The usage line.
pub const USAGE: &str = "Usage: server [-v] <socketpath>";

/// The command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `-v`: debug logging on stderr (otherwise warnings and errors only).
    pub verbose: bool,
    /// Where to create the listening socket.
    pub socket: PathBuf,
}

impl Options {
    /// Parses the arguments after the program name, `getopt`-style: `-v` (repeatable,
    /// also `-vv`) anywhere, `--` ends the options, exactly one socket path.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut verbose = false;
        let mut paths = Vec::new();
        let mut options_done = false;
        for a in args {
            if options_done || !a.starts_with('-') || a == "-" {
                paths.push(a);
            } else if a == "--" {
                options_done = true;
            } else if a[1..].chars().all(|c| c == 'v') {
                verbose = true;
            } else {
                return Err(format!("unknown option {a}\n{USAGE}"));
            }
        }
        match <[String; 1]>::try_from(paths) {
            Ok([socket]) => Ok(Options { verbose, socket: socket.into() }),
            Err(p) if p.is_empty() => Err(format!("missing vfio-user socket path\n{USAGE}")),
            Err(_) => Err(format!("more than one socket path\n{USAGE}")),
        }
    }
}

/// `server[pid]: LEVEL message` lines on stderr, as the C sample's log callback, through
/// env_logger (`RUST_LOG` adds its directives on top of `-v`).
fn init_logging(verbose: bool) {
    let pid = std::process::id();
    let _ = env_logger::Builder::new()
        .filter_level(if verbose { LevelFilter::Debug } else { LevelFilter::Warn })
        .parse_default_env()
        .format(move |out, r| writeln!(out, "server[{pid}]: {} {}", r.level(), r.args()))
        .try_init();
}

/// The listening socket; its path is removed when dropped (the C sample unlinks it when
/// it exits), if it is still the socket bound here.
#[derive(Debug)]
struct Socket {
    listener: UnixListener,
    _path: SocketPath,
}

/// Listens on `path`. The socket is bound under a temporary name in the same directory
/// and renamed into place once it listens, so a client that waits for the path to appear
/// (as libvfio-user's sample client waits for the migration destination) never finds it
/// bound but not yet listening. A stale socket at `path` (nobody listening) is replaced; a
/// live one, or any other file, is an error.
fn listen(path: &Path) -> Result<Socket, String> {
    let show = path.display();
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(format!("{show}: exists and is not a socket"));
        }
    }
    // Only a stale socket is replaced (a live one is EADDRINUSE); nothing else is removed.
    clear_stale(path).map_err(|e| format!("{show}: {e}"))?;
    let tmp = path.with_file_name(format!(".server-{}.sock", std::process::id()));
    // A temporary path taken (or too long for a socket address): bind the final one directly.
    let bound = clear_stale(&tmp).and_then(|()| SocketPath::bind(&tmp));
    let (listener, bound) = match bound {
        Ok((l, b)) => (l, b),
        Err(_) => {
            let (l, b) = SocketPath::bind(path).map_err(|e| format!("{show}: {e}"))?;
            return Ok(Socket { listener: l, _path: b });
        }
    };
    // rename() replaces whatever is at `path`: only a stale socket or nothing was there a
    // moment ago (a file created since is lost; that window is the price of never being
    // found bound but not listening).
    if let Err(e) = std::fs::rename(bound.path(), path) {
        return Err(format!("{show}: {e}"));
    }
    // Nothing is left at the temporary path: dropping `bound` removes nothing.
    drop(bound);
    let owned = SocketPath::adopt(path).map_err(|e| format!("{show}: {e}"))?;
    Ok(Socket { listener, _path: owned })
}

/// The `server` program: parses `args` (without the program name), creates the socket,
/// serves the first client that connects and returns when it goes away. Fails if the
/// arguments are wrong, the socket cannot be created, or the device's DMA failed (the C
/// sample exits with status 1 then; serving stops at once).
pub fn run(args: impl IntoIterator<Item = String>) -> Result<(), String> {
    let opts = Options::parse(args)?;
    init_logging(opts.verbose);
    let socket = listen(&opts.socket)?;
    // DMA mappings that keep an fd, and eventfds, count against RLIMIT_NOFILE.
    if let Err(e) = vfio_user_server::raise_fd_limit() {
        log::warn!("could not raise RLIMIT_NOFILE: {e}");
    }
    let mut server = super::new_server().map_err(|e| format!("failed to initialize device emulation: {e}"))?;
    let stop = server.shutdown_handle();
    server.device().set_failure_hook(move |_| stop.shutdown());
    log::debug!("listening on {}", opts.socket.display());
    let (stream, _) = socket.listener.accept().map_err(|e| format!("failed to attach device: {e}"))?;
    server.set_endpoint(Endpoint::Stream(stream));
    server.run().map_err(|e| e.to_string())?;
    match server.device().dma_failures() {
        0 => Ok(()),
        n => Err(format!("{n} DMA run(s) failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments_as_getopt_takes_them() {
        let o = |verbose, p: &str| Ok(Options { verbose, socket: p.into() });
        assert_eq!(parse(&["/tmp/s"]), o(false, "/tmp/s"));
        assert_eq!(parse(&["-v", "/tmp/s"]), o(true, "/tmp/s"));
        assert_eq!(parse(&["/tmp/s", "-vv"]), o(true, "/tmp/s"));
        assert_eq!(parse(&["--", "-v"]), o(false, "-v"));
        assert!(parse(&[]).unwrap_err().contains("missing vfio-user socket path"));
        assert!(parse(&["-v"]).is_err());
        assert!(parse(&["-x", "/tmp/s"]).unwrap_err().contains("unknown option -x"));
        assert!(parse(&["a", "b"]).is_err());
    }

    #[test]
    fn socket_is_created_listening_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A stale socket is replaced.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let s = listen(&path).unwrap();
        UnixStream::connect(&path).unwrap();
        // A live one is refused.
        assert!(listen(&path).unwrap_err().contains("in use"));
        drop(s);
        assert!(!path.exists());
        // So is a regular file, which is left alone.
        std::fs::write(&path, b"x").unwrap();
        assert!(listen(&path).unwrap_err().contains("not a socket"));
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
