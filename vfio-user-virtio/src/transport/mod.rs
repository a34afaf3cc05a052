// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`VirtioPci`]: the virtio-pci (modern, virtio 1.x) transport, a
//! [`vfio_user_server::Device`] generic over a [`VirtioDevice`].
//!
//! * Configuration space: vendor 0x1af4, device `0x1040 + type`, revision 1, MSI-X with
//!   one vector per queue plus one, and the common / notify / ISR / device / PCI_CFG
//!   vendor capabilities pointing into BAR0 ([`layout`]).
//! * Feature negotiation, device status (FEATURES_OK refused for an unoffered feature or
//!   without VERSION_1), reset by status 0, DEVICE_RESET or FLR, queue set-up
//!   ([`common`]).
//! * Notifications: each queue has a kick eventfd, handed to the client with
//!   DEVICE_GET_REGION_IO_FDS (for its ioeventfds) and signalled by the transport when the
//!   notification arrives as a REGION_WRITE instead (QEMU 11.1 posts those); a worker
//!   thread per queue serves it (module `worker`), off the socket thread, and signals the
//!   queue's MSI-X eventfd directly.
//! * Migration: RUNNING → STOP waits for the requests in flight (every worker finishes
//!   its current request and stops taking new ones); the state stream holds the common
//!   configuration, every queue's addresses and indexes and the device's own state
//!   (module `state`); STOP → RUNNING kicks every queue, so that notifications that arrived
//!   meanwhile are served.
//!
//! Lock order: a queue's lock before the common configuration's; the socket thread never
//! holds the latter while it takes a queue's.
//!
//! Reset and migration STOP take each queue's lock on the socket thread, so they wait for
//! the request a worker is serving. A request on memory mapped without fd, with no twin
//! socket, may be waiting for a DMA_READ / DMA_WRITE reply that only this same thread
//! would receive: reset and STOP cancel such waits
//! ([`DmaHandle::cancel_waits`](vfio_user_server::DmaHandle::cancel_waits)), and the
//! worker takes the request back (queue indexes rewound, nothing put in the used ring);
//! it is served again, from the start, when the queue runs again (after STOP → RUNNING,
//! or on a migration's destination). Requests on mmapped memory complete before STOP.

pub mod common;
pub mod layout;
mod pci_cfg;
mod state;
mod worker;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rustix::event::{eventfd, EventfdFlags};
use vfio_user_server::{
    Device, DeviceDescription, DmaHandle, IoEventFd, IrqHandle, MigState, MigrationSupport, ResetKind, Server,
    ServerLimits,
};
use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueState};

use self::common::{Common, Effect, NO_VECTOR};
use self::layout::{BAR, COMMON, COMMON_LEN, DEVICE, DEVICE_MAX, ISR, MAX_QUEUES, NOTIFY, NOTIFY_MULTIPLIER};
use crate::device::VirtioDevice;
use crate::error::{Error, Result};

/// PCI vendor ID of virtio devices.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// PCI device ID of a modern virtio device of type 0.
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;

/// The transport's shared state (the workers hold it too).
pub(crate) struct Inner<D> {
    pub(crate) device: D,
    common: Mutex<Common>,
    queues: Vec<Mutex<Option<Queue>>>,
    pub(crate) kicks: Vec<Arc<OwnedFd>>,
    pub(crate) stop: OwnedFd,
    /// DRIVER_OK was set and the queues were built.
    live: AtomicBool,
    /// Migration stopped the device.
    paused: AtomicBool,
    isr: AtomicU8,
    pub(crate) stats: Vec<AtomicU64>,
    irq: IrqHandle,
    pub(crate) dma: DmaHandle,
    pci_cfg: Mutex<pci_cfg::Window>,
    mig: Mutex<state::Session>,
}

impl<D: VirtioDevice> Inner<D> {
    pub(crate) fn running(&self) -> bool {
        self.live.load(Ordering::Acquire) && !self.paused.load(Ordering::Acquire)
    }

    pub(crate) fn lock_queue(&self, q: u16) -> MutexGuard<'_, Option<Queue>> {
        self.queues[usize::from(q)].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_common(&self) -> MutexGuard<'_, Common> {
        self.common.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A used buffer notification for queue `q`.
    pub(crate) fn interrupt(&self, q: u16) {
        let vector = self.lock_common().queues.get(usize::from(q)).map_or(NO_VECTOR, |c| c.vector);
        self.isr.fetch_or(1, Ordering::AcqRel);
        if vector != NO_VECTOR {
            let _ = self.irq.trigger_msix(vector.into());
        }
    }

    /// The driver broke the device (e.g. an unusable used ring): DEVICE_NEEDS_RESET and a
    /// configuration change notification.
    pub(crate) fn needs_reset(&self) {
        let vector = {
            let mut c = self.lock_common();
            c.status |= VIRTIO_CONFIG_S_NEEDS_RESET as u8;
            c.config_vector
        };
        self.isr.fetch_or(2, Ordering::AcqRel);
        if vector != NO_VECTOR {
            let _ = self.irq.trigger_msix(vector.into());
        }
    }

    fn kick_all(&self) {
        for k in &self.kicks {
            worker::kick(k);
        }
    }

    /// Waits for the requests in flight (the caller has stopped the queues). A worker
    /// waiting for a DMA reply that this thread would have to receive (memory mapped
    /// without fd, no twin socket) has its wait cancelled and its request taken back, to
    /// be served again if the queue runs again.
    fn quiesce(&self) {
        let _cancel = self.dma.cancel_waits();
        for q in 0..self.queues.len() as u16 {
            drop(self.lock_queue(q));
        }
    }

    fn reset(&self) {
        self.live.store(false, Ordering::Release);
        let cancel = self.dma.cancel_waits();
        for q in 0..self.queues.len() as u16 {
            *self.lock_queue(q) = None;
        }
        drop(cancel);
        self.lock_common().reset();
        self.isr.store(0, Ordering::Release);
        self.device.reset();
    }

    /// DRIVER_OK: builds the enabled queues and starts serving them.
    fn activate(&self) {
        let (features, configs, max) = {
            let c = self.lock_common();
            (c.driver_features, c.queues.clone(), c.max_size)
        };
        let event_idx = features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let mut broken = false;
        for (q, cfg) in configs.iter().enumerate() {
            if !cfg.enabled {
                continue;
            }
            let st = QueueState {
                max_size: max,
                next_avail: 0,
                next_used: 0,
                event_idx_enabled: event_idx,
                size: cfg.size,
                ready: true,
                desc_table: cfg.desc,
                avail_ring: cfg.driver,
                used_ring: cfg.device,
            };
            match Queue::try_from(st) {
                Ok(queue) => *self.lock_queue(q as u16) = Some(queue),
                Err(e) => {
                    log::warn!("virtio queue {q}: unusable set-up: {e}");
                    broken = true;
                }
            }
        }
        self.device.activate(features);
        self.live.store(true, Ordering::Release);
        if broken {
            self.needs_reset();
        }
        self.kick_all();
    }

    fn bar_read(&self, offset: u64, data: &mut [u8]) {
        let len = data.len() as u64;
        let cfg_size = self.device.config_size() as u64;
        data.fill(0);
        if offset.saturating_add(len) <= COMMON + COMMON_LEN {
            self.lock_common().read(offset - COMMON, data);
        } else if offset == ISR {
            data[0] = self.isr.swap(0, Ordering::AcqRel);
        } else if offset >= DEVICE && offset + len <= DEVICE + cfg_size {
            self.device.read_config((offset - DEVICE) as usize, data);
        }
    }

    fn bar_write(&self, offset: u64, data: &[u8]) {
        let len = data.len() as u64;
        let cfg_size = self.device.config_size() as u64;
        let nq = self.kicks.len() as u64;
        if offset.saturating_add(len) <= COMMON + COMMON_LEN {
            let effect = self.lock_common().write(offset - COMMON, data);
            match effect {
                Effect::None => {}
                Effect::Reset => self.reset(),
                Effect::DriverOk => self.activate(),
            }
        } else if offset >= DEVICE && offset + len <= DEVICE + cfg_size {
            self.device.write_config((offset - DEVICE) as usize, data);
        } else if offset >= NOTIFY && offset < NOTIFY + nq * u64::from(NOTIFY_MULTIPLIER) {
            let q = (offset - NOTIFY) / u64::from(NOTIFY_MULTIPLIER);
            worker::kick(&self.kicks[q as usize]);
        }
    }
}

/// The virtio-pci transport serving `D` (see the module documentation). Dropping it stops
/// and joins the queue workers.
pub struct VirtioPci<D: VirtioDevice> {
    inner: Arc<Inner<D>>,
    workers: Vec<JoinHandle<()>>,
}

impl<D: VirtioDevice> std::fmt::Debug for VirtioPci<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPci").field("queues", &self.inner.kicks.len()).finish()
    }
}

/// Everything made before the server exists (so that [`VirtioPci::server`] can fail
/// cleanly).
struct Parts {
    kicks: Vec<Arc<OwnedFd>>,
    stop: OwnedFd,
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// The PCI description of the transport for `device`.
    pub fn description(device: &D) -> Result<DeviceDescription> {
        let queues = device.num_queues();
        if queues == 0 || queues > MAX_QUEUES {
            return Err(Error::InvalidConfig(format!("{queues} queues (1 to {MAX_QUEUES})")));
        }
        let max = device.queue_max_size();
        if !max.is_power_of_two() || max > 32768 {
            return Err(Error::InvalidConfig(format!("queue size {max}")));
        }
        if device.config_size() as u64 > DEVICE_MAX {
            return Err(Error::InvalidConfig("device configuration larger than 4 KiB".into()));
        }
        let b = DeviceDescription::builder(VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + device.device_type())
            .subsystem(VIRTIO_PCI_VENDOR, 0x1100)
            .revision(1)
            .class_code(device.class_code());
        Ok(layout::describe(b, queues, device.config_size()).build()?)
    }

    /// A vfio-user server for `device` on this transport, with default protocol limits.
    pub fn server(device: D) -> Result<Server<Self>> {
        Self::server_with_limits(device, ServerLimits::default())
    }

    /// A vfio-user server for `device` on this transport.
    pub fn server_with_limits(device: D, limits: ServerLimits) -> Result<Server<Self>> {
        let desc = Self::description(&device)?;
        let efd = || eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK);
        let kicks = (0..device.num_queues())
            .map(|_| efd().map(Arc::new))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Setup(e.into()))?;
        let stop = efd().map_err(|e| Error::Setup(e.into()))?;
        let parts = Parts { kicks, stop };
        let mut spawn_error = None;
        let server = Server::with_handles(desc, limits, |irq, dma| {
            let (pci, err) = Self::new(device, parts, irq, dma);
            spawn_error = err;
            pci
        })?;
        match spawn_error {
            Some(e) => Err(Error::Setup(e)),
            None => Ok(server),
        }
    }

    fn new(device: D, parts: Parts, irq: IrqHandle, dma: DmaHandle) -> (Self, Option<io::Error>) {
        let nq = device.num_queues();
        let max = device.queue_max_size();
        let features = device.features()
            | (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX);
        let inner = Arc::new(Inner {
            device,
            common: Mutex::new(Common::new(features, nq, max, nq + 1)),
            queues: (0..nq).map(|_| Mutex::new(None)).collect(),
            kicks: parts.kicks,
            stop: parts.stop,
            live: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            isr: AtomicU8::new(0),
            stats: (0..nq).map(|_| AtomicU64::new(0)).collect(),
            irq,
            dma,
            pci_cfg: Mutex::new(pci_cfg::Window::default()),
            mig: Mutex::new(state::Session::default()),
        });
        let mut workers = Vec::new();
        let mut error = None;
        for q in 0..nq {
            let i = Arc::clone(&inner);
            match std::thread::Builder::new().name(format!("virtio-q{q}")).spawn(move || worker::run(i, q)) {
                Ok(h) => workers.push(h),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        (VirtioPci { inner, workers }, error)
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.inner.device
    }

    /// Requests completed so far on each queue.
    pub fn completed(&self) -> Vec<u64> {
        self.inner.stats.iter().map(|s| s.load(Ordering::Relaxed)).collect()
    }
}

impl<D: VirtioDevice> Drop for VirtioPci<D> {
    fn drop(&mut self) {
        worker::kick(&self.inner.stop);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        log::info!("virtio: requests completed per queue: {:?}", self.completed());
    }
}

impl<D: VirtioDevice> Device for VirtioPci<D> {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        if region == BAR {
            self.inner.bar_read(offset, data);
        } else {
            data.fill(0);
        }
        Ok(())
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        if region == BAR {
            self.inner.bar_write(offset, data);
        }
        Ok(())
    }

    fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let w = *self.inner.pci_cfg.lock().unwrap_or_else(|e| e.into_inner());
        w.read(offset, data, |o, d| self.inner.bar_read(o, d));
        Ok(())
    }

    fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let access = self.inner.pci_cfg.lock().unwrap_or_else(|e| e.into_inner()).write(offset, data);
        if let Some((o, bytes, n)) = access {
            self.inner.bar_write(o, &bytes[..n]);
        }
        Ok(())
    }

    fn reset(&self, _kind: ResetKind) -> io::Result<()> {
        self.inner.reset();
        Ok(())
    }

    fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
        if region != BAR {
            return Vec::new();
        }
        self.inner
            .kicks
            .iter()
            .enumerate()
            .map(|(q, fd)| IoEventFd {
                offset: NOTIFY + q as u64 * u64::from(NOTIFY_MULTIPLIER),
                size: 2,
                datamatch: None,
                fd: Arc::clone(fd),
            })
            .collect()
    }

    fn migration(&self) -> Option<MigrationSupport> {
        Some(MigrationSupport { pre_copy: false })
    }

    fn migration_transition(&self, from: MigState, to: MigState) -> io::Result<()> {
        let inner = &self.inner;
        match (from, to) {
            (MigState::Running, MigState::Stop) => {
                inner.paused.store(true, Ordering::Release);
                inner.quiesce();
            }
            (MigState::Stop, MigState::Running) => {
                inner.paused.store(false, Ordering::Release);
                inner.kick_all();
            }
            (MigState::Stop, MigState::StopCopy) => {
                let bytes = state::save(inner);
                inner.mig.lock().unwrap_or_else(|e| e.into_inner()).start_save(bytes);
            }
            (MigState::Stop, MigState::Resuming) => {
                inner.mig.lock().unwrap_or_else(|e| e.into_inner()).start_load();
            }
            (MigState::Resuming, MigState::Stop) => {
                let bytes = inner.mig.lock().unwrap_or_else(|e| e.into_inner()).take_load();
                state::restore(inner, &bytes)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn migration_read(&self, data: &mut [u8]) -> io::Result<usize> {
        Ok(self.inner.mig.lock().unwrap_or_else(|e| e.into_inner()).read(data))
    }

    fn migration_write(&self, data: &[u8]) -> io::Result<()> {
        Ok(self.inner.mig.lock().unwrap_or_else(|e| e.into_inner()).write(data)?)
    }
}
