// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `demo` device, which `demo` and `serve demo` run: a DMA "doorbell" device that can
//! migrate. (`serve` takes its other samples from `vfio-user-samples`.)

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use rustix::fs::{memfd_create, MemfdFlags};
use vfio_user_server::{
    Bar, DeviceDescription, DmaHandle, IrqHandle, MigState, MigrationSupport, MsixConfig, PcieConfig, Server,
    ServerLimits,
};

use crate::demo_migration::{runs_in, snapshot, snapshot_len, Sessions, Writer};

/// Vendor ID of the demo device (not assigned to anyone: a made-up ID for a sample).
pub const DEMO_VENDOR: u16 = 0x5655;
/// Device ID of the demo device.
pub const DEMO_DEVICE: u16 = 0xd0e0;
/// Size of the demo device's BAR0 (registers, MSI-X table and PBA).
pub const DEMO_BAR0_SIZE: u64 = 0x1000;
/// Size of the demo device's BAR2 (memory: the first page trapped, the second mmappable).
pub const DEMO_BAR2_SIZE: u64 = 0x2000;

/// BAR0 register: DMA address (64-bit, little-endian).
pub const REG_ADDR: u64 = 0x00;
/// BAR0 register: DMA length in bytes (32-bit; at most [`MAX_DMA_LEN`]).
pub const REG_LEN: u64 = 0x08;
/// BAR0 register: the 32-bit pattern the device writes, repeated, into `ADDR..ADDR+LEN`.
pub const REG_PATTERN: u64 = 0x0c;
/// BAR0 register: writing anything here starts the DMA, then raises MSI-X vector 0 (and
/// INTx).
pub const REG_DOORBELL: u64 = 0x10;
/// BAR0 register (read-only): number of doorbells completed.
pub const REG_DONE: u64 = 0x14;
/// BAR0 register (read-only): errno of the last DMA (0 = success).
pub const REG_ERROR: u64 = 0x18;
/// BAR0 register: number of pages from `ADDR` the background writer keeps writing to while
/// the device runs (0 stops it); see `demo_migration`.
pub const REG_STREAM: u64 = 0x1c;
/// BAR0 register (read-only, 64-bit): the writer's sequence number, i.e. writes done.
pub const REG_SEQ: u64 = 0x20;
/// Bytes of registers.
const REGS: usize = 0x28;
/// Subsystem ID of the demo device with MSI-X (the default).
pub const DEMO_SUBSYSTEM_MSIX: u16 = 0x0001;
/// Subsystem ID of the demo device with MSI instead of MSI-X (`serve demo --msi`), so that a
/// guest with both can tell them apart.
pub const DEMO_SUBSYSTEM_MSI: u16 = 0x0002;
/// Largest DMA the demo device does per doorbell.
pub const MAX_DMA_LEN: u32 = 1 << 20;

/// The 32-bit register at `off`.
fn reg32(r: &[u8; REGS], off: u64) -> u32 {
    u32::from_le_bytes(r[off as usize..off as usize + 4].try_into().unwrap_or_default())
}

/// The 64-bit register at `off`.
fn reg64(r: &[u8; REGS], off: u64) -> u64 {
    u64::from_le_bytes(r[off as usize..off as usize + 8].try_into().unwrap_or_default())
}

/// The demo device: registers in BAR0 with a doorbell that makes the device write a
/// pattern into client memory by DMA and raise an interrupt; BAR2 is plain memory backed by
/// a memfd, whose second page the client may mmap (a sparse mmap area). It can migrate
/// (with PRE_COPY), and a background writer keeps dirtying client memory on request.
pub struct DemoDevice {
    regs: Mutex<[u8; REGS]>,
    irq: IrqHandle,
    dma: DmaHandle,
    bar2: Arc<OwnedFd>,
    writer: Writer,
    sessions: Mutex<Sessions>,
    /// The migration state, as the framework last moved it.
    mig_state: Mutex<MigState>,
    /// Which message-signalled interrupt the doorbell raises.
    irq_kind: DemoIrq,
}

/// The demo device's message-signalled interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoIrq {
    /// MSI-X, 2 vectors, table and PBA emulated in BAR0 (the default).
    Msix,
    /// MSI, 2 vectors with per-vector masking, and no MSI-X: QEMU 11.1's vfio-user-pci
    /// aborts on `device_del` of any device with MSI-X (see guest/README.md), and unplugs
    /// this one cleanly.
    Msi,
}

impl DemoDevice {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registers with the writer's live sequence number.
    fn regs_now(&self) -> [u8; REGS] {
        let mut r = *self.regs.lock().unwrap_or_else(|e| e.into_inner());
        let (seq, _) = self.writer.status();
        r[REG_SEQ as usize..REG_SEQ as usize + 8].copy_from_slice(&seq.to_le_bytes());
        r
    }

    /// Points the writer at the pages the registers say.
    fn configure_writer(&self, r: &[u8; REGS]) {
        self.writer.configure(reg64(r, REG_ADDR), reg32(r, REG_STREAM));
    }

    fn doorbell(&self) {
        let (addr, len, pattern) = {
            let r = self.regs.lock().unwrap_or_else(|e| e.into_inner());
            (reg64(&r, REG_ADDR), reg32(&r, REG_LEN), reg32(&r, REG_PATTERN))
        };
        // No lock is held across the DMA (see `DmaHandle`).
        let errno = if len > MAX_DMA_LEN {
            libc::EINVAL
        } else {
            let data: Vec<u8> = pattern.to_le_bytes().iter().copied().cycle().take(len as usize).collect();
            match self.dma.write(addr, &data) {
                Ok(()) => 0,
                Err(e) => {
                    log::warn!("demo device: DMA write of {len} bytes at {addr:#x} failed: {e}");
                    e.errno()
                }
            }
        };
        log::info!("demo device: doorbell: {len} bytes of {pattern:#010x} at {addr:#x}: errno {errno}");
        {
            let mut r = self.regs.lock().unwrap_or_else(|e| e.into_inner());
            let done = reg32(&r, REG_DONE);
            r[REG_DONE as usize..REG_DONE as usize + 4].copy_from_slice(&done.wrapping_add(1).to_le_bytes());
            r[REG_ERROR as usize..REG_ERROR as usize + 4].copy_from_slice(&(errno as u32).to_le_bytes());
        }
        // An interrupt without an eventfd is lost, as on hardware: not an error.
        let msg = match self.irq_kind {
            DemoIrq::Msix => self.irq.trigger_msix(0),
            DemoIrq::Msi => self.irq.trigger_msi(0),
        };
        if let Err(e) = msg.and_then(|()| self.irq.trigger_intx()) {
            log::warn!("demo device: raising the interrupt: {e}");
        }
    }
}

impl vfio_user_server::Device for DemoDevice {
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        match region {
            0 => {
                let r = self.regs_now();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = r.get(offset as usize + i).copied().unwrap_or(0);
                }
                Ok(())
            }
            2 => {
                rustix::io::pread(&*self.bar2, &mut *data, offset)?;
                Ok(())
            }
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        match region {
            0 => {
                let (mut ring, mut stream) = (false, false);
                let regs = {
                    let mut r = self.regs.lock().unwrap_or_else(|e| e.into_inner());
                    for (i, b) in data.iter().enumerate() {
                        let o = offset + i as u64;
                        if o < REG_DOORBELL || (REG_STREAM..REG_STREAM + 4).contains(&o) {
                            r[o as usize] = *b;
                            stream |= o >= REG_STREAM;
                        } else if o < REG_DOORBELL + 4 {
                            ring = true;
                        }
                    }
                    *r
                };
                if stream {
                    self.configure_writer(&regs);
                }
                if ring {
                    self.doorbell();
                }
                Ok(())
            }
            2 => {
                rustix::io::pwrite(&*self.bar2, data, offset)?;
                Ok(())
            }
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn reset(&self, _kind: vfio_user_server::ResetKind) -> io::Result<()> {
        *self.regs.lock().unwrap_or_else(|e| e.into_inner()) = [0; REGS];
        self.writer.configure(0, 0);
        self.writer.set_seq(0);
        self.writer.set_running(true);
        self.sessions().clear();
        *self.mig_state.lock().unwrap_or_else(|e| e.into_inner()) = MigState::Running;
        Ok(())
    }

    fn migration(&self) -> Option<MigrationSupport> {
        Some(MigrationSupport { pre_copy: true })
    }

    fn migration_transition(&self, from: MigState, to: MigState) -> io::Result<()> {
        if runs_in(from) && !runs_in(to) {
            self.writer.set_running(false);
        }
        let len = snapshot_len(REGS, DEMO_BAR2_SIZE);
        match (from, to) {
            (_, MigState::PreCopy | MigState::StopCopy) => {
                let snap = snapshot(&self.regs_now(), &self.bar2, DEMO_BAR2_SIZE)?;
                self.sessions().start_save(snap);
            }
            (_, MigState::Resuming) => self.sessions().start_load(),
            (MigState::Resuming, _) => {
                let state = self.sessions().finish_load(len)?;
                let mut regs = [0u8; REGS];
                regs.copy_from_slice(&state[..REGS]);
                rustix::io::pwrite(&*self.bar2, &state[REGS..], 0)?;
                *self.regs.lock().unwrap_or_else(|e| e.into_inner()) = regs;
                self.writer.set_seq(reg64(&regs, REG_SEQ));
                self.configure_writer(&regs);
            }
            _ => {}
        }
        if !runs_in(from) && runs_in(to) {
            self.writer.set_running(true);
        }
        *self.mig_state.lock().unwrap_or_else(|e| e.into_inner()) = to;
        Ok(())
    }

    fn migration_read(&self, data: &mut [u8]) -> io::Result<usize> {
        let pre_copy = *self.mig_state.lock().unwrap_or_else(|e| e.into_inner()) == MigState::PreCopy;
        let mut s = self.sessions();
        if pre_copy && s.round_ended() {
            s.next_round(snapshot(&self.regs_now(), &self.bar2, DEMO_BAR2_SIZE)?);
        }
        Ok(s.read(data))
    }

    fn migration_write(&self, data: &[u8]) -> io::Result<()> {
        self.sessions().write(data, snapshot_len(REGS, DEMO_BAR2_SIZE))
    }
}

/// The demo device's description: BAR0 registers + MSI-X (2 vectors) table at 0x800 and PBA
/// at 0xc00, BAR2 memory with a sparse mmap area, INTx, PM, PCI Express, a device serial
/// number.
pub fn demo_server() -> Result<Server<DemoDevice>, vfio_user_server::Error> {
    demo_server_with(DemoIrq::Msix)
}

/// The demo device with the given message-signalled interrupt: [`demo_server`]'s layout,
/// with MSI instead of MSI-X (and subsystem ID [`DEMO_SUBSYSTEM_MSI`]) for [`DemoIrq::Msi`].
pub fn demo_server_with(irq_kind: DemoIrq) -> Result<Server<DemoDevice>, vfio_user_server::Error> {
    let memfd = memfd_create("vfio-user-demo-bar2", MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&memfd, DEMO_BAR2_SIZE)?;
    let bar2 = Arc::new(memfd);
    let desc = demo_description(irq_kind, bar2.clone())?;
    Server::with_handles(desc, ServerLimits::default(), |irq, dma| DemoDevice {
        regs: Mutex::new([0; REGS]),
        irq,
        writer: Writer::new(dma.clone()),
        dma,
        bar2,
        sessions: Mutex::default(),
        mig_state: Mutex::new(MigState::Running),
        irq_kind,
    })
}

/// The demo device's description, its BAR2 backed by `bar2`.
fn demo_description(irq_kind: DemoIrq, bar2: Arc<OwnedFd>) -> Result<DeviceDescription, vfio_user_server::Error> {
    let builder = DeviceDescription::builder(DEMO_VENDOR, DEMO_DEVICE)
        .class_code(0xff0000)
        .revision(1)
        .bar(0, Bar::memory32(DEMO_BAR0_SIZE))
        .bar(2, Bar::memory32(DEMO_BAR2_SIZE).mmap(bar2, 0).sparse(&[(0x1000, 0x1000)]))
        .intx();
    let builder = match irq_kind {
        DemoIrq::Msix => builder.subsystem(DEMO_VENDOR, DEMO_SUBSYSTEM_MSIX).msix(MsixConfig {
            vectors: 2,
            table_bar: 0,
            table_offset: 0x800,
            pba_bar: 0,
            pba_offset: 0xc00,
        }),
        DemoIrq::Msi => builder.subsystem(DEMO_VENDOR, DEMO_SUBSYSTEM_MSI).msi(2, true),
    };
    builder.power_management().pcie(PcieConfig { flr: true }).serial_number(0x0123_4567_89ab_cdef).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--msi` keeps every region of the default layout and trades the MSI-X capability
    /// (whose PBA overlay QEMU 11.1 cannot tear down on unplug) for MSI.
    #[test]
    fn the_msi_variant_has_msi_and_no_msix() {
        let fd = || Arc::new(memfd_create("t", MemfdFlags::CLOEXEC).unwrap());
        let dx = demo_description(DemoIrq::Msix, fd()).unwrap();
        let dm = demo_description(DemoIrq::Msi, fd()).unwrap();
        assert_eq!((dx.irq_count(1), dx.irq_count(2)), (0, 2));
        assert_eq!((dm.irq_count(1), dm.irq_count(2)), (2, 0));
        assert!(dm.msix().is_none());
        assert!(dx.msix().is_some());
        assert!(demo_server_with(DemoIrq::Msi).is_ok());
        for i in 0..6 {
            assert_eq!(dx.bar(i).map(|b| b.size()), dm.bar(i).map(|b| b.size()), "BAR{i}");
        }
    }
}
