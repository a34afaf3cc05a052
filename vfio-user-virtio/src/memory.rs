// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! [`DmaView`]: a vm-memory [`GuestMemory`] over every kind of DMA mapping, so that
//! `virtio-queue` and device code run unchanged on any client memory.
//!
//! Ranges inside the server's vm-memory view ([`DmaSpace::memory`]: mmapped read-write
//! mappings) are handed out as zero-copy slices of that mapping, and writes through them
//! mark the dirty log by themselves (the slices keep the mapping's bitmap). Any other range
//! (DMA_MAP without fd, reached by DMA_READ / DMA_WRITE messages; fds the server accesses
//! with `pread` / `pwrite`; whatever the view leaves out) is *bounced*: a private buffer
//! is filled with [`DmaSpace::read`] when the access may read, and written back with
//! [`DmaSpace::write`] (which checks permissions and marks the dirty log) by
//! [`DmaView::flush`] when it may write. Bounced writable slices are written back whole,
//! so code writing through a view writes every byte of what it asks for with
//! `Permissions::Write` (vm-memory's `Bytes::write*` and `store` do).
//!
//! A view is meant for one batch of work on one thread: take one, process requests, call
//! [`flush`](DmaView::flush) before publishing anything to the driver that depends on the
//! bounced writes (the transport flushes after each request and after each used-ring
//! update), and drop it. Bounce buffers are bounded by [`DmaView::with_limit`].

use std::cell::{Cell, RefCell};
use std::iter::FusedIterator;
use std::sync::Arc;

use vfio_user_dma::{DirtyBitmap, DmaMemory, DmaSpace};
use vm_memory::bitmap::RefSlice;
use vm_memory::guest_memory::GuestMemorySliceIterator;
use vm_memory::{
    GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryError, GuestMemoryRegion, MemoryRegionAddress,
    Permissions, VolatileSlice,
};

/// Bytes a view may bounce before [`flush`](DmaView::flush) by default: more than any
/// request a virtio-blk driver builds (the device announces `seg_max` x `size_max`).
pub const DEFAULT_BOUNCE_LIMIT: usize = 8 << 20;

/// The dirty-bitmap slice of a [`DmaView`] slice: the mapping's bitmap for zero-copy
/// slices, none for bounced ones ([`DmaView::flush`] marks those).
pub type ViewBitmapSlice<'a> = Option<RefSlice<'a, DirtyBitmap>>;

/// One bounced range.
struct Bounce {
    iova: u64,
    len: usize,
    /// `u64` words, so that aligned atomic accesses (ring indexes) work on the copy.
    buf: Box<[u64]>,
    write_back: bool,
}

/// A [`GuestMemory`] over all of a client's DMA mappings (see the module documentation).
pub struct DmaView<'s> {
    space: &'s DmaSpace,
    fast: Arc<DmaMemory>,
    bounces: RefCell<Vec<Bounce>>,
    bounced: Cell<usize>,
    limit: usize,
    /// A DMA message failed with `ECANCELED` (see [`DmaView::cancelled`]).
    cancelled: Cell<bool>,
}

impl std::fmt::Debug for DmaView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaView").field("bounced", &self.bounced.get()).field("limit", &self.limit).finish()
    }
}

fn invalid(iova: u64) -> GuestMemoryError {
    GuestMemoryError::InvalidGuestAddress(GuestAddress(iova))
}

impl<'s> DmaView<'s> {
    /// A view of `space` as it is mapped now, bouncing at most [`DEFAULT_BOUNCE_LIMIT`]
    /// bytes between flushes.
    pub fn new(space: &'s DmaSpace) -> Self {
        Self::with_limit(space, DEFAULT_BOUNCE_LIMIT)
    }

    /// A view bouncing at most `limit` bytes between flushes; accesses beyond fail with
    /// `InvalidGuestAddress`.
    pub fn with_limit(space: &'s DmaSpace, limit: usize) -> Self {
        DmaView {
            space,
            fast: space.memory(),
            bounces: RefCell::new(Vec::new()),
            bounced: Cell::new(0),
            limit,
            cancelled: Cell::new(false),
        }
    }

    /// Whether an access of this view failed because the server cancelled its wait for the
    /// client's DMA reply (`ECANCELED`: a reset or migration STOP quiescing the queues,
    /// see `vfio_user_server::DmaHandle::cancel_waits`): what was served through it is
    /// incomplete and is to be served again, or dropped.
    pub fn cancelled(&self) -> bool {
        self.cancelled.get()
    }

    /// Notes a failed access's cause.
    fn failed(&self, e: &vfio_user_dma::Error) {
        if e.errno() == libc::ECANCELED {
            self.cancelled.set(true);
        }
    }

    /// Whether `[iova, iova + len)` lies in one zero-copy mapping (no bouncing needed).
    pub fn is_direct(&self, iova: u64, len: u64) -> bool {
        self.fast.find_region(GuestAddress(iova)).is_some_and(|r| {
            let off = iova - r.start_addr().0;
            off.checked_add(len).is_some_and(|end| end <= r.len())
        })
    }

    /// Writes every bounced writable range back to client memory, in the order they were
    /// handed out, and frees the bounce buffers. Stops at the first failure (the mapping
    /// went away, or the client did not answer a DMA_WRITE).
    pub fn flush(&mut self) -> vfio_user_dma::Result<()> {
        let bounces = std::mem::take(self.bounces.get_mut());
        self.bounced.set(0);
        for b in bounces.iter().filter(|b| b.write_back) {
            // SAFETY: `buf` holds at least `len` bytes (`len.div_ceil(8)` words); `&mut self`
            // guarantees that no slice handed out by `get_slices` (which borrow `self`) is
            // alive any more, so nothing else accesses the buffer.
            let bytes = unsafe { std::slice::from_raw_parts(b.buf.as_ptr().cast::<u8>(), b.len) };
            if let Err(e) = self.space.write(b.iova, bytes) {
                self.failed(&e);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether `[iova, iova + count)` is mapped in the space with `access`.
    fn space_allows(&self, iova: u64, count: usize, access: Permissions) -> bool {
        let Some(end) = iova.checked_add(count as u64) else { return false };
        let mut at = iova;
        while at < end {
            let Some(r) = self.space.region_at(at) else { return false };
            if (access.allow(Permissions::Read) && !r.prot.read()) || (access.has_write() && !r.prot.write()) {
                return false;
            }
            at = r.iova.saturating_add(r.size);
        }
        true
    }

    /// Bounces `[iova, iova + len)` and returns a slice of the copy.
    fn bounce(
        &self,
        iova: u64,
        len: usize,
        access: Permissions,
    ) -> vm_memory::guest_memory::Result<VolatileSlice<'_, ViewBitmapSlice<'_>>> {
        let total = self.bounced.get().checked_add(len).filter(|&t| t <= self.limit).ok_or_else(|| invalid(iova))?;
        if !self.space_allows(iova, len, access) {
            return Err(invalid(iova));
        }
        let mut words: Vec<u64> = Vec::new();
        words.try_reserve_exact(len.div_ceil(8)).map_err(|_| invalid(iova))?;
        words.resize(len.div_ceil(8), 0);
        let mut buf = words.into_boxed_slice();
        let ptr = buf.as_mut_ptr().cast::<u8>();
        if access.allow(Permissions::Read) {
            // SAFETY: `buf` holds at least `len` bytes and is exclusively ours here.
            let bytes = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
            self.space.read(iova, bytes).map_err(|e| {
                self.failed(&e);
                invalid(iova)
            })?;
        }
        self.bounced.set(total);
        self.bounces.borrow_mut().push(Bounce { iova, len, buf, write_back: access.has_write() });
        // SAFETY: `ptr` points to `len` bytes of a heap buffer owned by `self.bounces`;
        // moving the `Box` into the vector does not move the buffer, and it is freed only
        // by `flush` (`&mut self`) or drop, after every slice borrowing `self` is gone.
        // Nothing else accesses the buffer meanwhile.
        Ok(unsafe { VolatileSlice::with_bitmap(ptr, len, None, None) })
    }
}

/// The slices of one [`DmaView::get_slices`] call.
pub struct ViewSlices<'a>(std::vec::IntoIter<vm_memory::guest_memory::Result<VolatileSlice<'a, ViewBitmapSlice<'a>>>>);

impl<'a> Iterator for ViewSlices<'a> {
    type Item = vm_memory::guest_memory::Result<VolatileSlice<'a, ViewBitmapSlice<'a>>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl FusedIterator for ViewSlices<'_> {}

impl<'a> GuestMemorySliceIterator<'a, ViewBitmapSlice<'a>> for ViewSlices<'a> {}

impl GuestMemory for DmaView<'_> {
    type PhysicalMemory = DmaMemory;
    type Bitmap = Option<DirtyBitmap>;

    fn check_range(&self, addr: GuestAddress, count: usize, access: Permissions) -> bool {
        self.is_direct(addr.0, count as u64) || self.space_allows(addr.0, count, access)
    }

    fn get_slices<'a>(
        &'a self,
        addr: GuestAddress,
        count: usize,
        access: Permissions,
    ) -> vm_memory::guest_memory::Result<impl GuestMemorySliceIterator<'a, ViewBitmapSlice<'a>>> {
        let mut out = Vec::new();
        let (mut at, mut left) = (addr.0, count);
        while left > 0 {
            let Some(region) = self.fast.find_region(GuestAddress(at)) else {
                // Not in the zero-copy view: bounce the rest.
                out.push(self.bounce(at, left, access));
                break;
            };
            let off = at - region.start_addr().0;
            let n = usize::try_from(region.len() - off).map_or(left, |room| room.min(left));
            match region.get_slice(MemoryRegionAddress(off), n) {
                Ok(s) => {
                    // SAFETY: same memory and length as `s`, a slice of a mapping that
                    // `self.fast` keeps mapped for as long as `self` is borrowed; only the
                    // bitmap's type changes (the same bitmap, as an `Option`).
                    let s2 = unsafe {
                        VolatileSlice::with_bitmap(s.ptr_guard_mut().as_ptr(), s.len(), Some(*s.bitmap()), None)
                    };
                    out.push(Ok(s2));
                }
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
            at += n as u64;
            left -= n;
        }
        Ok(ViewSlices(out.into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vfio_user_dma::{DmaProt, DmaTransport, MapRequest};
    use vm_memory::Bytes;

    /// Client memory behind message mappings.
    struct Ram(Mutex<Vec<u8>>);

    impl DmaTransport for Ram {
        fn max_data_xfer_size(&self) -> usize {
            1024
        }
        fn dma_read(&self, iova: u64, buf: &mut [u8]) -> vfio_user_dma::Result<()> {
            buf.copy_from_slice(&self.0.lock().unwrap()[iova as usize..][..buf.len()]);
            Ok(())
        }
        fn dma_write(&self, iova: u64, data: &[u8]) -> vfio_user_dma::Result<()> {
            self.0.lock().unwrap()[iova as usize..][..data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    /// [0, 0x4000) mmapped, [0x4000, 0x8000) by message, [0x8000, 0x9000) read-only message.
    fn space() -> (DmaSpace, Arc<Ram>) {
        let space = DmaSpace::default();
        let ram = Arc::new(Ram(Mutex::new((0..0x9000u32).map(|i| i as u8).collect())));
        space.set_transport(Some(ram.clone()));
        // Sealed against shrinking: the space mmaps it (unsealed fds are reached by pread).
        let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
        let fd = rustix::fs::memfd_create("v", flags).unwrap();
        rustix::fs::ftruncate(&fd, 0x4000).unwrap();
        rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).unwrap();
        space
            .map(MapRequest { iova: 0, size: 0x4000, prot: DmaProt::READ_WRITE, fd: Some(fd), ..Default::default() })
            .unwrap();
        space.map(MapRequest { iova: 0x4000, size: 0x4000, prot: DmaProt::READ_WRITE, ..Default::default() }).unwrap();
        space.map(MapRequest { iova: 0x8000, size: 0x1000, prot: DmaProt::READ_ONLY, ..Default::default() }).unwrap();
        (space, ram)
    }

    #[test]
    fn direct_and_bounced_ranges() {
        let (space, ram) = space();
        let mut view = DmaView::new(&space);
        assert!(view.is_direct(0x100, 0x100));
        assert!(!view.is_direct(0x3f00, 0x200), "runs into the message mapping");
        assert!(!view.is_direct(0x4000, 1));
        // A read across both kinds: zero-copy part from the memfd, bounced part from RAM.
        view.write_slice(&[7u8; 0x100], GuestAddress(0x3f00)).unwrap();
        let mut got = [0u8; 0x200];
        view.read_slice(&mut got, GuestAddress(0x3f00)).unwrap();
        assert_eq!(&got[..0x100], &[7u8; 0x100], "the memfd part was written at once");
        assert!(
            got[0x100..].iter().enumerate().all(|(i, &b)| b == (0x4000 + i) as u8),
            "the message part is the client's"
        );
        // Bounced writes reach the client on flush, in order.
        view.write_obj(0xabcdu16, GuestAddress(0x5000)).unwrap();
        view.write_obj(0x1234u16, GuestAddress(0x5000)).unwrap();
        assert_eq!(ram.0.lock().unwrap()[0x5000], 0x00, "not before the flush");
        view.flush().unwrap();
        assert_eq!(&ram.0.lock().unwrap()[0x5000..0x5002], &0x1234u16.to_le_bytes());
        // Aligned atomic accesses work on bounce buffers (ring indexes).
        view.store(0x55aau16, GuestAddress(0x6002), std::sync::atomic::Ordering::Release).unwrap();
        assert_eq!(view.load::<u16>(GuestAddress(0x4000), std::sync::atomic::Ordering::Acquire).unwrap(), 0x0100);
        view.flush().unwrap();
        assert_eq!(&ram.0.lock().unwrap()[0x6002..0x6004], &0x55aau16.to_le_bytes());
    }

    #[test]
    fn permissions_holes_and_the_bounce_limit() {
        let (space, _ram) = space();
        let mut view = DmaView::with_limit(&space, 0x1000);
        assert!(view.check_range(GuestAddress(0x3000), 0x2000, Permissions::ReadWrite));
        assert!(view.check_range(GuestAddress(0x8000), 0x1000, Permissions::Read));
        assert!(!view.check_range(GuestAddress(0x8000), 0x1000, Permissions::Write), "read-only mapping");
        assert!(!view.check_range(GuestAddress(0x8f00), 0x200, Permissions::Read), "runs off the end");
        assert!(!view.check_range(GuestAddress(u64::MAX - 1), 4, Permissions::Read), "wraps");
        assert!(view.write_obj(1u8, GuestAddress(0x8000)).is_err(), "no write to a read-only mapping");
        assert!(view.read_obj::<u32>(GuestAddress(0x9000)).is_err(), "unmapped");
        let mut big = vec![0u8; 0x1001];
        assert!(view.read_slice(&mut big, GuestAddress(0x4000)).is_err(), "beyond the bounce limit");
        let mut fits = vec![0u8; 0x1000];
        view.read_slice(&mut fits, GuestAddress(0x4000)).unwrap();
        assert!(view.read_obj::<u8>(GuestAddress(0x4000)).is_err(), "the limit counts until a flush");
        view.flush().unwrap();
        assert!(view.read_obj::<u8>(GuestAddress(0x4000)).is_ok(), "and is reset by it");
        // Direct memory is never limited.
        let mut direct = vec![0u8; 0x4000];
        view.read_slice(&mut direct, GuestAddress(0)).unwrap();
    }
}
