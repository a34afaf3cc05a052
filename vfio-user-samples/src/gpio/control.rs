// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The GPIO card's control socket: the outside world's side of the card, where a test (or a
//! person with `socat`) drives the inputs and reads the outputs while a guest uses the card.
//!
//! A UNIX stream socket with a line protocol, one command per line, one reply line each:
//!
//! * `inputs HEX` sets the 16 inputs (bit n = IINn, e.g. `inputs 0x8001`) → `ok`
//! * `state` → `outputs=0xOOOO inputs=0xIIII irq_enabled=B irq_status=0xSS filters=B
//!   interrupts=N`
//! * anything else → `error: ...` (the connection stays usable)
//!
//! Lines longer than 256 bytes close the connection. Connections are served one after
//! another by one thread.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use super::GpioHandle;

/// Longest command line accepted.
const MAX_LINE: u64 = 256;

/// A control socket being served; dropping it stops serving and removes the socket file.
pub struct Control {
    listener: Arc<UnixListener>,
    socket: vfio_user_server::SocketPath,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The reply to one command line.
pub fn execute(handle: &GpioHandle, line: &str) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("inputs"), Some(v), None) => {
            let digits = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")).unwrap_or(v);
            match u16::from_str_radix(digits, 16) {
                Ok(inputs) => {
                    handle.set_inputs(inputs);
                    "ok".into()
                }
                Err(e) => format!("error: inputs {v:?}: {e}"),
            }
        }
        (Some("state"), None, None) => {
            let s = handle.state();
            format!(
                "outputs={:#06x} inputs={:#06x} irq_enabled={} irq_status={:#04x} filters={} interrupts={}",
                s.outputs,
                s.inputs,
                u8::from(s.irq_enabled),
                s.irq_status,
                u8::from(s.filters),
                s.interrupts
            )
        }
        _ => format!("error: unknown command {line:?} (inputs HEX | state)"),
    }
}

fn serve_connection(handle: &GpioHandle, stream: UnixStream) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let n = (&mut lines).take(MAX_LINE + 1).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 > MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "command line too long"));
        }
        let reply = execute(handle, line.trim());
        out.write_all(format!("{reply}\n").as_bytes())?;
    }
}

impl Control {
    /// Listens on `path` (replacing a stale socket nobody listens on; any other existing
    /// file is an error and is left alone) and serves `handle` from a thread.
    pub fn bind(path: impl AsRef<Path>, handle: GpioHandle) -> io::Result<Control> {
        // Only a stale socket is replaced; the file is removed on drop only while it is
        // still this socket.
        let (listener, socket) = vfio_user_server::SocketPath::bind(path)?;
        let listener = Arc::new(listener);
        let l = listener.clone();
        let thread = std::thread::spawn(move || {
            for stream in l.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = serve_connection(&handle, s) {
                            log::debug!("gpio control connection: {e}");
                        }
                    }
                    // shutdown() of the listener (Drop) ends accept() with EINVAL.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
                    Err(e) => log::warn!("gpio control: accept: {e}"),
                }
            }
        });
        Ok(Control { listener, socket, thread: Some(thread) })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        self.socket.path()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = rustix::net::shutdown(self.listener.as_fd(), rustix::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // `socket` unlinks the path when dropped, after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpio::new_server;

    #[test]
    fn the_control_socket_drives_inputs_and_reports_state() {
        let server = new_server().unwrap();
        let handle = server.device().handle();
        let dir = std::env::temp_dir().join(format!("gpio-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let control = Control::bind(&path, handle.clone()).unwrap();
        assert_eq!(control.path(), path);
        let c = UnixStream::connect(&path).unwrap();
        let mut lines = BufReader::new(c.try_clone().unwrap());
        let mut ask = |cmd: &str| {
            (&c).write_all(format!("{cmd}\n").as_bytes()).unwrap();
            let mut l = String::new();
            lines.read_line(&mut l).unwrap();
            l.trim_end().to_string()
        };
        assert_eq!(ask("inputs 0x8001"), "ok");
        assert_eq!(handle.state().inputs, 0x8001);
        assert_eq!(ask("inputs ffff"), "ok");
        assert_eq!(ask("state"), "outputs=0x0000 inputs=0xffff irq_enabled=0 irq_status=0x00 filters=1 interrupts=0");
        assert!(ask("inputs 0x10000").starts_with("error: "));
        assert!(ask("frobnicate").starts_with("error: "));
        assert_eq!(ask(""), "error: unknown command \"\" (inputs HEX | state)");
        // A second control on the same live socket is refused; a regular file is never replaced.
        assert_eq!(Control::bind(&path, handle.clone()).err().unwrap().raw_os_error(), Some(libc::EADDRINUSE));
        let file = dir.join("not-a-socket");
        std::fs::write(&file, b"keep me").unwrap();
        assert!(Control::bind(&file, handle.clone()).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        // Too long a line closes that connection only.
        (&c).write_all(&[b'x'; 300]).unwrap();
        let mut rest = String::new();
        // EOF, or ECONNRESET when the server closed with our unread bytes queued.
        assert!(!matches!(lines.read_line(&mut rest), Ok(n) if n > 0), "closed");
        let c2 = UnixStream::connect(&path).unwrap();
        (&c2).write_all(b"inputs 2\n").unwrap();
        let mut l = String::new();
        BufReader::new(&c2).read_line(&mut l).unwrap();
        assert_eq!(l, "ok\n");
        drop(c2);
        drop(control);
        assert!(!path.exists(), "the socket is removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
