// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Device access to fd-backed memory (mmap and FILE_IO), permissions,
//! spanning regions and zero-copy translation.

mod common;

use common::*;
use vfio_user_dma::{ByteValued, DmaProt, DmaSpace, Error, MapRequest};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}
// SAFETY: `Desc` is `repr(C)` with only integer fields and no padding (16 bytes).
unsafe impl ByteValued for Desc {}

#[test]
fn device_writes_are_visible_to_the_client() {
    let mem = Mem::new(16 * PAGE);
    let s = DmaSpace::default();
    // iova 0x100000 maps file offset 4 pages.
    s.map(req(&mem, 0x100000, 8 * PAGE, 4 * PAGE, DmaProt::READ_WRITE)).unwrap();
    let data = pattern(1, 3 * PAGE as usize + 17);
    s.write(0x100000 + 100, &data).unwrap();
    assert_eq!(mem.peek(4 * PAGE + 100, data.len()), data);
    // The client writes, the device reads.
    let data2 = pattern(2, 5000);
    mem.poke(5 * PAGE, &data2);
    let mut buf = vec![0u8; 5000];
    s.read(0x100000 + PAGE, &mut buf).unwrap();
    assert_eq!(buf, data2);
    // Objects.
    let d = Desc { addr: 0xdead_beef_0000, len: 512, flags: 3, next: 7 };
    s.write_obj(0x100000 + 8 * PAGE - 16, &d).unwrap();
    assert_eq!(s.read_obj::<Desc>(0x100000 + 8 * PAGE - 16).unwrap(), d);
    assert_eq!(mem.peek(12 * PAGE - 16, 16), d.as_slice());
    s.write_obj(0x100000, &0x1122_3344u32).unwrap();
    assert_eq!(mem.peek(4 * PAGE, 4), 0x1122_3344u32.to_ne_bytes());
    // Zero length accesses succeed anywhere.
    s.read(0, &mut []).unwrap();
    s.write(u64::MAX, &[]).unwrap();
}

#[test]
fn out_of_range_is_efault_and_transfers_nothing() {
    let mem = Mem::new(4 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&mem, 0x10000, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    let e = s.read_obj::<u64>(0x10000 + 4 * PAGE - 4).unwrap_err();
    assert!(matches!(e, Error::Unmapped { iova } if iova == 0x10000 + 4 * PAGE), "{e:?}");
    assert_eq!(e.errno(), libc::EFAULT);
    assert_eq!(s.read_obj::<u8>(0xffff).unwrap_err().errno(), libc::EFAULT);
    // A write that runs off the end writes nothing at all.
    let e = s.write(0x10000 + 4 * PAGE - 2, &[0xaa; 4]).unwrap_err();
    assert_eq!(e.errno(), libc::EFAULT);
    assert_eq!(mem.peek(4 * PAGE - 2, 2), [0, 0]);
    // Address arithmetic at the top of the space does not overflow.
    assert_eq!(s.read(u64::MAX, &mut [0; 2]).unwrap_err().errno(), libc::EFAULT);
    assert_eq!(s.write(u64::MAX - 1, &[0; 8]).unwrap_err().errno(), libc::EFAULT);
    assert_eq!(s.translate(u64::MAX, 16, false).unwrap_err().errno(), libc::EFAULT);
}

#[test]
fn permissions() {
    let mem = Mem::new(8 * PAGE);
    mem.poke(0, b"client data");
    let s = DmaSpace::default();
    s.map(req(&mem, 0, 4 * PAGE, 0, DmaProt::READ_ONLY)).unwrap();
    s.map(req(&mem, 4 * PAGE, 4 * PAGE, 4 * PAGE, DmaProt::WRITE_ONLY)).unwrap();
    let mut buf = [0u8; 11];
    s.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"client data");
    let e = s.write(0, b"device").unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { iova: 0, write: true }), "{e:?}");
    assert_eq!(e.errno(), libc::EACCES);
    assert_eq!(mem.peek(0, 11), b"client data", "read-only memory unchanged");
    assert_eq!(s.translate(0, 16, true).unwrap_err().errno(), libc::EACCES);
    // Write-only: writes work, reads are refused.
    s.write(4 * PAGE, b"wo").unwrap();
    assert_eq!(mem.peek(4 * PAGE, 2), b"wo");
    let e = s.read_obj::<u16>(4 * PAGE).unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { write: false, .. }));
    assert_eq!(e.errno(), libc::EACCES);
    // A write spanning into the read-only region is refused as a whole.
    assert_eq!(s.write(4 * PAGE - 2, &[1; 4]).unwrap_err().errno(), libc::EACCES);
    // (the write-only part after the boundary is untouched too)
    assert_eq!(mem.peek(4 * PAGE, 2), b"wo");
}

#[test]
fn read_only_mapping_is_really_prot_read() {
    // A read-only fd can only be mapped PROT_READ: if the space asked for
    // PROT_WRITE, mmap of a MAP_SHARED O_RDONLY file would fail with EACCES.
    let mem = Mem::new(4 * PAGE);
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&mem.file));
    let ro = std::fs::File::open(path).unwrap();
    let s = DmaSpace::default();
    s.map(MapRequest {
        iova: 0,
        size: 4 * PAGE,
        file_offset: 0,
        prot: DmaProt::READ_ONLY,
        fd: Some(ro.try_clone().unwrap().into()),
        file_io: false,
    })
    .unwrap();
    mem.poke(10, b"x");
    assert_eq!(s.read_obj::<u8>(10).unwrap(), b'x');
    let e = s
        .map(MapRequest {
            iova: 8 * PAGE,
            size: 4 * PAGE,
            file_offset: 0,
            prot: DmaProt::READ_WRITE,
            fd: Some(ro.into()),
            file_io: false,
        })
        .unwrap_err();
    assert!(matches!(e, Error::Mmap(_)), "{e:?}");
    assert_eq!(e.errno(), libc::EACCES);
}

#[test]
fn spanning_adjacent_regions() {
    let a = Mem::new(4 * PAGE);
    let b = Mem::new(4 * PAGE);
    let c = Mem::new(4 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&a, 0x40000, 2 * PAGE, PAGE, DmaProt::READ_WRITE)).unwrap();
    s.map(req(&b, 0x40000 + 2 * PAGE, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.map(MapRequest { file_io: true, ..req(&c, 0x40000 + 6 * PAGE, 3 * PAGE, PAGE, DmaProt::READ_WRITE) }).unwrap();
    let start = 0x40000 + PAGE + 10;
    let data = pattern(3, 7 * PAGE as usize);
    s.write(start, &data).unwrap();
    let n1 = (PAGE - 10) as usize;
    let n2 = (4 * PAGE) as usize;
    assert_eq!(a.peek(2 * PAGE + 10, n1), data[..n1]);
    assert_eq!(b.peek(0, n2), data[n1..n1 + n2]);
    assert_eq!(c.peek(PAGE, data.len() - n1 - n2), data[n1 + n2..]);
    let mut back = vec![0u8; data.len()];
    s.read(start, &mut back).unwrap();
    assert_eq!(back, data);
    // A hole between regions is EFAULT.
    s.unmap(0x40000 + 2 * PAGE, 4 * PAGE).unwrap();
    let e = s.read(start, &mut back).unwrap_err();
    assert!(matches!(e, Error::Unmapped { iova } if iova == 0x40000 + 2 * PAGE));
}

#[test]
fn file_io_region() {
    let mem = Mem::new(8 * PAGE);
    let s = DmaSpace::default();
    s.map(MapRequest { file_io: true, ..req(&mem, 0x2000_0000, 4 * PAGE, 2 * PAGE, DmaProt::READ_WRITE) }).unwrap();
    assert_eq!(s.region_at(0x2000_0000).unwrap().kind, vfio_user_dma::RegionKind::FileIo);
    s.write_obj(0x2000_0000 + 8, &0xabcdu16).unwrap();
    assert_eq!(mem.peek(2 * PAGE + 8, 2), 0xabcdu16.to_ne_bytes());
    mem.poke(3 * PAGE, b"pread");
    let mut buf = [0u8; 5];
    s.read(0x2000_0000 + PAGE, &mut buf).unwrap();
    assert_eq!(&buf, b"pread");
    // No host mapping: zero-copy is refused.
    let e = s.translate(0x2000_0000, 16, false).unwrap_err();
    assert!(matches!(e, Error::NotMappable { .. }));
    assert_eq!(e.errno(), libc::ENOTSUP);
    // A file known to be too short is refused; one of size 0 (as /proc/<pid>/mem
    // reports) is accepted for FILE_IO, and an access past its end is an error, not a crash.
    let short = Mem::new(PAGE);
    let e = s.map(MapRequest { file_io: true, ..req(&short, 0, 4 * PAGE, 0, DmaProt::READ_WRITE) }).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let unsized_file = rustix::fs::memfd_create("size-0", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    s.map(MapRequest {
        file_io: true,
        ..MapRequest { fd: Some(unsized_file), ..req(&short, 0, 4 * PAGE, 0, DmaProt::READ_WRITE) }
    })
    .unwrap();
    let mut big = vec![0u8; 2 * PAGE as usize];
    assert!(s.read(PAGE, &mut big).is_err());
}

#[test]
fn zero_copy_translate() {
    let a = Mem::new(4 * PAGE);
    let b = Mem::new(4 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&a, 0, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.map(req(&b, 4 * PAGE, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    let g = s.translate(3 * PAGE, 2 * PAGE as usize, true).unwrap();
    assert_eq!(g.iova(), 3 * PAGE);
    assert_eq!(g.len(), 2 * PAGE as usize);
    assert!(!g.is_empty());
    let slices: Vec<_> = g.slices().collect();
    assert_eq!(slices.len(), 2);
    assert_eq!(slices.iter().map(|s| s.len()).sum::<usize>(), 2 * PAGE as usize);
    slices[0].copy_from(&[7u8; 4096][..]);
    slices[1].copy_from(&[9u8; 4096][..]);
    drop(slices);
    drop(g);
    assert_eq!(a.peek(3 * PAGE, 4096), vec![7u8; 4096]);
    assert_eq!(b.peek(0, 4096), vec![9u8; 4096]);
    // Read translation sees client data.
    a.poke(100, b"sg");
    let g = s.translate(100, 2, false).unwrap();
    let mut buf = [0u8; 2];
    g.slices().next().unwrap().copy_to(&mut buf[..]);
    assert_eq!(&buf, b"sg");
    // Unmapped parts fail the whole translation.
    assert_eq!(s.translate(7 * PAGE, 2 * PAGE as usize, false).unwrap_err().errno(), libc::EFAULT);
    // Message regions have no host mapping.
    s.map(msg_req(8 * PAGE, PAGE, DmaProt::READ_WRITE)).unwrap();
    assert_eq!(s.translate(7 * PAGE, 2 * PAGE as usize, false).unwrap_err().errno(), libc::ENOTSUP);
    assert!(format!("{g:?}").contains("DmaGuard"));
}

#[test]
fn guard_read_and_write_cross_the_scatter_gather_list() {
    let a = Mem::new(4 * PAGE);
    let b = Mem::new(4 * PAGE);
    let s = DmaSpace::default();
    s.map(req(&a, 0, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    s.map(req(&b, 4 * PAGE, 4 * PAGE, 0, DmaProt::READ_WRITE)).unwrap();
    // Six bytes straddling the boundary between the two mappings, 1 byte into the guard.
    let g = s.translate(4 * PAGE - 4, 8, true).unwrap();
    g.write(1, b"abcdef").unwrap();
    assert_eq!(a.peek(4 * PAGE - 3, 3), b"abc");
    assert_eq!(b.peek(0, 3), b"def");
    let mut back = [0u8; 6];
    g.read(1, &mut back).unwrap();
    assert_eq!(&back, b"abcdef");
    // Past the guard's end: refused, nothing copied.
    assert_eq!(g.write(3, b"123456").unwrap_err().errno(), libc::EINVAL);
    assert_eq!(g.read(8, &mut [0u8; 1]).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(b.peek(1, 3), b"ef\0");
    drop(g);
    // A guard taken for reading cannot write.
    let g = s.translate(0, 4, false).unwrap();
    assert_eq!(g.write(0, b"x").unwrap_err().errno(), libc::EACCES);
}
