// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the tests of the `vfio-user` binary share: running `vfio-user serve` as a child.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_vfio-user");

/// A `vfio-user serve` child, killed if the test fails before it ends it.
pub struct Served {
    pub child: Child,
    pub path: PathBuf,
}

impl Served {
    /// Serves `sample` at `path`, logging at debug level into a pipe (read by `signal`).
    pub fn start(sample: &str, path: PathBuf) -> Served {
        Self::spawn(&[sample], path, true)
    }

    /// Serves `sample` at `path` with its output discarded (for long-running tests).
    pub fn quiet(sample: &str, path: PathBuf) -> Served {
        Self::spawn(&[sample], path, false)
    }

    /// Runs `vfio-user serve ARGS... --socket-path PATH` (ARGS: the device and its
    /// options), logging at debug level into a pipe when `log`.
    pub fn spawn(args: &[&str], path: PathBuf, log: bool) -> Served {
        let _ = std::fs::remove_file(&path);
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").args(args).arg("--socket-path").arg(&path).stdout(Stdio::null());
        if log {
            cmd.arg("-vv").stderr(Stdio::piped());
        } else {
            cmd.stderr(Stdio::null());
        }
        let mut child = cmd.spawn().unwrap();
        // The path appears at bind(2), a moment before listen(2): a connect in between is
        // refused. Ready means a listening socket is bound at the path, as the kernel lists
        // it, so no probe connection (which the server would accept and log) is made.
        let t = Instant::now();
        while !listening(&path) {
            assert!(child.try_wait().unwrap().is_none(), "serve exited before listening on {}", path.display());
            assert!(t.elapsed() < Duration::from_secs(20), "nothing listened on {}", path.display());
            std::thread::sleep(Duration::from_millis(5));
        }
        Served { child, path }
    }

    /// Sends `sig` and waits for the exit: its status and what it logged.
    pub fn signal(&mut self, sig: i32) -> (std::process::ExitStatus, String) {
        // SAFETY: kill() on the pid of our own, not yet reaped, child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                if let Some(mut e) = self.child.stderr.take() {
                    e.read_to_string(&mut err).unwrap();
                }
                return (status, err);
            }
            assert!(t.elapsed() < Duration::from_secs(20), "serve did not exit on signal {sig}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether a listening UNIX socket is bound at `path`: a line of `/proc/net/unix` with the
/// listening flag (`__SO_ACCEPTCON`, 0x10000) whose path is `path`.
pub fn listening(path: &Path) -> bool {
    const ACCEPTCON: u32 = 0x10000;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    // "Num RefCount Protocol Flags Type St Inode Path" (the tests' paths have no spaces).
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let flags = f.get(3).and_then(|x| u32::from_str_radix(x, 16).ok()).unwrap_or(0);
        flags & ACCEPTCON != 0 && f.get(7).is_some_and(|b| Path::new(b) == path)
    })
}

impl Drop for Served {
    fn drop(&mut self) {
        // SIGTERM first: a clean exit also writes the child's coverage profile, which
        // SIGKILL would lose. SIGKILL if it does not exit within 5 s.
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill() on the pid of our own, not yet reaped, child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
