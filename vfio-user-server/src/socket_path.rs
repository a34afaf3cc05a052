// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Socket files on disk: created only where nothing of value is, removed only while they
//! are still the file this process created.
//!
//! A path given for a listening socket may hold a user's regular file, or the socket of a
//! live server; neither is ever removed. Only a stale socket (one nobody listens on) is
//! replaced. On drop, the path is removed only if it still names the same file (device and
//! inode) that was bound, so a file put there since is left alone.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A socket file this process created; removed on drop if the path still names it.
#[derive(Debug)]
pub struct SocketPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketPath {
    /// Listens on `path`: a stale socket there is replaced ([`clear_stale`]); a live one is
    /// `EADDRINUSE`, any other file `EEXIST`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<(UnixListener, SocketPath)> {
        let path = path.as_ref();
        clear_stale(path)?;
        let sock = UnixListener::bind(path)?;
        let owned = SocketPath::adopt(path)?;
        Ok((sock, owned))
    }

    /// Takes charge of the socket file this process just created at `path` (e.g. bound
    /// elsewhere and renamed there): it is removed on drop while it is still that file.
    pub fn adopt(path: impl AsRef<Path>) -> io::Result<SocketPath> {
        let path = path.as_ref();
        let m = std::fs::symlink_metadata(path)?;
        if !m.file_type().is_socket() {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(SocketPath { path: path.to_path_buf(), dev: m.dev(), ino: m.ino() })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the path now if it still names the socket this process created (what drop
    /// does), e.g. from a signal-handling thread that exits the process without running
    /// destructors. Removing again later does nothing.
    pub fn remove(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Makes `path` free for a new socket: nothing there is fine; a socket nobody listens on
/// (left by a process that died) is removed; a live socket is `EADDRINUSE`; any other file
/// (a user's) is `EEXIST` and left alone.
pub fn clear_stale(path: &Path) -> io::Result<()> {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !m.file_type().is_socket() {
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_removes_what_it_did_not_create() {
        let dir = std::env::temp_dir().join(format!("vfio-user-socket-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        // A user's file is refused and kept.
        std::fs::write(&p, b"precious").unwrap();
        assert_eq!(SocketPath::bind(&p).unwrap_err().raw_os_error(), Some(libc::EEXIST));
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
        std::fs::remove_file(&p).unwrap();
        // A live socket is refused and kept; a stale one replaced.
        let (live, owned) = SocketPath::bind(&p).unwrap();
        assert_eq!(SocketPath::bind(&p).unwrap_err().raw_os_error(), Some(libc::EADDRINUSE));
        drop(live);
        std::mem::forget(owned);
        let (_l2, owned) = SocketPath::bind(&p).unwrap();
        // Replaced behind our back by a user's file: dropping leaves it.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"mine now").unwrap();
        drop(owned);
        assert_eq!(std::fs::read(&p).unwrap(), b"mine now");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn removes_its_socket_but_never_a_file_that_replaced_it() {
        let dir = std::env::temp_dir().join(format!("vfio-user-socket-path-remove-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let (l, own) = SocketPath::bind(&path).unwrap();
        own.remove();
        assert!(!path.exists(), "its own socket is removed");
        drop(own);
        drop(l);
        let (_l, own) = SocketPath::bind(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"user data").unwrap();
        own.remove();
        drop(own);
        assert_eq!(std::fs::read(&path).unwrap(), b"user data", "a file put there later is left alone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
