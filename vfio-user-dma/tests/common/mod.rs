// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{memfd_create, MemfdFlags};
use vm_memory::{FileOffset, MmapRegion, VolatileMemory};

use vfio_user_dma::{DmaProt, DmaTransport, Error, MapRequest, Result};

pub const PAGE: u64 = 4096;

/// A memfd standing for client RAM, plus a second mapping of it ("the
/// client's view") to check what the device did.
pub struct Mem {
    pub file: File,
    pub size: u64,
    view: MmapRegion,
}

impl Mem {
    /// A memfd sealed against shrinking, as a VMM passes for full speed: mmapped.
    pub fn new(size: u64) -> Mem {
        let m = Mem::unsealed(size);
        rustix::fs::fcntl_add_seals(&m.file, rustix::fs::SealFlags::SHRINK).unwrap();
        m
    }

    /// A memfd without seals: the space reaches it with pread/pwrite.
    pub fn unsealed(size: u64) -> Mem {
        let fd = memfd_create("vfio-user-dma-test", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        let file = File::from(fd);
        file.set_len(size).unwrap();
        let view = MmapRegion::from_file(FileOffset::new(file.try_clone().unwrap(), 0), size as usize).unwrap();
        Mem { file, size, view }
    }

    pub fn fd(&self) -> OwnedFd {
        OwnedFd::from(self.file.try_clone().unwrap())
    }

    /// Reads `len` bytes at file offset `off` through the second mapping.
    pub fn peek(&self, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.view.get_slice(off as usize, len).unwrap().copy_to(&mut v[..]);
        v
    }

    /// Writes through the second mapping.
    pub fn poke(&self, off: u64, data: &[u8]) {
        self.view.get_slice(off as usize, data.len()).unwrap().copy_from(data);
    }
}

/// A DMA_MAP request for `mem` at file offset `off`.
pub fn req(mem: &Mem, iova: u64, size: u64, off: u64, prot: DmaProt) -> MapRequest {
    MapRequest { iova, size, file_offset: off, prot, fd: Some(mem.fd()), file_io: false }
}

/// A request without fd (message-based region).
pub fn msg_req(iova: u64, size: u64, prot: DmaProt) -> MapRequest {
    MapRequest { iova, size, prot, ..Default::default() }
}

/// Fake client for message-based DMA: "client RAM" at `base`, recording the
/// size of each DMA_READ / DMA_WRITE.
pub struct FakeClient {
    pub base: u64,
    pub ram: Mutex<Vec<u8>>,
    pub max_xfer: usize,
    pub reads: Mutex<Vec<usize>>,
    pub writes: Mutex<Vec<usize>>,
    /// Fail the n-th (0-based) message with EIO when set.
    pub fail_at: Option<usize>,
    pub calls: AtomicUsize,
}

impl FakeClient {
    pub fn new(base: u64, size: usize, max_xfer: usize) -> Arc<FakeClient> {
        Arc::new(FakeClient {
            base,
            ram: Mutex::new(vec![0; size]),
            max_xfer,
            reads: Mutex::new(Vec::new()),
            writes: Mutex::new(Vec::new()),
            fail_at: None,
            calls: AtomicUsize::new(0),
        })
    }

    fn range(&self, iova: u64, len: usize) -> Result<std::ops::Range<usize>> {
        let ram = self.ram.lock().unwrap();
        let start = iova.checked_sub(self.base).ok_or(Error::from_errno(libc::EFAULT))? as usize;
        if start + len > ram.len() {
            return Err(Error::from_errno(libc::EFAULT));
        }
        Ok(start..start + len)
    }

    fn tick(&self) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_at == Some(n) {
            return Err(Error::from_errno(libc::EIO));
        }
        Ok(())
    }
}

impl DmaTransport for FakeClient {
    fn max_data_xfer_size(&self) -> usize {
        self.max_xfer
    }

    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        assert!(buf.len() <= self.max_xfer.max(1), "chunk larger than max_data_xfer_size");
        self.tick()?;
        self.reads.lock().unwrap().push(buf.len());
        let r = self.range(iova, buf.len())?;
        buf.copy_from_slice(&self.ram.lock().unwrap()[r]);
        Ok(())
    }

    fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()> {
        assert!(data.len() <= self.max_xfer.max(1), "chunk larger than max_data_xfer_size");
        self.tick()?;
        self.writes.lock().unwrap().push(data.len());
        let r = self.range(iova, data.len())?;
        self.ram.lock().unwrap()[r].copy_from_slice(data);
        Ok(())
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}
