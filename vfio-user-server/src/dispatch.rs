// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Per-command handling: decode, route to the handler, send what it answers.
//!
//! Every command is decoded by `vfio_user_proto::decode_request`, whose errors become error
//! replies with their errno; the message was read whole, so the stream stays in sync, and
//! descriptors that came with a refused message are closed when it is dropped. Each match
//! arm of [`Core::process`] hands a typed request to one handler, which returns its
//! [`Answer`] (reply payload built with the wire crate's encoders, descriptors, what next).
//! Commands asking for NO_REPLY get no reply at all, not even an error reply.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use vfio_user_dma::{DmaProt, MapRequest, TRACK_PAGE_SIZE};
use vfio_user_proto::connection::Message;
use vfio_user_proto::request::{decode_request, FeatureRequest, IrqAction, IrqData, Request, Version};
use vfio_user_proto::version::{server_negotiate, Capabilities, NegotiationError, TwinSocket};
use vfio_user_proto::wire::*;
use vfio_user_proto::{build_region_info, Header, Reply};
use vm_memory::ByteValued;

use crate::answer::{Answer, Next, ReplyFd};
use crate::channel::Channel;
use crate::core::Core;
use crate::device::{Device, ResetKind};
use crate::error::{Error, Result};
use crate::migration::refused_in;

impl<D: Device> Core<D> {
    /// Handles one command and queues its reply on `chan` (see [`Channel::queue`]).
    pub(crate) fn handle(&mut self, chan: &Channel, msg: Message) -> Next {
        let Message { header, payload, fds, damage } = msg;
        let answer = match damage {
            // Received whole, but not as sent: its descriptors (closed) or its payload
            // (discarded) are gone. Refused without decoding.
            Some(d) => {
                drop(fds);
                Answer::error(Error::Damaged(d))
            }
            None => match decode_request(&header, &payload, fds.len(), &self.decode_limits()) {
                Ok(req) => self.process(chan, req, &payload, fds).unwrap_or_else(Answer::error),
                Err(e) => Answer::error(Error::Decode(e)),
            },
        };
        let Answer { reply, fds, next } = answer;
        if header.no_reply() {
            match reply {
                Ok(buf) => self.recycle(buf),
                Err(e) => log::debug!("command {} (NO_REPLY) failed: {e}", header.command),
            }
            return next;
        }
        let sent = match reply {
            Ok(mut buf) => {
                let msg = buf.payload();
                let h = header.put_reply(msg);
                let r = if fds.is_empty() {
                    chan.queue(msg)
                } else {
                    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(ReplyFd::borrow).collect();
                    chan.flush().and_then(|()| chan.sender.send(h, &[Header::payload_of(msg)], &borrowed))
                };
                self.recycle(buf);
                r
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

    /// Routes a decoded command to its handler.
    fn process(&mut self, chan: &Channel, req: Request<'_>, payload: &[u8], mut fds: Vec<OwnedFd>) -> Result<Answer> {
        if let Request::Version(v) = req {
            return self.version(chan, v);
        }
        if self.negotiated.is_none() {
            return Err(Error::InvalidArgument("VERSION must come first"));
        }
        if let Some(why) = refused_in(self.mig_state, &req) {
            return Err(Error::MigrationStopped(why));
        }
        match req {
            Request::Version(_) => Err(Error::InvalidArgument("second VERSION")),
            Request::DeviceGetInfo(_) => self.device_get_info(),
            Request::DeviceGetRegionInfo(req) => self.region_info(req),
            Request::DeviceGetRegionIoFds(req) => self.region_io_fds(req),
            Request::DeviceGetIrqInfo(req) => self.irq_info(req),
            Request::DeviceSetIrqs { set, action, data } => self.set_irqs(set, action, data, fds),
            Request::RegionRead(a) => self.region_read_cmd(a),
            Request::RegionWrite(a, data) => self.region_write_cmd(a, data),
            Request::RegionWriteMulti(entries) => self.region_write_multi(entries),
            Request::DeviceReset => self.device_reset(),
            Request::DmaMap { map, fd } => self.dma_map(map, if fd { fds.pop() } else { None }),
            Request::DmaUnmap(r) => self.dma_unmap(r),
            Request::DeviceFeature(head, feature) => self.device_feature(head, feature, payload),
            Request::MigDataRead(m) => self.mig_data_read(m),
            Request::MigDataWrite(_, data) => self.mig_data_write(data),
            Request::DmaRead(_) | Request::DmaWrite(..) => {
                Err(Error::InvalidArgument("DMA_READ/DMA_WRITE go to the client"))
            }
        }
    }

    /// A reply carrying `reply`'s payload.
    pub(crate) fn answer(&mut self, reply: &Reply<'_>) -> Answer {
        let mut buf = self.reply_buf();
        reply.encode_payload(buf.payload());
        Answer::reply(buf)
    }

    /// A reply whose payload is `bytes` (an echo of the request).
    pub(crate) fn echo(&mut self, bytes: &[u8]) -> Answer {
        let mut buf = self.reply_buf();
        buf.payload().extend_from_slice(bytes);
        Answer::reply(buf)
    }

    fn version(&mut self, chan: &Channel, v: Version<'_>) -> Result<Answer> {
        if self.negotiated.is_some() {
            return Err(Error::InvalidArgument("second VERSION"));
        }
        let client = Capabilities::from_json(v.json).map_err(|_| Error::InvalidArgument("VERSION capabilities"))?;
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
        let mut n = match server_negotiate(v.major, v.minor, &client, &offer) {
            Ok(n) => n,
            Err(e @ NegotiationError::Major { .. }) => {
                // A major we cannot speak: refuse and hang up, as the spec says.
                let e = Error::Io(std::io::Error::from_raw_os_error(e.errno()));
                return Ok(Answer::error(e).then_close());
            }
            Err(_) => return Err(Error::InvalidArgument("VERSION capabilities")),
        };
        if client.twin_socket.is_none() {
            // Mention twin_socket only to a client that knows it.
            n.local.twin_socket = None;
        }
        let (twin, theirs) = if n.twin_socket {
            let (ours, theirs) = UnixStream::pair()?;
            (Some(ours), Some(ReplyFd::Owned(theirs.into())))
        } else {
            (None, None)
        };
        chan.negotiated(n.peer.max_data_xfer_size, twin)?;
        let json = n.local.to_json();
        let json = json.strip_suffix(&[0]).unwrap_or(&json);
        let answer = self.answer(&Reply::Version(Version { major: n.major, minor: n.minor, json })).with_fds(theirs);
        self.negotiated = Some(n);
        self.device.client_connected(true);
        Ok(answer)
    }

    fn device_get_info(&mut self) -> Result<Answer> {
        let mut flags = DEVICE_FLAGS_PCI;
        if self.desc.reset {
            flags |= DEVICE_FLAGS_RESET;
        }
        let info = DeviceInfo::reply(flags, self.desc.num_regions(), self.desc.num_irqs());
        Ok(self.answer(&Reply::DeviceGetInfo(info)))
    }

    fn region_info(&mut self, req: RegionInfo) -> Result<Answer> {
        let facts = self.regions.get(req.index as usize).ok_or(Error::InvalidArgument("no such region"))?;
        let (info, caps, fd) = facts.info(req.index);
        let body = build_region_info(info, &caps, req.argsz);
        // Attach the fd whenever the client gets the whole answer (it retries for the
        // capabilities otherwise).
        let whole = RegionInfo::reply_is_whole(&body);
        let fd = fd.filter(|_| whole).map(ReplyFd::Shared);
        Ok(self.echo(&body).with_fds(fd))
    }

    fn region_io_fds(&mut self, req: RegionIoFds) -> Result<Answer> {
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
            entries.push(IoFdEntry::ioeventfd(e.offset, e.size, idx as u32, e.datamatch));
        }
        let head = RegionIoFds::reply(req.index, entries.len());
        if req.argsz < head.argsz {
            // Too small: the fixed part alone says how much is needed.
            return Ok(self.echo(head.as_slice()));
        }
        let peer_max = self.negotiated.map_or(1, |n| n.peer.max_msg_fds) as usize;
        if fds.len() > peer_max {
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::E2BIG)));
        }
        let mut buf = self.reply_buf();
        buf.payload().extend_from_slice(head.as_slice());
        for e in &entries {
            buf.payload().extend_from_slice(e.as_slice());
        }
        Ok(Answer::reply(buf).with_fds(fds.into_iter().map(ReplyFd::Shared)))
    }

    fn irq_info(&mut self, req: IrqInfo) -> Result<Answer> {
        if req.index >= self.desc.num_irqs() {
            return Err(Error::InvalidArgument("no such IRQ index"));
        }
        let info = IrqInfo::reply(IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE, req.index, self.desc.irq_count(req.index));
        Ok(self.answer(&Reply::DeviceGetIrqInfo(info)))
    }

    fn set_irqs(&mut self, set: IrqSet, action: IrqAction, data: IrqData<'_>, fds: Vec<OwnedFd>) -> Result<Answer> {
        let (r, changes) =
            self.irq.lock().change(&[], |irq| irq.set_irqs(set.index, set.start, set.count, action, data, fds));
        r?;
        self.notify(changes);
        Ok(self.answer(&Reply::DeviceSetIrqs))
    }

    fn device_reset(&mut self) -> Result<Answer> {
        if !self.desc.reset {
            return Err(Error::NotSupported);
        }
        self.mig_reset();
        self.reset(ResetKind::Device)?;
        Ok(self.answer(&Reply::DeviceReset))
    }

    /// DMA_MAP: the flags become the mapping's permissions and kind (the decoder refused
    /// unknown bits, MMAP together with FILE_IO, and either without an fd), the space maps
    /// it, then the device is told (and may refuse it).
    fn dma_map(&mut self, map: DmaMap, fd: Option<OwnedFd>) -> Result<Answer> {
        let req = MapRequest {
            iova: map.addr,
            size: map.size,
            file_offset: map.offset,
            prot: DmaProt::from_map_flags(map.flags),
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
        Ok(self.answer(&Reply::DmaMap))
    }

    /// DMA_UNMAP (one exact mapping, ALL, or the legacy GET_DIRTY_BITMAP form). The device
    /// is told first, so it can drop views it keeps; the space then removes the mapping,
    /// waiting for accesses in flight (bounded, `EBUSY` after which the mapping is gone
    /// all the same). The reply echoes the entry.
    fn dma_unmap(&mut self, req: DmaUnmapRequest) -> Result<Answer> {
        let space = Arc::clone(&self.dma.space);
        let (echo, _) = req.to_wire();
        let (addr, size, bm) = match req.op {
            DmaUnmapOp::All => {
                for r in &space.regions() {
                    self.device.dma_unmap(r);
                }
                space.unmap_all()?;
                return Ok(self.answer(&Reply::DmaUnmap(Some(echo), None)));
            }
            DmaUnmapOp::One { addr, size } => (addr, size, None),
            DmaUnmapOp::WithDirtyBitmap { addr, size, bitmap } => (addr, size, Some(bitmap)),
        };
        let region = space
            .region_at(addr)
            .filter(|r| r.iova == addr && r.size == size)
            .ok_or(vfio_user_dma::Error::NoSuchMapping { iova: addr, size })?;
        let Some(bm) = bm else {
            self.device.dma_unmap(&region);
            space.unmap(addr, size)?;
            return Ok(self.answer(&Reply::DmaUnmap(Some(echo), None)));
        };
        // The decoder checked pgsize (a power of two dividing size) and bm.size >= the
        // bitmap's bytes. Accept at most the rounding to whole u64 words, so that a client
        // cannot make us allocate what its argsz allows (up to 4 GiB).
        let need = DmaBitmap::bytes_for(size, bm.pgsize);
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
        let mut bits = space.unmap_with_dirty_bitmap(addr, size, bm.pgsize)?;
        bits.resize(bm.size as usize, 0);
        Ok(self.answer(&Reply::DmaUnmap(Some(echo), Some((bm, &bits)))))
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
    fn device_feature(&mut self, head: DeviceFeature, req: FeatureRequest<'_>, payload: &[u8]) -> Result<Answer> {
        let space = Arc::clone(&self.dma.space);
        match req {
            FeatureRequest::Probe { feature, get, set } => {
                let (can_get, can_set) = self.feature_ops(feature).ok_or(Error::NotSupported)?;
                if (get && !can_get) || (set && !can_set) {
                    return Err(Error::NotSupported);
                }
                Ok(self.echo(payload))
            }
            FeatureRequest::DmaLoggingStart { control, ranges } => {
                // Pages are tracked at 4 KiB at least; a smaller request gets 4 KiB, and
                // the reply says so.
                let page_size = control.page_size.max(TRACK_PAGE_SIZE);
                let list: Vec<(u64, u64)> = ranges.iter().map(|r| (r.iova, r.length)).collect();
                space.start_logging(page_size, &list)?;
                let echo =
                    FeatureRequest::DmaLoggingStart { control: DmaLoggingControl { page_size, ..control }, ranges };
                let mut buf = self.reply_buf();
                Request::DeviceFeature(head, echo).encode_payload(buf.payload());
                Ok(Answer::reply(buf))
            }
            FeatureRequest::DmaLoggingStop => {
                space.stop_logging();
                Ok(self.echo(payload))
            }
            FeatureRequest::DmaLoggingReport(r) => {
                let words = space.report(r.iova, r.length, r.page_size)?;
                let mut data = Vec::with_capacity(r.as_slice().len() + words.len() * 8);
                data.extend_from_slice(r.as_slice());
                for w in words {
                    data.extend_from_slice(&w.to_ne_bytes());
                }
                let head = head.checked_with_data(data.len()).ok_or(Error::InvalidArgument("report"))?;
                Ok(self.answer(&Reply::DeviceFeature(head, &data)))
            }
            FeatureRequest::MigrationGet => self.migration_get(head),
            FeatureRequest::MigStateGet => self.mig_state_get(head),
            FeatureRequest::MigStateSet(state) => self.mig_state_set(state, payload),
            FeatureRequest::Unknown { .. } => Err(Error::NotSupported),
        }
    }
}
