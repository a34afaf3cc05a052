// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The error type of the server framework.

use std::io;

use vfio_user_proto::{Damage, DecodeError, FrameError};

/// Errors of the server framework. Every variant maps to the errno a client is told
/// ([`Error::errno`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device description is inconsistent (reported by the builder).
    #[error("invalid device description: {0}")]
    Description(String),
    /// A request argument is invalid (out-of-range index, offset, count, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A DMA mapping, access or dirty-logging operation failed (carries its errno).
    #[error(transparent)]
    Dma(#[from] vfio_user_dma::Error),
    /// The device is stopped for migration (STOP or STOP_COPY) and refuses a command that
    /// would change it.
    #[error("refused: {0}")]
    MigrationStopped(&'static str),
    /// The operation is not supported by this device.
    #[error("operation not supported")]
    NotSupported,
    /// The client is not connected (or went away while waiting for it).
    #[error("client not connected")]
    NotConnected,
    /// A client sent a malformed command.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A command arrived whole but damaged (its descriptors lost to a full descriptor table,
    /// `EMFILE`, or a payload over the limit, discarded, `E2BIG`); the stream is in sync.
    #[error(transparent)]
    Damaged(Damage),
    /// Framing failed: the connection is unusable.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The client answered a server request with an error reply carrying this errno.
    #[error("client replied with errno {0}")]
    Remote(i32),
    /// A device callback failed, or a system call did.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The errno to put in an error reply.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Description(_) | Error::InvalidArgument(_) => libc::EINVAL,
            Error::Dma(e) => e.errno(),
            Error::MigrationStopped(_) => libc::EBUSY,
            Error::NotSupported => libc::ENOTSUP,
            Error::NotConnected => libc::ENOTCONN,
            Error::Decode(e) => e.errno(),
            Error::Damaged(d) => d.errno(),
            Error::Frame(e) => e.errno(),
            Error::Remote(e) => *e,
            Error::Io(e) => match e.raw_os_error() {
                Some(n) if n > 0 => n,
                _ => libc::EIO,
            },
        }
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos() {
        assert_eq!(Error::InvalidArgument("x").errno(), libc::EINVAL);
        assert_eq!(Error::Dma(vfio_user_dma::Error::NoSuchMapping { iova: 0, size: 1 }).errno(), libc::ENOENT);
        assert_eq!(Error::Dma(vfio_user_dma::Error::Overlap { iova: 0, size: 1 }).errno(), libc::EEXIST);
        assert_eq!(Error::Dma(vfio_user_dma::Error::TooManyMappings(1)).errno(), libc::ENOSPC);
        assert_eq!(Error::NotSupported.errno(), libc::ENOTSUP);
        assert_eq!(Error::MigrationStopped("x").errno(), libc::EBUSY);
        assert_eq!(Error::Io(io::Error::from_raw_os_error(libc::EBUSY)).errno(), libc::EBUSY);
        assert_eq!(Error::Io(io::Error::other("x")).errno(), libc::EIO);
        assert_eq!(Error::Remote(libc::EFAULT).errno(), libc::EFAULT);
        assert_eq!(Error::Damaged(Damage::FdsTruncated).errno(), libc::EMFILE);
        assert_eq!(Error::Damaged(Damage::Oversize { size: 1 << 21, max: 1 << 20 }).errno(), libc::E2BIG);
    }
}
