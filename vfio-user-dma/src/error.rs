// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Error type of the crate and its errno mapping.

use std::io;

/// Errors returned by [`DmaSpace`](crate::DmaSpace) and the device access API.
///
/// Every variant maps to a libc errno value through [`Error::errno`], which the
/// server puts in the `error` field of a vfio-user error reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is invalid: zero size, `iova + size` wraps, misalignment
    /// against the configured page sizes, bad page size, … (`EINVAL`).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The requested mapping overlaps an existing one (`EEXIST`).
    #[error("mapping [{iova:#x}, +{size:#x}) overlaps an existing mapping")]
    Overlap {
        /// Start of the rejected mapping.
        iova: u64,
        /// Size of the rejected mapping.
        size: u64,
    },
    /// The configured maximum number of mappings is reached (`ENOSPC`).
    #[error("too many DMA mappings (limit {0})")]
    TooManyMappings(usize),
    /// The mapping would keep its fd open (file I/O) while the configured number of such
    /// mappings already exist ([`DmaSpace::set_max_open_fds`](crate::DmaSpace::set_max_open_fds))
    /// (`ENOSPC`, as for [`Error::TooManyMappings`]: no room for this mapping).
    #[error("too many DMA mappings holding an open fd (limit {0})")]
    TooManyOpenFds(usize),
    /// No mapping matches `iova`/`size` exactly, as DMA_UNMAP requires (`ENOENT`).
    #[error("no DMA mapping is exactly [{iova:#x}, +{size:#x})")]
    NoSuchMapping {
        /// Requested start.
        iova: u64,
        /// Requested size.
        size: u64,
    },
    /// A device access touches an address that no mapping covers (`EFAULT`).
    #[error("DMA address {iova:#x} is not mapped")]
    Unmapped {
        /// First address of the access that is not covered by a mapping.
        iova: u64,
    },
    /// A device access reached past the end of a file-I/O mapping's file: the client
    /// shrank it after DMA_MAP (`EFAULT`, as for memory that is not there).
    #[error("DMA address {iova:#x} is past the end of its mapping's file (shrunk after DMA_MAP)")]
    BackingShrunk {
        /// First address of the access that the file no longer backs.
        iova: u64,
    },
    /// A device access violates the protection of the mapping: a write to a
    /// read-only mapping or a read from a write-only one (`EACCES`).
    #[error("DMA {} at {iova:#x} not permitted by the mapping", if *.write { "write" } else { "read" })]
    PermissionDenied {
        /// Address of the rejected access.
        iova: u64,
        /// Whether the rejected access was a write.
        write: bool,
    },
    /// The mapping was removed, but device code still held a reference to it
    /// when the unmap wait expired (`EBUSY`). The memory is released when the
    /// last device guard is dropped.
    #[error("DMA mapping [{iova:#x}, +{size:#x}) removed but still in use by the device")]
    RegionBusy {
        /// Start of the mapping.
        iova: u64,
        /// Size of the mapping.
        size: u64,
    },
    /// Zero-copy access was requested for memory that has no host mapping
    /// (message-based or file-I/O region) (`ENOTSUP`).
    #[error("DMA address {iova:#x} has no host mapping (message or file-I/O region)")]
    NotMappable {
        /// Address inside the region without host mapping.
        iova: u64,
    },
    /// A message-based region was accessed but no [`DmaTransport`](crate::DmaTransport)
    /// is set, e.g. the client is disconnected (`ENOTCONN`).
    #[error("no DMA transport to reach message-based DMA memory")]
    NoTransport,
    /// A bitmap would exceed the configured size limit (`E2BIG`).
    #[error("dirty bitmap of {bytes} bytes exceeds the limit of {limit} bytes")]
    BitmapTooLarge {
        /// Bytes the bitmap would need (saturating).
        bytes: u64,
        /// The configured limit.
        limit: usize,
    },
    /// Dirty page logging is not active (`EINVAL`).
    #[error("dirty page logging is not active")]
    LoggingNotActive,
    /// Dirty page logging is already active (`EBUSY`).
    #[error("dirty page logging is already active")]
    LoggingActive,
    /// An allocation could not be satisfied (`ENOMEM`).
    #[error("out of memory")]
    OutOfMemory,
    /// `mmap` of the client's fd failed; carries the OS error.
    #[error("mmap of DMA region failed: {0}")]
    Mmap(#[source] io::Error),
    /// An I/O error: `fstat`, `pread`/`pwrite` on a file-I/O region, or a
    /// transport failure reported by a [`DmaTransport`](crate::DmaTransport).
    #[error("DMA I/O error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The libc errno value for this error, for a vfio-user error reply.
    pub fn errno(&self) -> i32 {
        match self {
            Error::InvalidArgument(_) | Error::LoggingNotActive => libc::EINVAL,
            Error::Overlap { .. } => libc::EEXIST,
            Error::TooManyMappings(_) | Error::TooManyOpenFds(_) => libc::ENOSPC,
            Error::NoSuchMapping { .. } => libc::ENOENT,
            Error::Unmapped { .. } | Error::BackingShrunk { .. } => libc::EFAULT,
            Error::PermissionDenied { .. } => libc::EACCES,
            Error::RegionBusy { .. } | Error::LoggingActive => libc::EBUSY,
            Error::NotMappable { .. } => libc::ENOTSUP,
            Error::NoTransport => libc::ENOTCONN,
            Error::BitmapTooLarge { .. } => libc::E2BIG,
            Error::OutOfMemory => libc::ENOMEM,
            Error::Mmap(e) | Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// Builds an [`Error::Io`] from a raw errno value (convenience for
    /// [`DmaTransport`](crate::DmaTransport) implementations).
    pub fn from_errno(errno: i32) -> Self {
        Error::Io(io::Error::from_raw_os_error(errno))
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let cases: Vec<(Error, i32)> = vec![
            (Error::InvalidArgument("x"), libc::EINVAL),
            (Error::Overlap { iova: 0, size: 1 }, libc::EEXIST),
            (Error::TooManyMappings(3), libc::ENOSPC),
            (Error::TooManyOpenFds(3), libc::ENOSPC),
            (Error::NoSuchMapping { iova: 0, size: 1 }, libc::ENOENT),
            (Error::Unmapped { iova: 0 }, libc::EFAULT),
            (Error::BackingShrunk { iova: 0 }, libc::EFAULT),
            (Error::PermissionDenied { iova: 0, write: true }, libc::EACCES),
            (Error::RegionBusy { iova: 0, size: 1 }, libc::EBUSY),
            (Error::NotMappable { iova: 0 }, libc::ENOTSUP),
            (Error::NoTransport, libc::ENOTCONN),
            (Error::BitmapTooLarge { bytes: 1, limit: 0 }, libc::E2BIG),
            (Error::LoggingNotActive, libc::EINVAL),
            (Error::LoggingActive, libc::EBUSY),
            (Error::OutOfMemory, libc::ENOMEM),
            (Error::Mmap(io::Error::from_raw_os_error(libc::ENODEV)), libc::ENODEV),
            (Error::from_errno(libc::EPIPE), libc::EPIPE),
            (Error::Io(io::Error::other("no errno")), libc::EIO),
        ];
        for (e, errno) in cases {
            assert_eq!(e.errno(), errno, "{e}");
            assert!(!e.to_string().is_empty());
        }
    }
}
