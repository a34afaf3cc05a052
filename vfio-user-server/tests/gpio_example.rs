// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `gpio` example as a process: it serves its socket, its pins toggle on every read, and
//! SIGTERM stops it cleanly and removes the socket.

mod common;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use common::Client;

/// The example binary, built by `cargo test` next to the test binaries (built here if a
/// single test target was asked for).
fn example() -> PathBuf {
    // <target>/<profile>/deps/<this test>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join("gpio");
    if !path.exists() {
        let target_dir = profile_dir.parent().unwrap();
        let status = Process::new(env!("CARGO"))
            .args(["build", "-p", "vfio-user-server", "--example", "gpio", "--target-dir"])
            .arg(target_dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

#[test]
fn gpio_serves_toggles_and_stops_on_sigterm() {
    let sock = std::env::temp_dir().join(format!("vfio-user-gpio-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut child = Process::new(example()).arg(format!("--socket-path={}", sock.display())).spawn().unwrap();
    let start = Instant::now();
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(30) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the example never listened: {e}"),
        }
    };
    let mut c = Client::new(stream);
    c.version_ok();
    assert_eq!(c.read32(7, 0), 0x0dc8_494f);
    let a = c.read(2, 0, 2).unwrap();
    let b = c.read(2, 0, 2).unwrap();
    assert_eq!(a, vec![0, 0]);
    assert_eq!(b, vec![0xff, 0xff], "the pins toggle on each read");
    c.write(2, 4, &[0x5a]).unwrap();
    assert_eq!(c.read(2, 4, 1).unwrap(), vec![0x5a]);
    let status = Process::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    assert!(!sock.exists(), "socket removed");
}

#[test]
fn gpio_refuses_bad_arguments() {
    let out = Process::new(example()).args(["--socket-path=/tmp/a", "--fd=3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Process::new(example()).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
