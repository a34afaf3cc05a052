// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Map bookkeeping: [`DmaSpace`], DMA_MAP / DMA_UNMAP rules and the lock-free
//! snapshot device threads read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::dirty::{self, LogState};
use crate::error::{Error, Result};
use crate::memory::DmaMemory;
use crate::message::DmaTransport;
use crate::region::{MapRequest, MappingInfo, Region};
use crate::tree::Tree;

/// Default `pgsizes` (4 KiB only), as in the protocol's VERSION capabilities.
pub const DEFAULT_PGSIZES: u64 = 4096;
/// Default maximum number of mappings (the protocol's `max_dma_maps` default).
pub const DEFAULT_MAX_MAPS: usize = 65535;
/// Default time `unmap` waits for device guards to be dropped.
pub const DEFAULT_UNMAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default upper bound for any dirty bitmap (report output or per-region tracking), 256 MiB.
pub const DEFAULT_MAX_BITMAP_BYTES: usize = 256 << 20;

/// Configuration of a [`DmaSpace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmaConfig {
    /// OR of the supported page sizes (the `pgsizes` capability). `iova`,
    /// `size` and `file_offset` of a mapping must be multiples of the smallest
    /// one. `0` is treated as [`DEFAULT_PGSIZES`].
    pub pgsizes: u64,
    /// Most mappings that may exist at once (`max_dma_maps`).
    pub max_maps: usize,
    /// How long `unmap` waits for device code to drop its references.
    pub unmap_timeout: Duration,
    /// Largest bitmap, in bytes, that a dirty report or the dirty tracking of
    /// a single region may allocate; larger requests fail with `E2BIG`.
    pub max_bitmap_bytes: usize,
}

impl Default for DmaConfig {
    fn default() -> Self {
        DmaConfig {
            pgsizes: DEFAULT_PGSIZES,
            max_maps: DEFAULT_MAX_MAPS,
            unmap_timeout: DEFAULT_UNMAP_TIMEOUT,
            max_bitmap_bytes: DEFAULT_MAX_BITMAP_BYTES,
        }
    }
}

impl DmaConfig {
    /// The smallest page size in `pgsizes`: the required alignment.
    pub fn min_page_size(&self) -> u64 {
        let p = if self.pgsizes == 0 { DEFAULT_PGSIZES } else { self.pgsizes };
        p & p.wrapping_neg()
    }
}

pub(crate) type Snapshot = DmaMemory;

/// State changed only by the control path (the server's message loop).
pub(crate) struct Inner {
    /// Authoritative map, for overlap checks and range walks.
    pub(crate) map: BTreeMap<u64, Arc<Region>>,
    /// The version last published to device threads.
    tree: Tree<Arc<Region>>,
    /// Mappings of `tree` in the vm-memory view (`Region::view`).
    view_regions: usize,
    /// Mappings that keep their fd open (file I/O).
    open_fds: usize,
    pub(crate) logging: Option<LogState>,
}

/// The device's view of the client's DMA memory.
///
/// Owned by the server and shared with device threads through `Arc`. The
/// control path (`map`, `unmap`, logging) is serialised by an internal mutex;
/// device accesses read an atomically swapped snapshot and never take that
/// lock, so they proceed while the client maps and unmaps.
pub struct DmaSpace {
    pub(crate) config: DmaConfig,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) transport: RwLock<Option<Arc<dyn DmaTransport>>>,
    /// Most mappings that may keep an fd open ([`DmaSpace::set_max_open_fds`]).
    max_open_fds: AtomicUsize,
}

impl Default for DmaSpace {
    fn default() -> Self {
        Self::new(DmaConfig::default())
    }
}

impl std::fmt::Debug for DmaSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaSpace")
            .field("config", &self.config)
            .field("mappings", &self.snapshot.load().tree.len())
            .finish()
    }
}

impl DmaSpace {
    /// An empty space.
    pub fn new(config: DmaConfig) -> Self {
        DmaSpace {
            config,
            snapshot: ArcSwap::from_pointee(DmaMemory::default()),
            inner: Mutex::new(Inner {
                map: BTreeMap::new(),
                tree: Tree::default(),
                view_regions: 0,
                open_fds: 0,
                logging: None,
            }),
            transport: RwLock::new(None),
            max_open_fds: AtomicUsize::new(usize::MAX),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DmaConfig {
        &self.config
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in
        // a way that breaks memory safety; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (on connect) or clears (on disconnect) the transport used for
    /// message-based regions.
    pub fn set_transport(&self, transport: Option<Arc<dyn DmaTransport>>) {
        *self.transport.write().unwrap_or_else(|e| e.into_inner()) = transport;
    }

    pub(crate) fn transport(&self) -> Option<Arc<dyn DmaTransport>> {
        self.transport.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Bounds how many mappings may keep their fd open (file-I/O mappings: the `FILE_IO`
    /// flag, or an fd not sealed against shrinking); mmapped mappings close theirs and do
    /// not count. A server derives it from `RLIMIT_NOFILE`, so that its descriptor table
    /// never fills up (the kernel would then drop descriptors the client sends). A map over
    /// it fails with `ENOSPC` ([`Error::TooManyOpenFds`]). Unbounded by default; lowering it
    /// below the current count refuses new ones only.
    pub fn set_max_open_fds(&self, max: usize) {
        self.max_open_fds.store(max, Ordering::Relaxed);
    }

    /// The bound set with [`set_max_open_fds`](Self::set_max_open_fds).
    pub fn max_open_fds(&self) -> usize {
        self.max_open_fds.load(Ordering::Relaxed)
    }

    /// Mappings that keep an fd open.
    pub fn open_fds(&self) -> usize {
        self.lock().open_fds
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.snapshot.load().tree.len()
    }

    /// Whether there is no mapping.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All mappings, sorted by address.
    pub fn regions(&self) -> Vec<MappingInfo> {
        self.lock().map.values().map(|r| r.info()).collect()
    }

    /// The mapping containing `iova`, if any.
    pub fn region_at(&self, iova: u64) -> Option<MappingInfo> {
        let snap = self.snapshot.load();
        find(&snap, iova).map(|r| r.info())
    }

    /// The current mappings as a vm-memory [`GuestMemory`](vm_memory::GuestMemory)
    /// (see [`DmaMemory`] for which regions it holds and how long).
    ///
    /// Cheap: one atomic reference count increment, no lock. The returned
    /// snapshot keeps its regions mapped, so [`unmap`](Self::unmap) waits
    /// until it is dropped; hold it for one request, not for the life of the
    /// device.
    pub fn memory(&self) -> Arc<DmaMemory> {
        self.snapshot.load_full()
    }

    /// Adds one mapping (DMA_MAP).
    ///
    /// Errors: `EINVAL` for size 0, `iova + size` wrapping, `iova`/`size`/
    /// `file_offset` not aligned to [`DmaConfig::min_page_size`], no read and
    /// no write permission, `file_io` without fd, or an fd smaller than
    /// `file_offset + size` (regular files and memfds; with `file_io`, a file
    /// of size 0, as procfs reports, counts as unsized); `ENOSPC` when
    /// `max_maps` mappings exist, or the mapping would keep an fd open beyond
    /// [`max_open_fds`](Self::set_max_open_fds); `EEXIST` on overlap with a mapping; the
    /// errno of `mmap` otherwise. On error the fd is closed.
    ///
    /// An fd sealed with `F_SEAL_SHRINK` is mmapped and closed at once; any other fd
    /// (it could shrink under a mapping) is kept and reached with `pread`/`pwrite`
    /// ([`RegionKind::FileIo`](crate::RegionKind::FileIo)).
    pub fn map(&self, req: MapRequest) -> Result<()> {
        let align = self.config.min_page_size();
        if req.size == 0 {
            return Err(Error::InvalidArgument("size is 0"));
        }
        let end = req.iova.checked_add(req.size).ok_or(Error::InvalidArgument("iova + size overflows"))?;
        if req.iova % align != 0 || req.size % align != 0 {
            return Err(Error::InvalidArgument("iova or size not page aligned"));
        }
        if req.fd.is_some() && req.file_offset % align != 0 {
            return Err(Error::InvalidArgument("file offset not page aligned"));
        }
        if req.prot.is_empty() {
            return Err(Error::InvalidArgument("mapping has neither read nor write"));
        }
        let mut inner = self.lock();
        if inner.map.len() >= self.config.max_maps {
            return Err(Error::TooManyMappings(self.config.max_maps));
        }
        if let Some((_, prev)) = inner.map.range(..end).next_back() {
            if prev.end() > req.iova {
                return Err(Error::Overlap { iova: req.iova, size: req.size });
            }
        }
        let iova = req.iova;
        let max_fds = self.max_open_fds();
        if req.fd.is_some() && inner.open_fds >= max_fds && Region::keeps_fd(&req) {
            return Err(Error::TooManyOpenFds(max_fds));
        }
        let region = Region::new(req)?;
        if let Some(log) = inner.logging.as_mut() {
            log.track_new_region(&region, self.config.max_bitmap_bytes)?;
        }
        let region = Arc::new(region);
        inner.view_regions += usize::from(region.view().is_some());
        inner.open_fds += usize::from(region.keeps_open_fd());
        inner.map.insert(iova, Arc::clone(&region));
        inner.tree = inner.tree.insert(iova, region);
        self.publish(&inner);
        Ok(())
    }

    fn publish(&self, inner: &Inner) {
        self.snapshot.store(Arc::new(DmaMemory { tree: inner.tree.clone(), view_regions: inner.view_regions }));
    }

    /// Removes the mapping exactly matching `iova`/`size` from the locked
    /// state and publishes the new snapshot.
    pub(crate) fn remove_locked(&self, inner: &mut Inner, iova: u64, size: u64) -> Result<Arc<Region>> {
        match inner.map.get(&iova) {
            Some(r) if r.size == size => {}
            _ => return Err(Error::NoSuchMapping { iova, size }),
        }
        let region = inner.map.remove(&iova).ok_or(Error::NoSuchMapping { iova, size })?;
        if let Some(log) = inner.logging.as_mut() {
            log.untrack_region(&region);
        }
        if let Some((t, _)) = inner.tree.remove(iova) {
            inner.tree = t;
        }
        inner.view_regions -= usize::from(region.view().is_some());
        inner.open_fds -= usize::from(region.keeps_open_fd());
        self.publish(inner);
        Ok(region)
    }

    /// Removes the mapping that exactly matches `iova`/`size` (DMA_UNMAP).
    ///
    /// Returns once no device guard references the region any more, so the
    /// memory is unmapped and the fd closed before the server replies. If the
    /// device still holds a reference after [`DmaConfig::unmap_timeout`], the
    /// mapping is removed all the same and `EBUSY` ([`Error::RegionBusy`]) is
    /// returned; the memory is then released when the last guard drops.
    /// `ENOENT` if no mapping matches exactly.
    pub fn unmap(&self, iova: u64, size: u64) -> Result<()> {
        let region = {
            let mut inner = self.lock();
            self.remove_locked(&mut inner, iova, size)?
        };
        self.release(vec![region])
    }

    /// Removes every mapping (DMA_UNMAP with the ALL flag); waits as
    /// [`unmap`](Self::unmap) does, within one overall timeout.
    pub fn unmap_all(&self) -> Result<()> {
        let regions = {
            let mut inner = self.lock();
            let regions: Vec<_> = std::mem::take(&mut inner.map).into_values().collect();
            if let Some(log) = inner.logging.as_mut() {
                regions.iter().for_each(|r| log.untrack_region(r));
            }
            inner.tree = Tree::default();
            inner.view_regions = 0;
            inner.open_fds = 0;
            self.publish(&inner);
            regions
        };
        self.release(regions)
    }

    /// Client disconnect: drops every mapping (closing their fds), stops dirty
    /// logging and clears the transport. Waits like [`unmap_all`](Self::unmap_all).
    pub fn clear(&self) -> Result<()> {
        self.set_transport(None);
        self.stop_logging();
        self.unmap_all()
    }

    /// Starts dirty page logging (DMA_LOGGING_START).
    ///
    /// `page_size` must be a power of two `>= 4096` (`EINVAL`). `ranges` are
    /// `(iova, length)` windows to log; empty means all memory. Each must
    /// have a non-zero length, must not wrap and must not overlap another
    /// (`EINVAL`). Fails with `EBUSY` if logging is already active and with
    /// `E2BIG` if the tracking bitmaps of all mappings would exceed
    /// [`DmaConfig::max_bitmap_bytes`].
    /// All pages start clean.
    pub fn start_logging(&self, page_size: u64, ranges: &[(u64, u64)]) -> Result<()> {
        let mut log = LogState::new(page_size, ranges)?;
        let mut inner = self.lock();
        if inner.logging.is_some() {
            return Err(Error::LoggingActive);
        }
        log.track_all(&inner.map, self.config.max_bitmap_bytes)?;
        inner.logging = Some(log);
        Ok(())
    }

    /// Stops dirty page logging (DMA_LOGGING_STOP) and frees the tracking
    /// bitmaps. Does nothing if logging is not active.
    pub fn stop_logging(&self) {
        let mut inner = self.lock();
        if inner.logging.take().is_some() {
            dirty::untrack_all(&inner.map);
        }
    }

    /// The page size given to [`start_logging`](Self::start_logging), while
    /// logging is active.
    pub fn logging_page_size(&self) -> Option<u64> {
        self.lock().logging.as_ref().map(|l| l.page_size())
    }

    /// Reports and clears the pages dirtied in `[iova, iova + length)` since
    /// logging started or since they were last reported (DMA_LOGGING_REPORT).
    ///
    /// Page `p = (addr - iova) / page_size` is bit `p % 64` of word `p / 64`.
    /// The range may span several regions, cover them partly or include
    /// unmapped holes (reported clean). Errors: `EINVAL` if logging is not
    /// active, `page_size` is not a power of two, `length` is 0 or the range
    /// wraps; `E2BIG` if the bitmap would exceed
    /// [`DmaConfig::max_bitmap_bytes`].
    pub fn report(&self, iova: u64, length: u64, page_size: u64) -> Result<Vec<u64>> {
        let range = dirty::report_range(iova, length, page_size)?;
        let inner = self.lock();
        let log = inner.logging.as_ref().ok_or(Error::LoggingNotActive)?;
        dirty::report(&inner.map, log, range, page_size, self.config.max_bitmap_bytes)
    }

    /// Unmaps exactly `iova`/`size` and returns its dirty bitmap (legacy
    /// DMA_UNMAP with `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP`): bytes of the
    /// bitmap in the same bit order as [`report`](Self::report)'s `u64` words
    /// on this host, `ceil(size / page_size / 8)` bytes long.
    ///
    /// The bits are collected after the device has let go of the region, so
    /// no write is missed. Errors: `EINVAL` if logging is not active or
    /// `page_size` is not a power of two, `E2BIG` for a too large bitmap (the
    /// mapping is then kept), `ENOENT` if no mapping matches exactly, `EBUSY`
    /// as for [`unmap`](Self::unmap) (the mapping is removed, the bits are lost).
    pub fn unmap_with_dirty_bitmap(&self, iova: u64, size: u64, page_size: u64) -> Result<Vec<u8>> {
        dirty::check_page_size(page_size)?;
        let (region, mut out, log) = {
            let mut inner = self.lock();
            let log = inner.logging.as_ref().ok_or(Error::LoggingNotActive)?.with_page_size(page_size);
            if !inner.map.get(&iova).is_some_and(|r| r.size == size) {
                return Err(Error::NoSuchMapping { iova, size });
            }
            let out = dirty::unmap_bitmap(size, page_size, self.config.max_bitmap_bytes)?;
            let region = self.remove_locked(&mut inner, iova, size)?;
            (region, out, log)
        };
        let busy = self.wait_unique(std::slice::from_ref(&region));
        dirty::report_unmapped(&region, &log, &mut out);
        // The last reference (unless busy): munmap + close.
        drop(region);
        busy?;
        Ok(out.into_bytes())
    }

    /// Waits until the space holds the last reference to each region, then
    /// drops them (munmap + close). Returns `EBUSY` for the first region still
    /// referenced at the deadline.
    pub(crate) fn release(&self, regions: Vec<Arc<Region>>) -> Result<()> {
        self.wait_unique(&regions)
    }

    /// Waits, within one [`DmaConfig::unmap_timeout`], until every `Arc` in
    /// `regions` is the last reference to its region. Past the deadline,
    /// logs one warning for all busy regions (a client's UNMAP ALL of 64 Ki
    /// mappings must not produce 64 Ki log lines) and returns `EBUSY` for the
    /// first.
    pub(crate) fn wait_unique(&self, regions: &[Arc<Region>]) -> Result<()> {
        // `None` (a timeout too large to represent) waits without limit.
        let deadline = Instant::now().checked_add(self.config.unmap_timeout);
        let mut first_busy: Option<&Region> = None;
        let mut busy = 0usize;
        let mut pause = Duration::from_micros(10);
        let mut spins = 0u32;
        for region in regions {
            while Arc::strong_count(region) > 1 {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    first_busy.get_or_insert(region);
                    busy += 1;
                    break;
                }
                if spins < 64 {
                    spins += 1;
                    thread::yield_now();
                } else {
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
            }
        }
        match first_busy {
            None => Ok(()),
            Some(r) => {
                log::warn!(
                    "{busy} DMA region(s), the first [{:#x}, +{:#x}), still referenced by the device after {:?}",
                    r.iova,
                    r.size,
                    self.config.unmap_timeout
                );
                Err(Error::RegionBusy { iova: r.iova, size: r.size })
            }
        }
    }
}

/// The region of `snap` containing `iova`.
#[inline]
pub(crate) fn find(snap: &Snapshot, iova: u64) -> Option<&Arc<Region>> {
    snap.find(iova)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::DmaProt;

    #[test]
    fn min_page_size() {
        let c = |pgsizes| DmaConfig { pgsizes, ..Default::default() };
        assert_eq!(DmaConfig::default().min_page_size(), 4096);
        assert_eq!(c(0).min_page_size(), 4096);
        assert_eq!(c((1 << 12) | (1 << 21) | (1 << 30)).min_page_size(), 1 << 12);
        assert_eq!(c(1 << 63).min_page_size(), 1 << 63);
        assert_eq!(c(u64::MAX).min_page_size(), 1);
    }

    #[test]
    fn find_respects_region_ends() {
        let s = DmaSpace::default();
        for iova in [0x1000u64, 0x3000, 0x4000] {
            s.map(MapRequest { iova, size: 0x1000, prot: DmaProt::READ_WRITE, ..Default::default() }).unwrap();
        }
        let snap = s.snapshot.load();
        let at = |a| find(&snap, a).map(|r| r.iova);
        assert_eq!(at(0), None);
        assert_eq!(at(0x1fff), Some(0x1000));
        assert_eq!(at(0x2000), None);
        assert_eq!(at(0x3fff), Some(0x3000));
        assert_eq!(at(0x4000), Some(0x4000));
        assert_eq!(at(u64::MAX), None);
        assert!(format!("{s:?}").contains("mappings: 3"));
    }

    #[test]
    fn wait_unique_times_out_and_reports_first_busy_region() {
        let s = DmaSpace::new(DmaConfig { unmap_timeout: Duration::from_millis(1), ..Default::default() });
        let mk = |iova| {
            Arc::new(
                Region::new(MapRequest { iova, size: 0x1000, prot: DmaProt::READ_ONLY, ..Default::default() }).unwrap(),
            )
        };
        let (a, b) = (mk(0), mk(0x1000));
        assert!(s.wait_unique(&[a.clone(), b.clone()]).is_err());
        let held = b.clone();
        let e = s.wait_unique(&[a, b]).unwrap_err();
        assert!(matches!(e, Error::RegionBusy { iova: 0x1000, .. }));
        drop(held);
    }

    /// Regression: UNMAP ALL while a device holds a view logged one warning
    /// per mapping, so a client could flood the log with 64 Ki lines per
    /// message.
    #[test]
    fn busy_unmap_all_warns_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static WARNINGS: AtomicUsize = AtomicUsize::new(0);
        struct Counter;
        impl log::Log for Counter {
            fn enabled(&self, _: &log::Metadata<'_>) -> bool {
                true
            }
            fn log(&self, r: &log::Record<'_>) {
                // Only this test maps at 0x777x_xxxx.
                if r.args().to_string().contains("0x777") {
                    WARNINGS.fetch_add(1, Ordering::SeqCst);
                }
            }
            fn flush(&self) {}
        }
        // The only logger of this test binary.
        log::set_logger(&Counter).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
        let s = DmaSpace::new(DmaConfig { unmap_timeout: Duration::from_millis(1), ..Default::default() });
        for i in 0..100u64 {
            s.map(MapRequest {
                iova: 0x7770_0000 + i * 0x1000,
                size: 0x1000,
                prot: DmaProt::READ_WRITE,
                ..Default::default()
            })
            .unwrap();
        }
        let view = s.memory();
        let e = s.unmap_all().unwrap_err();
        assert!(matches!(e, Error::RegionBusy { iova: 0x7770_0000, .. }), "{e:?}");
        assert_eq!(WARNINGS.load(Ordering::SeqCst), 1);
        assert!(s.is_empty());
        drop(view);
    }
}
