// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VERSION family: the message (its wire struct, typed form, decoders and encoder, the
//! same both ways), the capabilities it carries and the negotiation rules both sides share.
//!
//! Each side's capability object describes what *that side* can receive or supports
//! (`max_msg_fds`, `max_data_xfer_size`) or offers (`twin_socket`, `write_multiple`). The
//! rules: the reply's major equals the proposal's, its minor is not larger, and its set of
//! optional capabilities is a subset of the proposed set (a server may not switch on
//! `twin_socket` unless the client offered it). Numeric limits are independent per
//! direction: each side obeys the other's.

use crate::codec::{fds_at_most, fixed, no_fds, wire_struct, Payload};
use crate::command::Command;
use crate::error::DecodeError;

/// The protocol major version: 0 for every implementation so far.
pub const PROTOCOL_MAJOR: u16 = 0;
/// The highest protocol minor version this crate speaks (libvfio-user answers 2; QEMU sends 0).
pub const PROTOCOL_MINOR: u16 = 2;

/// Default `max_msg_fds` when absent.
pub const DEFAULT_MAX_MSG_FDS: u32 = 1;
/// Default `max_data_xfer_size` when absent (1 MiB).
pub const DEFAULT_MAX_DATA_XFER_SIZE: u32 = 1 << 20;
/// Default `max_dma_maps` when absent.
pub const DEFAULT_MAX_DMA_MAPS: u32 = 65535;
/// Default `pgsizes` when absent (4 KiB only).
pub const DEFAULT_PGSIZES: u64 = 4096;
/// The most file descriptors Linux passes in one `sendmsg` (`SCM_MAX_FD`).
pub const SCM_MAX_FD: u32 = 253;

/// One side's capabilities, with the spec's defaults filled in for absent keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Most fds this side can receive in one message (clamped to [`SCM_MAX_FD`]).
    pub max_msg_fds: u32,
    /// Largest `count` this side accepts in REGION/DMA READ/WRITE and MIG_DATA.
    pub max_data_xfer_size: u32,
    /// Most DMA mappings that may exist at once.
    pub max_dma_maps: u32,
    /// The OR of the page sizes supported for DMA_MAP.
    pub pgsizes: u64,
    /// Twin-socket: `None` when not mentioned, else `supported` and (in a reply) `fd_index`.
    pub twin_socket: Option<TwinSocket>,
    /// This side accepts REGION_WRITE_MULTI.
    pub write_multiple: bool,
}

/// The `twin_socket` capability object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TwinSocket {
    /// Whether twin-socket mode is supported (offered, or in a reply, enabled).
    pub supported: bool,
    /// In a reply: index of the twin socket among the fds attached to it.
    pub fd_index: Option<u32>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            max_msg_fds: DEFAULT_MAX_MSG_FDS,
            max_data_xfer_size: DEFAULT_MAX_DATA_XFER_SIZE,
            max_dma_maps: DEFAULT_MAX_DMA_MAPS,
            pgsizes: DEFAULT_PGSIZES,
            twin_socket: None,
            write_multiple: false,
        }
    }
}

impl Capabilities {
    /// Whether twin-socket mode is offered or enabled.
    pub fn twin_socket_supported(&self) -> bool {
        self.twin_socket.is_some_and(|t| t.supported)
    }

    /// The smallest page size in `pgsizes` (4096 if the mask is empty).
    pub fn min_pgsize(&self) -> u64 {
        if self.pgsizes == 0 {
            DEFAULT_PGSIZES
        } else {
            1u64 << self.pgsizes.trailing_zeros()
        }
    }
}

/// Why a VERSION exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The majors differ.
    #[error("protocol major {got} is not supported (expected {expect})")]
    Major {
        /// Major received.
        got: u16,
        /// Major expected.
        expect: u16,
    },
    /// A reply's minor is larger than proposed.
    #[error("reply minor {reply} is larger than the proposed {proposed}")]
    Minor {
        /// The reply's minor.
        reply: u16,
        /// The proposed minor.
        proposed: u16,
    },
    /// The reply switched on a capability the proposal did not offer.
    #[error("reply enables {0}, which was not offered")]
    NotOffered(&'static str),
    /// twin_socket enabled without a valid fd.
    #[error("twin_socket enabled without a valid fd_index")]
    TwinSocketFd,
    /// A capability value that cannot be used.
    #[error("capability {0} has an unusable value")]
    BadValue(&'static str),
    /// The JSON could not be parsed.
    #[error("capabilities JSON: {0}")]
    Json(String),
}

impl NegotiationError {
    /// The errno for an error reply.
    pub fn errno(&self) -> i32 {
        match self {
            NegotiationError::Major { .. } | NegotiationError::Minor { .. } => libc::ENOTSUP,
            _ => libc::EINVAL,
        }
    }
}

/// What both sides agreed on; each side obeys the peer's limits when sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Agreed major.
    pub major: u16,
    /// Agreed minor.
    pub minor: u16,
    /// Our own capabilities as sent.
    pub local: Capabilities,
    /// The peer's capabilities as received.
    pub peer: Capabilities,
    /// Whether twin-socket mode is in force.
    pub twin_socket: bool,
}

/// Server side: decide the reply to a client's proposal. `offer` is what the server
/// supports. Returns the agreement; [`Negotiated::local`] is what the reply must carry
/// (twin_socket switched on only if the client offered it and the server supports it,
/// `fd_index` 0 when on).
pub fn server_negotiate(
    client_major: u16,
    client_minor: u16,
    client: &Capabilities,
    offer: &Capabilities,
) -> Result<Negotiated, NegotiationError> {
    if client_major != PROTOCOL_MAJOR {
        return Err(NegotiationError::Major { got: client_major, expect: PROTOCOL_MAJOR });
    }
    validate(client)?;
    let twin = client.twin_socket_supported() && offer.twin_socket_supported();
    let mut local = *offer;
    local.twin_socket = if client.twin_socket.is_some() || offer.twin_socket.is_some() {
        Some(TwinSocket { supported: twin, fd_index: twin.then_some(0) })
    } else {
        None
    };
    Ok(Negotiated {
        major: PROTOCOL_MAJOR,
        minor: client_minor.min(PROTOCOL_MINOR),
        local,
        peer: *client,
        twin_socket: twin,
    })
}

/// Client side: check the server's reply against what was offered. `nfds` is the number of
/// fds attached to the reply.
pub fn client_check_reply(
    offered_minor: u16,
    offered: &Capabilities,
    reply_major: u16,
    reply_minor: u16,
    reply: &Capabilities,
    nfds: usize,
) -> Result<Negotiated, NegotiationError> {
    if reply_major != PROTOCOL_MAJOR {
        return Err(NegotiationError::Major { got: reply_major, expect: PROTOCOL_MAJOR });
    }
    if reply_minor > offered_minor {
        return Err(NegotiationError::Minor { reply: reply_minor, proposed: offered_minor });
    }
    validate(reply)?;
    let twin = reply.twin_socket_supported();
    if twin {
        if !offered.twin_socket_supported() {
            return Err(NegotiationError::NotOffered("twin_socket"));
        }
        match reply.twin_socket.and_then(|t| t.fd_index) {
            Some(i) if (i as usize) < nfds => {}
            _ => return Err(NegotiationError::TwinSocketFd),
        }
    }
    Ok(Negotiated { major: reply_major, minor: reply_minor, local: *offered, peer: *reply, twin_socket: twin })
}

fn validate(c: &Capabilities) -> Result<(), NegotiationError> {
    if c.max_data_xfer_size == 0 {
        return Err(NegotiationError::BadValue("max_data_xfer_size"));
    }
    if c.pgsizes == 0 {
        return Err(NegotiationError::BadValue("pgsizes"));
    }
    Ok(())
}

/// The fixed part of VERSION.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionWire {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}
wire_struct!(VersionWire, 4);

/// VERSION body (request and reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// The capability JSON without its NUL terminator (may be empty).
    pub json: &'a [u8],
}

impl<'a> Version<'a> {
    /// The VERSION message (request or reply): major, minor, and the JSON with its NUL
    /// terminator (nothing after major/minor when the JSON is empty).
    pub fn payload(&self) -> Payload<'a> {
        let p = Payload::of(Command::Version, &VersionWire { major: self.major, minor: self.minor });
        if self.json.is_empty() {
            p
        } else {
            p.data(self.json).nul_terminated()
        }
    }
}

/// The VERSION body after its fds were checked.
fn decode_version(p: &[u8]) -> Result<Version<'_>, DecodeError> {
    let v: VersionWire = fixed(Command::Version, p)?;
    let json = version_json(&p[std::mem::size_of::<VersionWire>()..])?;
    Ok(Version { major: v.major, minor: v.minor, json })
}

/// VERSION request: no fds.
pub(crate) fn decode_request(p: &[u8], nfds: usize) -> Result<Version<'_>, DecodeError> {
    no_fds(Command::Version, nfds)?;
    decode_version(p)
}

/// VERSION reply: no fd, or one (the twin socket).
pub(crate) fn decode_reply(p: &[u8], nfds: usize) -> Result<Version<'_>, DecodeError> {
    fds_at_most(Command::Version, nfds, 1, "0 or 1")?;
    decode_version(p)
}

/// The JSON of a VERSION payload (the bytes after major/minor), without its terminator.
///
/// The version data is optional, but when present it is a NUL-terminated, non-empty string:
/// data without the NUL, a bare NUL or a NUL inside the JSON are refused. (libvfio-user and
/// QEMU refuse a missing NUL too.) This keeps [`Version`] an exact picture of the wire bytes.
fn version_json(data: &[u8]) -> Result<&[u8], DecodeError> {
    if data.is_empty() {
        return Ok(data);
    }
    match data.split_last() {
        Some((&0, json)) if !json.is_empty() && !json.contains(&0) => Ok(json),
        Some((&0, [])) => Err(DecodeError::BadJson("empty JSON string".into())),
        Some((&0, _)) => Err(DecodeError::BadJson("NUL inside the JSON".into())),
        _ => Err(DecodeError::BadJson("JSON not NUL-terminated".into())),
    }
}

#[cfg(feature = "serde")]
mod json {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, Default)]
    struct VersionJson {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capabilities: Option<CapsJson>,
    }

    #[derive(Serialize, Deserialize, Default)]
    struct CapsJson {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_msg_fds: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_data_xfer_size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_dma_maps: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pgsizes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        twin_socket: Option<TwinJson>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        write_multiple: Option<bool>,
        /// The legacy migration capability: accepted and ignored.
        #[serde(default, skip_serializing)]
        #[allow(dead_code)]
        migration: Option<serde_json::Value>,
    }

    #[derive(Serialize, Deserialize, Default)]
    struct TwinJson {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supported: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fd_index: Option<u64>,
    }

    fn clamp_u32(v: Option<u64>, default: u32) -> u32 {
        v.map_or(default, |v| u32::try_from(v).unwrap_or(u32::MAX))
    }

    impl Capabilities {
        /// Parses the VERSION JSON (without its NUL terminator). Empty input means "all
        /// defaults". Unknown keys and the legacy `migration` object are ignored.
        pub fn from_json(json: &[u8]) -> Result<Capabilities, NegotiationError> {
            if json.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(Capabilities::default());
            }
            let v: VersionJson = serde_json::from_slice(json).map_err(|e| NegotiationError::Json(e.to_string()))?;
            let c = v.capabilities.unwrap_or_default();
            Ok(Capabilities {
                max_msg_fds: clamp_u32(c.max_msg_fds, DEFAULT_MAX_MSG_FDS).min(SCM_MAX_FD),
                max_data_xfer_size: clamp_u32(c.max_data_xfer_size, DEFAULT_MAX_DATA_XFER_SIZE),
                max_dma_maps: clamp_u32(c.max_dma_maps, DEFAULT_MAX_DMA_MAPS),
                pgsizes: c.pgsizes.unwrap_or(DEFAULT_PGSIZES),
                twin_socket: c.twin_socket.map(|t| TwinSocket {
                    supported: t.supported.unwrap_or(false),
                    fd_index: t.fd_index.map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
                }),
                write_multiple: c.write_multiple.unwrap_or(false),
            })
        }

        /// The VERSION JSON for these capabilities, NUL terminator included.
        pub fn to_json(&self) -> Vec<u8> {
            let v = VersionJson {
                capabilities: Some(CapsJson {
                    max_msg_fds: Some(self.max_msg_fds.into()),
                    max_data_xfer_size: Some(self.max_data_xfer_size.into()),
                    max_dma_maps: Some(self.max_dma_maps.into()),
                    pgsizes: Some(self.pgsizes),
                    twin_socket: self
                        .twin_socket
                        .map(|t| TwinJson { supported: Some(t.supported), fd_index: t.fd_index.map(u64::from) }),
                    write_multiple: Some(self.write_multiple),
                    migration: None,
                }),
            };
            // Serialising plain structs of integers and booleans cannot fail.
            let mut out = serde_json::to_vec(&v).unwrap_or_default();
            out.push(0);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "serde")]
    #[test]
    fn json_defaults_and_round_trip() {
        assert_eq!(Capabilities::from_json(b"").unwrap(), Capabilities::default());
        assert_eq!(Capabilities::from_json(b"{}").unwrap(), Capabilities::default());
        let c = Capabilities {
            max_msg_fds: 16,
            max_data_xfer_size: 65536,
            max_dma_maps: 10,
            pgsizes: 4096 | (2 << 20),
            twin_socket: Some(TwinSocket { supported: true, fd_index: Some(0) }),
            write_multiple: true,
        };
        let j = c.to_json();
        assert_eq!(j.last(), Some(&0));
        assert_eq!(Capabilities::from_json(&j[..j.len() - 1]).unwrap(), c);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_from_real_peers() {
        // What QEMU's client sends (legacy migration object included).
        let qemu = br#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"migration":{"pgsize":4096,"max_bitmap_size":268435456},"write_multiple":true}}"#;
        let c = Capabilities::from_json(qemu).unwrap();
        assert_eq!((c.max_msg_fds, c.write_multiple), (16, true));
        // What the rust-vmm client sends.
        let rv = br#"{"capabilities":{"max_msg_fds":1,"max_data_xfer_size":1048576,"migration":{"pgsize":4096}}}"#;
        assert_eq!(Capabilities::from_json(rv).unwrap().max_msg_fds, 1);
        // Unknown keys are ignored, wrong types are errors.
        assert!(Capabilities::from_json(br#"{"capabilities":{"future":1}}"#).is_ok());
        assert!(Capabilities::from_json(br#"{"capabilities":{"max_msg_fds":"x"}}"#).is_err());
        assert!(Capabilities::from_json(br#"{"capabilities":{"max_msg_fds":-1}}"#).is_err());
        assert!(Capabilities::from_json(b"{").is_err());
        assert!(Capabilities::from_json(b"\xff").is_err());
        // Huge values are clamped, not wrapped.
        let big = br#"{"capabilities":{"max_msg_fds":99999999999,"max_data_xfer_size":99999999999}}"#;
        let c = Capabilities::from_json(big).unwrap();
        assert_eq!((c.max_msg_fds, c.max_data_xfer_size), (SCM_MAX_FD, u32::MAX));
    }

    #[test]
    fn server_negotiation_rules() {
        let offer = Capabilities {
            twin_socket: Some(TwinSocket { supported: true, fd_index: None }),
            write_multiple: true,
            ..Default::default()
        };
        let client = Capabilities::default();
        let n = server_negotiate(0, 0, &client, &offer).unwrap();
        assert_eq!((n.major, n.minor, n.twin_socket), (0, 0, false));
        assert_eq!(n.local.twin_socket, Some(TwinSocket { supported: false, fd_index: None }));
        let n = server_negotiate(0, 9, &client, &offer).unwrap();
        assert_eq!(n.minor, PROTOCOL_MINOR);
        let twin_client =
            Capabilities { twin_socket: Some(TwinSocket { supported: true, fd_index: None }), ..Default::default() };
        let n = server_negotiate(0, 1, &twin_client, &offer).unwrap();
        assert!(n.twin_socket);
        assert_eq!(n.local.twin_socket.unwrap().fd_index, Some(0));
        assert_eq!(server_negotiate(1, 0, &client, &offer), Err(NegotiationError::Major { got: 1, expect: 0 }));
        let bad = Capabilities { max_data_xfer_size: 0, ..Default::default() };
        assert!(server_negotiate(0, 0, &bad, &offer).is_err());
    }

    #[test]
    fn client_reply_checks() {
        let offered =
            Capabilities { twin_socket: Some(TwinSocket { supported: true, fd_index: None }), ..Default::default() };
        let plain = Capabilities::default();
        assert!(client_check_reply(2, &offered, 0, 2, &plain, 0).is_ok());
        assert!(matches!(client_check_reply(1, &offered, 0, 2, &plain, 0), Err(NegotiationError::Minor { .. })));
        assert!(matches!(client_check_reply(1, &offered, 1, 0, &plain, 0), Err(NegotiationError::Major { .. })));
        let twin =
            Capabilities { twin_socket: Some(TwinSocket { supported: true, fd_index: Some(0) }), ..Default::default() };
        assert!(client_check_reply(0, &offered, 0, 0, &twin, 1).unwrap().twin_socket);
        assert_eq!(client_check_reply(0, &offered, 0, 0, &twin, 0), Err(NegotiationError::TwinSocketFd));
        let no_index =
            Capabilities { twin_socket: Some(TwinSocket { supported: true, fd_index: None }), ..Default::default() };
        assert_eq!(client_check_reply(0, &offered, 0, 0, &no_index, 1), Err(NegotiationError::TwinSocketFd));
        assert_eq!(client_check_reply(0, &plain, 0, 0, &twin, 1), Err(NegotiationError::NotOffered("twin_socket")));
    }
}
