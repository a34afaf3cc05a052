// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What makes the demo device migratable: a DMA "writer" that keeps writing into client
//! memory while the device runs (so that migration has dirty pages to find), and the
//! device's save / load stream.
//!
//! The writer, started by the STREAM register, writes its 64-bit sequence number at
//! `ADDR + page * 4096 + (seq % 512) * 8`, page `(seq * 7) % pages`, every 200 µs; it
//! pauses (and waits for a write in flight) whenever the device stops.
//!
//! The stream is a series of snapshots — one when PRE_COPY starts, a new one for each
//! PRE_COPY round in which the state changed (none once it stops changing: that is how
//! pre-copy converges), one when the device stops — each `MAGIC`, the registers, then BAR2. A load keeps the last whole
//! snapshot; anything else fails the RESUMING → STOP arc with `EINVAL`.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vfio_user_server::{DmaHandle, MigState};

/// First bytes of every snapshot.
const MAGIC: &[u8; 8] = b"VUDEMO01";
/// Bytes of the writer's page stride.
const PAGE: u64 = 4096;
/// Most snapshots a load keeps before refusing more data.
const MAX_LOAD_SNAPSHOTS: usize = 4;

#[derive(Default)]
struct Ctl {
    /// STREAM is set (the client started the writer).
    enabled: bool,
    /// The device runs (RUNNING or PRE_COPY).
    running: bool,
    base: u64,
    pages: u32,
    seq: u64,
    /// A DMA write is in flight.
    busy: bool,
    /// errno of a failed write (the writer then stops until restarted).
    error: i32,
    exit: bool,
}

struct Shared {
    ctl: Mutex<Ctl>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The background DMA writer.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dma: DmaHandle,
}

impl Writer {
    pub fn new(dma: DmaHandle) -> Self {
        let ctl = Ctl { running: true, ..Ctl::default() };
        Writer { shared: Arc::new(Shared { ctl: Mutex::new(ctl), cv: Condvar::new() }), thread: Mutex::new(None), dma }
    }

    /// Starts (pages > 0) or stops (0) writing over `pages` pages from `base`.
    pub fn configure(&self, base: u64, pages: u32) {
        {
            let mut c = self.shared.lock();
            c.enabled = pages > 0;
            c.base = base;
            c.pages = pages;
            c.error = 0;
        }
        self.shared.cv.notify_all();
        if pages > 0 {
            let mut t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
            if t.is_none() {
                let (shared, dma) = (self.shared.clone(), self.dma.clone());
                *t = Some(std::thread::spawn(move || write_loop(&shared, &dma)));
            }
        }
    }

    /// Pauses (`false`, returning once no write is in flight) or resumes the writer.
    pub fn set_running(&self, running: bool) {
        let mut c = self.shared.lock();
        c.running = running;
        self.shared.cv.notify_all();
        while !running && c.busy {
            c = self.shared.cv.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// `(sequence number, errno of the last failure)`.
    pub fn status(&self) -> (u64, i32) {
        let c = self.shared.lock();
        (c.seq, c.error)
    }

    /// Restores the sequence number (after a load).
    pub fn set_seq(&self, seq: u64) {
        self.shared.lock().seq = seq;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.lock().exit = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn write_loop(shared: &Shared, dma: &DmaHandle) {
    loop {
        let (addr, seq) = {
            let mut c = shared.lock();
            let may_write = |c: &Ctl| c.enabled && c.running && c.error == 0;
            while !c.exit && !may_write(&c) {
                c = shared.cv.wait(c).unwrap_or_else(|e| e.into_inner());
            }
            if c.exit {
                return;
            }
            let seq = c.seq + 1;
            let page = (seq * 7) % u64::from(c.pages);
            c.busy = true;
            (c.base.wrapping_add(page * PAGE + (seq % 512) * 8), seq)
        };
        let res = dma.write(addr, &seq.to_le_bytes());
        {
            let mut c = shared.lock();
            c.busy = false;
            match res {
                Ok(()) => c.seq = seq,
                Err(e) => {
                    log::warn!("demo device: writer stopped: DMA write at {addr:#x}: {e}");
                    c.error = e.errno();
                }
            }
        }
        shared.cv.notify_all();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The save / load sessions.
#[derive(Default)]
pub struct Sessions {
    save: Vec<u8>,
    save_at: usize,
    /// The last read came back short: the client saw the end of a round.
    round_ended: bool,
    load: Vec<u8>,
}

/// One snapshot: MAGIC, registers, BAR2.
pub fn snapshot(regs: &[u8], bar2: &OwnedFd, bar2_size: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(MAGIC.len() + regs.len() + bar2_size as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(regs);
    let at = out.len();
    out.resize(at + bar2_size as usize, 0);
    let n = rustix::io::pread(bar2, &mut out[at..], 0)?;
    if n != bar2_size as usize {
        return Err(io::Error::other("short read of BAR2"));
    }
    Ok(out)
}

impl Sessions {
    /// Starts a save session with this snapshot.
    pub fn start_save(&mut self, snap: Vec<u8>) {
        self.save = snap;
        self.save_at = 0;
        self.round_ended = false;
    }

    /// Whether the client finished reading a PRE_COPY round.
    pub fn round_ended(&self) -> bool {
        self.round_ended
    }

    /// A new PRE_COPY round: streams `snap` unless it equals the last snapshot.
    pub fn next_round(&mut self, snap: Vec<u8>) {
        if snap != self.save {
            self.start_save(snap);
        }
    }

    pub fn start_load(&mut self) {
        self.load.clear();
    }

    pub fn read(&mut self, data: &mut [u8]) -> usize {
        let n = data.len().min(self.save.len() - self.save_at);
        data[..n].copy_from_slice(&self.save[self.save_at..self.save_at + n]);
        self.save_at += n;
        self.round_ended = n < data.len();
        n
    }

    pub fn write(&mut self, data: &[u8], snapshot_len: usize) -> io::Result<()> {
        if self.load.len() + data.len() > MAX_LOAD_SNAPSHOTS * snapshot_len {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        self.load.extend_from_slice(data);
        Ok(())
    }

    /// Ends the load: the last snapshot, if the data is whole snapshots that all start
    /// with MAGIC.
    pub fn finish_load(&mut self, snapshot_len: usize) -> io::Result<Vec<u8>> {
        let load = std::mem::take(&mut self.load);
        let whole = !load.is_empty() && load.len().is_multiple_of(snapshot_len);
        if !whole || !load.chunks(snapshot_len).all(|s| s.starts_with(MAGIC)) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(load[load.len() - snapshot_len + MAGIC.len()..].to_vec())
    }

    pub fn clear(&mut self) {
        *self = Sessions::default();
    }
}

/// Bytes of one snapshot for `regs` bytes of registers and BAR2 of `bar2_size`.
pub fn snapshot_len(regs: usize, bar2_size: u64) -> usize {
    MAGIC.len() + regs + bar2_size as usize
}

/// Whether the device runs in `state` (its writer may write).
pub fn runs_in(state: MigState) -> bool {
    matches!(state, MigState::Running | MigState::PreCopy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_keeps_the_last_whole_snapshot() {
        let mut s = Sessions::default();
        let len = snapshot_len(4, 4);
        let a = [&MAGIC[..], &[1; 8]].concat();
        let b = [&MAGIC[..], &[2; 8]].concat();
        s.write(&a, len).unwrap();
        s.write(&b[..5], len).unwrap();
        s.write(&b[5..], len).unwrap();
        assert_eq!(s.finish_load(len).unwrap(), vec![2; 8]);
        // Empty, partial, or not a snapshot: refused.
        assert_eq!(s.finish_load(len).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        s.write(&a[..10], len).unwrap();
        assert!(s.finish_load(len).is_err());
        s.write(&[0; 16], len).unwrap();
        assert!(s.finish_load(len).is_err());
        // Bounded.
        assert_eq!(s.write(&vec![0; 5 * len], len).unwrap_err().raw_os_error(), Some(libc::EFBIG));
    }

    #[test]
    fn save_streams_each_snapshot_once_and_converges() {
        let mut s = Sessions::default();
        s.start_save(vec![7; 10]);
        let mut b = [0; 4];
        assert!(!s.round_ended());
        assert_eq!((s.read(&mut b), s.read(&mut b), s.read(&mut b)), (4, 4, 2));
        assert!(s.round_ended());
        s.next_round(vec![7; 10]);
        assert_eq!(s.read(&mut b), 0, "an unchanged state is not sent again");
        s.next_round(vec![8; 3]);
        assert_eq!((s.read(&mut b), s.read(&mut b)), (3, 0));
    }
}
