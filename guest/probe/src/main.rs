// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vfu-probe`: the guest tests' BAR access tool (guest/README.md). Built static
//! (`-C target-feature=+crt-static`) and put in the guest's initramfs by guest/mkinitramfs.
//!
//! ```text
//! vfu-probe DEVICE BAR OFFSET WIDTH get              one read, printed like busybox devmem
//! vfu-probe DEVICE BAR OFFSET WIDTH read COUNT       COUNT reads, timed
//! vfu-probe DEVICE BAR OFFSET WIDTH write VALUE COUNT   COUNT writes of VALUE, timed
//! vfu-probe DEVICE BAR OFFSET WIDTH ramp COUNT       COUNT writes of 0, 1, 2... (masked to WIDTH), timed
//! ```
//!
//! DEVICE is a sysfs PCI device directory (`/sys/bus/pci/devices/0000:01:00.0`); BAR's
//! `resourceN` file is mmapped (Linux maps the pages holding the BAR: the register is at the
//! BAR's offset within its first page plus OFFSET) and accessed with volatile loads and
//! stores of WIDTH bits (8, 16, 32 or 64; OFFSET aligned to it). One process does every
//! access: busybox `devmem` costs a process (tens of ms under TCG) per access. Timed
//! operations print one line:
//! `VFU-PROBE op=read bar=0 offset=0xc width=32 count=1000 total_ns=... ns_per_access=... value=0x...`.

mod access;

use std::process::ExitCode;
use std::time::Instant;

use access::{MappedBar, Width};

/// What to do with the register.
#[derive(Debug, PartialEq, Eq)]
enum Op {
    Get,
    Read(u64),
    Write(u64, u64),
    Ramp(u64),
}

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    device: String,
    bar: u32,
    offset: u64,
    width: Width,
    op: Op,
}

/// A number in decimal or 0x-prefixed hexadecimal.
fn number(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a number: {s:?}"))
}

fn parse(argv: &[String]) -> Result<Args, String> {
    const USAGE: &str = "usage: vfu-probe DEVICE BAR OFFSET WIDTH (get | read COUNT | write VALUE COUNT | ramp COUNT)";
    let [device, bar, offset, width, op, rest @ ..] = argv else { return Err(USAGE.into()) };
    let op = match (op.as_str(), rest) {
        ("get", []) => Op::Get,
        ("read", [n]) => Op::Read(number(n)?),
        ("write", [v, n]) => Op::Write(number(v)?, number(n)?),
        ("ramp", [n]) => Op::Ramp(number(n)?),
        _ => return Err(USAGE.into()),
    };
    let bar = u32::try_from(number(bar)?).ok().filter(|b| *b < 6).ok_or(format!("BAR {bar} is not 0 to 5"))?;
    let width = Width::from_bits(number(width)?).ok_or(format!("width {width} is not 8, 16, 32 or 64"))?;
    Ok(Args { device: device.clone(), bar, offset: number(offset)?, width, op })
}

fn run(args: &Args) -> Result<(), String> {
    let bar = MappedBar::open(&args.device, args.bar)?;
    let reg = bar.register(args.offset, args.width)?;
    let (name, count) = match args.op {
        Op::Get => {
            println!("{}", args.width.format(reg.read()));
            return Ok(());
        }
        Op::Read(n) => ("read", n),
        Op::Write(_, n) => ("write", n),
        Op::Ramp(n) => ("ramp", n),
    };
    let mut value = 0;
    let t0 = Instant::now();
    match args.op {
        Op::Read(n) => (0..n).for_each(|_| value = reg.read()),
        Op::Write(v, n) => (0..n).for_each(|_| reg.write(v)),
        Op::Ramp(n) => (0..n).for_each(|i| reg.write(i)),
        Op::Get => {}
    }
    let ns = t0.elapsed().as_nanos();
    if let Op::Write(v, _) = args.op {
        value = v;
    }
    println!(
        "VFU-PROBE op={name} bar={} offset={:#x} width={} count={count} total_ns={ns} ns_per_access={} value={}",
        args.bar,
        args.offset,
        args.width.bits(),
        ns / u128::from(count.max(1)),
        args.width.format(value)
    );
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match parse(&argv).and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfu-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn command_lines() {
        let a = args("/sys/x 2 0x10 8 ramp 1600").unwrap();
        assert_eq!((a.bar, a.offset, a.width, a.op), (2, 0x10, Width::W8, Op::Ramp(1600)));
        assert_eq!(args("d 0 12 32 write 0xffffffff 3").unwrap().op, Op::Write(0xffff_ffff, 3));
        assert_eq!(args("d 0 0 64 get").unwrap().op, Op::Get);
        assert_eq!(args("d 5 0 16 read 10").unwrap().op, Op::Read(10));
        for bad in ["d 6 0 8 get", "d 0 0 24 get", "d 0 0 8 read", "d 0 0 8 get 1", "d 0 0 8", "d 0 zz 8 get"] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }

    /// The whole tool against a fake sysfs device whose resource2 is a plain file.
    #[test]
    fn runs_against_a_file_backed_resource() {
        let dir = std::env::temp_dir().join(format!("vfu-probe-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
        let bar2 = "0x00000000fe801000 0x00000000fe8010ff 0x0000000000040200\n";
        std::fs::write(dir.join("resource"), format!("{zero}{zero}{bar2}")).unwrap();
        std::fs::write(dir.join("resource2"), vec![0u8; 4096]).unwrap();
        let d = dir.to_str().unwrap();
        run(&args(&format!("{d} 2 0x10 8 ramp 300")).unwrap()).unwrap();
        run(&args(&format!("{d} 2 0x20 32 write 0x5a5a 2")).unwrap()).unwrap();
        run(&args(&format!("{d} 2 0x20 32 read 2")).unwrap()).unwrap();
        run(&args(&format!("{d} 2 0x20 16 get")).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join("resource2")).unwrap();
        assert_eq!(bytes[0x10], (299 % 256) as u8);
        assert_eq!(&bytes[0x20..0x24], &[0x5a, 0x5a, 0, 0]);
        assert!(run(&args(&format!("{d} 2 0x100 8 get")).unwrap()).is_err(), "past the BAR");
        assert!(run(&args(&format!("{d} 1 0 8 get")).unwrap()).is_err(), "no BAR1");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
