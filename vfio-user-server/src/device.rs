// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The trait a device author implements.
//!
//! [`Device`] takes `&self` (the device does its own locking, and may be shared with its
//! worker threads); [`DeviceMut`] takes `&mut self` and is served through a `Mutex`, thanks
//! to the blanket `impl<T: DeviceMut> Device for Mutex<T>` (and for `RwLock<T>`). Every method has a default, so a
//! device implements only what it has. The framework has validated every argument before a
//! method is called: region indexes exist, `offset + data.len()` lies within the region,
//! DMA mappings do not overlap, and so on. Errors are `std::io::Error`s; their raw OS error
//! (or `EIO`) becomes the errno of the error reply.
//!
//! Methods are added over time (migration, for instance) only as defaulted methods, so
//! existing devices keep compiling.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, RwLock};

use vfio_user_proto::MigState;

use crate::dma::DmaRegion;
use crate::irq::VectorState;

/// The error a device method returns to have the client told `code` (an `errno` value,
/// e.g. `libc::EINVAL`): the error reply carries it as it is.
pub fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Why the device is being reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetKind {
    /// DEVICE_RESET from the client.
    Device,
    /// Function Level Reset through the PCI Express Device Control register.
    Flr,
}

/// An ioeventfd the client may register with its hypervisor for a region
/// (DEVICE_GET_REGION_IO_FDS): writes the guest makes at `offset` signal `fd` instead of
/// arriving as REGION_WRITE.
#[derive(Clone, Debug)]
pub struct IoEventFd {
    /// Offset within the region.
    pub offset: u64,
    /// Access size in bytes (0 = any size).
    pub size: u64,
    /// Only writes of this value signal the fd.
    pub datamatch: Option<u64>,
    /// The eventfd (shared with the device, which reads it).
    pub fd: Arc<OwnedFd>,
}

fn unsupported() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// What a migratable device supports: the flags of the MIGRATION feature. STOP_COPY (and
/// with it STOP, RESUMING, RUNNING and ERROR) is always supported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrationSupport {
    /// The device supports PRE_COPY: it can stream state while it keeps running.
    pub pre_copy: bool,
}

/// A device served over vfio-user, with shared (`&self`) access.
pub trait Device: Send + Sync {
    /// Reads `data.len()` bytes at `offset` of region `region` (a BAR, the ROM, or a
    /// device-specific region). Default: `EINVAL`.
    fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let _ = (region, offset, data);
        Err(unsupported())
    }

    /// Writes `data` at `offset` of region `region`. Default: `EINVAL`.
    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let _ = (region, offset, data);
        Err(unsupported())
    }

    /// Reads configuration-space bytes in a range the description handed to the device
    /// ([`config_callback`](crate::DescriptionBuilder::config_callback)). Default: zeros.
    fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let _ = offset;
        data.fill(0);
        Ok(())
    }

    /// Writes configuration-space bytes in a device-owned range. Default: ignored.
    fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let _ = (offset, data);
        Ok(())
    }

    /// Resets the device. The framework has already reset its emulated configuration
    /// space and interrupt state. Default: nothing to do.
    fn reset(&self, kind: ResetKind) -> io::Result<()> {
        let _ = kind;
        Ok(())
    }

    /// The client added a DMA region, already mapped in the server's
    /// [`DmaSpace`](crate::vfio_user_dma::DmaSpace): the device may access it through its
    /// [`DmaHandle`](crate::DmaHandle) from now on. Failing refuses the DMA_MAP (the mapping
    /// is removed again). Default: accept.
    fn dma_map(&self, region: &DmaRegion) -> io::Result<()> {
        let _ = region;
        Ok(())
    }

    /// The client is removing a DMA region (DMA_UNMAP, or it disconnected). Called before
    /// the mapping is removed: the device should drop any [`DmaGuard`] or `memory()` view
    /// it keeps, since the framework then waits (bounded) for those before it unmaps the
    /// memory and replies.
    ///
    /// [`DmaGuard`]: crate::vfio_user_dma::DmaGuard
    fn dma_unmap(&self, region: &DmaRegion) {
        let _ = region;
    }

    /// A vector's state changed: the client installed or removed its eventfd, or it was
    /// masked or unmasked (through SET_IRQS or the emulated registers).
    fn irq_state_changed(&self, index: u32, vector: u32, state: VectorState) {
        let _ = (index, vector, state);
    }

    /// The ioeventfds of a region, for DEVICE_GET_REGION_IO_FDS. Default: none.
    fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
        let _ = region;
        Vec::new()
    }

    /// Whether the device can migrate, and which optional states it supports. `None` (the
    /// default): MIGRATION and MIG_DEVICE_STATE are refused with `ENOTSUP` and MIG_DATA_*
    /// with `EINVAL`.
    fn migration(&self) -> Option<MigrationSupport> {
        None
    }

    /// Takes one arc of the migration state machine, `from → to`. The framework
    /// decomposes a requested transition into the spec's direct arcs (`RUNNING → STOP`,
    /// `STOP → STOP_COPY`, `PRE_COPY → STOP_COPY`, `STOP → RESUMING`, `RESUMING → STOP`,
    /// ...) and calls this once per arc, in order; it is never called with `from == to`,
    /// nor with an arc the device's [`MigrationSupport`] excludes. Arcs into PRE_COPY or
    /// STOP_COPY start a save session (the next [`migration_read`](Device::migration_read)
    /// begins the stream); `STOP → RESUMING` starts a load session; `RESUMING → STOP` ends
    /// it and is where incomplete or invalid data must be refused. Failing leaves the
    /// device in ERROR until DEVICE_RESET. Default: accept.
    fn migration_transition(&self, from: MigState, to: MigState) -> io::Result<()> {
        let _ = (from, to);
        Ok(())
    }

    /// Save: fills the front of `data` with the next bytes of the state stream (PRE_COPY
    /// or STOP_COPY) and returns how many; fewer than `data.len()` (0 included) means no
    /// more data for now (PRE_COPY) or the end of the stream (STOP_COPY). Default: no data.
    fn migration_read(&self, data: &mut [u8]) -> io::Result<usize> {
        let _ = data;
        Ok(0)
    }

    /// Load: the next bytes of the state stream in RESUMING, in the order they were
    /// read on the source. Default: `EINVAL`.
    fn migration_write(&self, data: &[u8]) -> io::Result<()> {
        let _ = data;
        Err(unsupported())
    }

    /// A client connected (after VERSION) or went away (`false`; its DMA regions have
    /// been unmapped and its eventfds closed already). Default: nothing.
    fn client_connected(&self, connected: bool) {
        let _ = connected;
    }
}

/// A device served over vfio-user, with exclusive (`&mut self`) access; wrap it in a
/// `Mutex` to serve it. Methods mirror [`Device`].
pub trait DeviceMut: Send {
    /// See [`Device::region_read`].
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let _ = (region, offset, data);
        Err(unsupported())
    }

    /// See [`Device::region_write`].
    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let _ = (region, offset, data);
        Err(unsupported())
    }

    /// See [`Device::config_read`].
    fn config_read(&mut self, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let _ = offset;
        data.fill(0);
        Ok(())
    }

    /// See [`Device::config_write`].
    fn config_write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let _ = (offset, data);
        Ok(())
    }

    /// See [`Device::reset`].
    fn reset(&mut self, kind: ResetKind) -> io::Result<()> {
        let _ = kind;
        Ok(())
    }

    /// See [`Device::dma_map`].
    fn dma_map(&mut self, region: &DmaRegion) -> io::Result<()> {
        let _ = region;
        Ok(())
    }

    /// See [`Device::dma_unmap`].
    fn dma_unmap(&mut self, region: &DmaRegion) {
        let _ = region;
    }

    /// See [`Device::irq_state_changed`].
    fn irq_state_changed(&mut self, index: u32, vector: u32, state: VectorState) {
        let _ = (index, vector, state);
    }

    /// See [`Device::region_io_fds`].
    fn region_io_fds(&mut self, region: u32) -> Vec<IoEventFd> {
        let _ = region;
        Vec::new()
    }

    /// See [`Device::migration`].
    fn migration(&mut self) -> Option<MigrationSupport> {
        None
    }

    /// See [`Device::migration_transition`].
    fn migration_transition(&mut self, from: MigState, to: MigState) -> io::Result<()> {
        let _ = (from, to);
        Ok(())
    }

    /// See [`Device::migration_read`].
    fn migration_read(&mut self, data: &mut [u8]) -> io::Result<usize> {
        let _ = data;
        Ok(0)
    }

    /// See [`Device::migration_write`].
    fn migration_write(&mut self, data: &[u8]) -> io::Result<()> {
        let _ = data;
        Err(unsupported())
    }

    /// See [`Device::client_connected`].
    fn client_connected(&mut self, connected: bool) {
        let _ = connected;
    }
}

/// `Device` for a lock around a [`DeviceMut`]: every call takes the lock exclusively (a
/// poisoned lock is used all the same: the device's state is its own to check). With an
/// `RwLock`, the device's own threads may share read access between calls.
macro_rules! device_behind_lock {
    ($($lock:ident<T: $($bound:path)|*> => $method:ident),* $(,)?) => {$(
        impl<T: $($bound +)*> Device for $lock<T> {
            fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
                self.$method().unwrap_or_else(|e| e.into_inner()).region_read(region, offset, data)
            }

            fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
                self.$method().unwrap_or_else(|e| e.into_inner()).region_write(region, offset, data)
            }

            fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
                self.$method().unwrap_or_else(|e| e.into_inner()).config_read(offset, data)
            }

            fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
                self.$method().unwrap_or_else(|e| e.into_inner()).config_write(offset, data)
            }

            fn reset(&self, kind: ResetKind) -> io::Result<()> {
                self.$method().unwrap_or_else(|e| e.into_inner()).reset(kind)
            }

            fn dma_map(&self, region: &DmaRegion) -> io::Result<()> {
                self.$method().unwrap_or_else(|e| e.into_inner()).dma_map(region)
            }

            fn dma_unmap(&self, region: &DmaRegion) {
                self.$method().unwrap_or_else(|e| e.into_inner()).dma_unmap(region)
            }

            fn irq_state_changed(&self, index: u32, vector: u32, state: VectorState) {
                self.$method().unwrap_or_else(|e| e.into_inner()).irq_state_changed(index, vector, state)
            }

            fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
                self.$method().unwrap_or_else(|e| e.into_inner()).region_io_fds(region)
            }

            fn migration(&self) -> Option<MigrationSupport> {
                self.$method().unwrap_or_else(|e| e.into_inner()).migration()
            }

            fn migration_transition(&self, from: MigState, to: MigState) -> io::Result<()> {
                self.$method().unwrap_or_else(|e| e.into_inner()).migration_transition(from, to)
            }

            fn migration_read(&self, data: &mut [u8]) -> io::Result<usize> {
                self.$method().unwrap_or_else(|e| e.into_inner()).migration_read(data)
            }

            fn migration_write(&self, data: &[u8]) -> io::Result<()> {
                self.$method().unwrap_or_else(|e| e.into_inner()).migration_write(data)
            }

            fn client_connected(&self, connected: bool) {
                self.$method().unwrap_or_else(|e| e.into_inner()).client_connected(connected)
            }
        }
    )*};
}

device_behind_lock! {
    Mutex<T: DeviceMut> => lock,
    RwLock<T: DeviceMut | Sync> => write,
}

/// `Device` for smart pointers to a device: every method forwards to the pointee.
macro_rules! forward_device {
    ($($ptr:ident),*) => {$(
        impl<T: Device + ?Sized> Device for $ptr<T> {
            fn region_read(&self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
                (**self).region_read(region, offset, data)
            }

            fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
                (**self).region_write(region, offset, data)
            }

            fn config_read(&self, offset: u64, data: &mut [u8]) -> io::Result<()> {
                (**self).config_read(offset, data)
            }

            fn config_write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
                (**self).config_write(offset, data)
            }

            fn reset(&self, kind: ResetKind) -> io::Result<()> {
                (**self).reset(kind)
            }

            fn dma_map(&self, region: &DmaRegion) -> io::Result<()> {
                (**self).dma_map(region)
            }

            fn dma_unmap(&self, region: &DmaRegion) {
                (**self).dma_unmap(region)
            }

            fn irq_state_changed(&self, index: u32, vector: u32, state: VectorState) {
                (**self).irq_state_changed(index, vector, state)
            }

            fn region_io_fds(&self, region: u32) -> Vec<IoEventFd> {
                (**self).region_io_fds(region)
            }

            fn migration(&self) -> Option<MigrationSupport> {
                (**self).migration()
            }

            fn migration_transition(&self, from: MigState, to: MigState) -> io::Result<()> {
                (**self).migration_transition(from, to)
            }

            fn migration_read(&self, data: &mut [u8]) -> io::Result<usize> {
                (**self).migration_read(data)
            }

            fn migration_write(&self, data: &[u8]) -> io::Result<()> {
                (**self).migration_write(data)
            }

            fn client_connected(&self, connected: bool) {
                (**self).client_connected(connected)
            }
        }
    )*};
}

forward_device!(Arc, Box);

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_user_dma::{DmaProt, RegionKind};

    /// A device that implements nothing: every method has its documented default.
    struct Bare;
    impl DeviceMut for Bare {}
    struct BareShared;
    impl Device for BareShared {}

    fn check_defaults(d: &dyn Device) {
        let einval = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        let mut buf = [0xaau8; 4];
        assert_eq!(einval(d.region_read(0, 0, &mut buf)), Some(libc::EINVAL));
        assert_eq!(einval(d.region_write(0, 0, &buf)), Some(libc::EINVAL));
        d.config_read(0x40, &mut buf).unwrap();
        assert_eq!(buf, [0; 4], "unclaimed config space reads as zeros");
        d.config_write(0x40, &buf).unwrap();
        d.reset(ResetKind::Device).unwrap();
        d.reset(ResetKind::Flr).unwrap();
        let r = DmaRegion { iova: 0x1000, size: 0x1000, prot: DmaProt::READ_WRITE, kind: RegionKind::Message };
        d.dma_map(&r).unwrap();
        d.dma_unmap(&r);
        d.irq_state_changed(0, 0, VectorState { enabled: true, masked: false });
        assert!(d.region_io_fds(0).is_empty());
        assert_eq!(d.migration(), None, "not migratable unless it says so");
        d.migration_transition(MigState::Running, MigState::Stop).unwrap();
        assert_eq!(d.migration_read(&mut buf).unwrap(), 0);
        assert_eq!(einval(d.migration_write(&buf)), Some(libc::EINVAL));
        d.client_connected(true);
        d.client_connected(false);
    }

    #[test]
    fn defaults_hold_through_every_wrapper() {
        check_defaults(&Mutex::new(Bare));
        check_defaults(&BareShared);
        check_defaults(&Arc::new(BareShared));
        check_defaults(&Box::new(BareShared));
        let boxed: Box<dyn Device> = Box::new(Mutex::new(Bare));
        check_defaults(&boxed);
        check_defaults(&Arc::new(Mutex::new(Bare)));
        check_defaults(&RwLock::new(Bare));
        check_defaults(&Arc::new(RwLock::new(Bare)));
    }

    /// A `DeviceMut` behind an `RwLock` gets every call with exclusive access.
    #[test]
    fn an_rwlock_device_gets_mutable_calls() {
        #[derive(Default)]
        struct Reg(u8);
        impl DeviceMut for Reg {
            fn region_write(&mut self, _: u32, _: u64, data: &[u8]) -> io::Result<()> {
                self.0 = data[0];
                Ok(())
            }
            fn region_read(&mut self, _: u32, _: u64, data: &mut [u8]) -> io::Result<()> {
                data[0] = self.0;
                Ok(())
            }
        }
        let d = RwLock::new(Reg::default());
        Device::region_write(&d, 0, 0, &[7]).unwrap();
        let mut b = [0u8];
        Device::region_read(&d, 0, 0, &mut b).unwrap();
        assert_eq!((b[0], d.read().unwrap().0), (7, 7));
    }

    /// A poisoned mutex (a device method panicked on another thread) still serves.
    #[test]
    fn a_poisoned_device_mutex_still_serves() {
        let m = Arc::new(Mutex::new(Bare));
        let m2 = Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("device method panicked");
        })
        .join();
        assert!(m.is_poisoned());
        check_defaults(&m);
    }
}
