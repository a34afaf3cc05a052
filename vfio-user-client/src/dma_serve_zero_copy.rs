// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A large DMA_WRITE received straight into guest memory ([`GuestMemoryAccess::write_zero_copy`]):
//! its header is looked at before the message is taken, the access checked against the
//! mappings, and the data received by `recvmsg` into the memory it names, with no copy in
//! user space. Anything else — a refusal, a memory that does not support it, a mapping
//! served through its fd — is left to the copying path ([`DmaServer::serve`]), which sends
//! the error reply with the right errno.
//!
//! [`GuestMemoryAccess::write_zero_copy`]: crate::GuestMemoryAccess::write_zero_copy

use std::time::Duration;

use vfio_user_proto::wire::{read_at, DmaAccess, DMA_MAP_FLAG_WRITE};
use vfio_user_proto::{Command, FrameError, Header, Receiver};
use vm_memory::ByteValued;

use crate::dma_serve::{DmaServer, SendReply};
use crate::socket::RecvExt;

/// DMA_WRITEs with at least this much data are received straight into memory; smaller ones
/// take the copying path, cheaper for them.
pub(crate) const ZERO_COPY_WRITE: usize = 4096;

impl DmaServer {
    /// Whether the message with header `h` is a DMA_WRITE worth receiving in place
    /// ([`write_in_place`](Self::write_in_place)).
    pub(crate) fn divert(&self, h: &Header) -> bool {
        self.memory.is_some()
            && h.is_command()
            && h.cmd() == Ok(Command::DmaWrite)
            && h.payload_len().is_some_and(|n| n >= DmaAccess::payload_len(ZERO_COPY_WRITE))
    }

    /// Receives the DMA_WRITE that is the next message of `rx` straight into memory and
    /// sends its reply (unless it asks for none) with `send`. Returns `Ok(None)`, having
    /// consumed nothing, when it cannot be served that way (refused, not supported by the
    /// memory): the caller then takes it with `recv` and [`serve`](Self::serve). Otherwise
    /// whether it was refused, as `serve` does, or a framing or send error. Waits no longer
    /// than `stall` for data that does not come (the connection must then be closed).
    pub(crate) fn write_in_place(
        &self,
        rx: &mut Receiver,
        stall: Duration,
        send: &mut SendReply<'_>,
    ) -> Result<Option<bool>, FrameError> {
        let Some(mem) = &self.memory else {
            return Ok(None);
        };
        // First a look at the access (declined, nothing consumed).
        let mut seen = None;
        rx.recv_volatile_with(DmaAccess::SIZE, stall, |h, p| {
            seen = Some((*h, read_at::<DmaAccess>(p, 0)?));
            None
        })?;
        let Some((hdr, a)) = seen else {
            return Ok(None);
        };
        // What decode_request and check would refuse goes the copying way, for its errno.
        let len = a.count as usize;
        let fits = hdr.is_command()
            && hdr.payload_len() == Some(DmaAccess::payload_len(len))
            && a.count <= u64::from(self.limits.max_data_xfer_size)
            && a.addr.checked_add(a.count).is_some();
        if !fits || self.check(a.addr, a.count, DMA_MAP_FLAG_WRITE).is_err() {
            return Ok(None);
        }
        let mut got = None;
        let r = mem.write_zero_copy(a.addr, len, &mut |bufs| {
            got =
                Some(rx.recv_volatile_with(DmaAccess::SIZE, stall, |h, p| {
                    (*h == hdr && p == a.as_slice()).then_some(bufs)
                }));
        });
        // Not supported, refused by the memory, or declined: nothing was consumed.
        let fds = match (r, got) {
            (Some(Ok(())), Some(Ok(Some((_, fds))))) => fds,
            (_, Some(Err(e))) => return Err(e),
            _ => return Ok(None),
        };
        // The data has landed; descriptors with it make the request invalid all the same.
        let refused = !fds.is_empty();
        if refused {
            log::warn!("invalid server command: DMA_WRITE with {} file descriptors", fds.len());
        }
        drop(fds);
        if !hdr.no_reply() {
            match refused {
                false => {
                    let p = a.write_reply();
                    send(hdr.reply(p.len()), &p.parts(), &[])?
                }
                true => send(hdr.error_reply(libc::EINVAL), &[], &[])?,
            }
        }
        Ok(Some(refused))
    }
}
