// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DMA_MAP / DMA_UNMAP rules and their errno values.

mod common;

use common::*;
use vfio_user_dma::{DmaConfig, DmaProt, DmaSpace, Error, MapRequest, MappingInfo, RegionKind};

fn errno(r: vfio_user_dma::Result<()>) -> i32 {
    r.expect_err("expected an error").errno()
}

#[test]
fn invalid_arguments() {
    let s = DmaSpace::default();
    let mem = Mem::new(16 * PAGE);
    assert_eq!(errno(s.map(req(&mem, 0, 0, 0, DmaProt::READ_WRITE))), libc::EINVAL, "size 0");
    assert_eq!(errno(s.map(msg_req(0, 0, DmaProt::READ_WRITE))), libc::EINVAL, "size 0, no fd");
    assert_eq!(
        errno(s.map(msg_req(u64::MAX - PAGE + 1, PAGE, DmaProt::READ_WRITE))),
        libc::EINVAL,
        "iova + size wraps to 0"
    );
    assert_eq!(
        errno(s.map(msg_req(u64::MAX - PAGE + 1, 2 * PAGE, DmaProt::READ_WRITE))),
        libc::EINVAL,
        "iova + size wraps"
    );
    assert_eq!(errno(s.map(msg_req(100, PAGE, DmaProt::READ_WRITE))), libc::EINVAL, "iova misaligned");
    assert_eq!(errno(s.map(msg_req(PAGE, 100, DmaProt::READ_WRITE))), libc::EINVAL, "size misaligned");
    assert_eq!(errno(s.map(req(&mem, 0, PAGE, 512, DmaProt::READ_WRITE))), libc::EINVAL, "offset misaligned");
    assert_eq!(errno(s.map(msg_req(0, PAGE, DmaProt::default()))), libc::EINVAL, "neither read nor write");
    assert_eq!(
        errno(s.map(MapRequest { file_io: true, ..msg_req(0, PAGE, DmaProt::READ_WRITE) })),
        libc::EINVAL,
        "FILE_IO without fd"
    );
    assert_eq!(errno(s.map(req(&mem, 0, 32 * PAGE, 0, DmaProt::READ_WRITE))), libc::EINVAL, "fd smaller than size");
    assert_eq!(
        errno(s.map(req(&mem, 0, 8 * PAGE, 9 * PAGE, DmaProt::READ_WRITE))),
        libc::EINVAL,
        "fd smaller than offset + size"
    );
    assert_eq!(
        errno(s.map(MapRequest { file_io: true, ..req(&mem, 0, 8 * PAGE, 9 * PAGE, DmaProt::READ_WRITE) })),
        libc::EINVAL,
        "FILE_IO fd smaller than offset + size (found by the dma_space fuzz target)"
    );
    assert_eq!(
        errno(s.map(req(&mem, 0, PAGE, u64::MAX - PAGE + 1, DmaProt::READ_WRITE))),
        libc::EINVAL,
        "offset + size wraps"
    );
    assert_eq!(errno(s.map(req(&mem, 0, PAGE, 1 << 63, DmaProt::READ_WRITE))), libc::EINVAL, "offset beyond off_t");
    assert!(s.is_empty());
    // The largest region that does not wrap is fine (message-based, nothing allocated).
    s.map(msg_req(PAGE, u64::MAX - 2 * PAGE + 1, DmaProt::READ_ONLY)).unwrap();
    assert_eq!(s.len(), 1);
}

#[test]
fn pgsizes_alignment() {
    let s = DmaSpace::new(DmaConfig { pgsizes: (1 << 16) | (1 << 21), ..Default::default() });
    assert_eq!(s.config().min_page_size(), 1 << 16);
    assert_eq!(errno(s.map(msg_req(PAGE, 1 << 16, DmaProt::READ_WRITE))), libc::EINVAL);
    assert_eq!(errno(s.map(msg_req(1 << 16, PAGE, DmaProt::READ_WRITE))), libc::EINVAL);
    s.map(msg_req(1 << 16, 1 << 16, DmaProt::READ_WRITE)).unwrap();
    // pgsizes 0 falls back to 4 KiB.
    let s = DmaSpace::new(DmaConfig { pgsizes: 0, ..Default::default() });
    s.map(msg_req(PAGE, PAGE, DmaProt::READ_WRITE)).unwrap();
}

#[test]
fn overlaps_are_eexist_adjacent_ok() {
    let s = DmaSpace::default();
    s.map(msg_req(0x10000, 0x4000, DmaProt::READ_WRITE)).unwrap();
    for (iova, size, what) in [
        (0x10000, 0x4000, "identical"),
        (0xf000, 0x2000, "overlaps start"),
        (0x13000, 0x2000, "overlaps end"),
        (0x11000, 0x1000, "inside"),
        (0x8000, 0x10000, "contains"),
    ] {
        let e = s.map(msg_req(iova, size, DmaProt::READ_WRITE)).unwrap_err();
        assert!(matches!(e, Error::Overlap { .. }), "{what}: {e}");
        assert_eq!(e.errno(), libc::EEXIST, "{what}");
    }
    // Overlap is detected for fd-backed requests too, and their fd is closed.
    let mem = Mem::new(4 * PAGE);
    assert_eq!(errno(s.map(req(&mem, 0x12000, PAGE, 0, DmaProt::READ_WRITE))), libc::EEXIST);
    // Adjacent on both sides.
    s.map(msg_req(0xf000, 0x1000, DmaProt::READ_WRITE)).unwrap();
    s.map(req(&mem, 0x14000, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.len(), 3);
    let regions = s.regions();
    assert_eq!(
        regions,
        vec![
            MappingInfo { iova: 0xf000, size: 0x1000, prot: DmaProt::READ_WRITE, kind: RegionKind::Message },
            MappingInfo { iova: 0x10000, size: 0x4000, prot: DmaProt::READ_WRITE, kind: RegionKind::Message },
            MappingInfo { iova: 0x14000, size: 0x4000, prot: DmaProt::READ_WRITE, kind: RegionKind::Mmap },
        ]
    );
    assert_eq!(s.region_at(0x17fff).map(|r| r.iova), Some(0x14000));
    assert_eq!(s.region_at(0x18000), None);
    assert_eq!(s.region_at(0xefff), None);
}

#[test]
fn unmap_must_match_exactly() {
    let s = DmaSpace::default();
    s.map(msg_req(0x10000, 0x4000, DmaProt::READ_WRITE)).unwrap();
    for (iova, size) in [(0x10000, 0x1000), (0x10000, 0x8000), (0x11000, 0x3000), (0x20000, 0x1000), (0, 0)] {
        let e = s.unmap(iova, size).unwrap_err();
        assert!(matches!(e, Error::NoSuchMapping { .. }));
        assert_eq!(e.errno(), libc::ENOENT);
    }
    assert_eq!(s.len(), 1);
    s.unmap(0x10000, 0x4000).unwrap();
    assert!(s.is_empty());
    assert_eq!(errno(s.unmap(0x10000, 0x4000)), libc::ENOENT, "twice");
}

#[test]
fn max_maps_is_enospc() {
    let s = DmaSpace::new(DmaConfig { max_maps: 3, ..Default::default() });
    for i in 0..3 {
        s.map(msg_req(i * PAGE, PAGE, DmaProt::READ_WRITE)).unwrap();
    }
    let e = s.map(msg_req(10 * PAGE, PAGE, DmaProt::READ_WRITE)).unwrap_err();
    assert!(matches!(e, Error::TooManyMappings(3)));
    assert_eq!(e.errno(), libc::ENOSPC);
    s.unmap(PAGE, PAGE).unwrap();
    s.map(msg_req(10 * PAGE, PAGE, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.len(), 3);
}

#[test]
fn unmap_all_and_clear() {
    let s = DmaSpace::default();
    let mem = Mem::new(8 * PAGE);
    s.map(req(&mem, 0, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.map(req(&mem, 8 * PAGE, 4 * PAGE, 4 * PAGE, DmaProt::READ_ONLY)).unwrap();
    s.map(msg_req(1 << 30, PAGE, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.len(), 3);
    s.unmap_all().unwrap();
    assert!(s.is_empty());
    assert!(s.regions().is_empty());
    assert_eq!(errno(s.write(0, &[1])), libc::EFAULT);
    // Mapping again at the same place works.
    s.map(req(&mem, 0, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.start_logging(PAGE, &[]).unwrap();
    s.clear().unwrap();
    assert!(s.is_empty());
    assert_eq!(s.logging_page_size(), None);
    // The space is usable after a disconnect.
    s.map(req(&mem, 0, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.write(0, b"again").unwrap();
    assert_eq!(mem.peek(0, 5), b"again");
}

#[test]
fn many_maps_lookup() {
    let s = DmaSpace::default();
    // Interleaved order to exercise the tree.
    for i in (0..2000u64).rev().step_by(2).chain((0..2000u64).step_by(2)) {
        s.map(msg_req(i * 2 * PAGE, PAGE, DmaProt::READ_WRITE)).unwrap();
    }
    assert_eq!(s.len(), 2000);
    for i in 0..2000u64 {
        assert_eq!(s.region_at(i * 2 * PAGE + 5).map(|r| r.iova), Some(i * 2 * PAGE));
        assert_eq!(s.region_at(i * 2 * PAGE + PAGE), None);
    }
    for i in 0..2000u64 {
        s.unmap(i * 2 * PAGE, PAGE).unwrap();
    }
    assert!(s.is_empty());
}

/// The open-fd budget bounds file-I/O mappings only (ENOSPC past it); mmapped mappings,
/// which close their fd, are not counted.
#[test]
fn open_fd_budget_counts_only_mappings_that_keep_their_fd() {
    let mem = Mem::new(64 * PAGE);
    let loose = Mem::unsealed(64 * PAGE);
    let s = DmaSpace::default();
    s.set_max_open_fds(2);
    s.map(req(&loose, 0, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.map(MapRequest { file_io: true, ..req(&mem, PAGE, PAGE, 0, DmaProt::READ_WRITE) }).unwrap();
    assert_eq!(s.open_fds(), 2);
    let e = s.map(req(&loose, 2 * PAGE, PAGE, 0, DmaProt::READ_WRITE)).unwrap_err();
    assert_eq!(e.errno(), libc::ENOSPC, "{e}");
    let e = s.map(MapRequest { file_io: true, ..req(&mem, 2 * PAGE, PAGE, 0, DmaProt::READ_WRITE) }).unwrap_err();
    assert_eq!(e.errno(), libc::ENOSPC, "{e}");
    for i in 2..20 {
        s.map(req(&mem, i * PAGE, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    }
    assert_eq!(s.open_fds(), 2);
    s.unmap(0, PAGE).unwrap();
    s.map(req(&loose, 30 * PAGE, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.unmap_all().unwrap();
    assert_eq!(s.open_fds(), 0);
}
