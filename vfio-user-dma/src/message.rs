// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Message-based DMA: regions mapped without an fd are reached with
//! vfio-user DMA_READ / DMA_WRITE messages sent by the server.

use std::sync::{Arc, Weak};

use crate::error::{Error, Result};
use crate::region::Region;

/// Sends DMA_READ / DMA_WRITE messages to the client. Implemented by the
/// server crate; [`DmaSpace`](crate::DmaSpace) splits transfers so that no single call exceeds
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

fn chunk_size(t: &dyn DmaTransport) -> usize {
    t.max_data_xfer_size().max(1)
}

/// Reads message-region memory of `region` at `[iova, iova + buf.len())` through
/// `transport` (`ENOTCONN` without one), in chunks. The region is not kept alive while a
/// chunk waits for the client (see `access::unpinned`): each chunk first checks with `pin`
/// (the DMA space's "is this region still mapped at this address") that it is still
/// mapped, so a transfer stops (`EFAULT`) once the region is unmapped.
pub(crate) fn read(
    transport: Option<Arc<dyn DmaTransport>>,
    pin: impl Fn(u64) -> Result<Arc<Region>>,
    iova: u64,
    buf: &mut [u8],
) -> Result<()> {
    let t = transport.ok_or(Error::NoTransport)?;
    let chunk = chunk_size(t.as_ref());
    let mut addr = iova;
    for part in buf.chunks_mut(chunk) {
        drop(pin(addr)?);
        t.dma_read(addr, part)?;
        addr += part.len() as u64;
    }
    Ok(())
}

/// Writes message-region memory of `region` at `iova` (region offset `off`) through
/// `transport`, in chunks, marking the pages of each chunk dirty; `pin` as for [`read`].
///
/// Pages are marked before the message is sent (so that a concurrent unmap-with-dirty-bitmap
/// reports them) and again after the reply (so that a report taken while the write was in
/// flight does not lose it). The region is not kept alive while waiting for the client.
pub(crate) fn write(
    transport: Option<Arc<dyn DmaTransport>>,
    pin: impl Fn(u64) -> Result<Arc<Region>>,
    region: &Weak<Region>,
    iova: u64,
    off: u64,
    data: &[u8],
) -> Result<()> {
    let t = transport.ok_or(Error::NoTransport)?;
    let chunk = chunk_size(t.as_ref());
    let mut done = 0u64;
    for part in data.chunks(chunk) {
        let len = part.len() as u64;
        pin(iova + done)?.dirty().mark(off + done, len);
        let res = t.dma_write(iova + done, part);
        // A failed write may still have changed part of the memory.
        if let Some(r) = region.upgrade() {
            r.dirty().mark(off + done, len);
        }
        res?;
        done += len;
    }
    Ok(())
}
