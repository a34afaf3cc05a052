// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The wire format of the [vfio-user] protocol: every message of the current specification,
//! an I/O-free decoder, VERSION capabilities and negotiation, and framing of whole messages
//! with their file descriptors over a UNIX stream socket.
//!
//! A VMM or a device can depend on this crate alone. Layout:
//!
//! * [`header`] — the 16-byte header and its flags; [`command`] — command codes
//!   (`TryFrom<u16>`, unknown codes are errors), the list written once.
//! * One module per command family, each holding the family's `#[repr(C)]` [`ByteValued`]
//!   wire structs (with compile-time size checks), flag types (bitflags), typed forms,
//!   constructors that compute `argsz` and sizes, and the decoder and encoder of every
//!   command and reply of the family: [`version`] (VERSION, and the capabilities and
//!   negotiation rules), [`dma`] (DMA_MAP / UNMAP / READ / WRITE), [`device`]
//!   (DEVICE_GET_INFO, GET_REGION_INFO, GET_REGION_IO_FDS, RESET; the capability chain in
//!   [`region_caps`]), [`irq`] (GET_IRQ_INFO, SET_IRQS), [`region_access`] (REGION_READ /
//!   WRITE / WRITE_MULTI), [`feature`] (DEVICE_FEATURE, migration data, DMA logging;
//!   [`migration`] has the states and transitions). [`wire`] gathers their structs and
//!   constants in one namespace.
//! * [`request`] / [`reply`] — the typed messages, dispatching to the families:
//!   [`decode_request`] and [`decode_reply`] turn header + bytes + fd count into a validated
//!   value or a [`DecodeError`] whose [`errno`](DecodeError::errno) goes into the error
//!   reply; `payload()` encodes into a [`Payload`], borrowed parts that a sender gathers
//!   into one `sendmsg` without allocating.
//! * `connection` (feature `socket`, off by default) — sending and receiving whole messages
//!   with SCM_RIGHTS descriptors. The wire types above need none of it.
//!
//! # Protocol notes
//! The protocol is QEMU's `docs/interop/vfio-user.rst`. Where real peers and the text differ
//! this crate follows the text and accepts the peers: the DMA_UNMAP flags `ALL` (bit 1) and the
//! 2021 `GET_DIRTY_BITMAP` (bit 0) with Linux's values; libvfio-user's DMA_MAP `MMAP`/`FILE_IO`
//! bits; its 48-byte REGION_IO_FDS entries (decoded besides the spec's 40-byte ones); the legacy
//! `migration` capability (ignored); a DMA_WRITE reply without its echo (QEMU). From tracing
//! libvfio-user's sample client and server with `vfio-user trace`: a query (GET_INFO,
//! GET_REGION_INFO, GET_REGION_IO_FDS, GET_IRQ_INFO) whose payload runs on up to its `argsz`
//! (the client's reply buffer, sent on the GET_REGION_INFO retry); DEVICE_FEATURE data on
//! PROBE, GETs and DMA_LOGGING_STOP (ignored); MIG_DEVICE_STATE's unused `data_fd` set to -1;
//! a MIG_DATA_READ reply padded past its `size`. The DMA_WRITE
//! reply `count` is 8 bytes, as in the request (the spec's table says 4; every implementation
//! uses 8). The request payload size always comes from `msg_size`, never `argsz`.
//!
//! # Dependencies
//! `vm-memory` (no default features) for [`ByteValued`]; `rustix` (optional, feature
//! `socket`) for `sendmsg`/`recvmsg` with `MSG_CMSG_CLOEXEC` and `MSG_DONTWAIT` and `OwnedFd`
//! results without `unsafe` — `vmm-sys-util`'s `ScmSocket` offers neither flag, so received
//! descriptors would leak across `exec` and a non-blocking step would need the socket's mode
//! changed; `libc` for errno values and the one `recvmsg` whose iovecs the caller supplies
//! (`PayloadTail::recv_raw`, for memory that cannot be a `&mut [u8]`, such as guest memory,
//! with its `unsafe` argued there); `serde` and `serde_json` (optional) for the VERSION JSON.
//!
//! [vfio-user]: https://www.qemu.org/docs/master/interop/vfio-user.html
//! [`ByteValued`]: vm_memory::ByteValued

#![deny(missing_docs)]

pub mod array;
mod codec;
pub mod command;
#[cfg(feature = "socket")]
pub mod connection;
pub mod device;
pub mod dma;
pub mod error;
pub mod feature;
pub mod header;
pub mod irq;
pub mod migration;
pub mod region_access;
pub mod region_caps;
pub mod reply;
pub mod request;
pub mod version;
pub mod wire;

pub use array::WireArray;
pub use codec::{Parts, Payload};
pub use command::{Command, CommandError};
#[cfg(feature = "socket")]
pub use connection::{Connection, Message, PayloadTail, Receiver, SendGuard, Sender};
pub use error::{Damage, DecodeError, FrameError};
pub use header::{Header, HeaderFlags, MsgType, HEADER_SIZE};
pub use migration::MigState;
pub use region_caps::{build_region_info, parse_region_caps, RegionCap};
pub use reply::{decode_reply, IoFdEntries, Reply};
pub use request::{decode_request, DecodeLimits, FeatureRequest, IrqAction, IrqData, Request, Version};
pub use version::{Capabilities, Negotiated, NegotiationError, TwinSocket};
pub use wire::{DmaProt, DmaUnmapOp, DmaUnmapRequest};
