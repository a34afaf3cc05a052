// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The 16-byte message header that starts every vfio-user message.

use vm_memory::ByteValued;

use crate::command::{Command, CommandError};

/// Size of [`Header`] on the wire.
pub const HEADER_SIZE: usize = 16;

bitflags::bitflags! {
    /// The flags of [`Header::flags`]: the message type in the low four bits (a value, not
    /// bits: 0 command, 1 reply), `NO_REPLY` and `ERROR`. Bits the protocol does not define
    /// are kept; receivers decide what to do with them.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HeaderFlags: u32 {
        /// The message-type field (a 4-bit value).
        const TYPE = 0xf;
        /// Message type value 1: a reply (0, no bit, is a command).
        const REPLY = 1;
        /// The sender of a command wants no reply, not even an error reply.
        const NO_REPLY = 1 << 4;
        /// A reply reports failure; [`Header::error`] may carry an errno.
        const ERROR = 1 << 5;
    }
}

/// Mask of the message-type bits in [`Header::flags`] ([`HeaderFlags::TYPE`]).
pub const FLAGS_TYPE_MASK: u32 = HeaderFlags::TYPE.bits();
/// Message type: a command.
pub const FLAGS_TYPE_COMMAND: u32 = 0;
/// Message type: a reply ([`HeaderFlags::REPLY`]).
pub const FLAGS_TYPE_REPLY: u32 = HeaderFlags::REPLY.bits();
/// The sender of a command wants no reply, not even an error reply
/// ([`HeaderFlags::NO_REPLY`]).
pub const FLAGS_NO_REPLY: u32 = HeaderFlags::NO_REPLY.bits();
/// A reply reports failure ([`HeaderFlags::ERROR`]).
pub const FLAGS_ERROR: u32 = HeaderFlags::ERROR.bits();
/// Every flag bit the protocol defines.
pub const FLAGS_KNOWN: u32 = HeaderFlags::all().bits();

/// The header of every message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Chosen by the sender of a command, echoed by the reply.
    pub msg_id: u16,
    /// The command code ([`Command`]).
    pub command: u16,
    /// Size of the whole message, this header included.
    pub msg_size: u32,
    /// Message type, `NO_REPLY` and `ERROR` bits.
    pub flags: u32,
    /// An errno in error replies; reserved otherwise.
    pub error: u32,
}

// SAFETY: `Header` is `repr(C)`, made only of integers, has no padding (asserted below) and
// every bit pattern is a valid value.
unsafe impl ByteValued for Header {}
const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

/// The type of a message, from the low four bits of [`Header::flags`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgType {
    /// A command (request).
    Command,
    /// A reply to a command.
    Reply,
}

impl Header {
    /// The header of a command with `payload_len` bytes after the header.
    ///
    /// `payload_len` larger than `u32::MAX - 16` saturates; the framing layer refuses to send
    /// such a message.
    pub fn command(msg_id: u16, command: Command, payload_len: usize) -> Self {
        Header {
            msg_id,
            command: command as u16,
            msg_size: msg_size_for(payload_len),
            flags: FLAGS_TYPE_COMMAND,
            error: 0,
        }
    }

    /// The header of a successful reply to `self`, with `payload_len` bytes of payload.
    pub fn reply(&self, payload_len: usize) -> Self {
        Header {
            msg_id: self.msg_id,
            command: self.command,
            msg_size: msg_size_for(payload_len),
            flags: FLAGS_TYPE_REPLY,
            error: 0,
        }
    }

    /// The header of an error reply to `self` carrying `errno`. Error replies have no payload.
    pub fn error_reply(&self, errno: i32) -> Self {
        Header {
            msg_id: self.msg_id,
            command: self.command,
            msg_size: HEADER_SIZE as u32,
            flags: FLAGS_TYPE_REPLY | FLAGS_ERROR,
            error: errno as u32,
        }
    }

    /// The same header with `msg_size` set for `payload_len` bytes of payload (saturating
    /// like [`Header::command`]).
    pub fn with_payload_len(self, payload_len: usize) -> Self {
        Header { msg_size: msg_size_for(payload_len), ..self }
    }

    /// Appends room for a header (zeros) to `buf`: for a message whose payload is appended
    /// after it and whose header is written last ([`Header::put_reply`]).
    pub fn reserve(buf: &mut Vec<u8>) {
        buf.extend_from_slice(&[0; HEADER_SIZE]);
    }

    /// Writes into the room at the start of `msg` (see [`Header::reserve`]) the header of
    /// the successful reply to `self` whose payload is the rest of `msg`, and returns that
    /// header. A `msg` shorter than a header is left alone (and gets a reply header without
    /// payload).
    pub fn put_reply(&self, msg: &mut [u8]) -> Header {
        let h = self.reply(msg.len().saturating_sub(HEADER_SIZE));
        if let Some(room) = msg.get_mut(..HEADER_SIZE) {
            room.copy_from_slice(h.as_slice());
        }
        h
    }

    /// The payload of a whole message `msg` (what follows its header).
    pub fn payload_of(msg: &[u8]) -> &[u8] {
        msg.get(HEADER_SIZE..).unwrap_or(&[])
    }

    /// The flags, typed (undefined bits kept).
    pub fn header_flags(&self) -> HeaderFlags {
        HeaderFlags::from_bits_retain(self.flags)
    }

    /// The header of a command sent with NO_REPLY (a posted write): no reply, not even an
    /// error reply, comes back.
    pub fn with_no_reply(mut self) -> Self {
        self.flags |= FLAGS_NO_REPLY;
        self
    }

    /// The message type, or `None` for a type value the protocol does not define.
    pub fn msg_type(&self) -> Option<MsgType> {
        match self.header_flags().intersection(HeaderFlags::TYPE) {
            t if t.is_empty() => Some(MsgType::Command),
            HeaderFlags::REPLY => Some(MsgType::Reply),
            _ => None,
        }
    }

    /// Whether this is a command.
    pub fn is_command(&self) -> bool {
        self.msg_type() == Some(MsgType::Command)
    }

    /// Whether this is a reply.
    pub fn is_reply(&self) -> bool {
        self.msg_type() == Some(MsgType::Reply)
    }

    /// Whether the command asks for no reply.
    pub fn no_reply(&self) -> bool {
        self.header_flags().contains(HeaderFlags::NO_REPLY)
    }

    /// Whether the reply reports an error.
    pub fn is_error(&self) -> bool {
        self.header_flags().contains(HeaderFlags::ERROR)
    }

    /// The errno of an error reply. A peer may leave it 0 even when ERROR is set; this
    /// returns `EIO` then, and clamps values outside `1..=4095` to `EIO` too, so that a
    /// caller never sees "success" or a nonsensical value for a failed command.
    pub fn errno(&self) -> i32 {
        match self.error {
            e @ 1..=4095 => e as i32,
            _ => libc::EIO,
        }
    }

    /// The command this header names.
    pub fn cmd(&self) -> Result<Command, CommandError> {
        Command::try_from(self.command)
    }

    /// The number of payload bytes announced by `msg_size`, or `None` when `msg_size` is
    /// smaller than a header.
    pub fn payload_len(&self) -> Option<usize> {
        (self.msg_size as usize).checked_sub(HEADER_SIZE)
    }
}

/// The `msg_size` of a message with `payload_len` bytes of payload, or `None` when it does
/// not fit the field.
pub fn msg_size(payload_len: usize) -> Option<u32> {
    u32::try_from(payload_len.checked_add(HEADER_SIZE)?).ok()
}

fn msg_size_for(payload_len: usize) -> u32 {
    u32::try_from(payload_len.saturating_add(HEADER_SIZE)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec() {
        let h = Header { msg_id: 0x0102, command: 0x0304, msg_size: 0x05060708, flags: 0x090a0b0c, error: 0x0d0e0f10 };
        let mut expect = Vec::new();
        expect.extend_from_slice(&0x0102u16.to_ne_bytes());
        expect.extend_from_slice(&0x0304u16.to_ne_bytes());
        expect.extend_from_slice(&0x05060708u32.to_ne_bytes());
        expect.extend_from_slice(&0x090a0b0cu32.to_ne_bytes());
        expect.extend_from_slice(&0x0d0e0f10u32.to_ne_bytes());
        assert_eq!(h.as_slice(), &expect[..]);
    }

    #[test]
    fn reply_and_error_reply_echo_id_and_command() {
        let c = Header::command(77, Command::RegionRead, 16);
        assert_eq!(c.msg_size, 32);
        assert!(c.is_command() && !c.no_reply());
        let r = c.reply(20);
        assert_eq!((r.msg_id, r.command, r.msg_size), (77, 9, 36));
        assert!(r.is_reply() && !r.is_error());
        let e = c.error_reply(libc::ENOENT);
        assert_eq!((e.msg_id, e.command, e.msg_size), (77, 9, 16));
        assert!(e.is_reply() && e.is_error());
        assert_eq!(e.errno(), libc::ENOENT);
        assert_eq!(e.flags, 0x21);
    }

    #[test]
    fn bogus_errno_values_read_as_eio() {
        let mut e = Header::command(1, Command::DmaMap, 0).error_reply(0);
        assert_eq!(e.errno(), libc::EIO);
        e.error = u32::MAX;
        assert_eq!(e.errno(), libc::EIO);
    }

    #[test]
    fn undefined_types_and_small_sizes_are_detected() {
        let mut h = Header::command(1, Command::DeviceReset, 0);
        h.flags = 7;
        assert_eq!(h.msg_type(), None);
        h.msg_size = 15;
        assert_eq!(h.payload_len(), None);
        h.msg_size = 16;
        assert_eq!(h.payload_len(), Some(0));
        assert_eq!(Header::command(1, Command::DeviceReset, usize::MAX).msg_size, u32::MAX);
    }
}
