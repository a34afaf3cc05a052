// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A socket path this process bound, removed again only if it is still that socket: never a
//! file that replaced it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The socket file at `path`, as bound by this process (device and inode recorded).
#[derive(Debug)]
pub struct OwnSocket {
    path: PathBuf,
    id: (u64, u64),
}

impl OwnSocket {
    /// Records the socket this process has just bound at `path`.
    pub fn created(path: &Path) -> std::io::Result<OwnSocket> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(OwnSocket { path: path.to_path_buf(), id: (m.dev(), m.ino()) })
    }

    /// Removes the path if it still is the socket we bound.
    pub fn remove(&self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for OwnSocket {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_its_socket_but_never_a_file_that_replaced_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(OwnSocket::created(&path).unwrap());
        assert!(!path.exists(), "its own socket is removed");
        drop(l);
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let own = OwnSocket::created(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"user data").unwrap();
        drop(own);
        assert_eq!(std::fs::read(&path).unwrap(), b"user data", "a file put there later is left alone");
    }
}
