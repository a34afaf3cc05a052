// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Command codes.

use std::fmt;

/// Writes the command list once: the enum, its `TryFrom<u16>`, [`Command::ALL`] and
/// [`Command::name`] all come from the one table in the invocation below.
macro_rules! commands {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $name:literal;)*) => {
        /// A vfio-user command code (the `command` field of every header).
        ///
        /// Code 14 was `VFIO_USER_DIRTY_PAGES` in the 2021 protocol and has since been removed; it is
        /// recognised only to be refused ([`CommandError::Removed`]).
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Command {
            $($(#[$doc])* $variant = $code,)*
        }

        impl TryFrom<u16> for Command {
            type Error = CommandError;

            fn try_from(code: u16) -> Result<Self, Self::Error> {
                match code {
                    $($code => Ok(Command::$variant),)*
                    REMOVED_DIRTY_PAGES => Err(CommandError::Removed(code)),
                    _ => Err(CommandError::Unknown(code)),
                }
            }
        }

        impl Command {
            /// Every command of the current protocol, in code order.
            pub const ALL: [Command; [$($code),*].len()] = [$(Command::$variant),*];

            /// The protocol's name of the command, e.g. `VFIO_USER_DMA_MAP`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Command::$variant => $name,)*
                }
            }
        }
    };
}

commands! {
    /// `VFIO_USER_VERSION`: version and capability negotiation.
    Version = 1, "VFIO_USER_VERSION";
    /// `VFIO_USER_DMA_MAP`: make one DMA region available to the server.
    DmaMap = 2, "VFIO_USER_DMA_MAP";
    /// `VFIO_USER_DMA_UNMAP`: withdraw one DMA region (or all of them).
    DmaUnmap = 3, "VFIO_USER_DMA_UNMAP";
    /// `VFIO_USER_DEVICE_GET_INFO`.
    DeviceGetInfo = 4, "VFIO_USER_DEVICE_GET_INFO";
    /// `VFIO_USER_DEVICE_GET_REGION_INFO`.
    DeviceGetRegionInfo = 5, "VFIO_USER_DEVICE_GET_REGION_INFO";
    /// `VFIO_USER_DEVICE_GET_REGION_IO_FDS`.
    DeviceGetRegionIoFds = 6, "VFIO_USER_DEVICE_GET_REGION_IO_FDS";
    /// `VFIO_USER_DEVICE_GET_IRQ_INFO`.
    DeviceGetIrqInfo = 7, "VFIO_USER_DEVICE_GET_IRQ_INFO";
    /// `VFIO_USER_DEVICE_SET_IRQS`.
    DeviceSetIrqs = 8, "VFIO_USER_DEVICE_SET_IRQS";
    /// `VFIO_USER_REGION_READ`.
    RegionRead = 9, "VFIO_USER_REGION_READ";
    /// `VFIO_USER_REGION_WRITE`.
    RegionWrite = 10, "VFIO_USER_REGION_WRITE";
    /// `VFIO_USER_DMA_READ` (server to client).
    DmaRead = 11, "VFIO_USER_DMA_READ";
    /// `VFIO_USER_DMA_WRITE` (server to client).
    DmaWrite = 12, "VFIO_USER_DMA_WRITE";
    /// `VFIO_USER_DEVICE_RESET`.
    DeviceReset = 13, "VFIO_USER_DEVICE_RESET";
    /// `VFIO_USER_REGION_WRITE_MULTI`.
    RegionWriteMulti = 15, "VFIO_USER_REGION_WRITE_MULTI";
    /// `VFIO_USER_DEVICE_FEATURE`.
    DeviceFeature = 16, "VFIO_USER_DEVICE_FEATURE";
    /// `VFIO_USER_MIG_DATA_READ`.
    MigDataRead = 17, "VFIO_USER_MIG_DATA_READ";
    /// `VFIO_USER_MIG_DATA_WRITE`.
    MigDataWrite = 18, "VFIO_USER_MIG_DATA_WRITE";
}

/// The code of the removed `VFIO_USER_DIRTY_PAGES` command.
pub const REMOVED_DIRTY_PAGES: u16 = 14;

/// Why a command code could not be turned into a [`Command`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A code no version of the protocol ever defined.
    #[error("unknown command code {0}")]
    Unknown(u16),
    /// A code the protocol defined once and has removed (14, `DIRTY_PAGES`).
    #[error("removed command code {0}")]
    Removed(u16),
}

impl From<Command> for u16 {
    fn from(c: Command) -> u16 {
        c as u16
    }
}

impl Command {
    /// Whether the server sends this command to the client (DMA_READ, DMA_WRITE) rather than
    /// the other way round.
    pub fn is_server_to_client(self) -> bool {
        matches!(self, Command::DmaRead | Command::DmaWrite)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for c in Command::ALL {
            assert_eq!(Command::try_from(u16::from(c)), Ok(c));
        }
    }

    #[test]
    fn codes_match_the_spec_table() {
        let expect: [(u16, Command); 17] = [
            (1, Command::Version),
            (2, Command::DmaMap),
            (3, Command::DmaUnmap),
            (4, Command::DeviceGetInfo),
            (5, Command::DeviceGetRegionInfo),
            (6, Command::DeviceGetRegionIoFds),
            (7, Command::DeviceGetIrqInfo),
            (8, Command::DeviceSetIrqs),
            (9, Command::RegionRead),
            (10, Command::RegionWrite),
            (11, Command::DmaRead),
            (12, Command::DmaWrite),
            (13, Command::DeviceReset),
            (15, Command::RegionWriteMulti),
            (16, Command::DeviceFeature),
            (17, Command::MigDataRead),
            (18, Command::MigDataWrite),
        ];
        for (code, c) in expect {
            assert_eq!(c as u16, code);
        }
    }

    #[test]
    fn unknown_and_removed_codes_are_errors() {
        assert_eq!(Command::try_from(0), Err(CommandError::Unknown(0)));
        assert_eq!(Command::try_from(14), Err(CommandError::Removed(14)));
        assert_eq!(Command::try_from(19), Err(CommandError::Unknown(19)));
        assert_eq!(Command::try_from(u16::MAX), Err(CommandError::Unknown(u16::MAX)));
    }

    #[test]
    fn names_are_the_spec_names() {
        assert_eq!(Command::DmaMap.to_string(), "VFIO_USER_DMA_MAP");
        assert!(Command::DmaWrite.is_server_to_client());
        assert!(!Command::RegionWrite.is_server_to_client());
    }
}
