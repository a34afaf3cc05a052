// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Moving data between the image and client memory with `preadv` / `pwritev` straight on
//! the memory's [`VolatileSlice`]s: zero-copy where the client memory is mapped, into the
//! [`DmaView`](crate::DmaView)'s bounce buffers elsewhere (written back by its flush).
//! Pages read into are marked dirty through the slices' bitmaps.

use std::fs::File;
use std::os::fd::AsRawFd;

use vm_memory::bitmap::Bitmap;
use vm_memory::{GuestAddress, GuestMemory, Permissions, VolatileSlice};

/// Most iovecs one system call takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Transfers at least this long are split in two halves moved at once, one on a helper
/// thread: a 1 MiB copy between the page cache and client memory then takes about half as
/// long when a second core is free (as a thread pool's parallel requests would).
const SPLIT: usize = 256 << 10;

/// One half of a split transfer, handed to the helper thread.
struct Half(Vec<libc::iovec>);

// SAFETY: the iovecs point into client memory (or bounce buffers) that the caller keeps
// mapped and borrowed until the scoped helper thread is joined; the two halves cover
// disjoint bytes, and only the kernel accesses them.
unsafe impl Send for Half {}

/// Splits `iovs` (`len` bytes) at byte `at`: the iovecs before it and those after.
fn split_at(mut iovs: Vec<libc::iovec>, at: usize) -> (Vec<libc::iovec>, Vec<libc::iovec>) {
    let mut first = Vec::with_capacity(iovs.len());
    let mut left = at;
    let mut rest = iovs.drain(..);
    for v in rest.by_ref() {
        if left >= v.iov_len {
            left -= v.iov_len;
            first.push(v);
            if left == 0 {
                break;
            }
            continue;
        }
        first.push(libc::iovec { iov_base: v.iov_base, iov_len: left });
        // SAFETY: `left < iov_len`, so the pointer stays inside the same buffer.
        let tail = unsafe { v.iov_base.cast::<u8>().add(left) }.cast();
        let second: Vec<_> =
            std::iter::once(libc::iovec { iov_base: tail, iov_len: v.iov_len - left }).chain(rest).collect();
        return (first, second);
    }
    let second = rest.collect();
    (first, second)
}

/// [`transfer`], split in two concurrent halves when it is at least [`SPLIT`] long.
fn transfer_split(
    iovs: Vec<libc::iovec>,
    len: usize,
    off: u64,
    op: impl Fn(&[libc::iovec], i64) -> isize + Sync,
) -> Option<()> {
    if len < SPLIT {
        return transfer(iovs, off, op);
    }
    let half = len / 2;
    let (first, second) = split_at(iovs, half);
    let first = Half(first);
    std::thread::scope(|sc| {
        let op = &op;
        let helper = std::thread::Builder::new().spawn_scoped(sc, move || {
            let first = first;
            transfer(first.0, off, op)
        });
        let mine = transfer(second, off + half as u64, op);
        match helper {
            Ok(h) => h.join().ok().flatten().and(mine),
            Err(_) => None,
        }
    })
}

/// The slices of client memory covering `pieces` (address, length), checked for `access`.
fn slices<'a, M: GuestMemory>(
    mem: &'a M,
    pieces: &[(u64, usize)],
    access: Permissions,
) -> Option<Vec<VolatileSlice<'a, vm_memory::bitmap::BS<'a, M::Bitmap>>>> {
    let mut out = Vec::new();
    for &(addr, len) in pieces {
        for s in mem.get_slices(GuestAddress(addr), len, access).ok()? {
            out.push(s.ok()?);
        }
    }
    Some(out)
}

/// Drops the first `n` bytes of `iovs`.
fn advance(iovs: &mut Vec<libc::iovec>, mut n: usize) {
    let mut skip = 0;
    for v in iovs.iter_mut() {
        if n < v.iov_len {
            // SAFETY: `n < iov_len`, so the pointer stays inside the same buffer.
            v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
            v.iov_len -= n;
            break;
        }
        n -= v.iov_len;
        skip += 1;
    }
    iovs.drain(..skip);
}

/// Runs `op` (a `preadv` or `pwritev` at a file offset) until the iovecs are done; fails on
/// an error or a transfer of 0 bytes (end of file).
fn transfer(mut iovs: Vec<libc::iovec>, mut off: u64, op: impl Fn(&[libc::iovec], i64) -> isize) -> Option<()> {
    while !iovs.is_empty() {
        let r = op(&iovs, i64::try_from(off).ok()?);
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        let n = usize::try_from(r).ok().filter(|&n| n > 0)?;
        advance(&mut iovs, n);
        off += n as u64;
    }
    Some(())
}

/// Reads the image at `off` into the client memory `pieces`.
pub(super) fn file_to_memory<M: GuestMemory>(file: &File, off: u64, mem: &M, pieces: &[(u64, usize)]) -> Option<()> {
    let slices = slices(mem, pieces, Permissions::Write)?;
    let mut at = off;
    for batch in slices.chunks(IOV_MAX) {
        let guards: Vec<_> = batch.iter().map(|s| s.ptr_guard_mut()).collect();
        let iovs = guards
            .iter()
            .zip(batch)
            .map(|(g, s)| libc::iovec { iov_base: g.as_ptr().cast(), iov_len: s.len() })
            .collect();
        let len: usize = batch.iter().map(|s| s.len()).sum();
        transfer_split(iovs, len, at, |v, o| {
            // SAFETY: every iovec is a live slice of client memory (or a bounce buffer) that
            // `mem` keeps valid while `batch` borrows it; the kernel writes at most
            // `iov_len` bytes into each. The client may access the memory concurrently, as
            // with any DMA; nothing in this process holds a reference to it.
            unsafe { libc::preadv(file.as_raw_fd(), v.as_ptr(), v.len() as i32, o) }
        })?;
        for s in batch {
            s.bitmap().mark_dirty(0, s.len());
        }
        at += len as u64;
    }
    Some(())
}

/// Writes the client memory `pieces` to the image at `off`.
pub(super) fn memory_to_file<M: GuestMemory>(file: &File, off: u64, mem: &M, pieces: &[(u64, usize)]) -> Option<()> {
    let slices = slices(mem, pieces, Permissions::Read)?;
    let mut at = off;
    for batch in slices.chunks(IOV_MAX) {
        let guards: Vec<_> = batch.iter().map(|s| s.ptr_guard()).collect();
        let iovs = guards
            .iter()
            .zip(batch)
            .map(|(g, s)| libc::iovec { iov_base: g.as_ptr().cast_mut().cast(), iov_len: s.len() })
            .collect();
        let len: usize = batch.iter().map(|s| s.len()).sum();
        transfer_split(iovs, len, at, |v, o| {
            // SAFETY: every iovec is a live slice of client memory (or a bounce buffer)
            // that `mem` keeps valid while `batch` borrows it; the kernel only reads it.
            unsafe { libc::pwritev(file.as_raw_fd(), v.as_ptr(), v.len() as i32, o) }
        })?;
        at += len as u64;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_at_cuts_inside_or_between_buffers() {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        let (pa, pb): (*mut libc::c_void, *mut libc::c_void) = (a.as_mut_ptr().cast(), b.as_mut_ptr().cast());
        let iovs = || vec![libc::iovec { iov_base: pa, iov_len: 8 }, libc::iovec { iov_base: pb, iov_len: 8 }];
        let lens = |v: &[libc::iovec]| v.iter().map(|x| x.iov_len).collect::<Vec<_>>();
        let (x, y) = split_at(iovs(), 8);
        assert_eq!((lens(&x), lens(&y)), (vec![8], vec![8]));
        let (x, y) = split_at(iovs(), 11);
        assert_eq!((lens(&x), lens(&y)), (vec![8, 3], vec![5]));
        assert_eq!(y[0].iov_base, b[3..].as_mut_ptr().cast());
        assert_eq!(x[0].iov_base, pa);
        let (x, y) = split_at(iovs(), 5);
        assert_eq!((lens(&x), lens(&y)), (vec![5], vec![3, 8]));
    }

    #[test]
    fn advance_skips_whole_and_partial_buffers() {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        let mut iovs = vec![
            libc::iovec { iov_base: a.as_mut_ptr().cast(), iov_len: 8 },
            libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: 8 },
        ];
        advance(&mut iovs, 3);
        assert_eq!((iovs.len(), iovs[0].iov_len), (2, 5));
        assert_eq!(iovs[0].iov_base, a[3..].as_mut_ptr().cast());
        advance(&mut iovs, 7);
        assert_eq!((iovs.len(), iovs[0].iov_len), (1, 6));
        advance(&mut iovs, 6);
        assert!(iovs.is_empty());
    }
}
