// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Message-based DMA: regions mapped without an fd are reached with
//! vfio-user DMA_READ / DMA_WRITE messages sent by the server.

use crate::error::{Error, Result};
use crate::region::Region;
use crate::space::DmaSpace;

/// Sends DMA_READ / DMA_WRITE messages to the client. Implemented by the
/// server crate; [`DmaSpace`] splits transfers so that no single call exceeds
/// [`max_data_xfer_size`](DmaTransport::max_data_xfer_size).
pub trait DmaTransport: Send + Sync {
    /// The client's `max_data_xfer_size` capability (largest `count` of one
    /// message). `0` is treated as 1.
    fn max_data_xfer_size(&self) -> usize;
    /// Reads `buf.len()` bytes of client memory at `iova` (one DMA_READ).
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()>;
    /// Writes `data` to client memory at `iova` (one DMA_WRITE).
    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()>;
}

impl DmaSpace {
    fn chunk_size(t: &dyn DmaTransport) -> usize {
        t.max_data_xfer_size().max(1)
    }

    /// Reads message-region memory `[iova, iova + buf.len())`, in chunks.
    pub(crate) fn message_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        let t = self.transport().ok_or(Error::NoTransport)?;
        let chunk = Self::chunk_size(t.as_ref());
        let mut addr = iova;
        for part in buf.chunks_mut(chunk) {
            t.dma_read(addr, part)?;
            addr += part.len() as u64;
        }
        Ok(())
    }

    /// Writes message-region memory of `region` at region offset `off`, in
    /// chunks, marking the pages of each completed chunk dirty.
    pub(crate) fn message_write(&self, region: &Region, off: u64, data: &[u8]) -> Result<()> {
        let t = self.transport().ok_or(Error::NoTransport)?;
        let chunk = Self::chunk_size(t.as_ref());
        let mut off = off;
        for part in data.chunks(chunk) {
            let res = t.dma_write(region.iova + off, part);
            // A failed write may still have changed part of the memory.
            region.dirty().mark(off, part.len() as u64);
            res?;
            off += part.len() as u64;
        }
        Ok(())
    }
}
