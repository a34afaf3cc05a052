// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Message-based DMA (regions mapped without fd) through a fake transport.

mod common;

use std::sync::Arc;

use common::*;
use vfio_user_dma::{DmaProt, DmaSpace, DmaTransport, Error};

const BASE: u64 = 0x8000_0000;

fn setup(max_xfer: usize) -> (DmaSpace, Arc<FakeClient>) {
    let s = DmaSpace::default();
    s.map(msg_req(BASE, 16 * PAGE, DmaProt::READ_WRITE)).unwrap();
    let client = FakeClient::new(BASE, 16 * PAGE as usize, max_xfer);
    s.set_transport(Some(client.clone() as Arc<dyn DmaTransport>));
    (s, client)
}

#[test]
fn transfers_are_split_into_max_data_xfer_size_chunks() {
    let (s, client) = setup(1000);
    let data = pattern(9, 2500);
    s.write(BASE + 10, &data).unwrap();
    assert_eq!(*client.writes.lock().unwrap(), vec![1000, 1000, 500]);
    assert_eq!(client.ram.lock().unwrap()[10..2510], data[..]);
    let mut buf = vec![0u8; 2500];
    s.read(BASE + 10, &mut buf).unwrap();
    assert_eq!(*client.reads.lock().unwrap(), vec![1000, 1000, 500]);
    assert_eq!(buf, data);
    // Exactly one chunk.
    client.reads.lock().unwrap().clear();
    s.read(BASE, &mut buf[..1000]).unwrap();
    assert_eq!(*client.reads.lock().unwrap(), vec![1000]);
    // Typed access.
    s.write_obj(BASE + 0x100, &0x0102_0304_0506_0708u64).unwrap();
    assert_eq!(s.read_obj::<u64>(BASE + 0x100).unwrap(), 0x0102_0304_0506_0708);
}

#[test]
fn zero_max_xfer_is_treated_as_one() {
    let (s, client) = setup(0);
    s.write(BASE, &[1, 2, 3]).unwrap();
    assert_eq!(*client.writes.lock().unwrap(), vec![1, 1, 1]);
}

#[test]
fn no_transport_is_enotconn() {
    let (s, _client) = setup(4096);
    s.set_transport(None);
    let e = s.read_obj::<u32>(BASE).unwrap_err();
    assert!(matches!(e, Error::NoTransport));
    assert_eq!(e.errno(), libc::ENOTCONN);
    assert_eq!(s.write(BASE, &[1]).unwrap_err().errno(), libc::ENOTCONN);
}

#[test]
fn transport_errors_propagate() {
    let s = DmaSpace::default();
    s.map(msg_req(BASE, 16 * PAGE, DmaProt::READ_WRITE)).unwrap();
    let mut c = FakeClient::new(BASE, 16 * PAGE as usize, 100);
    Arc::get_mut(&mut c).unwrap().fail_at = Some(2);
    s.set_transport(Some(c.clone()));
    let e = s.write(BASE, &[5; 1000]).unwrap_err();
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(*c.writes.lock().unwrap(), vec![100, 100], "stopped at the failing chunk");
}

#[test]
fn permissions_apply_to_message_regions() {
    let (s, client) = setup(4096);
    s.map(msg_req(BASE + 16 * PAGE, PAGE, DmaProt::READ_ONLY)).unwrap();
    assert_eq!(s.write(BASE + 16 * PAGE, &[1]).unwrap_err().errno(), libc::EACCES);
    // Spanning into the read-only region: refused before any message is sent.
    assert_eq!(s.write(BASE + 16 * PAGE - 1, &[1, 2]).unwrap_err().errno(), libc::EACCES);
    assert!(client.writes.lock().unwrap().is_empty());
    // Reading past the end of the client's RAM goes to the next region
    // (message too: the fake client rejects it with EFAULT).
    assert_eq!(s.read(BASE + 16 * PAGE - 1, &mut [0; 2]).unwrap_err().errno(), libc::EFAULT);
}

#[test]
fn mixed_mmap_and_message_regions() {
    let mem = Mem::new(2 * PAGE);
    let (s, client) = setup(512);
    // fd-backed memory right below the message region.
    s.map(req(&mem, BASE - 2 * PAGE, 2 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    let data = pattern(4, 3000);
    s.write(BASE - 1000, &data).unwrap();
    assert_eq!(mem.peek(2 * PAGE - 1000, 1000), data[..1000]);
    assert_eq!(client.ram.lock().unwrap()[..2000], data[1000..]);
    assert_eq!(*client.writes.lock().unwrap(), vec![512, 512, 512, 464]);
    let mut back = vec![0u8; 3000];
    s.read(BASE - 1000, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn message_writes_mark_pages_dirty() {
    let (s, _client) = setup(1000);
    s.start_logging(PAGE, &[]).unwrap();
    s.write(BASE + 3 * PAGE - 1, &[1, 2]).unwrap(); // pages 2 and 3
    s.write(BASE + 10 * PAGE, &[0; 5000]).unwrap(); // pages 10, 11
    s.read(BASE + 5 * PAGE, &mut [0; 100]).unwrap(); // reads do not dirty
    let bm = s.report(BASE, 16 * PAGE, PAGE).unwrap();
    assert_eq!(bm, vec![(1 << 2) | (1 << 3) | (1 << 10) | (1 << 11)]);
    assert_eq!(s.report(BASE, 16 * PAGE, PAGE).unwrap(), vec![0], "cleared by the report");
}

/// A transport whose first message blocks until the test lets it go, the way a
/// server's DMA request on its main socket waits for a reply that only the
/// request loop (the thread that also handles DMA_UNMAP) can read.
struct Gated {
    inflight: std::sync::mpsc::SyncSender<()>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl DmaTransport for Gated {
    fn max_data_xfer_size(&self) -> usize {
        PAGE as usize
    }
    fn dma_read(&self, _iova: u64, buf: &mut [u8]) -> vfio_user_dma::Result<()> {
        let _ = self.inflight.send(());
        let _ = self.release.lock().unwrap().recv();
        buf.fill(7);
        Ok(())
    }
    fn dma_write(&self, iova: u64, data: &[u8]) -> vfio_user_dma::Result<()> {
        self.dma_read(iova, &mut data.to_vec())
    }
}

/// Regression: an access to a message region held the region across the
/// round trip, so `unmap` on the thread that reads the replies waited for
/// `unmap_timeout` and returned EBUSY. It now returns at once; the access
/// stops with EFAULT at its next chunk.
#[test]
fn unmap_does_not_wait_for_a_message_round_trip() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let s = Arc::new(DmaSpace::new(vfio_user_dma::DmaConfig {
        unmap_timeout: Duration::from_secs(30),
        ..Default::default()
    }));
    // A mmapped region after the message region: a guard on it must not be
    // held across the message chunk either.
    let mem = Mem::new(PAGE);
    s.map(msg_req(BASE, 2 * PAGE, DmaProt::READ_WRITE)).unwrap();
    s.map(req(&mem, BASE + 2 * PAGE, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.start_logging(PAGE, &[]).unwrap();
    let (inflight, wait_inflight) = mpsc::sync_channel(4);
    let (go, release) = mpsc::channel();
    s.set_transport(Some(Arc::new(Gated { inflight, release: std::sync::Mutex::new(release) })));
    for write in [false, true] {
        let dev = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                if write {
                    s.write(BASE, &[1; 3 * PAGE as usize])
                } else {
                    s.read(BASE, &mut [0; 3 * PAGE as usize])
                }
            })
        };
        wait_inflight.recv().unwrap();
        let t = Instant::now();
        if write {
            // The legacy unmap-with-bitmap sees the page of the chunk in flight.
            let bm = s.unmap_with_dirty_bitmap(BASE, 2 * PAGE, PAGE).unwrap();
            assert_eq!(bm, vec![0b01]);
        } else {
            s.unmap(BASE, 2 * PAGE).unwrap();
        }
        s.unmap(BASE + 2 * PAGE, PAGE).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "unmap waited for the client: {:?}", t.elapsed());
        go.send(()).unwrap();
        let e = dev.join().unwrap().unwrap_err();
        assert_eq!(e.errno(), libc::EFAULT, "{e}");
        s.map(msg_req(BASE, 2 * PAGE, DmaProt::READ_WRITE)).unwrap();
        s.map(req(&mem, BASE + 2 * PAGE, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    }
}
