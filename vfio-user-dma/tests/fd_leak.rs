// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The client's fds are closed on unmap, unmap_all, clear and failed maps; a mapped
//! (sealed) fd is closed at once, only file-I/O mappings keep theirs.
//! A single test in its own binary, so that no other test opens fds meanwhile.

mod common;

use common::*;
use vfio_user_dma::{DmaProt, DmaSpace, MapRequest};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn fds_are_closed() {
    let mem = Mem::new(64 * PAGE);
    let loose = Mem::unsealed(64 * PAGE);
    let s = DmaSpace::default();
    let before = open_fds();

    // Sealed and mmapped: the fd is closed right after mmap.
    s.map(req(&mem, 0, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(open_fds(), before, "a mapped fd is not kept");
    // FILE_IO, and an fd that may shrink: pread/pwrite need the fd.
    s.map(MapRequest { file_io: true, ..req(&mem, 4 * PAGE, 4 * PAGE, 4 * PAGE, DmaProt::READ_WRITE) }).unwrap();
    s.map(req(&loose, 8 * PAGE, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(open_fds(), before + 2, "one fd per file-I/O mapping");
    s.unmap(0, 4 * PAGE).unwrap();
    assert_eq!(open_fds(), before + 2);
    s.unmap(4 * PAGE, 4 * PAGE).unwrap();
    assert_eq!(open_fds(), before + 1);
    s.unmap(8 * PAGE, 4 * PAGE).unwrap();
    assert_eq!(open_fds(), before);

    // Failed maps close the fd they were given.
    for m in [&mem, &loose] {
        assert!(s.map(req(m, 0, 128 * PAGE, 0, DmaProt::READ_WRITE)).is_err());
        assert!(s.map(req(m, 100, PAGE, 0, DmaProt::READ_WRITE)).is_err());
    }
    s.map(req(&loose, 0, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert!(s.map(req(&loose, 0, PAGE, 0, DmaProt::READ_WRITE)).is_err());
    assert!(s.map(req(&mem, 0, PAGE, 0, DmaProt::READ_WRITE)).is_err());
    assert_eq!(open_fds(), before + 1);

    for i in 1..10 {
        s.map(req(&loose, i * PAGE, PAGE, i * PAGE, DmaProt::READ_ONLY)).unwrap();
        s.map(req(&mem, (16 + i) * PAGE, PAGE, i * PAGE, DmaProt::READ_ONLY)).unwrap();
    }
    assert_eq!(open_fds(), before + 10);
    s.unmap_all().unwrap();
    assert_eq!(open_fds(), before);

    for i in 0..10 {
        s.map(req(&loose, i * PAGE, PAGE, i * PAGE, DmaProt::READ_WRITE)).unwrap();
    }
    s.start_logging(PAGE, &[]).unwrap();
    s.write(0, &[1; 100]).unwrap();
    let _ = s.unmap_with_dirty_bitmap(0, PAGE, PAGE).unwrap();
    assert_eq!(open_fds(), before + 9);
    s.clear().unwrap();
    assert_eq!(open_fds(), before);

    // Dropping the space closes everything too.
    let s2 = DmaSpace::default();
    s2.map(req(&loose, 0, PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(open_fds(), before + 1);
    drop(s2);
    assert_eq!(open_fds(), before);
}
