// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! REGION_READ, REGION_WRITE and REGION_WRITE_MULTI: bounds checks, then the routing of
//! each access to the emulated configuration space, the emulated MSI-X structures or the
//! device.

use vfio_user_proto::wire::{append_with_room, RegionAccess, WriteMulti, WriteMultiEntry, PCI_CONFIG_REGION_INDEX};
use vfio_user_proto::{Reply, WireArray};

use crate::answer::Answer;
use crate::core::Core;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::irq::{EMULATED_MASKS, MSIX};
use crate::pci::config::for_each_run;
use crate::pci::msix::{classify, pba_read, MsixPart};

impl<D: Device> Core<D> {
    /// REGION_READ: the reply carries the access and the bytes read, read in place.
    pub(crate) fn region_read_cmd(&mut self, a: RegionAccess) -> Result<Answer> {
        let mut buf = self.reply_buf();
        let room = append_with_room(buf.payload(), &a, a.count as usize);
        match self.region_read(a.region, a.offset, &mut buf.payload()[room]) {
            Ok(()) => Ok(Answer::reply(buf)),
            Err(e) => {
                self.recycle(buf);
                Err(e)
            }
        }
    }

    /// REGION_WRITE: the reply echoes the access.
    pub(crate) fn region_write_cmd(&mut self, a: RegionAccess, data: &[u8]) -> Result<Answer> {
        self.region_write(a.region, a.offset, data)?;
        Ok(self.answer(&Reply::RegionWrite(Some(a))))
    }

    /// REGION_WRITE_MULTI: every entry is checked before any is written.
    pub(crate) fn region_write_multi(&mut self, entries: WireArray<'_, WriteMultiEntry>) -> Result<Answer> {
        for e in entries.iter() {
            let r = self.regions.get(e.region as usize).ok_or(Error::InvalidArgument("no such region"))?;
            if !r.writable || e.offset.checked_add(e.count.into()).map_or(true, |end| end > r.size) {
                return Err(Error::InvalidArgument("REGION_WRITE_MULTI entry out of range"));
            }
        }
        for e in entries.iter() {
            self.region_write(e.region, e.offset, &e.data[..e.count as usize])?;
        }
        Ok(self.answer(&Reply::RegionWriteMulti(WriteMulti { wr_cnt: entries.len() as u64 })))
    }

    /// Checks that `offset..offset + len` lies within readable / writable region `index`.
    fn check_access(&self, index: u32, offset: u64, len: usize, write: bool) -> Result<()> {
        let r = self.regions.get(index as usize).ok_or(Error::InvalidArgument("no such region"))?;
        if (write && !r.writable) || (!write && !r.readable) {
            return Err(Error::InvalidArgument("region does not allow this access"));
        }
        match offset.checked_add(len as u64) {
            Some(end) if end <= r.size => Ok(()),
            _ => Err(Error::InvalidArgument("access beyond the end of the region")),
        }
    }

    /// REGION_READ: fills `buf` from region `index` at `offset`.
    pub(crate) fn region_read(&mut self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_access(index, offset, buf.len(), false)?;
        if buf.is_empty() {
            return Ok(());
        }
        if index == PCI_CONFIG_REGION_INDEX {
            let off = offset as usize;
            let (config, callbacks, device, irq) = (&self.config, &self.desc.config_callbacks, &self.device, &self.irq);
            return for_each_run(callbacks, off, buf.len(), |at, len, dev| {
                let part = &mut buf[at - off..at - off + len];
                if dev {
                    device.config_read(at as u64, part)?;
                } else {
                    config.read(at, part, || irq.lock().msi_pending());
                }
                Ok(())
            });
        }
        match self.msix_bar(index) {
            Some(cfg) => {
                let mut done = 0usize;
                while done < buf.len() {
                    let at = offset + done as u64;
                    let (part, run) = classify(&cfg, index as u8, at, (buf.len() - done) as u64);
                    let slice = &mut buf[done..done + run as usize];
                    match part {
                        MsixPart::Table(o) => self.irq.lock().msix_table.read(o as usize, slice),
                        MsixPart::Pba(o) => {
                            let irq = self.irq.lock();
                            pba_read(irq.count(MSIX), |v| irq.pending(MSIX, v), o as usize, slice)
                        }
                        MsixPart::Device => self.device.region_read(index, at, slice)?,
                    }
                    done += run as usize;
                }
                Ok(())
            }
            None => Ok(self.device.region_read(index, offset, buf)?),
        }
    }

    /// REGION_WRITE: writes `data` to region `index` at `offset`.
    pub(crate) fn region_write(&mut self, index: u32, offset: u64, data: &[u8]) -> Result<()> {
        self.check_access(index, offset, data.len(), true)?;
        if data.is_empty() {
            return Ok(());
        }
        if index == PCI_CONFIG_REGION_INDEX {
            return self.config_write(offset as usize, data);
        }
        match self.msix_bar(index) {
            Some(cfg) => {
                let mut done = 0usize;
                while done < data.len() {
                    let at = offset + done as u64;
                    let (part, run) = classify(&cfg, index as u8, at, (data.len() - done) as u64);
                    let slice = &data[done..done + run as usize];
                    match part {
                        MsixPart::Table(o) => {
                            let ((), changes) = self.irq.lock().change(&[MSIX], |irq| {
                                irq.msix_table.write(o as usize, slice);
                                irq.msix_table_used = true;
                            });
                            self.notify(changes);
                        }
                        MsixPart::Pba(_) => {} // read-only
                        MsixPart::Device => self.device.region_write(index, at, slice)?,
                    }
                    done += run as usize;
                }
                Ok(())
            }
            None => Ok(self.device.region_write(index, offset, data)?),
        }
    }

    fn config_write(&mut self, off: usize, data: &[u8]) -> Result<()> {
        let mut flr = false;
        let mut irq_touched = false;
        let (config, callbacks, device) = (&mut self.config, &self.desc.config_callbacks, &self.device);
        for_each_run(callbacks, off, data.len(), |at, len, dev| {
            let part = &data[at - off..at - off + len];
            if dev {
                device.config_write(at as u64, part)?;
            } else {
                let fx = config.write(at, part);
                flr |= fx.flr;
                irq_touched |= fx.irq;
            }
            Ok(())
        })?;
        if irq_touched {
            let config = &self.config;
            let ((), changes) = self.irq.lock().change(&EMULATED_MASKS, |irq| config.sync_irq(irq));
            self.notify(changes);
        }
        if flr {
            self.reset(crate::device::ResetKind::Flr)?;
        }
        Ok(())
    }

    /// The MSI-X configuration if BAR `index` holds its table or PBA.
    fn msix_bar(&self, index: u32) -> Option<crate::description::MsixConfig> {
        self.desc.msix.filter(|m| u32::from(m.table_bar) == index || u32::from(m.pba_bar) == index)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::sync::Arc;

    use vfio_user_proto::region_caps::RegionCap;
    use vfio_user_proto::wire::{SparseArea, REGION_FLAG_MMAP, REGION_FLAG_READ, REGION_FLAG_WRITE};

    use super::*;
    use crate::core::ServerLimits;
    use crate::description::{Bar, DeviceDescription};
    use crate::region::region_table;

    /// Counts the accesses that reach it.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Device for Counter {
        fn region_read(&self, _: u32, _: u64, data: &mut [u8]) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            data.fill(0x5a);
            Ok(())
        }

        fn region_write(&self, _: u32, _: u64, _: &[u8]) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A BAR region keeps its own size in REGION_INFO even when the BAR decodes more (8
    /// bytes of memory decode 16), and accesses past the region's end never reach the
    /// device.
    #[test]
    fn bar_regions_report_and_enforce_their_size() {
        let fd = rustix::fs::memfd_create("bar1", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 0x4000).unwrap();
        let desc = DeviceDescription::builder(0xdead, 0xbeef)
            .bar(0, Bar::memory32(8))
            .bar(1, Bar::memory32(0x4000).mmap(Arc::new(fd), 0).sparse(&[(0, 0x1000), (0x2000, 0x1000)]))
            .build()
            .unwrap();
        let table = region_table(&desc);
        let (info0, caps0, fd0) = table[0].info(0);
        assert_eq!(
            (info0.size, info0.flags, caps0.len(), fd0.is_none()),
            (8, REGION_FLAG_READ | REGION_FLAG_WRITE, 0, true)
        );
        let (info1, caps1, fd1) = table[1].info(1);
        assert_eq!(info1.size, 0x4000);
        assert_ne!(info1.flags & REGION_FLAG_MMAP, 0);
        assert!(fd1.is_some());
        let areas = vec![SparseArea { offset: 0, size: 0x1000 }, SparseArea { offset: 0x2000, size: 0x1000 }];
        assert!(matches!(&caps1[..], [RegionCap::SparseMmap(a)] if *a == areas));

        let mut core = Core::new(desc, ServerLimits::default(), |_, _| Counter::default()).unwrap();
        let mut buf = [0u8; 8];
        core.region_read(0, 0, &mut buf).unwrap();
        assert_eq!(buf, [0x5a; 8]);
        assert!(core.region_read(0, 8, &mut buf).is_err(), "inside the decoded 16 bytes, past the region");
        assert!(core.region_read(0, 1, &mut buf).is_err());
        assert!(core.region_write(0, 8, &[0; 4]).is_err());
        assert!(core.region_write(1, 0x3ffc, &[0; 8]).is_err());
        core.region_write(1, 0x3ff8, &[0; 8]).unwrap();
        assert_eq!(core.device.0.load(Ordering::SeqCst), 2, "only the two accesses in range arrived");
    }
}
