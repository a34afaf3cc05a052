// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Per-command handling: decode, validate against the device, act, reply.
//!
//! Every command is decoded by `vfio_user_proto::decode_request`, whose errors become error
//! replies with their errno; the message was read whole, so the stream stays in sync, and
//! descriptors that came with a refused message are closed when it is dropped. Commands
//! asking for NO_REPLY get no reply at all, not even an error reply.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use vfio_user_dma::{DmaConfig, DmaSpace, MapRequest, Prot, TRACK_PAGE_SIZE};
use vfio_user_proto::connection::Message;
use vfio_user_proto::request::{decode_request, DecodeLimits, FeatureRequest, Request};
use vfio_user_proto::version::{server_negotiate, Capabilities, Negotiated, NegotiationError, TwinSocket};
use vfio_user_proto::wire::*;
use vfio_user_proto::{build_region_info, MigState, HEADER_SIZE};
use vm_memory::ByteValued;

use crate::channel::Channel;
use crate::description::DeviceDescription;
use crate::device::{Device, ResetKind};
use crate::dma::DmaHandle;
use crate::error::{Error, Result};
use crate::irq::{IrqHandle, IrqState, VectorState};
use crate::migration::refused_in;
use crate::pci::config::ConfigSpace;
use crate::region::{diff, region_table, RegionFacts};

/// Server-side protocol limits, advertised in the VERSION reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most fds accepted with one message.
    pub max_msg_fds: u32,
    /// Largest REGION_READ / REGION_WRITE count accepted.
    pub max_data_xfer_size: u32,
    /// Most DMA regions at once.
    pub max_dma_maps: u32,
    /// Supported DMA page sizes (OR of powers of two, the `pgsizes` capability): DMA_MAP
    /// address, size and offset must be multiples of the smallest. `0` means 4096.
    pub pgsizes: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { max_msg_fds: 16, max_data_xfer_size: 1 << 20, max_dma_maps: 4096, pgsizes: 4096 }
    }
}

impl ServerLimits {
    fn pgsizes(&self) -> u64 {
        if self.pgsizes == 0 {
            4096
        } else {
            self.pgsizes
        }
    }
}

/// What the connection should do after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    Continue,
    Close,
}

/// A descriptor to attach to a reply.
enum ReplyFd {
    Shared(Arc<OwnedFd>),
    Owned(OwnedFd),
}

impl ReplyFd {
    fn borrow(&self) -> BorrowedFd<'_> {
        match self {
            ReplyFd::Shared(f) => f.as_fd(),
            ReplyFd::Owned(f) => f.as_fd(),
        }
    }
}

/// The device and everything the framework keeps about it.
pub(crate) struct Core<D> {
    pub(crate) desc: DeviceDescription,
    pub(crate) device: D,
    pub(crate) config: ConfigSpace,
    pub(crate) regions: Vec<RegionFacts>,
    pub(crate) irq: IrqHandle,
    pub(crate) dma: DmaHandle,
    pub(crate) limits: ServerLimits,
    pub(crate) mig_state: MigState,
    negotiated: Option<Negotiated>,
    pub(crate) out: Vec<u8>,
}

impl<D: Device> Core<D> {
    pub(crate) fn new(
        desc: DeviceDescription,
        limits: ServerLimits,
        make: impl FnOnce(IrqHandle, DmaHandle) -> D,
    ) -> Result<Self> {
        let config = ConfigSpace::new(&desc)?;
        let irq = IrqHandle { state: Arc::new(Mutex::new(IrqState::new(&desc))) };
        let dma = DmaHandle {
            space: Arc::new(DmaSpace::new(DmaConfig {
                pgsizes: limits.pgsizes(),
                max_maps: limits.max_dma_maps as usize,
                ..Default::default()
            })),
        };
        let device = make(irq.clone(), dma.clone());
        Ok(Core {
            regions: region_table(&desc),
            desc,
            device,
            config,
            irq,
            dma,
            limits,
            mig_state: MigState::Running,
            negotiated: None,
            out: Vec::new(),
        })
    }

    fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits { max_data_xfer_size: self.limits.max_data_xfer_size, max_msg_fds: self.limits.max_msg_fds }
    }

    /// Handles one command and queues its reply on `chan` (see [`Channel::queue`]).
    pub(crate) fn handle(&mut self, chan: &Channel, msg: Message) -> Next {
        let Message { header, payload, fds, damage } = msg;
        let mut reply_fds: Vec<ReplyFd> = Vec::new();
        let mut next = Next::Continue;
        // The reply is built in place after room for its header.
        self.out.clear();
        self.out.extend_from_slice(&[0; HEADER_SIZE]);
        let res = match damage {
            // Received whole, but not as sent: its descriptors (closed) or its payload
            // (discarded) are gone. Refused without decoding.
            Some(d) => {
                drop(fds);
                Err(Error::Damaged(d))
            }
            None => match decode_request(&header, &payload, fds.len(), &self.decode_limits()) {
                Ok(req) => self.process(chan, req, &payload, fds, &mut reply_fds, &mut next),
                Err(e) => Err(Error::Decode(e)),
            },
        };
        if header.no_reply() {
            if let Err(e) = &res {
                log::debug!("command {} (NO_REPLY) failed: {e}", header.command);
            }
            return next;
        }
        let sent = match res {
            Ok(()) if reply_fds.is_empty() => {
                let mut h = header.reply(0);
                h.msg_size = u32::try_from(self.out.len()).unwrap_or(u32::MAX);
                self.out[..HEADER_SIZE].copy_from_slice(h.as_slice());
                chan.queue(&self.out)
            }
            Ok(()) => {
                let borrowed: Vec<BorrowedFd<'_>> = reply_fds.iter().map(ReplyFd::borrow).collect();
                chan.flush().and_then(|()| chan.sender.send(header.reply(0), &[&self.out[HEADER_SIZE..]], &borrowed))
            }
            Err(e) => {
                log::debug!("command {} failed: {e}", header.command);
                chan.queue(header.error_reply(e.errno()).as_slice())
            }
        };
        if sent.is_err() {
            return Next::Close;
        }
        if next == Next::Close {
            // The last word before hanging up.
            let _ = chan.flush();
        }
        next
    }

    fn process(
        &mut self,
        chan: &Channel,
        req: Request<'_>,
        payload: &[u8],
        mut fds: Vec<OwnedFd>,
        reply_fds: &mut Vec<ReplyFd>,
        next: &mut Next,
    ) -> Result<()> {
        if let Request::Version(v) = req {
            return self.version(chan, v.major, v.minor, v.json, reply_fds, next);
        }
        if self.negotiated.is_none() {
            return Err(Error::InvalidArgument("VERSION must come first"));
        }
        if let Some(why) = refused_in(self.mig_state, &req) {
            return Err(Error::MigrationStopped(why));
        }
        match req {
            Request::Version(_) => Err(Error::InvalidArgument("second VERSION")),
            Request::DeviceGetInfo(_) => {
                let mut flags = DEVICE_FLAGS_PCI;
                if self.desc.reset {
                    flags |= DEVICE_FLAGS_RESET;
                }
                let info = DeviceInfo {
                    argsz: 16,
                    flags,
                    num_regions: self.desc.num_regions(),
                    num_irqs: self.desc.num_irqs(),
                };
                self.out.extend_from_slice(info.as_slice());
                Ok(())
            }
            Request::DeviceGetRegionInfo(req) => {
                let facts = self.regions.get(req.index as usize).ok_or(Error::InvalidArgument("no such region"))?;
                let (info, caps, fd) = facts.info(req.index);
                let body = build_region_info(info, &caps, req.argsz);
                // Attach the fd whenever the client gets the whole answer (it retries for
                // the capabilities otherwise).
                let whole = vfio_user_proto::wire::read_at::<RegionInfo>(&body, 0)
                    .is_some_and(|i| i.argsz as usize == body.len());
                if let (Some(fd), true) = (fd, whole) {
                    reply_fds.push(ReplyFd::Shared(fd));
                }
                self.out.extend_from_slice(&body);
                Ok(())
            }
            Request::DeviceGetRegionIoFds(req) => self.region_io_fds(req, reply_fds),
            Request::DeviceGetIrqInfo(req) => {
                if req.index >= self.desc.num_irqs() {
                    return Err(Error::InvalidArgument("no such IRQ index"));
                }
                let info = IrqInfo {
                    argsz: 16,
                    flags: IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE,
                    index: req.index,
                    count: self.desc.irq_count(req.index),
                };
                self.out.extend_from_slice(info.as_slice());
                Ok(())
            }
            Request::DeviceSetIrqs { set, action, data } => {
                let changes = {
                    let mut irq = self.irq.lock();
                    let before = irq.states(set.index);
                    irq.set_irqs(set.index, set.start, set.count, action, data, std::mem::take(&mut fds))?;
                    diff(set.index, &before, &irq.states(set.index))
                };
                self.notify(changes);
                Ok(())
            }
            Request::RegionRead(a) => {
                self.out.extend_from_slice(a.as_slice());
                self.out.resize(HEADER_SIZE + 16 + a.count as usize, 0);
                let mut out = std::mem::take(&mut self.out);
                let r = self.region_read(a.region, a.offset, &mut out[HEADER_SIZE + 16..]);
                self.out = out;
                r
            }
            Request::RegionWrite(a, data) => {
                self.region_write(a.region, a.offset, data)?;
                self.out.extend_from_slice(a.as_slice());
                Ok(())
            }
            Request::RegionWriteMulti(entries) => {
                for e in entries.iter() {
                    let r = self.regions.get(e.region as usize).ok_or(Error::InvalidArgument("no such region"))?;
                    if !r.writable || e.offset.checked_add(e.count.into()).map_or(true, |end| end > r.size) {
                        return Err(Error::InvalidArgument("REGION_WRITE_MULTI entry out of range"));
                    }
                }
                for e in entries.iter() {
                    self.region_write(e.region, e.offset, &e.data[..e.count as usize])?;
                }
                self.out.extend_from_slice(WriteMulti { wr_cnt: entries.len() as u64 }.as_slice());
                Ok(())
            }
            Request::DeviceReset => {
                if !self.desc.reset {
                    return Err(Error::NotSupported);
                }
                self.mig_reset();
                self.reset(ResetKind::Device)
            }
            Request::DmaMap { map, fd } => self.dma_map(map, if fd { fds.pop() } else { None }),
            Request::DmaUnmap { unmap, bitmap } => self.dma_unmap(unmap, bitmap),
            Request::DeviceFeature(head, feature) => self.device_feature(head, feature, payload),
            Request::MigDataRead(m) => self.mig_data_read(m),
            Request::MigDataWrite(_, data) => self.mig_data_write(data),
            Request::DmaRead(_) | Request::DmaWrite(..) => {
                Err(Error::InvalidArgument("DMA_READ/DMA_WRITE go to the client"))
            }
        }
    }

    fn version(
        &mut self,
        chan: &Channel,
        major: u16,
        minor: u16,
        json: &[u8],
        reply_fds: &mut Vec<ReplyFd>,
        next: &mut Next,
    ) -> Result<()> {
        if self.negotiated.is_some() {
            return Err(Error::InvalidArgument("second VERSION"));
        }
        let client = Capabilities::from_json(json).map_err(|_| Error::InvalidArgument("VERSION capabilities"))?;
        // Mappings the process can really hold: each may keep an fd (an fd not sealed
        // against shrinking is reached by pread/pwrite), so no more than the descriptor
        // table has room for, with room kept for the descriptors of one message and one
        // eventfd per interrupt vector.
        let vectors: usize = (0..self.desc.num_irqs()).map(|i| self.desc.irq_count(i) as usize).sum();
        let fd_budget = crate::fdlimit::dma_fd_budget(vectors + self.limits.max_msg_fds as usize);
        self.dma.space.set_max_open_fds(fd_budget);
        let max_dma_maps = self.limits.max_dma_maps.min(u32::try_from(fd_budget).unwrap_or(u32::MAX)).max(1);
        let offer = Capabilities {
            max_msg_fds: self.limits.max_msg_fds,
            max_data_xfer_size: self.limits.max_data_xfer_size,
            max_dma_maps,
            pgsizes: self.limits.pgsizes(),
            twin_socket: Some(TwinSocket { supported: true, fd_index: None }),
            write_multiple: true,
        };
        let mut n = match server_negotiate(major, minor, &client, &offer) {
            Ok(n) => n,
            Err(e @ NegotiationError::Major { .. }) => {
                // A major we cannot speak: refuse and hang up, as the spec says.
                *next = Next::Close;
                return Err(Error::Io(std::io::Error::from_raw_os_error(e.errno())));
            }
            Err(_) => return Err(Error::InvalidArgument("VERSION capabilities")),
        };
        if client.twin_socket.is_none() {
            // Mention twin_socket only to a client that knows it.
            n.local.twin_socket = None;
        }
        let twin = if n.twin_socket {
            let (ours, theirs) = UnixStream::pair()?;
            reply_fds.push(ReplyFd::Owned(theirs.into()));
            Some(ours)
        } else {
            None
        };
        chan.negotiated(n.peer.max_data_xfer_size, twin)?;
        self.out.extend_from_slice(&n.major.to_ne_bytes());
        self.out.extend_from_slice(&n.minor.to_ne_bytes());
        self.out.extend_from_slice(&n.local.to_json());
        self.negotiated = Some(n);
        self.device.client_connected(true);
        Ok(())
    }

    /// DMA_MAP: the flags become the mapping's permissions and kind (the decoder refused
    /// unknown bits, MMAP together with FILE_IO, and either without an fd), the space maps
    /// it, then the device is told (and may refuse it).
    fn dma_map(&mut self, map: DmaMap, fd: Option<OwnedFd>) -> Result<()> {
        let req = MapRequest {
            iova: map.addr,
            size: map.size,
            file_offset: map.offset,
            prot: Prot { read: map.flags & DMA_MAP_FLAG_READ != 0, write: map.flags & DMA_MAP_FLAG_WRITE != 0 },
            // With an fd, MMAP is the default; FILE_IO asks for pread/pwrite instead.
            file_io: map.flags & DMA_MAP_FLAG_FILE_IO != 0,
            fd,
        };
        self.dma.space.map(req)?;
        let region = self.dma.space.region_at(map.addr).ok_or(Error::InvalidArgument("DMA mapping vanished"))?;
        if let Err(e) = self.device.dma_map(&region) {
            let _ = self.dma.space.unmap(region.iova, region.size);
            return Err(e.into());
        }
        Ok(())
    }

    /// DMA_UNMAP (one exact mapping, ALL, or the legacy GET_DIRTY_BITMAP form). The device
    /// is told first, so it can drop views it keeps; the space then removes the mapping,
    /// waiting for accesses in flight (bounded, `EBUSY` after which the mapping is gone
    /// all the same).
    fn dma_unmap(&mut self, unmap: DmaUnmap, bitmap: Option<DmaBitmap>) -> Result<()> {
        let space = Arc::clone(&self.dma.space);
        if unmap.flags & DMA_UNMAP_FLAG_ALL != 0 {
            for r in &space.regions() {
                self.device.dma_unmap(r);
            }
            space.unmap_all()?;
            self.out.extend_from_slice(unmap.as_slice());
            return Ok(());
        }
        let region = space
            .region_at(unmap.addr)
            .filter(|r| r.iova == unmap.addr && r.size == unmap.size)
            .ok_or(vfio_user_dma::Error::NoSuchMapping { iova: unmap.addr, size: unmap.size })?;
        let Some(bm) = bitmap else {
            self.device.dma_unmap(&region);
            space.unmap(unmap.addr, unmap.size)?;
            self.out.extend_from_slice(unmap.as_slice());
            return Ok(());
        };
        // The decoder checked pgsize (a power of two dividing size) and bm.size >= the
        // bitmap's bytes. Accept at most the rounding to whole u64 words, so that a client
        // cannot make us allocate what its argsz allows (up to 4 GiB).
        let need = (unmap.size / bm.pgsize).div_ceil(8);
        if bm.size > need.next_multiple_of(8) {
            return Err(Error::InvalidArgument("DMA_UNMAP bitmap size larger than the bitmap"));
        }
        if space.logging_page_size().is_none() {
            return Err(vfio_user_dma::Error::LoggingNotActive.into());
        }
        if need > space.config().max_bitmap_bytes as u64 {
            return Err(
                vfio_user_dma::Error::BitmapTooLarge { bytes: need, limit: space.config().max_bitmap_bytes }.into()
            );
        }
        self.device.dma_unmap(&region);
        let mut bits = space.unmap_with_dirty_bitmap(unmap.addr, unmap.size, bm.pgsize)?;
        bits.resize(bm.size as usize, 0);
        self.out.extend_from_slice(unmap.as_slice());
        self.out.extend_from_slice(bm.as_slice());
        self.out.extend_from_slice(&bits);
        Ok(())
    }

    /// Which operations a feature supports, for PROBE: `(get, set)`, `None` if unknown.
    /// The migration features exist only for a device that can migrate.
    fn feature_ops(&self, feature: u16) -> Option<(bool, bool)> {
        match feature {
            FEATURE_DMA_LOGGING_START | FEATURE_DMA_LOGGING_STOP => Some((false, true)),
            FEATURE_DMA_LOGGING_REPORT => Some((true, false)),
            FEATURE_MIGRATION => self.device.migration().map(|_| (true, false)),
            FEATURE_MIG_DEVICE_STATE => self.device.migration().map(|_| (true, true)),
            _ => None,
        }
    }

    /// DEVICE_FEATURE. The reply to SET and PROBE echoes the request payload (START with
    /// the page size the device uses); the reply to GET appends the data to the request's
    /// and updates `argsz`.
    fn device_feature(&mut self, head: DeviceFeature, req: FeatureRequest<'_>, payload: &[u8]) -> Result<()> {
        let space = &self.dma.space;
        match req {
            FeatureRequest::Probe { feature, get, set } => {
                let (can_get, can_set) = self.feature_ops(feature).ok_or(Error::NotSupported)?;
                if (get && !can_get) || (set && !can_set) {
                    return Err(Error::NotSupported);
                }
                self.out.extend_from_slice(payload);
            }
            FeatureRequest::DmaLoggingStart { control, ranges } => {
                // Pages are tracked at 4 KiB at least; a smaller request gets 4 KiB, and
                // the reply says so.
                let page_size = control.page_size.max(TRACK_PAGE_SIZE);
                let ranges: Vec<(u64, u64)> = ranges.iter().map(|r| (r.iova, r.length)).collect();
                space.start_logging(page_size, &ranges)?;
                self.out.extend_from_slice(payload);
                let echo = DmaLoggingControl { page_size, ..control };
                self.out[HEADER_SIZE + 8..HEADER_SIZE + 24].copy_from_slice(echo.as_slice());
            }
            FeatureRequest::DmaLoggingStop => {
                space.stop_logging();
                self.out.extend_from_slice(payload);
            }
            FeatureRequest::DmaLoggingReport(r) => {
                let words = space.report(r.iova, r.length, r.page_size)?;
                let argsz = u32::try_from(8 + 24 + words.len() * 8).map_err(|_| Error::InvalidArgument("report"))?;
                self.out.extend_from_slice(DeviceFeature { argsz, ..head }.as_slice());
                self.out.extend_from_slice(r.as_slice());
                self.out.reserve(words.len() * 8);
                for w in words {
                    self.out.extend_from_slice(&w.to_ne_bytes());
                }
            }
            FeatureRequest::MigrationGet => self.migration_get(head)?,
            FeatureRequest::MigStateGet => self.mig_state_get(head)?,
            FeatureRequest::MigStateSet(state) => self.mig_state_set(state, payload)?,
            FeatureRequest::Unknown { .. } => return Err(Error::NotSupported),
        }
        Ok(())
    }

    fn region_io_fds(&mut self, req: RegionIoFds, reply_fds: &mut Vec<ReplyFd>) -> Result<()> {
        let size = match self.regions.get(req.index as usize) {
            Some(r) if r.size > 0 => r.size,
            _ => return Err(Error::InvalidArgument("no such region")),
        };
        let list = self.device.region_io_fds(req.index);
        let mut entries = Vec::with_capacity(list.len());
        let mut fds: Vec<Arc<OwnedFd>> = Vec::new();
        for e in &list {
            if !matches!(e.size, 0 | 1 | 2 | 4 | 8) || e.offset.checked_add(e.size).map_or(true, |end| end > size) {
                return Err(Error::Io(std::io::Error::other("device returned an invalid ioeventfd")));
            }
            let idx = match fds.iter().position(|f| Arc::ptr_eq(f, &e.fd)) {
                Some(i) => i,
                None => {
                    fds.push(e.fd.clone());
                    fds.len() - 1
                }
            };
            entries.push(IoFdEntry {
                offset: e.offset,
                size: e.size,
                fd_index: idx as u32,
                type_: IO_FD_TYPE_IOEVENTFD,
                flags: if e.datamatch.is_some() { IOEVENTFD_FLAG_DATAMATCH } else { 0 },
                padding: 0,
                datamatch: e.datamatch.unwrap_or(0),
            });
        }
        let need = 16 + entries.len() * std::mem::size_of::<IoFdEntry>();
        let head = RegionIoFds { argsz: need as u32, flags: 0, index: req.index, count: entries.len() as u32 };
        self.out.extend_from_slice(head.as_slice());
        if (req.argsz as usize) < need {
            return Ok(());
        }
        let peer_max = self.negotiated.map_or(1, |n| n.peer.max_msg_fds) as usize;
        if fds.len() > peer_max {
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::E2BIG)));
        }
        for e in &entries {
            self.out.extend_from_slice(e.as_slice());
        }
        reply_fds.extend(fds.into_iter().map(ReplyFd::Shared));
        Ok(())
    }

    /// Resets the emulated state, then the device.
    pub(crate) fn reset(&mut self, kind: ResetKind) -> Result<()> {
        self.config.reset();
        let changes = {
            let mut irq = self.irq.lock();
            let before: Vec<_> = (0..5).map(|i| irq.states(i)).collect();
            self.config.reset_irq(&mut irq);
            (0..5).flat_map(|i| diff(i, &before[i as usize], &irq.states(i))).collect()
        };
        self.notify(changes);
        Ok(self.device.reset(kind)?)
    }

    pub(crate) fn notify(&self, changes: Vec<(u32, u32, VectorState)>) {
        for (index, vector, state) in changes {
            self.device.irq_state_changed(index, vector, state);
        }
    }

    /// The client went away: unmap its DMA regions (closing their fds), stop DMA logging,
    /// drop the DMA transport and close its eventfds; keep the rest.
    pub(crate) fn disconnect(&mut self) {
        for r in &self.dma.space.regions() {
            self.device.dma_unmap(r);
        }
        if let Err(e) = self.dma.space.clear() {
            log::warn!("DMA mappings released late after disconnect: {e}");
        }
        let changes = {
            let mut irq = self.irq.lock();
            let before: Vec<_> = (0..5).map(|i| irq.states(i)).collect();
            irq.release_client();
            (0..5).flat_map(|i| diff(i, &before[i as usize], &irq.states(i))).collect()
        };
        self.notify(changes);
        if self.negotiated.take().is_some() {
            self.device.client_connected(false);
        }
    }
}
