// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Connecting the subcommands to a server, with errors that say what is likely wrong: no
//! such path, a path that is not a socket, nobody listening, or a server busy with
//! another client (most servers, libvfio-user's among them, serve one client at a time:
//! a second one is accepted by the kernel but never answered).

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use vfio_user_client::{Client, Config, Error};
use vfio_user_proto::Command;

/// Connects to the server at `socket`, or says why not.
pub fn connect(socket: &Path, config: Config) -> Result<Client, String> {
    let show = socket.display();
    match std::fs::metadata(socket) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{show}: no such file (is the server running, and is this its socket path?)"))
        }
        Err(e) => return Err(format!("{show}: {e}")),
        Ok(m) if !m.file_type().is_socket() => {
            let kind = if m.is_dir() {
                "a directory"
            } else if m.is_file() {
                "a regular file"
            } else {
                "not a socket"
            };
            return Err(format!("{show}: {kind}, not a UNIX socket: give the server's socket path"));
        }
        Ok(_) => {}
    }
    Client::connect(socket, config).map_err(|e| explain(socket, &e))
}

/// The message for a failed connect.
pub fn explain(socket: &Path, e: &Error) -> String {
    let show = socket.display();
    match e {
        Error::Timeout { command: Command::Version, timeout } => format!(
            "{show}: no answer to VERSION within {:.1} s: the server is likely busy with another client \
             (most vfio-user servers serve one client at a time)",
            timeout.as_secs_f64()
        ),
        Error::Connect(io) if io.raw_os_error() == Some(libc::ECONNREFUSED) => {
            format!("{show}: nobody is listening (a stale socket left by a server that exited?)")
        }
        e => format!("{show}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_is_not_a_socket_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(connect(&file, Config::default()).unwrap_err().contains("a regular file, not a UNIX socket"));
        assert!(connect(dir.path(), Config::default()).unwrap_err().contains("a directory, not a UNIX socket"));
        let none = dir.path().join("none");
        assert!(connect(&none, Config::default()).unwrap_err().contains("no such file"));
        assert_eq!(std::fs::read(&file).unwrap(), b"x", "left alone");
    }

    #[test]
    fn a_stale_socket_and_a_busy_server_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(connect(&path, Config::default()).unwrap_err().contains("nobody is listening"));
        std::fs::remove_file(&path).unwrap();
        // A listener that never answers, as a server busy with its first client.
        let _busy = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let short = Config::default().connect_timeout(std::time::Duration::from_millis(200));
        let e = connect(&path, short).unwrap_err();
        assert!(e.contains("no answer to VERSION within 0.2 s") && e.contains("busy with another client"), "{e}");
    }
}
