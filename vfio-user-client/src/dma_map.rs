// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA_MAP and DMA_UNMAP (one region, all regions, or with the 2021 dirty bitmap), the
//! client's table of mappings, and its replay after a reconnect.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use vfio_user_proto::wire::{DmaBitmap, DmaMap, DmaUnmap, DmaUnmapRequest};
use vfio_user_proto::Reply;

use crate::client::Client;
use crate::dma_serve::DmaMapping;
use crate::error::{Error, Result};
use crate::sync::{lock, read_lock, write_lock};
use crate::transport::decode;
use crate::transport::Transport;

/// The access a DMA mapping grants the server (the wire crate's one permission type).
pub use vfio_user_proto::DmaProt;

fn send_map(t: &Transport, m: &DmaMapping, timeout: std::time::Duration) -> Result<()> {
    let offset = m.fd.as_ref().map_or(0, |(_, o)| *o);
    let p = DmaMap::new(DmaProt::from_map_flags(m.flags), offset, m.iova, m.size).request();
    let fd: Vec<BorrowedFd<'_>> = m.fd.iter().map(|(f, _)| f.as_fd()).collect();
    let msg = t.request(p.command(), &p.parts(), &fd, timeout)?;
    match decode(t, &msg)? {
        Reply::DmaMap => Ok(()),
        _ => Err(t.violation("DMA_MAP reply of another kind".into())),
    }
}

/// Sends every mapping of the table again (after a reconnect).
pub(crate) fn replay(c: &Client, t: &Transport) -> Result<()> {
    let maps: Vec<DmaMapping> = read_lock(&c.dma.table).iter().cloned().collect();
    if maps.len() > t.negotiated.peer.max_dma_maps as usize {
        return Err(Error::Unsupported("the restarted server accepts fewer DMA mappings than are made"));
    }
    for m in &maps {
        send_map(t, m, c.config.timeout)?;
    }
    Ok(())
}

impl Client {
    fn check_dma_range(&self, iova: u64, size: u64, offset: u64) -> Result<()> {
        let t = self.transport();
        let pg = t.negotiated.peer.min_pgsize();
        if size == 0 || iova.checked_add(size).is_none() || offset.checked_add(size).is_none() {
            return Err(Error::InvalidInput("empty or wrapping DMA range"));
        }
        if iova % pg != 0 || size % pg != 0 || offset % pg != 0 {
            return Err(Error::InvalidInput("DMA range not aligned to the server's page size"));
        }
        Ok(())
    }

    fn map(&self, m: DmaMapping) -> Result<()> {
        let _g = lock(&self.dma_ops);
        let t = self.transport();
        {
            let table = read_lock(&self.dma.table);
            if table.overlaps(m.iova, m.size) {
                return Err(Error::InvalidInput("overlaps an existing DMA mapping (EEXIST)"));
            }
            if table.len() >= t.negotiated.peer.max_dma_maps as usize {
                return Err(Error::Unsupported("the server's max_dma_maps is reached"));
            }
        }
        send_map(&t, &m, self.config.timeout)?;
        write_lock(&self.dma.table).insert(m);
        Ok(())
    }

    /// DMA_MAP of `[iova, iova + size)` backed by `fd` at `offset`: the server may mmap it.
    ///
    /// For full speed pass a memfd created with `MFD_ALLOW_SEALING` and sealed with
    /// `F_SEAL_SHRINK` (as QEMU's `memory-backend-memfd` does): a server built on
    /// `vfio-user-dma` mmaps only such fds, and reaches any other with `pread`/`pwrite`
    /// (no zero-copy), because a client could truncate it under a mapping and kill the
    /// server with `SIGBUS`.
    /// The client keeps a duplicate of `fd` (to replay the mapping after a reconnect and to
    /// serve DMA_READ/WRITE through it when no [`GuestMemoryAccess`](crate::GuestMemoryAccess) is given).
    pub fn dma_map_fd(&self, iova: u64, size: u64, fd: BorrowedFd<'_>, offset: u64, prot: DmaProt) -> Result<()> {
        self.check_dma_range(iova, size, offset)?;
        if self.transport().negotiated.peer.max_msg_fds == 0 {
            return Err(Error::Unsupported("the server accepts no file descriptors"));
        }
        let dup = Arc::new(fd.try_clone_to_owned()?);
        self.map(DmaMapping { iova, size, flags: prot.bits(), fd: Some((dup, offset)) })
    }

    /// DMA_MAP of `[iova, iova + size)` without an fd: the server reaches it only through
    /// DMA_READ/DMA_WRITE, served from the [`GuestMemoryAccess`](crate::GuestMemoryAccess) of the
    /// [`Config`](crate::Config).
    pub fn dma_map(&self, iova: u64, size: u64, prot: DmaProt) -> Result<()> {
        self.check_dma_range(iova, size, 0)?;
        self.map(DmaMapping { iova, size, flags: prot.bits(), fd: None })
    }

    /// DMA_UNMAP of the mapping made exactly at `iova` with `size`.
    pub fn dma_unmap(&self, iova: u64, size: u64) -> Result<()> {
        let _g = lock(&self.dma_ops);
        if read_lock(&self.dma.table).get_exact(iova, size).is_none() {
            return Err(Error::InvalidInput("no DMA mapping with this address and size"));
        }
        let typed = DmaUnmapRequest::one(iova, size);
        let (t, msg) = self.call(&typed.payload(), &[], None)?;
        let req = typed.to_wire().0;
        match decode(&t, &msg)? {
            Reply::DmaUnmap(None, None) => {}
            Reply::DmaUnmap(Some(u), None) if u.addr == iova && u.size == size && u.flags == 0 => {}
            _ => return Err(t.violation(format!("DMA_UNMAP reply does not echo {req:?}"))),
        }
        write_lock(&self.dma.table).remove_exact(iova, size);
        Ok(())
    }

    /// DMA_UNMAP with `VFIO_DMA_UNMAP_FLAG_ALL` (Linux value 1 << 1, as QEMU sends it):
    /// every mapping is dropped.
    pub fn dma_unmap_all(&self) -> Result<()> {
        let _g = lock(&self.dma_ops);
        let typed = DmaUnmapRequest::all();
        let (t, msg) = self.call(&typed.payload(), &[], None)?;
        let req = typed.to_wire().0;
        match decode(&t, &msg)? {
            Reply::DmaUnmap(None, None) => {}
            Reply::DmaUnmap(Some(u), None) if u == DmaUnmap { argsz: u.argsz, ..req } => {}
            _ => return Err(t.violation("DMA_UNMAP(ALL) reply does not echo the request".into())),
        }
        write_lock(&self.dma.table).clear();
        Ok(())
    }

    /// DMA_UNMAP with the 2021 `GET_DIRTY_BITMAP` flag (Linux value 1 << 0, still served by
    /// libvfio-user): unmaps the mapping and returns its dirty bitmap, one bit per `pgsize`
    /// page, bit `p % 8` of byte `p / 8`.
    pub fn dma_unmap_with_dirty_bitmap(&self, iova: u64, size: u64, pgsize: u64) -> Result<Vec<u8>> {
        if !pgsize.is_power_of_two() || size % pgsize != 0 {
            return Err(Error::InvalidInput("pgsize must be a power of two dividing the size"));
        }
        let bytes = DmaBitmap::bytes_for(size, pgsize);
        let t = self.transport();
        // Entry, bitmap header and bitmap must fit the reply size we accept.
        // (64: a margin for the entry, the bitmap header and the message header.)
        if bytes + 64 > u64::from(t.negotiated.local.max_data_xfer_size) {
            return Err(Error::InvalidInput("dirty bitmap larger than max_data_xfer_size"));
        }
        let _g = lock(&self.dma_ops);
        if read_lock(&self.dma.table).get_exact(iova, size).is_none() {
            return Err(Error::InvalidInput("no DMA mapping with this address and size"));
        }
        let typed = DmaUnmapRequest::with_dirty_bitmap(iova, size, pgsize)
            .ok_or(Error::InvalidInput("dirty bitmap larger than max_data_xfer_size"))?;
        let (t, msg) = self.call(&typed.payload(), &[], None)?;
        let (req, bm) = typed.to_wire();
        let bm = bm.unwrap_or_default();
        let bits = match decode(&t, &msg)? {
            Reply::DmaUnmap(Some(u), Some((b, bits)))
                if u.addr == iova && u.size == size && u.flags == req.flags && b == bm =>
            {
                bits.to_vec()
            }
            _ => return Err(t.violation("DMA_UNMAP(GET_DIRTY_BITMAP) reply does not match the request".into())),
        };
        write_lock(&self.dma.table).remove_exact(iova, size);
        Ok(bits)
    }

    /// The DMA mappings currently made (as the client recorded them).
    pub fn dma_mappings(&self) -> Vec<DmaMapping> {
        read_lock(&self.dma.table).iter().cloned().collect()
    }
}
