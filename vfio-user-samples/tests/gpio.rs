// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `gpio` binary as a process: it serves its socket and its control socket, the card's
//! registers answer as the PCI-IDIO-16's, an input change raises INTx once the interrupt is
//! enabled, and SIGTERM stops it cleanly and removes both sockets; bad arguments exit with
//! status 2.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use vfio_user_client::{Client, Config};

const GPIO: &str = env!("CARGO_BIN_EXE_gpio");

/// One command on the control socket, its reply line.
fn control(path: &std::path::Path, cmd: &str) -> String {
    let c = UnixStream::connect(path).unwrap();
    (&c).write_all(format!("{cmd}\n").as_bytes()).unwrap();
    let mut l = String::new();
    BufReader::new(&c).read_line(&mut l).unwrap();
    l.trim_end().to_string()
}

#[test]
fn gpio_serves_the_idio16_registers_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("vfio-user-gpio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (sock, ctl) = (dir.join("gpio.sock"), dir.join("ctl.sock"));
    let mut child = Command::new(GPIO)
        .arg(format!("--socket-path={}", sock.display()))
        .args(["--control", ctl.to_str().unwrap()])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !sock.exists() || !ctl.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "gpio never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    {
        let c = Client::connect(&sock, Config::default()).unwrap();
        let mut id = [0u8; 4];
        c.region_read(7, 0, &mut id).unwrap();
        assert_eq!(u32::from_le_bytes(id), 0x0dc8_494f);
        // Outputs 0-7 at 0 and 8-15 at 4, read back as written and seen from outside.
        c.region_write(2, 0, &[0x5a]).unwrap();
        c.region_write(2, 4, &[0xc3]).unwrap();
        // (One byte at a time: reading offsets 2 and 3 has side effects.)
        let (mut lo, mut hi) = ([0u8], [0u8]);
        c.region_read(2, 0, &mut lo).unwrap();
        c.region_read(2, 4, &mut hi).unwrap();
        assert_eq!((lo, hi), ([0x5a], [0xc3]));
        assert!(control(&ctl, "state").starts_with("outputs=0xc35a "), "{}", control(&ctl, "state"));
        // Inputs driven from outside read at 1 and 5.
        assert_eq!(control(&ctl, "inputs 0x8001"), "ok");
        let (mut lo, mut hi) = ([0u8], [0u8]);
        c.region_read(2, 1, &mut lo).unwrap();
        c.region_read(2, 5, &mut hi).unwrap();
        assert_eq!((lo, hi), ([0x01], [0x80]));
        // Interrupt: INTx's eventfd fires on a change once enabled (a read of 2), and the
        // status (6) shows it until a write of 1 clears it.
        let efd =
            rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)
                .unwrap();
        c.enable_irq_eventfds(0, 0, &[efd.as_fd()]).unwrap();
        assert_eq!(control(&ctl, "inputs 0x8003"), "ok");
        let mut status = [0u8];
        c.region_read(2, 6, &mut status).unwrap();
        assert_eq!(status, [0], "no interrupt while disabled");
        assert!(rustix::io::read(&efd, &mut [0u8; 8]).is_err(), "no INTx while disabled");
        c.region_read(2, 2, &mut [0u8]).unwrap();
        assert_eq!(control(&ctl, "inputs 0x0003"), "ok");
        c.region_read(2, 6, &mut status).unwrap();
        assert_eq!(status, [0x06], "pending, inputs 8-15 changed");
        let mut count = [0u8; 8];
        assert_eq!(rustix::io::read(&efd, &mut count).unwrap(), 8);
        assert_eq!(u64::from_ne_bytes(count), 1, "INTx raised once");
        c.region_write(2, 1, &[0]).unwrap();
        c.region_read(2, 6, &mut status).unwrap();
        assert_eq!(status, [0], "cleared");
        assert!(control(&ctl, "state").ends_with("irq_enabled=1 irq_status=0x00 filters=1 interrupts=1"));
    }
    // SAFETY: kill() on the pid of our own, not yet reaped, child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    assert!(!sock.exists() && !ctl.exists(), "sockets removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gpio_refuses_bad_arguments() {
    for args in [&["--socket-path=/tmp/a", "--fd=3"][..], &["--bogus"], &[], &["--fd=1"], &["--control=/tmp/c"]] {
        let out = Command::new(GPIO).args(args).output().unwrap();
        let want = if args == ["--fd=1"] { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(want), "{args:?}");
    }
}
