// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Message DMA on request: DMA_READ / DMA_WRITE to the client for any mapped range,
//! whatever backs it.
//!
//! [`DmaSpace::read`] and [`DmaSpace::write`] copy locally wherever the client passed an fd
//! and use messages only for mappings without one. A device may prefer messages anyway
//! (the client then does the access itself, and knows which pages it wrote), or a test
//! may want to exercise the message path on memory it also maps: [`DmaSpace::read_by_message`]
//! and [`DmaSpace::write_by_message`] send every byte through the [`DmaTransport`].

use std::sync::{Arc, Weak};

use crate::error::{Error, Result};
use crate::message::DmaTransport;
use crate::region::Region;
use crate::space::{find, DmaSpace};

/// One mapping's part of an access: the region (not kept alive), the address of the
/// part's first byte, its offset in the caller's buffer and its length.
struct Part {
    region: Weak<Region>,
    iova: u64,
    buf_off: usize,
    len: usize,
}

impl DmaSpace {
    /// Splits `[iova, iova + len)` at mapping boundaries, checking first that every byte
    /// is mapped (`EFAULT`) with the needed permission (`EACCES`).
    fn message_parts(&self, iova: u64, len: usize, write: bool) -> Result<Vec<Part>> {
        let snap = self.snapshot.load();
        let mut parts = Vec::new();
        let mut done = 0usize;
        while done < len {
            let addr = iova.checked_add(done as u64).ok_or(Error::Unmapped { iova: u64::MAX })?;
            let region = find(&snap, addr).ok_or(Error::Unmapped { iova: addr })?;
            region.check(addr, write)?;
            let n = (len - done).min(usize::try_from(region.end() - addr).unwrap_or(usize::MAX));
            parts.push(Part { region: Arc::downgrade(region), iova: addr, buf_off: done, len: n });
            done += n;
        }
        Ok(parts)
    }

    /// The transport and the largest transfer of one message.
    fn message_transport(&self) -> Result<(Arc<dyn DmaTransport>, usize)> {
        let t = self.transport().ok_or(Error::NoTransport)?;
        let chunk = t.max_data_xfer_size().max(1);
        Ok((t, chunk))
    }

    /// Reads `buf.len()` bytes of client memory at `iova` with DMA_READ messages, even
    /// where the mapping was made with an fd.
    ///
    /// The whole range must be mapped (`EFAULT`) and readable (`EACCES`); this is checked
    /// before any message is sent. The range is split at mapping boundaries, and each
    /// part into messages of at most the transport's
    /// [`max_data_xfer_size`](DmaTransport::max_data_xfer_size), as for mappings without
    /// fd. No mapping is kept alive while a message waits for the client: each message
    /// first checks that its mapping is still there, so a transfer stops (`EFAULT`) once
    /// the mapping is unmapped. Without a transport: `ENOTCONN`.
    pub fn read_by_message(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let parts = self.message_parts(iova, buf.len(), false)?;
        let (t, chunk) = self.message_transport()?;
        for p in parts {
            let mut addr = p.iova;
            for piece in buf[p.buf_off..p.buf_off + p.len].chunks_mut(chunk) {
                drop(self.pin(&p.region, addr)?);
                t.dma_read(addr, piece)?;
                addr += piece.len() as u64;
            }
        }
        Ok(())
    }

    /// Writes `data` to client memory at `iova` with DMA_WRITE messages, even where the
    /// mapping was made with an fd.
    ///
    /// Same checks, splitting and errors as [`read_by_message`](Self::read_by_message),
    /// with `EACCES` for a mapping that is not writable. The pages are *not* marked in the
    /// dirty log: the client makes the write itself and knows which pages it changed (as
    /// with libvfio-user's message-based `vfu_sgl_write`). [`write`](Self::write), which
    /// also marks message-only mappings, remains the call for DMA the log must show.
    pub fn write_by_message(&self, iova: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let parts = self.message_parts(iova, data.len(), true)?;
        let (t, chunk) = self.message_transport()?;
        for p in parts {
            let mut addr = p.iova;
            for piece in data[p.buf_off..p.buf_off + p.len].chunks(chunk) {
                drop(self.pin(&p.region, addr)?);
                t.dma_write(addr, piece)?;
                addr += piece.len() as u64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::FileExt;
    use std::sync::Mutex;

    use super::*;
    use crate::region::{DmaProt, MapRequest};

    /// The client's side: its own memory (a byte vector from address 0) and a log of the
    /// messages it received.
    struct FakeClient {
        mem: Mutex<Vec<u8>>,
        log: Mutex<Vec<(&'static str, u64, usize)>>,
        max: usize,
    }

    impl FakeClient {
        fn new(size: usize, max: usize) -> Arc<Self> {
            Arc::new(FakeClient { mem: Mutex::new(vec![0; size]), log: Mutex::new(Vec::new()), max })
        }

        fn log(&self) -> Vec<(&'static str, u64, usize)> {
            self.log.lock().unwrap().clone()
        }
    }

    impl DmaTransport for FakeClient {
        fn max_data_xfer_size(&self) -> usize {
            self.max
        }

        fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<()> {
            self.log.lock().unwrap().push(("read", iova, buf.len()));
            let m = self.mem.lock().unwrap();
            buf.copy_from_slice(&m[iova as usize..iova as usize + buf.len()]);
            Ok(())
        }

        fn dma_write(&self, iova: u64, data: &[u8]) -> Result<()> {
            self.log.lock().unwrap().push(("write", iova, data.len()));
            self.mem.lock().unwrap()[iova as usize..iova as usize + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    fn memfd(size: u64) -> File {
        let f = File::from(rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap());
        f.set_len(size).unwrap();
        f
    }

    fn map(space: &DmaSpace, iova: u64, size: u64, prot: DmaProt, fd: Option<&File>) {
        let fd = fd.map(|f| OwnedFd::from(f.try_clone().unwrap()));
        space.map(MapRequest { iova, size, prot, fd, ..Default::default() }).unwrap();
    }

    #[test]
    fn fd_mappings_are_reached_by_messages_split_at_the_transfer_limit() {
        let space = DmaSpace::default();
        let file = memfd(0x2000);
        map(&space, 0x1000, 0x2000, DmaProt::READ_WRITE, Some(&file));
        map(&space, 0x3000, 0x1000, DmaProt::READ_WRITE, None);
        let client = FakeClient::new(0x4000, 1024);
        space.set_transport(Some(client.clone()));
        space.start_logging(4096, &[]).unwrap();

        // 4 KiB across the fd mapping's end into the message mapping: split at the mapping
        // boundary, then at 1024 bytes.
        let data: Vec<u8> = (0..0x1000u32).map(|i| i as u8).collect();
        space.write_by_message(0x2800, &data).unwrap();
        assert_eq!(
            client.log(),
            vec![("write", 0x2800, 1024), ("write", 0x2c00, 1024), ("write", 0x3000, 1024), ("write", 0x3400, 1024)]
        );
        assert_eq!(&client.mem.lock().unwrap()[0x2800..0x3800], &data[..]);
        // The fd was not touched: the client wrote (here, its own vector).
        let mut local = vec![0xffu8; 0x800];
        file.read_exact_at(&mut local, 0x1800).unwrap();
        assert!(local.iter().all(|&b| b == 0));
        // The client knows what it wrote: nothing is in the server's dirty log.
        assert_eq!(space.report(0x1000, 0x3000, 4096).unwrap(), vec![0]);

        let mut back = vec![0u8; 0x1000];
        space.read_by_message(0x2800, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(
            client.log()[4..],
            [("read", 0x2800, 1024), ("read", 0x2c00, 1024), ("read", 0x3000, 1024), ("read", 0x3400, 1024)]
        );
        // A 2048-byte read inside one mapping takes two messages of 1024.
        space.read_by_message(0x1000, &mut back[..2048]).unwrap();
        assert_eq!(client.log()[8..], [("read", 0x1000, 1024), ("read", 0x1400, 1024)]);
        // The ordinary path still copies locally where there is an fd.
        space.write(0x1000, b"local").unwrap();
        assert_eq!(client.log().len(), 10);
        let mut five = [0u8; 5];
        file.read_exact_at(&mut five, 0).unwrap();
        assert_eq!(&five, b"local");
        assert!(space.read_by_message(0x1000, &mut []).is_ok());
        assert!(space.write_by_message(0x1000, &[]).is_ok());
        assert_eq!(client.log().len(), 10, "empty accesses send nothing");
    }

    #[test]
    fn ranges_and_permissions_are_checked_before_any_message() {
        let space = DmaSpace::default();
        let file = memfd(0x1000);
        map(&space, 0x1000, 0x1000, DmaProt::READ_ONLY, Some(&file));
        map(&space, 0x2000, 0x1000, DmaProt::WRITE_ONLY, None);
        let mut buf = [0u8; 16];
        // No transport yet: the range is checked first, then ENOTCONN.
        assert_eq!(space.read_by_message(0x5000, &mut buf).unwrap_err().errno(), libc::EFAULT);
        assert_eq!(space.read_by_message(0x1000, &mut buf).unwrap_err().errno(), libc::ENOTCONN);
        let client = FakeClient::new(0x4000, 0);
        space.set_transport(Some(client.clone()));
        assert_eq!(space.write_by_message(0x1ff8, &buf).unwrap_err().errno(), libc::EACCES);
        assert_eq!(space.read_by_message(0x1ff8, &mut buf).unwrap_err().errno(), libc::EACCES);
        assert_eq!(space.read_by_message(0x2ff8, &mut buf).unwrap_err().errno(), libc::EACCES);
        assert_eq!(space.write_by_message(0x2ff8, &buf).unwrap_err().errno(), libc::EFAULT, "past the end");
        assert_eq!(space.read_by_message(u64::MAX, &mut buf).unwrap_err().errno(), libc::EFAULT);
        assert!(client.log().is_empty(), "nothing was sent");
        // A transfer limit of 0 counts as 1.
        space.read_by_message(0x1000, &mut buf[..3]).unwrap();
        assert_eq!(client.log(), vec![("read", 0x1000, 1), ("read", 0x1001, 1), ("read", 0x1002, 1)]);
    }

    /// A transport that unmaps the mapping while its first message is in flight.
    struct Unmapper(Arc<DmaSpace>, Mutex<usize>);

    impl DmaTransport for Unmapper {
        fn max_data_xfer_size(&self) -> usize {
            4
        }

        fn dma_read(&self, _: u64, _: &mut [u8]) -> Result<()> {
            *self.1.lock().unwrap() += 1;
            self.0.unmap(0x1000, 0x1000)
        }

        fn dma_write(&self, _: u64, _: &[u8]) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_mapping_is_held_across_a_message_and_an_unmap_stops_the_transfer() {
        let space = Arc::new(DmaSpace::default());
        map(&space, 0x1000, 0x1000, DmaProt::READ_WRITE, Some(&memfd(0x1000)));
        let t = Arc::new(Unmapper(space.clone(), Mutex::new(0)));
        space.set_transport(Some(t.clone()));
        // The unmap inside the first message returns at once (nothing pinned), and the
        // second message finds the mapping gone.
        let e = space.read_by_message(0x1000, &mut [0u8; 8]).unwrap_err();
        assert!(matches!(e, Error::Unmapped { iova: 0x1004 }), "{e:?}");
        assert_eq!(*t.1.lock().unwrap(), 1);
        space.set_transport(None);
    }
}
