// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The built `vfio-user` binary's `demo`, `serve`, `lspci` and `bench` subcommands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vfio_user_client::{Client, Config};

mod common;

use common::{Served, BIN};

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vfu-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn connect(path: &Path) -> Client {
    Client::connect(path, Config::default()).unwrap()
}

#[test]
fn demo_runs_end_to_end() {
    let o = run(&["demo"]);
    let out = stdout(&o);
    assert!(o.status.success(), "demo failed: {out}\n{}", String::from_utf8_lossy(&o.stderr));
    for want in [
        "Negotiated: protocol 0.",
        "Device: flags 0x3 (PCI, resettable), 9 regions, 5 IRQ indexes",
        "[0] BAR0    size 0x1000",
        "[2] BAR2    size 0x2000 (8 KiB), flags read,write,mmap,caps, mmap areas 0x1000+0x1000",
        "cap SPARSE_MMAP: 0x1000+0x1000",
        "[7] CONFIG",
        "[2] MSI-X           count 2",
        "IDs: vendor 5655 device d0e0",
        "Region 2: Memory, 32-bit, non-prefetchable at 0x0 [size=8 KiB]",
        "Capabilities: [48] MSI-X",
        "Capabilities: [100 v1] Device Serial Number",
        "IRQ: MSI-X vector 0 fired",
        "DMA: verified 4096 bytes of 0xc0ffee42",
        "Latency: 10000 lock-step 4-byte config reads: p50",
        "All checks passed.",
    ] {
        assert!(out.contains(want), "demo output lacks {want:?}:\n{out}");
    }
}

#[test]
fn serve_demo_answers_and_exits_cleanly_on_sigterm_with_a_client_connected() {
    let dir = tmp_dir("serve-demo");
    let mut s = Served::start("demo", dir.join("demo.sock"));
    let c = connect(&s.path);
    let mut id = [0u8; 4];
    c.region_read(7, 0, &mut id).unwrap();
    assert_eq!(id, [0x55, 0x56, 0xe0, 0xd0]);
    let (status, err) = s.signal(libc::SIGTERM);
    assert!(status.success(), "exit status {status:?}; stderr:\n{err}");
    assert!(!s.path.exists(), "the socket was not removed");
    assert!(err.contains("client connected"), "-vv logs at info level and above:\n{err}");
    assert!(c.region_read(7, 0, &mut id).is_err(), "the server is gone");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_gpio_holds_its_outputs_and_exits_cleanly_on_sigint() {
    let dir = tmp_dir("serve-gpio");
    let mut s = Served::start("gpio", dir.join("gpio.sock"));
    {
        let c = connect(&s.path);
        let mut id = [0u8; 4];
        c.region_read(7, 0, &mut id).unwrap();
        assert_eq!(id, [0x4f, 0x49, 0xc8, 0x0d]);
        // The PCI-IDIO-16's outputs 0-7 (offset 0) and 8-15 (offset 4); inputs read 0.
        c.region_write(2, 0, &[0xa5]).unwrap();
        c.region_write(2, 4, &[0x5a]).unwrap();
        let mut o = [0u8; 6];
        c.region_read(2, 0, &mut o).unwrap();
        assert_eq!(o, [0xa5, 0, 0, 0, 0x5a, 0]);
    }
    let (status, err) = s.signal(libc::SIGINT);
    assert!(status.success(), "exit status {status:?}; stderr:\n{err}");
    assert!(!s.path.exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_control_is_for_the_gpio_card_only() {
    let dir = tmp_dir("serve-control");
    let (sock, ctl) = (dir.join("demo.sock"), dir.join("ctl.sock"));
    let o = run(&["serve", "demo", "--socket-path", sock.to_str().unwrap(), "--control", ctl.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("gpio sample only"));
    assert!(!sock.exists() && !ctl.exists());
    let o = run(&["serve", "gpio", "--socket-path", sock.to_str().unwrap(), "--msi"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("demo sample only"));
    assert!(!sock.exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_lvu_server_is_libvfio_users_sample_device() {
    let dir = tmp_dir("serve-lvu");
    let mut s = Served::start("lvu-server", dir.join("lvu.sock"));
    {
        let c = connect(&s.path);
        let mut id = [0u8; 4];
        c.region_read(7, 0, &mut id).unwrap();
        assert_eq!(id, [0xad, 0xde, 0xef, 0xbe]);
        assert_eq!((c.region_info(0).unwrap().size, c.region_info(1).unwrap().size), (8, 0x4000));
        c.region_write(1, 0x2000, b"bar1").unwrap();
        let mut b = [0u8; 4];
        c.region_read(1, 0x2000, &mut b).unwrap();
        assert_eq!(&b, b"bar1");
    }
    // Unlike the `server` binary, `serve` keeps serving after the client leaves.
    {
        let c = connect(&s.path);
        let mut b = [0u8; 4];
        c.region_read(1, 0x2000, &mut b).unwrap();
        assert_eq!(&b, b"bar1");
    }
    let (status, err) = s.signal(libc::SIGTERM);
    assert!(status.success(), "exit status {status:?}; stderr:\n{err}");
    assert!(err.contains("libvfio-user sample server dead:beef"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_takes_a_connected_socket_by_fd_and_exits_when_its_client_leaves() {
    use std::os::fd::{AsRawFd, OwnedFd};
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    // The child inherits `theirs` under the same number: clear its close-on-exec flag.
    // SAFETY: fcntl on a descriptor we own; F_SETFD only changes its flags.
    assert_eq!(unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) }, 0);
    let mut child = Command::new(BIN)
        .args(["serve", "gpio", "--fd", &theirs.as_raw_fd().to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let c = Client::from_fd(OwnedFd::from(ours), Config::default()).unwrap();
    let mut id = [0u8; 4];
    c.region_read(7, 0, &mut id).unwrap();
    assert_eq!(id, [0x4f, 0x49, 0xc8, 0x0d]);
    c.shutdown().unwrap();
    drop(c);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("serve --fd did not exit after its only client left");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_bad_arguments() {
    let o = run(&["serve", "demo"]);
    assert!(!o.status.success(), "a socket path or fd is required");
    let o = run(&["serve", "demo", "--fd", "2"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be > 2"));
    let o = run(&["serve", "nosuch", "--socket-path", "/nonexistent/x.sock"]);
    assert!(!o.status.success());
}

#[test]
fn lspci_decodes_regions_irqs_and_sized_bars() {
    let dir = tmp_dir("lspci");
    let s = Served::start("demo", dir.join("demo.sock"));
    let o = run(&["lspci", s.path.to_str().unwrap(), "-v"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    for want in [
        "Negotiated: protocol 0.",
        "cap SPARSE_MMAP: 0x1000+0x1000",
        "[0] INTx            count 1",
        "Region 0: Memory, 32-bit, non-prefetchable at 0x0 [size=4 KiB]",
        "Region 2: Memory, 32-bit, non-prefetchable at 0x0 [size=8 KiB]",
        "Capabilities: [54] Express",
    ] {
        assert!(out.contains(want), "lspci output lacks {want:?}:\n{out}");
    }
    // BAR sizing restored the registers: a second run sees the same addresses.
    let again = stdout(&run(&["lspci", s.path.to_str().unwrap()]));
    assert!(again.contains("Region 0: Memory, 32-bit, non-prefetchable at 0x0 [size=4 KiB]"), "{again}");

    // -x: exactly the lspci -x shape: slot line, hex lines, blank line.
    let o = run(&["lspci", s.path.to_str().unwrap(), "-x"]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[0].starts_with("00:00.0 "), "{out}");
    assert_eq!(lines[1], "00: 55 56 e0 d0 00 00 10 00 01 00 00 ff 00 00 00 00", "{out}");
    assert!(lines[4].starts_with("30: "));
    assert_eq!(lines[5], "");

    // --json: the same facts, machine-readable.
    let o = run(&["lspci", s.path.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["config"]["vendor"].as_u64(), v["config"]["device"].as_u64()), (Some(0x5655), Some(0xd0e0)), "{v}");
    assert_eq!(v["device"]["num_regions"], 9);
    assert_eq!(v["regions"][2]["sparse_mmap_areas"], serde_json::json!([{ "offset": 4096, "size": 4096 }]));
    assert_eq!(v["irqs"][0]["name"], "INTx");
    let caps: Vec<&str> =
        v["config"]["capabilities"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(caps, ["Power Management", "MSI-X", "Express"]);
    assert!(v["config"]["hex"].as_str().unwrap().starts_with("5556e0d0"), "config space in byte order");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn real_lspci_decodes_our_dump() {
    if Command::new("lspci").arg("--version").output().is_err() {
        println!("note: skipping: `lspci` (pciutils) is not installed");
        return;
    }
    let dir = tmp_dir("lspci-f");
    let s = Served::start("demo", dir.join("demo.sock"));
    for flags in [&["-xxxx"][..], &["-xxx", "-v"][..]] {
        let mut args = vec!["lspci", s.path.to_str().unwrap()];
        args.extend_from_slice(flags);
        let o = run(&args);
        assert!(o.status.success());
        let dump = dir.join("dump.txt");
        std::fs::write(&dump, &o.stdout).unwrap();
        let o = Command::new("lspci").args(["-vv", "-nn", "-F"]).arg(&dump).output().unwrap();
        let out = stdout(&o);
        assert!(o.status.success(), "lspci -F failed: {}", String::from_utf8_lossy(&o.stderr));
        for want in [
            "[5655:d0e0]",
            "Capabilities: [40] Power Management",
            "Capabilities: [48] MSI-X: Enable- Count=2",
            "Capabilities: [54] Express",
        ] {
            assert!(out.contains(want), "lspci -F output ({flags:?}) lacks {want:?}:\n{out}");
        }
        let dsn = out.contains("Device Serial Number 01-23-45-67-89-ab-cd-ef");
        assert_eq!(dsn, flags[0] == "-xxxx", "the extended space is in -xxxx dumps only:\n{out}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bench_prints_both_sides_and_ratios() {
    let dir = tmp_dir("bench");
    let s = Served::start("demo", dir.join("demo.sock"));
    let o = run(&["bench", s.path.to_str().unwrap(), "--seconds", "0.4"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    for want in ["vfio-user REGION_READ", "raw socketpair ping-pong", "vfio-user region_read_batch", "raw socketpair "]
    {
        assert!(out.contains(want), "bench output lacks {want:?}:\n{out}");
    }
    assert_eq!(out.matches("ratio vfio-user / raw").count(), 2, "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("[4/4]"), "progress on stderr");
    let o = run(&["bench", s.path.to_str().unwrap(), "--seconds", "0.4", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for side in ["lock_step", "pipelined_per_batch"] {
        for who in ["vfio_user", "raw_socketpair"] {
            let p = &v[side][who];
            assert!(p["reads_per_s"].as_f64().unwrap() > 0.0, "{v}");
            assert!(p["p50_ns"].as_u64().unwrap() <= p["p99_ns"].as_u64().unwrap(), "{v}");
        }
    }
    assert_eq!(v["pipeline_depth"], 16);
    let o = run(&["bench", s.path.to_str().unwrap(), "--seconds", "0"]);
    assert!(!o.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_subcommand_explains_itself() {
    for sub in ["demo", "serve", "lspci", "bench", "trace"] {
        let o = run(&[sub, "--help"]);
        assert!(o.status.success());
        assert!(stdout(&o).lines().count() > 3, "{sub} --help:\n{}", stdout(&o));
    }
}

fn run_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_completions_and_man_pages_cover_every_subcommand() {
    let subcommands = ["demo", "serve", "lspci", "bench", "migrate", "trace", "completions", "man"];
    let help = run_ok(&["--help"]);
    for s in subcommands {
        assert!(help.lines().any(|l| l.trim_start().starts_with(s)), "--help lacks {s}:\n{help}");
    }
    let bash = run_ok(&["completions", "bash"]);
    assert!(bash.contains("complete -F _vfio__user"), "{bash}");
    for s in subcommands {
        assert!(bash.contains(s), "bash completion lacks {s}");
    }
    assert!(run_ok(&["completions", "zsh"]).starts_with("#compdef vfio-user"));
    let man = run_ok(&["man"]);
    assert!(man.contains(".TH vfio-user 1"), "{man}");
    for s in subcommands {
        assert!(man.contains(&format!("vfio\\-user\\-{}(1)", s.replace('-', "\\-"))), "man page lacks {s}");
    }
    let serve = run_ok(&["man", "serve"]);
    assert!(serve.contains(".TH vfio-user-serve 1") && serve.contains("socket\\-path"), "{serve}");
    let out = std::process::Command::new(BIN).args(["man", "nope"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no subcommand \"nope\""));
}

/// Regression (issue 16, item 6): a server answering each request just inside the 5 s
/// request timeout kept `lspci` running for a minute; `--deadline` bounds the whole.
#[test]
fn lspci_gives_up_on_a_trickling_server_at_its_deadline() {
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixListener, UnixStream};
    use vfio_user_proto::Connection;

    let dir = tmp_dir("lspci-deadline");
    let s = Served::start("demo", dir.join("demo.sock"));
    // A proxy that holds every message from the server for 500 ms (lspci makes dozens of
    // requests: over 10 s in all).
    let proxy = dir.join("proxy.sock");
    let listener = UnixListener::bind(&proxy).unwrap();
    let server = s.path.clone();
    let h = std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = UnixStream::connect(&server).unwrap();
        let (to_client, mut from_client) = Connection::new(client).split();
        let (to_server, mut from_server) = Connection::new(server).split();
        let up = std::thread::spawn(move || {
            while let Ok(m) = from_client.recv() {
                let fds: Vec<_> = m.fds.iter().map(|f| f.as_fd()).collect();
                if to_server.send(m.header, &[&m.payload], &fds).is_err() {
                    break;
                }
            }
        });
        while let Ok(m) = from_server.recv() {
            std::thread::sleep(Duration::from_millis(500));
            let fds: Vec<_> = m.fds.iter().map(|f| f.as_fd()).collect();
            if to_client.send(m.header, &[&m.payload], &fds).is_err() {
                break;
            }
        }
        drop(to_client);
        let _ = up.join();
    });
    let start = Instant::now();
    let o = run(&["lspci", proxy.to_str().unwrap(), "--deadline", "1.5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(err.contains("gave up after the --deadline of 1.5s"), "{err}");
    // Does not hang: far above the 1.5 s deadline, far below the 10+ s of the whole.
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    assert!(!run(&["lspci", proxy.to_str().unwrap(), "--deadline", "0"]).status.success());
    drop(s);
    let _ = h.join();
}
