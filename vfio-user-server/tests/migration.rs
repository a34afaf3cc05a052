// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Migration v2 served by the framework, driven by our client over a real socket: the
//! transition table pair by pair against the spec's rules (written out here independently
//! of the implementation, with and without PRE_COPY), the
//! arcs the device is asked to take, ERROR and the way out of it, commands a stopped device
//! refuses, and the save / load streams between two servers.

mod common;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vfio_user_client::{Client, Config, DmaProt, Error, IrqAction, IrqSetData};
use vfio_user_proto::wire::*;
use vfio_user_server::{
    Bar, DeviceDescription, DeviceMut, Endpoint, Listener, MigState, MigrationSupport, ResetKind, Server,
    ShutdownHandle,
};
use vm_memory::ByteValued;

const STORAGE: usize = 0x3000;

/// A device whose state is its BAR0 storage. The save stream is a series of snapshots of
/// it: one when PRE_COPY starts, a fresh one when the device stops (STOP_COPY); a load
/// must deliver whole snapshots, and the last one wins.
struct MigDev {
    pre_copy: bool,
    storage: Vec<u8>,
    arcs: Vec<(MigState, MigState)>,
    fail: Option<(MigState, MigState)>,
    save_at: usize,
    load: Vec<u8>,
    resets: usize,
}

impl DeviceMut for MigDev {
    fn region_read(&mut self, _region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let o = offset as usize;
        data.copy_from_slice(&self.storage[o..o + data.len()]);
        Ok(())
    }

    fn region_write(&mut self, _region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let o = offset as usize;
        self.storage[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn reset(&mut self, _kind: ResetKind) -> io::Result<()> {
        self.resets += 1;
        self.load.clear();
        Ok(())
    }

    fn migration(&mut self) -> Option<MigrationSupport> {
        Some(MigrationSupport { pre_copy: self.pre_copy })
    }

    fn migration_transition(&mut self, from: MigState, to: MigState) -> io::Result<()> {
        self.arcs.push((from, to));
        if self.fail == Some((from, to)) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        match (from, to) {
            (_, MigState::PreCopy) | (_, MigState::StopCopy) => self.save_at = 0,
            (MigState::Stop, MigState::Resuming) => self.load.clear(),
            (MigState::Resuming, MigState::Stop) => {
                if self.load.is_empty() || self.load.len() % STORAGE != 0 {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                self.storage.copy_from_slice(&self.load[self.load.len() - STORAGE..]);
            }
            _ => {}
        }
        Ok(())
    }

    fn migration_read(&mut self, data: &mut [u8]) -> io::Result<usize> {
        let n = data.len().min(STORAGE - self.save_at);
        data[..n].copy_from_slice(&self.storage[self.save_at..self.save_at + n]);
        self.save_at += n;
        Ok(n)
    }

    fn migration_write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.load.len() + data.len() > 4 * STORAGE {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        self.load.extend_from_slice(data);
        Ok(())
    }
}

fn memfd(size: u64) -> OwnedFd {
    let fd =
        rustix::fs::memfd_create("migration", rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING)
            .unwrap();
    rustix::fs::ftruncate(&fd, size).unwrap();
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).unwrap();
    fd
}

fn eventfd() -> OwnedFd {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap()
}

struct Harness {
    path: PathBuf,
    dev: Arc<Mutex<MigDev>>,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Harness {
    fn start(pre_copy: bool) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vfio-user-migration-{}-{n}.sock", std::process::id()));
        let dev = Arc::new(Mutex::new(MigDev {
            pre_copy,
            storage: vec![0; STORAGE],
            arcs: Vec::new(),
            fail: None,
            save_at: 0,
            load: Vec::new(),
            resets: 0,
        }));
        let desc = DeviceDescription::builder(0x1b36, 0x0042).bar(0, Bar::memory32(0x4000)).intx().build().unwrap();
        let mut server = Server::new(desc, dev.clone()).unwrap();
        server.set_endpoint(Endpoint::Listener(Listener::bind(&path).unwrap()));
        let stop = server.shutdown_handle();
        let thread = Some(std::thread::spawn(move || server.run().unwrap()));
        Harness { path, dev, stop, thread }
    }

    fn connect(&self) -> Client {
        Client::connect(&self.path, Config::default()).unwrap()
    }

    fn take_arcs(&self) -> Vec<(MigState, MigState)> {
        std::mem::take(&mut self.dev.lock().unwrap().arcs)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The spec's direct arcs ("Direct State Transitions" in vfio-user.rst), written out here
/// independently of the implementation; those touching PRE_COPY only with its support.
fn spec_arc(from: MigState, to: MigState, pre_copy: bool) -> bool {
    use MigState::*;
    let always =
        [(Running, Stop), (StopCopy, Stop), (Resuming, Stop), (Stop, Running), (Stop, StopCopy), (Stop, Resuming)];
    let with_pre_copy = [(PreCopy, Running), (Running, PreCopy), (PreCopy, StopCopy)];
    always.contains(&(from, to)) || (pre_copy && with_pre_copy.contains(&(from, to)))
}

/// The spec's rules for a requested transition, by brute force over every path of up to
/// four arcs: `Some(length of the shortest allowed path)`, or `None` if it must be refused
/// (ERROR requested, STOP_COPY -> PRE_COPY, no path whose interior avoids PRE_COPY and
/// STOP_COPY).
fn spec_shortest(from: MigState, to: MigState, pre_copy: bool) -> Option<usize> {
    use MigState::*;
    if to == Error || (from, to) == (StopCopy, PreCopy) {
        return None;
    }
    if from == to {
        return Some(0);
    }
    let mut paths: Vec<Vec<MigState>> = vec![vec![from]];
    for len in 1..=4 {
        let mut next = Vec::new();
        for p in &paths {
            let last = *p.last().unwrap();
            if p.len() > 1 && matches!(last, PreCopy | StopCopy) {
                continue; // a saving state may only end a path
            }
            for s in MigState::ALL {
                if spec_arc(last, s, pre_copy) {
                    if s == to {
                        return Some(len);
                    }
                    let mut q = p.clone();
                    q.push(s);
                    next.push(q);
                }
            }
        }
        paths = next;
    }
    None
}

/// Whether the arcs a device was asked to take form an allowed path from `from` to `to`.
fn valid_path(arcs: &[(MigState, MigState)], from: MigState, to: MigState, pre_copy: bool) -> bool {
    let mut at = from;
    for (i, &(a, b)) in arcs.iter().enumerate() {
        let interior = i > 0;
        if a != at || !spec_arc(a, b, pre_copy) || (interior && a.is_saving()) {
            return false;
        }
        at = b;
    }
    at == to
}

fn errno<T: std::fmt::Debug>(r: Result<T, Error>) -> i32 {
    match r {
        Err(Error::Server { errno, .. }) => errno,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Brings the device from wherever it is back to RUNNING.
fn back_to_running(h: &Harness, c: &Client) {
    match c.migration_state().unwrap() {
        MigState::Error => c.reset().unwrap(),
        MigState::Running => {}
        _ => {
            // Leaving RESUMING without data fails (the device refuses an empty load) and
            // lands in ERROR; a reset leads out.
            if c.set_migration_state(MigState::Running).is_err() {
                assert_eq!(c.migration_state().unwrap(), MigState::Error);
                c.reset().unwrap();
            }
        }
    }
    assert_eq!(c.migration_state().unwrap(), MigState::Running);
    h.take_arcs();
}

/// Puts the device in `state` starting from RUNNING; ERROR by failing an arc.
fn reach(h: &Harness, c: &Client, state: MigState) {
    if state == MigState::Error {
        h.dev.lock().unwrap().fail = Some((MigState::Running, MigState::Stop));
        assert_eq!(errno(c.set_migration_state(MigState::Stop)), libc::EIO);
        h.dev.lock().unwrap().fail = None;
    } else {
        c.set_migration_state(state).unwrap();
        if state == MigState::Resuming {
            // A whole snapshot, so that leaving RESUMING succeeds.
            c.write_migration_data(&[0x5a; STORAGE]).unwrap();
        }
    }
    assert_eq!(c.migration_state().unwrap(), state);
    h.take_arcs();
}

#[test]
fn transition_table_pair_by_pair() {
    for pre_copy in [true, false] {
        let h = Harness::start(pre_copy);
        let c = h.connect();
        let mut checked = 0;
        for from in MigState::ALL {
            let reachable = match from {
                MigState::RunningP2p | MigState::PreCopyP2p => false,
                MigState::PreCopy => pre_copy,
                _ => true,
            };
            if !reachable {
                assert_eq!(errno(c.set_migration_state(from)), libc::EINVAL, "{from} must not be reachable");
                continue;
            }
            for to in MigState::ALL {
                back_to_running(&h, &c);
                reach(&h, &c, from);
                let expected = spec_shortest(from, to, pre_copy);
                let res = c.set_migration_state(to);
                let arcs = h.take_arcs();
                match (&expected, to) {
                    (_, MigState::Error) => {
                        // The client refuses to ask for ERROR; ask with the raw feature.
                        assert!(matches!(res, Err(Error::InvalidInput(_))));
                        let body = FeatureMigState { device_state: 0, data_fd: 0 };
                        let raw =
                            c.device_feature_set(FEATURE_MIG_DEVICE_STATE, vm_memory::ByteValued::as_slice(&body));
                        assert_eq!(errno(raw), libc::EINVAL, "{from} -> ERROR");
                        assert_eq!(c.migration_state().unwrap(), from);
                    }
                    (Some(len), _) => {
                        res.unwrap_or_else(|e| panic!("{from} -> {to} (pre_copy {pre_copy}): {e}"));
                        assert!(valid_path(&arcs, from, to, pre_copy), "{from} -> {to}: {arcs:?}");
                        assert_eq!(arcs.len(), *len, "{from} -> {to} is not a shortest path: {arcs:?}");
                        assert_eq!(c.migration_state().unwrap(), to);
                    }
                    (None, _) => {
                        assert_eq!(errno(res), libc::EINVAL, "{from} -> {to} (pre_copy {pre_copy})");
                        assert!(arcs.is_empty(), "a refused transition takes no arc");
                        assert_eq!(c.migration_state().unwrap(), from);
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, if pre_copy { 48 } else { 40 });
        // The arcs themselves: every direct arc is one step.
        back_to_running(&h, &c);
        c.set_migration_state(MigState::Stop).unwrap();
        assert_eq!(h.take_arcs(), vec![(MigState::Running, MigState::Stop)]);
    }
}

#[test]
fn migration_features_are_advertised() {
    for pre_copy in [true, false] {
        let h = Harness::start(pre_copy);
        let c = h.connect();
        let flags = c.migration_flags().unwrap();
        let want = MIGRATION_STOP_COPY | if pre_copy { MIGRATION_PRE_COPY } else { 0 };
        assert_eq!(flags, want);
        assert!(c.device_feature_probe(FEATURE_MIGRATION, true, false).unwrap());
        assert!(!c.device_feature_probe(FEATURE_MIGRATION, false, true).unwrap());
        assert!(c.device_feature_probe(FEATURE_MIG_DEVICE_STATE, true, true).unwrap());
        assert_eq!(c.migration_state().unwrap(), MigState::Running);
    }
}

#[test]
fn failed_arc_lands_in_error_until_reset() {
    let h = Harness::start(true);
    let c = h.connect();
    h.dev.lock().unwrap().fail = Some((MigState::Stop, MigState::StopCopy));
    // RUNNING -> STOP_COPY goes through STOP; the second arc fails.
    assert_eq!(errno(c.set_migration_state(MigState::StopCopy)), libc::EIO);
    assert_eq!(h.take_arcs(), vec![(MigState::Running, MigState::Stop), (MigState::Stop, MigState::StopCopy)]);
    assert_eq!(c.migration_state().unwrap(), MigState::Error);
    for to in [MigState::Running, MigState::Stop, MigState::Resuming] {
        assert_eq!(errno(c.set_migration_state(to)), libc::EINVAL, "ERROR -> {to}");
    }
    assert!(h.take_arcs().is_empty());
    c.reset().unwrap();
    assert_eq!(c.migration_state().unwrap(), MigState::Running);
    assert_eq!(h.dev.lock().unwrap().resets, 1);

    // Invalid data fails RESUMING -> STOP, and the device lands in ERROR.
    h.dev.lock().unwrap().fail = None;
    c.set_migration_state(MigState::Resuming).unwrap();
    c.write_migration_data(&[1, 2, 3]).unwrap();
    assert_eq!(errno(c.set_migration_state(MigState::Stop)), libc::EINVAL);
    assert_eq!(c.migration_state().unwrap(), MigState::Error);
    c.reset().unwrap();
    assert_eq!(c.migration_state().unwrap(), MigState::Running);
}

#[test]
fn stopped_device_refuses_commands_that_change_it() {
    let h = Harness::start(true);
    let c = h.connect();
    let mem = memfd(0x4000);
    c.dma_map_fd(0x10000, 0x2000, mem.as_fd(), 0, DmaProt::READ_WRITE).unwrap();
    let efd = eventfd();

    c.set_migration_state(MigState::Stop).unwrap();
    assert_eq!(errno(c.dma_map_fd(0x20000, 0x1000, mem.as_fd(), 0x2000, DmaProt::READ_WRITE)), libc::EBUSY);
    assert_eq!(errno(c.dma_unmap(0x10000, 0x2000)), libc::EBUSY);
    assert_eq!(errno(c.dma_unmap_all()), libc::EBUSY);
    assert_eq!(errno(c.set_irqs(0, IrqAction::Trigger, 0, IrqSetData::Eventfds(&[Some(efd.as_fd())]))), libc::EBUSY);
    assert_eq!(errno(c.reset()), libc::EBUSY);
    // Region access and queries still work in STOP.
    c.region_write(0, 0, &[9; 16]).unwrap();
    let mut b = [0u8; 16];
    c.region_read(0, 0, &mut b).unwrap();
    assert_eq!(b, [9; 16]);
    c.irq_info(0).unwrap();

    // STOP_COPY freezes the state being read out: region access is refused too.
    c.set_migration_state(MigState::StopCopy).unwrap();
    assert_eq!(errno(c.region_read(0, 0, &mut b)), libc::EBUSY);
    assert_eq!(errno(c.region_write(0, 0, &[1; 4])), libc::EBUSY);
    assert_eq!(errno(c.reset()), libc::EBUSY);
    assert_eq!(c.device_info().num_regions, 9);

    // Back to RUNNING, everything is allowed again, and the mapping is still there.
    c.set_migration_state(MigState::Running).unwrap();
    c.set_irqs(0, IrqAction::Trigger, 0, IrqSetData::Eventfds(&[Some(efd.as_fd())])).unwrap();
    c.dma_unmap(0x10000, 0x2000).unwrap();
    c.reset().unwrap();
}

#[test]
fn migration_data_only_in_its_states() {
    let h = Harness::start(true);
    let c = h.connect();
    let mut buf = [0u8; 64];
    assert_eq!(errno(c.read_migration_data(&mut buf)), libc::EINVAL);
    assert_eq!(errno(c.write_migration_data(&[0; 8])), libc::EINVAL);
    c.set_migration_state(MigState::Resuming).unwrap();
    assert_eq!(errno(c.read_migration_data(&mut buf)), libc::EINVAL);
    c.set_migration_state(MigState::Stop).unwrap_err();
    c.reset().unwrap();
    c.set_migration_state(MigState::PreCopy).unwrap();
    assert_eq!(errno(c.write_migration_data(&[0; 8])), libc::EINVAL);
    assert_eq!(c.read_migration_data(&mut buf).unwrap(), 64);
}

#[test]
fn state_streams_from_one_server_to_another() {
    let src = Harness::start(true);
    let dst = Harness::start(true);
    let a = src.connect();
    let b = dst.connect();
    let pattern: Vec<u8> = (0..STORAGE).map(|i| (i * 31 + (i >> 9)) as u8).collect();
    a.region_write(0, 0, &pattern).unwrap();

    // PRE_COPY: the device keeps running and streams what it has.
    a.set_migration_state(MigState::PreCopy).unwrap();
    let mut pre = vec![0u8; STORAGE + 100];
    assert_eq!(a.read_migration_data(&mut pre).unwrap(), STORAGE);
    a.region_write(0, 0x100, &[0xee; 32]).unwrap();
    let mut expect = pattern.clone();
    expect[0x100..0x120].fill(0xee);

    // STOP_COPY: the final state, read in small pieces until a short read.
    a.set_migration_state(MigState::StopCopy).unwrap();
    let mut state = Vec::new();
    loop {
        let mut piece = [0u8; 1000];
        let n = a.read_migration_data(&mut piece).unwrap();
        state.extend_from_slice(&piece[..n]);
        if n < piece.len() {
            break;
        }
    }
    assert!(state == expect, "the STOP_COPY snapshot differs");
    a.set_migration_state(MigState::Stop).unwrap();

    b.set_migration_state(MigState::Resuming).unwrap();
    pre.truncate(STORAGE);
    for part in pre.chunks(4096).chain(state.chunks(777)) {
        b.write_migration_data(part).unwrap();
    }
    b.set_migration_state(MigState::Running).unwrap();
    assert_eq!(
        dst.take_arcs(),
        vec![
            (MigState::Running, MigState::Stop),
            (MigState::Stop, MigState::Resuming),
            (MigState::Resuming, MigState::Stop),
            (MigState::Stop, MigState::Running)
        ]
    );
    let mut got = vec![0u8; STORAGE];
    b.region_read(0, 0, &mut got).unwrap();
    assert_eq!(got, expect);
}

#[test]
fn state_survives_a_reconnect() {
    let h = Harness::start(false);
    let c = h.connect();
    c.set_migration_state(MigState::Stop).unwrap();
    c.shutdown().unwrap();
    drop(c);
    let c = h.connect();
    assert_eq!(c.migration_state().unwrap(), MigState::Stop);
    c.set_migration_state(MigState::Running).unwrap();
}

/// Byte-level: the SET reply echoes the request (libvfio-user's client compares it, with
/// data_fd = -1), and a MIG_DATA_READ reply keeps the requested length, zero-padded after
/// the `size` bytes it announces (libvfio-user's client reads exactly that length).
#[test]
fn wire_form_of_the_migration_replies() {
    let h = Harness::start(true);
    let mut c = common::Client::new(std::os::unix::net::UnixStream::connect(&h.path).unwrap());
    c.version_ok();
    let flags = u32::from(FEATURE_MIG_DEVICE_STATE) | DEVICE_FEATURE_SET;
    let body = FeatureMigState { device_state: MigState::StopCopy as u32, data_fd: u32::MAX };
    let set = [DeviceFeature { argsz: 16, flags }.as_slice(), body.as_slice()].concat();
    let m = c.call(vfio_user_proto::Command::DeviceFeature, &set, &[]).unwrap();
    assert_eq!(m.payload, set);
    let want = STORAGE as u32 + 0x100;
    let m = c.call(vfio_user_proto::Command::MigDataRead, MigData { argsz: 8 + want, size: want }.as_slice(), &[]);
    let m = m.unwrap();
    assert_eq!(m.payload.len(), 8 + want as usize);
    let head: MigData = read_at(&m.payload, 0).unwrap();
    assert_eq!((head.argsz, head.size), (8 + STORAGE as u32, STORAGE as u32));
    assert!(m.payload[8 + STORAGE..].iter().all(|&b| b == 0));
}
