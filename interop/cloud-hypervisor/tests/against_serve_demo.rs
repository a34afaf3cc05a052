// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The stand-in, with Cloud Hypervisor's dependency versions, against `vfio-user serve
//! demo` (the binary of this repository's workspace: `VFIO_USER_BIN`, or
//! `target/debug/vfio-user` of the workspace, which `cargo build -p vfio-user-tools` makes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_INFO_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR2_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX,
};
use vfio_user_ch_interop::{DmaLoggingRange, Vfio, VfioMigrationState, VfioUserDmaMapping, VfioUserPciDevice};
use vfio_user_client::{Client, Config};
use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryBackend, GuestRegionMmap,
    MmapRegion, VolatileMemory,
};
use vmm_sys_util::eventfd::EventFd;

type GuestMemoryMmap = vm_memory::GuestMemoryMmap<AtomicBitmap>;

/// The demo device's IDs and registers (see `vfio-user-tools/src/devices.rs`).
const DEMO_IDS: u32 = 0xd0e0_5655;
const REG_ADDR: u64 = 0x00;
const REG_DOORBELL: u64 = 0x10;
const REG_DONE: u64 = 0x14;
const REG_ERROR: u64 = 0x18;
const BAR0_SIZE: u64 = 0x1000;
const BAR2_SIZE: u64 = 0x2000;
const MIGRATION_STOP_COPY: u64 = 1;
const MIGRATION_PRE_COPY: u64 = 4;
/// Guest memory: two 1 MiB regions of one memfd, at these guest addresses.
const GPA: [u64; 2] = [0, 0x10_0000_0000];
const MIB: u64 = 1 << 20;
/// Longest wait for the server to come up or an interrupt to arrive.
const PATIENCE: Duration = Duration::from_secs(20);

/// `vfio-user serve demo` on a socket of its own; stopped with SIGTERM on drop.
struct Server {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let bin = std::env::var_os("VFIO_USER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/vfio-user"));
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p vfio-user-tools` in the workspace first",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("demo.sock");
        let child = Command::new(&bin).arg("serve").arg("demo").arg("--socket-path").arg(&socket).spawn().unwrap();
        let server = Server { child, socket, _dir: dir };
        let t0 = Instant::now();
        while !server.socket.exists() {
            assert!(t0.elapsed() < PATIENCE, "the server did not bind its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn connect(&self) -> Arc<Client> {
        Arc::new(Client::connect(&self.socket, Config::default()).unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
    }
}

/// Guest memory as Cloud Hypervisor keeps it: memfd-backed regions with dirty bitmaps,
/// behind a `GuestMemoryAtomic`.
fn guest_memory() -> GuestMemoryAtomic<GuestMemoryMmap> {
    let fd = rustix::fs::memfd_create("guest-ram", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let file = Arc::new(std::fs::File::from(fd));
    file.set_len(2 * MIB).unwrap();
    let regions = GPA
        .iter()
        .enumerate()
        .map(|(i, &gpa)| {
            let fo = FileOffset::from_arc(file.clone(), i as u64 * MIB);
            let m = MmapRegion::<AtomicBitmap>::from_file(fo, MIB as usize).unwrap();
            GuestRegionMmap::new(m, GuestAddress(gpa)).unwrap()
        })
        .collect();
    GuestMemoryAtomic::new(GuestMemoryMmap::from_regions(regions).unwrap())
}

/// The offset of the MSI-X capability in config space.
fn msix_cap(vfio: &dyn Vfio) -> u32 {
    let mut at = vfio.read_config_dword(0x34) & 0xfc;
    for _ in 0..48 {
        let head = vfio.read_config_dword(at);
        if head & 0xff == 0x11 {
            return at;
        }
        at = (head >> 8) & 0xfc;
    }
    panic!("no MSI-X capability");
}

/// Waits until `efd` has been signalled; returns its count.
fn wait_irq(efd: &EventFd) -> u64 {
    let t0 = Instant::now();
    loop {
        match efd.read() {
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(t0.elapsed() < PATIENCE, "no interrupt");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("eventfd: {e}"),
        }
    }
}

/// Rings the demo device's doorbell: `len` bytes of `pattern` at `addr`.
fn doorbell(vfio: &dyn Vfio, addr: u64, len: u32, pattern: u32) {
    let mut regs = addr.to_le_bytes().to_vec();
    regs.extend_from_slice(&len.to_le_bytes());
    regs.extend_from_slice(&pattern.to_le_bytes());
    vfio.region_write(VFIO_PCI_BAR0_REGION_INDEX, REG_ADDR, &regs);
    vfio.region_write(VFIO_PCI_BAR0_REGION_INDEX, REG_DOORBELL, &1u32.to_le_bytes());
}

fn bar0_reg(vfio: &dyn Vfio, off: u64) -> u32 {
    let mut b = [0u8; 4];
    vfio.region_read(VFIO_PCI_BAR0_REGION_INDEX, off, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn every_call_cloud_hypervisor_makes() {
    let server = Server::start();
    let client = server.connect();
    // The guest memory handed over for server DMA is the GuestMemoryAtomic itself.
    let memory = guest_memory();
    let mut device = VfioUserPciDevice::new(client.clone()).unwrap();
    let vfio = device.vfio_wrapper();
    assert_eq!(vfio.read_config_dword(0), DEMO_IDS);

    // DMA: every guest memory region, as the device manager maps them.
    for region in memory.memory().iter() {
        device.dma_map(region).unwrap();
    }
    assert_eq!(client.dma_mappings().len(), 2);

    // MSI-X through vmm-sys-util EventFds, enabled in config space as the guest would.
    let info = vfio.get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX).unwrap();
    assert!(info.count >= 1 && info.flags & VFIO_IRQ_INFO_EVENTFD != 0, "{info:?}");
    let efds: Vec<EventFd> = (0..info.count).map(|_| EventFd::new(libc::EFD_NONBLOCK).unwrap()).collect();
    vfio.enable_msix(efds.iter().collect()).unwrap();
    let cap = msix_cap(&vfio);
    let ctl = (vfio.read_config_dword(cap) >> 16) as u16;
    vfio.write_config(cap + 2, &((ctl | 0x8000) & !0x4000).to_le_bytes());

    // The device writes into the second region by DMA and raises vector 0.
    let target = GPA[1] + 0x3000;
    doorbell(&vfio, target, 256, 0x5a5a_1234);
    assert_eq!(wait_irq(&efds[0]), 1);
    assert_eq!((bar0_reg(&vfio, REG_DONE), bar0_reg(&vfio, REG_ERROR)), (1, 0));
    let mut got = [0u8; 256];
    memory.memory().read_slice(&mut got, GuestAddress(target)).unwrap();
    assert!(got.chunks(4).all(|c| c == 0x5a5a_1234u32.to_le_bytes()));

    // INTx: the device raised it too; unmasking is accepted.
    assert_eq!(vfio.get_irq_info(VFIO_PCI_INTX_IRQ_INDEX).unwrap().count, 1);
    vfio.unmask_irq(VFIO_PCI_INTX_IRQ_INDEX).unwrap();

    // BAR mappings: BAR2's sparse area maps the device's memory.
    device
        .map_mmio_regions(&[(VFIO_PCI_BAR0_REGION_INDEX, BAR0_SIZE), (VFIO_PCI_BAR2_REGION_INDEX, BAR2_SIZE)])
        .unwrap();
    let area = device.mmio_regions.iter().find(|a| a.index == VFIO_PCI_BAR2_REGION_INDEX).expect("BAR2 is mapped");
    vfio.region_write(VFIO_PCI_BAR2_REGION_INDEX, area.offset + 8, b"through messages");
    let mut seen = [0u8; 16];
    area.mapping.as_volatile_slice().read_slice(&mut seen, 8).unwrap();
    assert_eq!(&seen, b"through messages");

    // The IOMMU path: an IOVA window onto guest memory, then away again.
    let mapping = VfioUserDmaMapping::new(client.clone(), Arc::new(memory.clone()));
    mapping.map(0x8000_0000, GPA[0] + 0x1000, 0x2000).unwrap();
    assert!(mapping.map(0x9000_0000, GPA[0] + MIB - 0x1000, 0x2000).is_err(), "past its region");
    doorbell(&vfio, 0x8000_0000 + 0x10, 8, 0xfeed_beef);
    assert_eq!(wait_irq(&efds[0]), 1);
    assert_eq!(memory.memory().read_obj::<u32>(GuestAddress(GPA[0] + 0x1014)).unwrap(), 0xfeed_beef);
    mapping.unmap(0x8000_0000, 0x2000).unwrap();

    vfio.disable_msix().unwrap();
    for region in memory.memory().iter() {
        device.dma_unmap(region).unwrap();
    }
    assert!(client.dma_mappings().is_empty());
    drop(device);
    assert!(client.disconnected().is_some(), "dropping the device shuts the client down");
}

#[test]
fn migration_and_dirty_logging_hooks() {
    let (src_server, dst_server) = (Server::start(), Server::start());
    let memory = guest_memory();
    let mut src = VfioUserPciDevice::new(src_server.connect()).unwrap();
    let dst = VfioUserPciDevice::new(dst_server.connect()).unwrap();
    let (sv, dv) = (src.vfio_wrapper(), dst.vfio_wrapper());
    for region in memory.memory().iter() {
        src.dma_map(region).unwrap();
    }
    let flags = sv.migration_flags().unwrap().expect("the demo device migrates");
    assert_eq!(flags & (MIGRATION_STOP_COPY | MIGRATION_PRE_COPY), MIGRATION_STOP_COPY | MIGRATION_PRE_COPY);

    // Dirty logging of guest memory while the device writes by DMA.
    let ranges: Vec<DmaLoggingRange> = GPA.iter().map(|&iova| DmaLoggingRange { iova, length: MIB }).collect();
    let page = sv.start_dma_logging(4096, &ranges).unwrap();
    assert!(page.is_power_of_two());
    let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    sv.enable_irq(VFIO_PCI_INTX_IRQ_INDEX, vec![&efd]).unwrap();
    doorbell(&sv, GPA[1] + 5 * page, (2 * page) as u32, 0x0bad_cafe);
    wait_irq(&efd);
    assert_eq!(sv.report_dma_logging(ranges[0], page).unwrap(), vec![], "nothing written in the first region");
    assert_eq!(sv.report_dma_logging(ranges[1], page).unwrap(), vec![(GPA[1] + 5 * page, 2 * page)]);
    assert_eq!(sv.report_dma_logging(ranges[1], page).unwrap(), vec![], "a report clears the log");
    sv.stop_dma_logging().unwrap();

    // Device state: PRE_COPY while running, the rest in STOP_COPY, into a RESUMING device.
    sv.region_write(VFIO_PCI_BAR2_REGION_INDEX, 0x100, b"state to carry");
    sv.set_migration_state(VfioMigrationState::PreCopy).unwrap();
    let pre = sv.read_migration_data().unwrap();
    assert!(!pre.is_empty(), "pre-copy data");
    dv.set_migration_state(VfioMigrationState::Resuming).unwrap();
    dv.write_migration_data(&pre).unwrap();
    sv.region_write(VFIO_PCI_BAR2_REGION_INDEX, 0x100, b"changed at last");
    sv.set_migration_state(VfioMigrationState::StopCopy).unwrap();
    let rest = sv.read_migration_data().unwrap();
    assert!(!rest.is_empty(), "the state read in STOP_COPY");
    dv.write_migration_data(&rest).unwrap();
    dv.set_migration_state(VfioMigrationState::Stop).unwrap();
    dv.set_migration_state(VfioMigrationState::Running).unwrap();
    sv.set_migration_state(VfioMigrationState::Stop).unwrap();
    let mut carried = [0u8; 15];
    dv.region_read(VFIO_PCI_BAR2_REGION_INDEX, 0x100, &mut carried);
    assert_eq!(&carried, b"changed at last");
    assert_eq!(bar0_reg(&dv, REG_DONE), 1, "the doorbell count moved with the state");
}
