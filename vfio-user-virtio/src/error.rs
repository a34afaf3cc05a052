// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's error type.

/// Errors of the virtio transport and devices.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter of a device or transport is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The backing file could not be used.
    #[error("backing file: {0}")]
    Backing(#[source] std::io::Error),
    /// Setting up the transport (eventfds, threads) failed.
    #[error("transport set-up: {0}")]
    Setup(#[source] std::io::Error),
    /// Migration data was malformed or does not fit this device.
    #[error("migration state: {0}")]
    Migration(String),
    /// The server framework refused the device description.
    #[error(transparent)]
    Server(#[from] vfio_user_server::Error),
}

impl Error {
    /// The errno a vfio-user reply carries for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::InvalidConfig(_) | Error::Migration(_) => libc::EINVAL,
            Error::Backing(e) | Error::Setup(e) => e.raw_os_error().unwrap_or(libc::EIO),
            Error::Server(e) => e.errno(),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::from_raw_os_error(e.errno())
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos() {
        assert_eq!(Error::InvalidConfig("x".into()).errno(), libc::EINVAL);
        assert_eq!(Error::Migration("x".into()).errno(), libc::EINVAL);
        assert_eq!(Error::Backing(std::io::Error::from_raw_os_error(libc::ENOENT)).errno(), libc::ENOENT);
        assert_eq!(Error::Setup(std::io::Error::other("no errno")).errno(), libc::EIO);
        let io: std::io::Error = Error::Migration("bad".into()).into();
        assert_eq!(io.raw_os_error(), Some(libc::EINVAL));
    }
}
