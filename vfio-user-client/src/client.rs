// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The [`Client`]: connecting, device info, region I/O, reset, shutdown and reconnect.
//! Region info and mapping, IRQs, DMA mappings and migration calls are in their own files.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use vfio_user_proto::wire::{self, RegionAccess, WriteMultiEntry, WRITE_MULTI_DATA_MAX};
use vfio_user_proto::{Command, DecodeLimits, Message, Negotiated, Parts, Payload, Reply};

use crate::config::Config;
use crate::dma_serve::{DmaServer, DmaTable};
use crate::error::{DisconnectReason, Error, Result};
use crate::irq_state::{IrqIndexInfo, IrqState};
use crate::notice::DisconnectNotice;
use crate::region_info::MappedRegion;
use crate::region_info::Region;
use crate::stats::{Counters, Stats};
use crate::sync::read_lock;
use crate::transport::{decode, Link, Transport};

/// What DEVICE_GET_INFO reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSummary {
    /// `VFIO_DEVICE_FLAGS_*` (bit 0 RESET, bit 1 PCI).
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

impl DeviceSummary {
    /// Whether the device supports DEVICE_RESET (the RESET flag; rust-vmm's client inverts it).
    pub fn resettable(&self) -> bool {
        self.flags & wire::DEVICE_FLAGS_RESET != 0
    }

    /// Whether the device is a PCI device.
    pub fn is_pci(&self) -> bool {
        self.flags & wire::DEVICE_FLAGS_PCI != 0
    }
}

/// Most requests a batch keeps in flight at once.
const PIPELINE_WINDOW: usize = 32;

/// One read of [`Client::region_read_batch`].
#[derive(Debug)]
pub struct RegionReadOp<'a> {
    /// Region index.
    pub region: u32,
    /// Offset in the region.
    pub offset: u64,
    /// Where the bytes go; its length is the read's length.
    pub data: &'a mut [u8],
}

/// A connection to a vfio-user server, usable from many threads at once.
///
/// Every method takes `&self`; requests from different threads are in flight together and
/// their replies are matched by message id. The workspace's `DESIGN.md` describes the
/// design; the [crate documentation](crate) maps rust-vmm's `vfio_user::Client` calls to these.
pub struct Client {
    pub(crate) path: Option<PathBuf>,
    pub(crate) config: Config,
    pub(crate) link: RwLock<Link>,
    pub(crate) device: DeviceSummary,
    pub(crate) dma: Arc<DmaServer>,
    pub(crate) dma_ops: Mutex<()>,
    pub(crate) irqs: Mutex<IrqState>,
    pub(crate) regions: Mutex<HashMap<u32, Arc<Region>>>,
    /// The live region mappings, which a reconnect maps the new server's memory into.
    pub(crate) mappings: Mutex<Vec<Weak<MappedRegion>>>,
    pub(crate) irq_infos: Mutex<HashMap<u32, IrqIndexInfo>>,
    pub(crate) reconnect_lock: Mutex<()>,
    pub(crate) stats: Arc<Counters>,
    pub(crate) notice: Arc<DisconnectNotice>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("path", &self.path).field("device", &self.device).finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server listening at `path` with the default [`Config`].
    pub fn new(path: &Path) -> Result<Client> {
        Client::connect(path, Config::default())
    }

    /// Connects to the server listening at `path`.
    pub fn connect(path: &Path, config: Config) -> Result<Client> {
        let sock = crate::connect::connect_path(path, config.connect_timeout).map_err(Error::Connect)?;
        Client::open(Some(path.to_path_buf()), sock, config)
    }

    /// Uses an already connected socket (e.g. from a socketpair, or passed with `--fd`).
    /// [`reconnect`](Client::reconnect) then needs a new socket:
    /// [`reconnect_with`](Client::reconnect_with).
    pub fn from_fd(fd: OwnedFd, config: Config) -> Result<Client> {
        Client::open(None, UnixStream::from(fd), config)
    }

    fn open(path: Option<PathBuf>, sock: UnixStream, config: Config) -> Result<Client> {
        let local = config.capabilities();
        let dma = Arc::new(DmaServer {
            table: RwLock::new(DmaTable::default()),
            memory: config.memory.clone(),
            limits: DecodeLimits { max_data_xfer_size: local.max_data_xfer_size, max_msg_fds: 0 },
        });
        let stats = Arc::new(Counters::default());
        let link = crate::connect::open(sock, &config, dma.clone(), stats.clone())?;
        let device = fetch_device_info(&link.transport, &config)?;
        let notice = Arc::new(DisconnectNotice::new()?);
        link.transport.watch(notice.clone());
        Ok(Client {
            path,
            config,
            link: RwLock::new(link),
            device,
            dma,
            dma_ops: Mutex::new(()),
            irqs: Mutex::new(IrqState::default()),
            regions: Mutex::new(HashMap::new()),
            mappings: Mutex::new(Vec::new()),
            irq_infos: Mutex::new(HashMap::new()),
            reconnect_lock: Mutex::new(()),
            stats,
            notice,
        })
    }

    /// Runs `f`, a multi-request operation, under an overall deadline: every request this
    /// thread makes within it waits no longer than what is left of `within` (besides its own
    /// timeout), and once it has passed requests fail with [`Error::Timeout`] without being
    /// sent. A server answering each request just inside the request timeout cannot stretch
    /// the operation beyond `within`. Scopes nest (the earlier deadline wins); other threads
    /// are not affected. Posted writes are not waited for and are not cut.
    ///
    /// ```rust,no_run
    /// # use std::{path::Path, time::Duration};
    /// # use vfio_user_client::{Client, Config};
    /// let client = Client::connect(Path::new("/run/dev.sock"), Config::default())?;
    /// let regions = client.with_deadline(Duration::from_secs(10), || {
    ///     (0..client.device_info().num_regions).map(|i| client.region_info(i)).collect::<Result<Vec<_>, _>>()
    /// })?;
    /// # Ok::<(), vfio_user_client::Error>(())
    /// ```
    pub fn with_deadline<R>(&self, within: Duration, f: impl FnOnce() -> R) -> R {
        crate::transport::with_deadline(within, f)
    }

    /// The current connection.
    pub(crate) fn transport(&self) -> Arc<Transport> {
        read_lock(&self.link).transport.clone()
    }

    /// Sends the message `p` (encoded by the wire crate) and returns the successful reply
    /// with the transport it came on.
    pub(crate) fn call(
        &self,
        p: &Payload<'_>,
        fds: &[BorrowedFd<'_>],
        timeout: Option<Duration>,
    ) -> Result<(Arc<Transport>, Message)> {
        let t = self.transport();
        let msg = t.request(p.command(), &p.parts(), fds, timeout.unwrap_or(self.config.timeout))?;
        Ok((t, msg))
    }

    /// What was negotiated with the server (its limits are obeyed in everything we send).
    pub fn negotiated(&self) -> Negotiated {
        self.transport().negotiated
    }

    /// The device info read at connect time.
    pub fn device_info(&self) -> DeviceSummary {
        self.device
    }

    /// Whether DEVICE_RESET is supported (rust-vmm `Client::resettable`, with the flag read
    /// the right way round).
    pub fn resettable(&self) -> bool {
        self.device.resettable()
    }

    /// Counters of timeouts, dropped replies, coalesced writes, served DMA, violations and
    /// reconnects.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }

    /// `Some(reason)` once the connection is gone.
    pub fn disconnected(&self) -> Option<DisconnectReason> {
        self.transport().dead()
    }

    /// An fd that becomes readable when the connection is lost — the server closed it or
    /// died, broke the protocol, stopped reading, or [`shutdown`](Client::shutdown) was
    /// called — so that a VMM learns of it in its epoll loop without polling. It stays
    /// readable (level-triggered) until a [`reconnect`](Client::reconnect) succeeds, which
    /// drains it. It is an eventfd: an epoll handler that reads it (as handlers of eventfds
    /// do) acknowledges the notice, and the next loss signals it again.
    /// [`disconnected`](Client::disconnected) says why.
    pub fn disconnect_fd(&self) -> BorrowedFd<'_> {
        self.notice.fd()
    }

    /// The largest chunk of one transfer: the server's limit and ours (which also bounds
    /// the size of every message we build).
    pub(crate) fn chunk(&self, t: &Transport) -> usize {
        let n = t.negotiated;
        n.peer.max_data_xfer_size.min(n.local.max_data_xfer_size).max(1) as usize
    }

    fn check_region(&self, region: u32, offset: u64, len: usize) -> Result<()> {
        if region >= self.device.num_regions {
            return Err(Error::InvalidInput("region index out of range"));
        }
        offset.checked_add(len as u64).ok_or(Error::InvalidInput("offset + length wraps"))?;
        Ok(())
    }

    /// Reads `data.len()` bytes at `offset` of `region` (split by the server's
    /// `max_data_xfer_size`).
    pub fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> Result<()> {
        self.check_region(region, offset, data.len())?;
        // The link stays read-locked for the call (no reference count to bump): reconnect
        // closes the old connection first, which ends calls in flight at once.
        let link = read_lock(&self.link);
        let t = &*link.transport;
        let chunk = self.chunk(t);
        let mut done = 0usize;
        while done < data.len() {
            let n = (data.len() - done).min(chunk);
            let a = RegionAccess::new(region, offset + done as u64, n as u32);
            let p = a.read_request();
            let msg = t.request(p.command(), &p.parts(), &[], self.config.timeout)?;
            match decode(t, &msg)? {
                Reply::RegionRead(r, bytes) if r == a => data[done..done + n].copy_from_slice(bytes),
                Reply::RegionRead(r, _) => {
                    let (want, got) = ((a.region, a.offset, a.count), (r.region, r.offset, r.count));
                    return Err(t.violation(format!("REGION_READ of {want:?} answered with {got:?}")));
                }
                _ => return Err(t.violation("REGION_READ reply of another kind".into())),
            }
            done += n;
        }
        Ok(())
    }

    /// Reads several ranges with their requests in flight together (pipelined from this
    /// thread): one round trip's latency for the whole batch instead of one per read. Each
    /// read is split by the transfer limit like [`region_read`](Client::region_read). On
    /// error, the first error is returned (the other reads may have completed).
    pub fn region_read_batch(&self, ops: &mut [RegionReadOp<'_>]) -> Result<()> {
        for op in ops.iter() {
            self.check_region(op.region, op.offset, op.data.len())?;
        }
        let t = self.transport();
        let chunk = self.chunk(&t);
        // Each read with its request, encoded once (the window loop allocates no more than
        // the two lists of parts it hands to the transport).
        let mut pieces: Vec<(&mut [u8], RegionAccess, Payload<'static>)> = Vec::new();
        for op in ops.iter_mut() {
            let (region, mut offset) = (op.region, op.offset);
            for part in op.data.chunks_mut(chunk) {
                let a = RegionAccess::new(region, offset, part.len() as u32);
                offset += part.len() as u64;
                pieces.push((part, a, a.read_request()));
            }
        }
        let mut first_err = None;
        // Each window of requests goes out in one system call; then its replies are taken.
        for window in pieces.chunks_mut(PIPELINE_WINDOW) {
            let parts: Vec<(Command, Parts<'_>)> = window.iter().map(|(_, _, p)| (p.command(), p.parts())).collect();
            let reqs: Vec<(Command, &[&[u8]])> = parts.iter().map(|(c, p)| (*c, &p[..])).collect();
            let tickets = match t.start_batch(&reqs, self.config.timeout) {
                Ok(tickets) => tickets,
                Err(e) => {
                    first_err.get_or_insert(e);
                    break;
                }
            };
            for ((buf, a, _), ticket) in window.iter_mut().zip(tickets) {
                let r = ticket.finish().and_then(|msg| match decode(&t, &msg)? {
                    Reply::RegionRead(r, bytes) if r == *a => {
                        buf.copy_from_slice(bytes);
                        Ok(())
                    }
                    _ => Err(t.violation(format!("REGION_READ reply does not answer {a:?}"))),
                });
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes `data` at `offset` of `region` and waits for the server to confirm (split by
    /// the server's `max_data_xfer_size`).
    pub fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> Result<()> {
        self.check_region(region, offset, data.len())?;
        let link = read_lock(&self.link);
        let t = &*link.transport;
        let chunk = self.chunk(t);
        let mut off = offset;
        for part in data.chunks(chunk) {
            let a = RegionAccess::new(region, off, part.len() as u32);
            let p = a.write_request(part);
            let msg = t.request(p.command(), &p.parts(), &[], self.config.timeout)?;
            match decode(t, &msg)? {
                Reply::RegionWrite(None) => {}
                Reply::RegionWrite(Some(r)) if r == a => {}
                _ => return Err(t.violation(format!("REGION_WRITE reply does not echo the request {a:?}"))),
            }
            off += part.len() as u64;
        }
        Ok(())
    }

    /// Writes `data` without waiting (NO_REPLY). The server handles commands in order, so
    /// the write has taken effect before the reply to any later request from any thread.
    /// Writes of at most 8 bytes that queue up behind another send are coalesced into
    /// REGION_WRITE_MULTI when the server accepts it. Errors on the server are not reported.
    pub fn region_write_posted(&self, region: u32, offset: u64, data: &[u8]) -> Result<()> {
        self.check_region(region, offset, data.len())?;
        let link = read_lock(&self.link);
        let t = &*link.transport;
        let n = t.negotiated;
        if self.config.coalesce_writes
            && n.peer.write_multiple
            && !data.is_empty()
            && data.len() <= WRITE_MULTI_DATA_MAX
        {
            return t.post_small_write(WriteMultiEntry::new(region, offset, data));
        }
        let chunk = self.chunk(t);
        let mut off = offset;
        for part in data.chunks(chunk) {
            let p = RegionAccess::new(region, off, part.len() as u32).write_request(part);
            t.post(p.command(), &p.parts())?;
            off += part.len() as u64;
        }
        Ok(())
    }

    /// DEVICE_RESET, with the reset timeout of the [`Config`].
    pub fn reset(&self) -> Result<()> {
        self.reset_with_timeout(self.config.reset_timeout)
    }

    /// DEVICE_RESET with an explicit timeout.
    pub fn reset_with_timeout(&self, timeout: Duration) -> Result<()> {
        if !self.device.resettable() {
            return Err(Error::Unsupported("the device does not support DEVICE_RESET"));
        }
        let (t, msg) = self.call(&Payload::empty(Command::DeviceReset), &[], Some(timeout))?;
        match decode(&t, &msg)? {
            Reply::DeviceReset => Ok(()),
            _ => Err(t.violation("DEVICE_RESET reply of another kind".into())),
        }
    }

    /// Closes the connection. Every waiting call fails with [`Error::Disconnected`], and so
    /// does every later one until [`reconnect`](Client::reconnect).
    pub fn shutdown(&self) -> Result<()> {
        self.transport().fail(DisconnectReason::Shutdown);
        Ok(())
    }
}

pub(crate) fn fetch_device_info(t: &Transport, config: &Config) -> Result<DeviceSummary> {
    let p = wire::DeviceInfo::query().payload();
    let msg = t.request(p.command(), &p.parts(), &[], config.connect_timeout)?;
    let info = match decode(t, &msg)? {
        Reply::DeviceGetInfo(i) => i,
        _ => return Err(t.violation("DEVICE_GET_INFO reply of another kind".into())),
    };
    if info.num_regions > config.max_regions || info.num_irqs > config.max_irqs {
        return Err(t.violation(format!(
            "device reports {} regions and {} IRQ indexes (limits {} and {})",
            info.num_regions, info.num_irqs, config.max_regions, config.max_irqs
        )));
    }
    Ok(DeviceSummary { flags: info.flags, num_regions: info.num_regions, num_irqs: info.num_irqs })
}
