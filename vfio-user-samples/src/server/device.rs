// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The sample device's behaviour: BAR0 time and timer, BAR1 storage, DMA slots, the DMA
//! run when the timer fires, and the migration streams.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vfio_user_server::{errno, Device, DmaHandle, DmaRegion, IrqHandle, MigState, MigrationSupport, ResetKind};

use super::timer::Timer;
use super::{BAR0_SIZE, BAR1_USED, DMA_CHUNK, DMA_CHUNKS, DMA_SLOTS, PRE_COPY_STREAM_SIZE, STOP_COPY_STREAM_SIZE};

/// Seconds since the Unix epoch, as `time(NULL)`.
fn now_secs() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Reads all of `buf` from `fd` at `off`.
fn pread_all(fd: &OwnedFd, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pread(fd, &mut *buf, off)? {
            0 => return Err(errno(libc::EIO)),
            n => {
                buf = &mut buf[n..];
                off += n as u64;
            }
        }
    }
    Ok(())
}

/// Writes all of `data` to `fd` at `off`.
fn pwrite_all(fd: &OwnedFd, mut data: &[u8], mut off: u64) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, off)? {
            0 => return Err(errno(libc::EIO)),
            n => {
                data = &data[n..];
                off += n as u64;
            }
        }
    }
    Ok(())
}

/// What the device's callbacks and its timer thread share.
struct State {
    /// BAR0: the time last written.
    bar0: i64,
    /// The migration state, as the transitions left it.
    mig: MigState,
    /// Bytes of the current save or load stream already moved.
    pos: u64,
    /// The client's DMA mappings, `(iova, size)`, in the slots the C sample would use.
    slots: Vec<Option<(u64, u64)>>,
}

/// A hook called when a DMA run fails.
type FailureHook = Box<dyn Fn(&str) + Send + Sync>;

struct Inner {
    state: Mutex<State>,
    bar1: Arc<OwnedFd>,
    irq: IrqHandle,
    dma: DmaHandle,
    runs: AtomicU64,
    failures: AtomicU64,
    on_failure: OnceLock<FailureHook>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The timer fired: INTx, then DMA to the second mapping directly and to the first by
    /// message. Runs on the timer thread, with no lock held across the DMA.
    fn fire(&self) {
        log::debug!("timer fired: raising INTx, then doing DMA");
        if let Err(e) = self.irq.trigger_intx() {
            log::error!("raising INTx: {e}");
        }
        match self.dma_run() {
            Ok(()) => {
                self.runs.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                log::error!("DMA failed: {e}");
                if let Some(hook) = self.on_failure.get() {
                    hook(&e);
                }
            }
        }
    }

    fn dma_run(&self) -> Result<(), String> {
        let (first, second) = {
            let s = self.lock();
            (s.slots[0], s.slots[1])
        };
        let (second, _) = second.ok_or("the client has no DMA mapping in slot 1")?;
        self.dma_io(second, false)?;
        let (first, _) = first.ok_or("the client has no DMA mapping in slot 0")?;
        self.dma_io(first, true)
    }

    /// Writes [`DMA_CHUNKS`] chunks of `A`, `B`, ... at `iova`, reads them back two chunks
    /// at a time and compares: through the mapping itself, or by message.
    fn dma_io(&self, iova: u64, by_message: bool) -> Result<(), String> {
        let how = if by_message { "MESSAGE" } else { "DIRECT" };
        let fail = |what: &str, addr: u64, len: usize, e: &dyn std::fmt::Display| {
            format!("{how} {what} of {len} bytes at {addr:#x}: {e}")
        };
        let mut written = [0u8; DMA_CHUNK * DMA_CHUNKS];
        for (i, chunk) in written.chunks_mut(DMA_CHUNK).enumerate() {
            chunk.fill(b'A' + i as u8);
            let addr = iova + (i * DMA_CHUNK) as u64;
            log::debug!("{how} WRITE addr {addr:#x} size {DMA_CHUNK}");
            let r = if by_message {
                self.dma.write_by_message(addr, chunk).map_err(|e| e.to_string())
            } else {
                // A guard taken for writing marks the pages dirty when dropped.
                self.dma
                    .translate(addr, DMA_CHUNK, true)
                    .map_err(|e| e.to_string())
                    .and_then(|g| g.write(0, chunk).map_err(|e| e.to_string()))
            };
            r.map_err(|e| fail("write", addr, DMA_CHUNK, &e))?;
        }
        let mut read = [0u8; DMA_CHUNK * DMA_CHUNKS];
        for (i, part) in read.chunks_mut(2 * DMA_CHUNK).enumerate() {
            let addr = iova + (i * 2 * DMA_CHUNK) as u64;
            log::debug!("{how} READ  addr {addr:#x} size {}", 2 * DMA_CHUNK);
            let r = if by_message {
                self.dma.read_by_message(addr, part).map_err(|e| e.to_string())
            } else {
                self.dma
                    .translate(addr, part.len(), false)
                    .map_err(|e| e.to_string())
                    .and_then(|g| g.read(0, part).map_err(|e| e.to_string()))
            };
            r.map_err(|e| fail("read", addr, 2 * DMA_CHUNK, &e))?;
        }
        if read != written {
            return Err(format!("{how} DMA at {iova:#x}: the data read back differs from the data written"));
        }
        log::debug!("{how} DMA at {iova:#x} succeeded");
        Ok(())
    }
}

/// The sample device (see [the module documentation](super)).
pub struct SampleServer {
    inner: Arc<Inner>,
    timer: Timer,
}

impl std::fmt::Debug for SampleServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleServer").field("timer", &self.timer).finish_non_exhaustive()
    }
}

impl SampleServer {
    /// A device raising interrupts with `irq`, doing DMA with `dma`, with BAR1 in `bar1`
    /// (at least [`BAR1_SIZE`](super::BAR1_SIZE) bytes). Its BAR0 time is 0 and its timer disarmed.
    pub fn new(irq: IrqHandle, dma: DmaHandle, bar1: Arc<OwnedFd>) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(State { bar0: 0, mig: MigState::Running, pos: 0, slots: vec![None; DMA_SLOTS] }),
            bar1,
            irq,
            dma,
            runs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            on_failure: OnceLock::new(),
        });
        let fire = inner.clone();
        SampleServer { inner, timer: Timer::new(Arc::new(move || fire.fire())) }
    }

    /// DMA runs completed successfully.
    pub fn dma_runs(&self) -> u64 {
        self.inner.runs.load(Ordering::SeqCst)
    }

    /// DMA runs that failed.
    pub fn dma_failures(&self) -> u64 {
        self.inner.failures.load(Ordering::SeqCst)
    }

    /// Calls `hook` (on the timer thread) with the reason whenever a DMA run fails; the
    /// `server` binary stops serving then, as the C sample exits. Only the first hook set
    /// is kept; returns whether this one was.
    pub fn set_failure_hook(&self, hook: impl Fn(&str) + Send + Sync + 'static) -> bool {
        self.inner.on_failure.set(Box::new(hook)).is_ok()
    }

    /// When the timer fires next, if it is armed.
    pub fn timer_deadline(&self) -> Option<Instant> {
        self.timer.deadline()
    }

    /// Arms the timer for Unix time `t`, as the C sample's `arm_timer`: in `t - now` whole
    /// seconds; `t == now` disarms, `t` in the past is `EINVAL`.
    fn arm(&self, t: i64) -> io::Result<()> {
        let delay = i128::from(t) - i128::from(now_secs());
        log::debug!("arming timer to trigger in {delay} seconds");
        if delay < 0 {
            return Err(errno(libc::EINVAL));
        }
        let at = u64::try_from(delay).ok().and_then(|d| Instant::now().checked_add(Duration::from_secs(d)));
        match at {
            Some(at) if delay > 0 => self.timer.arm(at),
            // Now, or too far ahead to represent (never, for practical purposes).
            _ => {
                self.timer.disarm();
                Ok(())
            }
        }
    }

    fn bar0_write(&self, data: &[u8]) -> io::Result<()> {
        let t = i64::from_ne_bytes(data.try_into().map_err(|_| errno(libc::EINVAL))?);
        let mut s = self.inner.lock();
        if s.mig == MigState::Running {
            self.arm(t)?;
        }
        s.bar0 = t;
        Ok(())
    }
}

impl Device for SampleServer {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        match region {
            0 if offset == 0 && data.len() == BAR0_SIZE as usize => {
                let delta = now_secs().wrapping_sub(self.inner.lock().bar0);
                data.copy_from_slice(&delta.to_ne_bytes());
                Ok(())
            }
            // The framework has checked the range against the region's size.
            1 => pread_all(&self.inner.bar1, data, offset),
            _ => {
                log::error!("bad region {region} read {offset:#x}+{:#x}", data.len());
                Err(errno(libc::EINVAL))
            }
        }
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        match region {
            0 if offset == 0 && data.len() == BAR0_SIZE as usize => self.bar0_write(data),
            1 => pwrite_all(&self.inner.bar1, data, offset),
            _ => {
                log::error!("bad region {region} write {offset:#x}+{:#x}", data.len());
                Err(errno(libc::EINVAL))
            }
        }
    }

    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        log::debug!("device reset ({kind:?})");
        // The framework's migration state is RUNNING again after a reset.
        let mut s = self.inner.lock();
        s.mig = MigState::Running;
        s.pos = 0;
        Ok(())
    }

    fn dma_map(&self, region: &DmaRegion) -> io::Result<()> {
        let mut s = self.inner.lock();
        let slot = s.slots.iter_mut().find(|x| x.is_none()).ok_or_else(|| {
            log::error!("no free slot for DMA region {:#x}+{:#x}", region.iova, region.size);
            errno(libc::ENOSPC)
        })?;
        *slot = Some((region.iova, region.size));
        Ok(())
    }

    fn dma_unmap(&self, region: &DmaRegion) {
        for slot in self.inner.lock().slots.iter_mut() {
            if *slot == Some((region.iova, region.size)) {
                *slot = None;
            }
        }
    }

    fn client_connected(&self, connected: bool) {
        if !connected {
            // Nobody left to interrupt or to DMA to.
            self.timer.disarm();
        }
    }

    fn migration(&self) -> Option<MigrationSupport> {
        Some(MigrationSupport { pre_copy: true })
    }

    fn migration_transition(&self, from: MigState, to: MigState) -> io::Result<()> {
        log::debug!("migration: transition {from} -> {to}");
        let mut s = self.inner.lock();
        match to {
            MigState::PreCopy | MigState::Resuming => s.pos = 0,
            MigState::StopCopy => {
                log::debug!("disable timer");
                self.timer.disarm();
                s.pos = 0;
            }
            MigState::Stop if from == MigState::Resuming && s.pos != STOP_COPY_STREAM_SIZE => {
                log::error!("migration: loaded {} of {STOP_COPY_STREAM_SIZE} bytes", s.pos);
                return Err(errno(libc::EINVAL));
            }
            MigState::Running => {
                // A time already past leaves the timer disarmed.
                if let Err(e) = self.arm(s.bar0) {
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                    self.timer.disarm();
                }
            }
            _ => {}
        }
        s.mig = to;
        Ok(())
    }

    fn migration_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.inner.lock();
        let total = match s.mig {
            MigState::PreCopy => PRE_COPY_STREAM_SIZE,
            MigState::StopCopy => STOP_COPY_STREAM_SIZE,
            _ => return Err(errno(libc::EINVAL)),
        };
        let n = (total.saturating_sub(s.pos)).min(buf.len() as u64) as usize;
        let (in_bar1, bar0_off) = split(s.pos, n);
        pread_all(&self.inner.bar1, &mut buf[..in_bar1], s.pos)?;
        buf[in_bar1..n].copy_from_slice(&s.bar0.to_ne_bytes()[bar0_off..bar0_off + n - in_bar1]);
        s.pos += n as u64;
        Ok(n)
    }

    fn migration_write(&self, data: &[u8]) -> io::Result<()> {
        let mut s = self.inner.lock();
        if s.mig != MigState::Resuming || s.pos + data.len() as u64 > STOP_COPY_STREAM_SIZE {
            log::error!("migration: {} bytes at stream offset {} refused", data.len(), s.pos);
            return Err(errno(libc::EINVAL));
        }
        let (in_bar1, bar0_off) = split(s.pos, data.len());
        pwrite_all(&self.inner.bar1, &data[..in_bar1], s.pos)?;
        let mut bar0 = s.bar0.to_ne_bytes();
        bar0[bar0_off..bar0_off + data.len() - in_bar1].copy_from_slice(&data[in_bar1..]);
        s.bar0 = i64::from_ne_bytes(bar0);
        s.pos += data.len() as u64;
        Ok(())
    }
}

/// Of `len` stream bytes from position `pos` (within the stream): how many are BAR1's
/// (from BAR1 offset `pos`), and the BAR0 offset where the rest goes.
fn split(pos: u64, len: usize) -> (usize, usize) {
    let in_bar1 = BAR1_USED.saturating_sub(pos).min(len as u64) as usize;
    let bar0_off = (pos + in_bar1 as u64).saturating_sub(BAR1_USED) as usize;
    (in_bar1, bar0_off)
}

#[cfg(test)]
mod tests {
    use vfio_user_server::vfio_user_dma::{DmaProt, RegionKind};
    use vfio_user_server::Server;

    use super::*;
    use crate::server::new_server;

    fn einval(r: io::Result<()>) -> bool {
        r.is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL))
    }

    fn bar0_of(d: &SampleServer) -> i64 {
        d.inner.lock().bar0
    }

    /// Reads the save stream in `chunk`-byte reads until a short one; returns the reads'
    /// sizes and the bytes.
    fn drain(d: &SampleServer, chunk: usize) -> (Vec<usize>, Vec<u8>) {
        let (mut sizes, mut all) = (Vec::new(), Vec::new());
        loop {
            let mut buf = vec![0u8; chunk];
            let n = d.migration_read(&mut buf).unwrap();
            sizes.push(n);
            all.extend_from_slice(&buf[..n]);
            if n < chunk {
                return (sizes, all);
            }
        }
    }

    #[test]
    fn bar0_time_and_timer() {
        let s = new_server().unwrap();
        let d = s.device();
        let now = now_secs();
        // Only 8 bytes at offset 0.
        assert!(einval(d.region_write(0, 0, &[0; 4])));
        let mut four = [0u8; 4];
        assert!(einval(d.region_read(0, 0, &mut four)));
        assert!(einval(d.region_write(2, 0, &[0; 8])));
        // A future time arms the timer that many seconds ahead and reads back negative.
        d.region_write(0, 0, &(now + 100).to_ne_bytes()).unwrap();
        let left = d.timer_deadline().unwrap() - Instant::now();
        assert!(left > Duration::from_secs(98) && left <= Duration::from_secs(100), "{left:?}");
        let mut eight = [0u8; 8];
        d.region_read(0, 0, &mut eight).unwrap();
        assert!((-101..=-99).contains(&i64::from_ne_bytes(eight)));
        // A time in the past is refused and not stored; now disarms.
        assert!(einval(d.region_write(0, 0, &(now - 5).to_ne_bytes())));
        assert_eq!(bar0_of(d), now + 100);
        d.region_write(0, 0, &now_secs().to_ne_bytes()).unwrap();
        assert_eq!(d.timer_deadline(), None);
        // Hostile times do not overflow anything.
        d.region_write(0, 0, &i64::MAX.to_ne_bytes()).unwrap();
        d.region_read(0, 0, &mut eight).unwrap();
        assert!(einval(d.region_write(0, 0, &i64::MIN.to_ne_bytes())));
        // Outside RUNNING a write only stores the time.
        d.migration_transition(MigState::Running, MigState::Stop).unwrap();
        d.region_write(0, 0, &(now - 5).to_ne_bytes()).unwrap();
        d.region_write(0, 0, &(now + 50).to_ne_bytes()).unwrap();
        assert_eq!(bar0_of(d), now + 50);
        // Back to RUNNING: armed from the stored time.
        d.timer.disarm();
        d.migration_transition(MigState::Stop, MigState::Running).unwrap();
        assert!(d.timer_deadline().is_some());
        // A stored time already past leaves the timer disarmed, without failing.
        d.migration_transition(MigState::Running, MigState::Stop).unwrap();
        d.region_write(0, 0, &(now - 5).to_ne_bytes()).unwrap();
        d.migration_transition(MigState::Stop, MigState::Running).unwrap();
        assert_eq!(d.timer_deadline(), None);
    }

    #[test]
    fn bar1_is_the_memfd() {
        let s = new_server().unwrap();
        let d = s.device();
        d.region_write(1, 0x2ff0, b"end of bar one!!").unwrap();
        d.region_write(1, 0x10, b"start").unwrap();
        let mut b = [0u8; 16];
        d.region_read(1, 0x2ff0, &mut b).unwrap();
        assert_eq!(&b, b"end of bar one!!");
        let mut f = [0u8; 5];
        rustix::io::pread(&*d.inner.bar1, &mut f, 0x10).unwrap();
        assert_eq!(&f, b"start");
    }

    fn region(iova: u64) -> DmaRegion {
        DmaRegion { iova, size: 0x1000, prot: DmaProt::READ_WRITE, kind: RegionKind::Mmap }
    }

    #[test]
    fn dma_slots_are_reused_in_order_and_bounded() {
        let s = new_server().unwrap();
        let d = s.device();
        for i in 0..3 {
            d.dma_map(&region(i * 0x1000)).unwrap();
        }
        d.dma_unmap(&region(0));
        d.dma_map(&region(0x9000)).unwrap();
        let slots = d.inner.lock().slots[..4].to_vec();
        assert_eq!(slots, vec![Some((0x9000, 0x1000)), Some((0x1000, 0x1000)), Some((0x2000, 0x1000)), None]);
        for i in 3..DMA_SLOTS as u64 {
            d.dma_map(&region(i * 0x1000)).unwrap();
        }
        let e = d.dma_map(&region(0x100_0000)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn dma_without_mappings_fails_and_calls_the_hook() {
        let s = new_server().unwrap();
        let d = s.device();
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let r = reasons.clone();
        assert!(d.set_failure_hook(move |why| r.lock().unwrap().push(why.to_string())));
        assert!(!d.set_failure_hook(|_| {}), "one hook");
        d.inner.fire();
        // Slots filled, but nothing mapped in the DMA space: the access itself fails.
        d.dma_map(&region(0)).unwrap();
        d.dma_map(&region(0x1000)).unwrap();
        d.inner.fire();
        assert_eq!((d.dma_runs(), d.dma_failures()), (0, 2));
        let reasons = reasons.lock().unwrap().clone();
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].contains("no DMA mapping in slot 1"), "{}", reasons[0]);
        assert!(reasons[1].contains("DIRECT write of 1024 bytes at 0x1000"), "{}", reasons[1]);
    }

    fn save_stream(d: &SampleServer) -> Vec<u8> {
        d.migration_transition(MigState::Running, MigState::PreCopy).unwrap();
        let (sizes, pre) = drain(d, 1024);
        assert_eq!(sizes, [vec![1024; 12], vec![0]].concat(), "12 reads of 1 KiB in PRE_COPY");
        assert_eq!(pre.len() as u64, PRE_COPY_STREAM_SIZE);
        d.migration_transition(MigState::PreCopy, MigState::StopCopy).unwrap();
        assert_eq!(d.timer_deadline(), None, "STOP_COPY disarms the timer");
        let (sizes, all) = drain(d, 1024);
        assert_eq!(sizes, [vec![1024; 12], vec![8]].concat(), "13 reads in STOP_COPY");
        assert_eq!(d.migration_read(&mut [0; 16]).unwrap(), 0);
        d.migration_transition(MigState::StopCopy, MigState::Stop).unwrap();
        all
    }

    #[test]
    fn save_and_load_streams_have_the_c_layout() {
        let src = new_server().unwrap();
        let d = src.device();
        let bar1: Vec<u8> = (0..BAR1_USED).map(|i| (i * 7 % 251) as u8).collect();
        d.region_write(1, 0, &bar1).unwrap();
        let t = now_secs() + 1000;
        d.region_write(0, 0, &t.to_ne_bytes()).unwrap();
        let stream = save_stream(d);
        assert_eq!(&stream[..BAR1_USED as usize], &bar1[..]);
        assert_eq!(&stream[BAR1_USED as usize..], &t.to_ne_bytes());
        assert!(einval(d.migration_read(&mut [0; 8]).map(drop)), "no stream in STOP");
        assert!(einval(d.migration_write(&[0; 8])), "no load outside RESUMING");

        let dst: Server<SampleServer> = new_server().unwrap();
        let e = dst.device();
        e.migration_transition(MigState::Running, MigState::Stop).unwrap();
        e.migration_transition(MigState::Stop, MigState::Resuming).unwrap();
        for part in stream.chunks(1024) {
            e.migration_write(part).unwrap();
        }
        assert!(einval(e.migration_write(&[0])), "past the end of the stream");
        e.migration_transition(MigState::Resuming, MigState::Stop).unwrap();
        let mut back = vec![0u8; BAR1_USED as usize];
        e.region_read(1, 0, &mut back).unwrap();
        assert_eq!(back, bar1);
        assert_eq!(bar0_of(e), t);
        e.migration_transition(MigState::Stop, MigState::Running).unwrap();
        let left = e.timer_deadline().unwrap() - Instant::now();
        assert!(left > Duration::from_secs(998), "the destination is armed for the source's time");
    }

    #[test]
    fn incomplete_load_is_refused_and_arcs_restart_streams() {
        let s = new_server().unwrap();
        let d = s.device();
        d.migration_transition(MigState::Running, MigState::Stop).unwrap();
        d.migration_transition(MigState::Stop, MigState::Resuming).unwrap();
        d.migration_write(&[1; 0x3000]).unwrap();
        assert!(einval(d.migration_transition(MigState::Resuming, MigState::Stop)), "BAR0 missing");
        // A reset (the way out of ERROR) starts over in RUNNING.
        d.reset(ResetKind::Device).unwrap();
        assert_eq!(d.inner.lock().mig, MigState::Running);
        // Arcs into PRE_COPY restart the stream.
        d.migration_transition(MigState::Running, MigState::PreCopy).unwrap();
        assert_eq!(d.migration_read(&mut [0; 100]).unwrap(), 100);
        d.migration_transition(MigState::PreCopy, MigState::Running).unwrap();
        d.migration_transition(MigState::Running, MigState::PreCopy).unwrap();
        assert_eq!(drain(d, 0x4000).1.len() as u64, PRE_COPY_STREAM_SIZE);
    }
}
