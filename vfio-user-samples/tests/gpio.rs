// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `gpio` binary as a process: it serves its socket, its pins toggle on every read, and
//! SIGTERM stops it cleanly and removes the socket; bad arguments exit with status 2.

use std::process::Command;
use std::time::{Duration, Instant};

use vfio_user_client::{Client, Config};

const GPIO: &str = env!("CARGO_BIN_EXE_gpio");

#[test]
fn gpio_serves_toggles_and_stops_on_sigterm() {
    let sock = std::env::temp_dir().join(format!("vfio-user-gpio-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let mut child = Command::new(GPIO).arg(format!("--socket-path={}", sock.display())).spawn().unwrap();
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "gpio never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    {
        let c = Client::connect(&sock, Config::default()).unwrap();
        let mut id = [0u8; 4];
        c.region_read(7, 0, &mut id).unwrap();
        assert_eq!(u32::from_le_bytes(id), 0x0dc8_494f);
        let (mut a, mut b) = ([0u8; 2], [0u8; 2]);
        c.region_read(2, 0, &mut a).unwrap();
        c.region_read(2, 0, &mut b).unwrap();
        assert_eq!((a, b), ([0, 0], [0xff, 0xff]), "the pins toggle on each read");
        c.region_write(2, 4, &[0x5a]).unwrap();
        let mut latch = [0u8; 1];
        c.region_read(2, 4, &mut latch).unwrap();
        assert_eq!(latch, [0x5a]);
    }
    // SAFETY: kill() on the pid of our own, not yet reaped, child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    assert!(!sock.exists(), "socket removed");
}

#[test]
fn gpio_refuses_bad_arguments() {
    for args in [&["--socket-path=/tmp/a", "--fd=3"][..], &["--bogus"], &[], &["--fd=1"]] {
        let out = Command::new(GPIO).args(args).output().unwrap();
        let want = if args == ["--fd=1"] { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(want), "{args:?}");
    }
}
