// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Reading the main socket: the reader role held by a caller or the background reader,
//! delivering replies in batches, serving server commands, and the twin-socket thread.

use std::sync::MutexGuard;
use std::time::Duration;

use vfio_user_proto::{FrameError, Header, Message, Receiver};

use crate::sync::{lock, now_ms};

use super::{frame_reason, ReaderRole, Transport, BACKGROUND_BACKOFF, RECV_TICK, WAKE_BATCH};
use crate::dma_serve::SendReply;
use crate::error::DisconnectReason;
use crate::pending::{Delivery, PendingTable};
use crate::socket::{RecvExt, SendExt, VolatileBuf};
use crate::stats::bump;
use crate::wake::bit;

impl Transport {
    /// Holds the reader role: reads and dispatches messages until the reply to `until` (a
    /// caller) or any caller's reply (the background reader) has been delivered, the
    /// deadline passes or the connection dies. Releases the role on return.
    ///
    /// The socket has a receive timeout of [`RECV_TICK`], so a read blocks in `recvmsg`
    /// itself (one system call per message, or per batch of pipelined ones) and the deadline
    /// is checked at least that often; within a tick of the deadline the timeout is cut to
    /// what is left, so that a short request timeout is kept to the millisecond.
    ///
    /// Every message already buffered is handled before the reader looks at its own state:
    /// the replies of a batch are delivered under one lock of the pending table and their
    /// sleeping owners woken after it (so that they do not wake up to a taken lock), and the
    /// role is handed over only once the buffer is empty.
    ///
    /// A caller that reads its own reply gets it back directly (its slot freed), without
    /// the round through the pending table.
    pub(super) fn read_session(&self, until: Option<u16>, deadline: Option<u64>) -> Option<Message> {
        let mut rx = lock(&self.rx);
        let mut own = None;
        // The background reader's periodic checks, also while messages keep coming.
        let mut next_check = 0;
        let mut shortened = false;
        // A large DMA_WRITE is received straight into memory, unless it was just declined.
        let mut divert = true;
        loop {
            // Within a tick of the deadline, block no longer than what is left of it.
            if let Some(left) = deadline.map(|d| d.saturating_sub(now_ms())) {
                if left < RECV_TICK.as_millis() as u64 {
                    shortened |= rx.set_read_timeout(Some(Duration::from_millis(left.max(1)))).is_ok();
                }
            }
            let next = match divert {
                true => rx.recv_timed_unless(|h| self.dma.divert(h)),
                false => rx.recv_timed().map(Ok),
            };
            let (delivered, end) = match next {
                Ok(Ok(msg)) => {
                    divert = true;
                    self.handle_batch(msg, &mut rx, until, &mut own)
                }
                // Declined (nothing consumed): taken the copying way next.
                Ok(Err(_)) => {
                    match self.write_in_place(&mut rx, &mut |h, parts, data| self.send.send_now(h, parts, data)) {
                        Ok(taken) => {
                            divert = taken;
                            (false, None)
                        }
                        Err(e) => (false, Some(frame_reason(e))),
                    }
                }
                Err(FrameError::WouldBlock) => (false, None),
                Err(e) => (false, Some(frame_reason(e))),
            };
            if until.is_none() && now_ms() >= next_check {
                self.check_send_stall();
                next_check = now_ms().saturating_add(RECV_TICK.as_millis() as u64);
            }
            if let Some(reason) = end {
                self.fail(reason);
                break;
            }
            if own.is_some() || (until.is_none() && delivered) {
                break;
            }
            if self.dead().is_some() || deadline.is_some_and(|d| now_ms() >= d) {
                break;
            }
        }
        if shortened {
            let _ = rx.set_read_timeout(Some(RECV_TICK));
        }
        let buffered = rx.has_buffered_message();
        drop(rx);
        self.release_reader_after(until.filter(|_| own.is_some()), buffered);
        own
    }

    /// Gives up the reader role without having read (the caller's send failed).
    pub(super) fn release_reader(&self) {
        let buffered = lock(&self.rx).has_buffered_message();
        self.release_reader_after(None, buffered);
    }

    /// Gives up the reader role, freeing `own` (a caller's id whose reply it read itself),
    /// and hands the role to a sleeping caller still waiting, or to the background reader
    /// when messages are `buffered` and nobody waits.
    fn release_reader_after(&self, own: Option<u16>, buffered: bool) {
        let mut st = lock(&self.state);
        st.reader = ReaderRole::None;
        if let Some(id) = own {
            st.remove(id);
        }
        let (waiting, wake) = st.waiter_to_wake();
        if !waiting && buffered {
            st.kick_background = true;
            self.bg_cv.notify_one();
        }
        drop(st);
        if let Some(id) = wake {
            self.board.wake(bit(id));
        }
    }

    /// Handles `first` and the messages buffered behind it (up to [`WAKE_BATCH`] replies to
    /// sleeping callers): the reply to `until` goes to `own`, other replies to their slots
    /// under one lock of the pending table, server commands are served; the sleepers are
    /// woken with one system call. Returns whether a reply was delivered to a slot, and the
    /// reason to close the connection, if any.
    fn handle_batch(
        &self,
        first: Message,
        rx: &mut Receiver,
        until: Option<u16>,
        own: &mut Option<Message>,
    ) -> (bool, Option<DisconnectReason>) {
        let (mut woken, mut mask, mut delivered, mut end) = (0, 0u32, false, None);
        let mut st: Option<MutexGuard<'_, PendingTable>> = None;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            if msg.header.is_reply() && until == Some(msg.header.msg_id) {
                // A second copy of the caller's own reply in the same batch (its slot is
                // freed only when the role is released) is a violation, as one read later.
                if own.is_some() {
                    let id = msg.header.msg_id;
                    end = Some(DisconnectReason::ProtocolViolation(format!("second reply to msg_id {id}")));
                } else {
                    *own = Some(msg);
                }
            } else if msg.header.is_reply() {
                let table = st.get_or_insert_with(|| lock(&self.state));
                let id = msg.header.msg_id;
                match table.deliver(msg) {
                    Ok((d, asleep)) => {
                        match d {
                            Delivery::Late => bump(&self.stats.late_replies),
                            Delivery::PostedError => bump(&self.stats.posted_errors),
                            _ => delivered = true,
                        }
                        if asleep {
                            woken += 1;
                            mask |= bit(id);
                        }
                    }
                    Err(reason) => end = Some(reason),
                }
            } else {
                drop(st.take());
                if let Err(reason) = self.serve_command(msg, rx) {
                    end = Some(reason);
                }
            }
            if end.is_none() && woken < WAKE_BATCH && rx.has_buffered_message() {
                match rx.recv_timed() {
                    Ok(m) => next = Some(m),
                    Err(e) => end = Some(frame_reason(e)),
                }
            }
        }
        drop(st);
        // Counted first: the woken callers defer their next requests until the last resumes.
        if woken > 0 {
            self.send.woke(woken);
            self.board.wake(mask);
        }
        (delivered, end)
    }

    /// Serves a server command from the main socket (`rx` is its receiver, held by the
    /// reader); anything that is neither a command nor a reply breaks the connection.
    fn serve_command(&self, msg: Message, rx: &mut Receiver) -> std::result::Result<(), DisconnectReason> {
        if !msg.header.is_command() {
            return Err(DisconnectReason::ProtocolViolation(format!(
                "message with undefined type (flags {:#x})",
                msg.header.flags
            )));
        }
        let mut out = lock(&self.scratch);
        // Replies are not queued: they answer the server, nothing orders them.
        let mut send = |h: Header, parts: &[&[u8]], data: &[VolatileBuf<'_>]| self.send.send_now(h, parts, data);
        if let Err(e) = self.serve(&msg, &mut out, &mut send) {
            return Err(DisconnectReason::Io(e.errno()));
        }
        // A large DMA_WRITE's payload is received into this memory next time.
        rx.recycle(msg.payload);
        Ok(())
    }

    /// The background reader: holds the reader role whenever no caller does.
    pub(super) fn background(&self) {
        let mut backoff = BACKGROUND_BACKOFF.0;
        let mut st = lock(&self.state);
        loop {
            if st.dead.is_some() {
                return;
            }
            drop(st);
            self.check_send_stall();
            st = lock(&self.state);
            // Sleeping callers take the role themselves when it is handed to them; requests
            // sent but not waited for yet (pipelining) still need someone to read.
            if st.reader == ReaderRole::None && (st.kick_background || !st.has_sleepers()) {
                let seen = st.caller_reads;
                if st.kick_background {
                    st.kick_background = false;
                } else {
                    // Stay out of the way of callers that read for themselves.
                    st = self.bg_cv.wait_timeout(st, backoff).unwrap_or_else(|e| e.into_inner()).0;
                    if st.caller_reads != seen || st.reader != ReaderRole::None {
                        backoff = (backoff * 2).min(BACKGROUND_BACKOFF.1);
                        continue;
                    }
                    if st.dead.is_some() {
                        return;
                    }
                }
                st.reader = ReaderRole::Background;
                backoff = BACKGROUND_BACKOFF.0;
                drop(st);
                self.read_session(None, None);
                st = lock(&self.state);
                continue;
            }
            st = self.bg_cv.wait_timeout(st, backoff).unwrap_or_else(|e| e.into_inner()).0;
            backoff = (backoff * 2).min(BACKGROUND_BACKOFF.1);
        }
    }

    /// Serves the twin socket: only server commands arrive there.
    pub(super) fn twin_loop(&self, mut rx: Receiver) {
        let Some(sender) = &self.twin else { return };
        let mut out = Vec::new();
        loop {
            let mut send = |h: Header, parts: &[&[u8]], data: &[VolatileBuf<'_>]| match data {
                [] => sender.send(h, parts, &[]),
                _ => sender.lock().send_volatile(h, parts, data),
            };
            let msg = match rx.peek_header() {
                Ok(h) if self.dma.divert(&h) => match self.write_in_place(&mut rx, &mut send) {
                    Ok(true) => continue,
                    Ok(false) => rx.recv(),
                    Err(e) => Err(e),
                },
                Ok(_) => rx.recv(),
                Err(e) => Err(e),
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    self.fail(frame_reason(e));
                    return;
                }
            };
            if !msg.header.is_command() {
                self.fail(DisconnectReason::ProtocolViolation("reply on the twin socket".into()));
                return;
            }
            if let Err(e) = self.serve(&msg, &mut out, &mut send) {
                self.fail(DisconnectReason::Io(e.errno()));
                return;
            }
            rx.recycle(msg.payload);
        }
    }

    /// Serves a server command, counting the outcome and sending the reply with `send`.
    fn serve(&self, msg: &Message, out: &mut Vec<u8>, send: &mut SendReply<'_>) -> std::result::Result<(), FrameError> {
        self.counted(send, |s| self.dma.serve(msg, out, s).map(Some)).map(|_| ())
    }

    /// Receives the DMA_WRITE that is the next message of `rx` straight into memory and
    /// serves it, counted as [`serve`](Self::serve) does. Returns whether it was taken:
    /// otherwise nothing was consumed, and it is to be received and served the copying way.
    /// A server that stops sending in the middle of it for the send timeout breaks the
    /// connection.
    fn write_in_place(&self, rx: &mut Receiver, send: &mut SendReply<'_>) -> std::result::Result<bool, FrameError> {
        self.counted(send, |s| self.dma.write_in_place(rx, self.send_timeout, s))
    }

    /// Runs `serve` with `send` wrapped to count the outcome of the command it serves (if it
    /// does: `Some(refused)`), before the reply goes out: a server that has seen it sees the
    /// count. Returns whether a command was served.
    fn counted(
        &self,
        send: &mut SendReply<'_>,
        serve: impl FnOnce(&mut SendReply<'_>) -> std::result::Result<Option<bool>, FrameError>,
    ) -> std::result::Result<bool, FrameError> {
        let count = |refused: bool| bump(if refused { &self.stats.dma_refused } else { &self.stats.dma_served });
        let mut counted = false;
        let mut counting = |h: Header, parts: &[&[u8]], data: &[VolatileBuf<'_>]| {
            counted = true;
            count(h.is_error());
            send(h, parts, data)
        };
        let served = serve(&mut counting)?;
        if let Some(refused) = served.filter(|_| !counted) {
            count(refused);
        }
        Ok(served.is_some())
    }
}
