// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One connection to a server: sending, matching replies to requests by `msg_id`, reading
//! the socket, serving server-initiated commands, timeouts and disconnects.
//!
//! # Design
//! * Sending: the framing layer's lock keeps whole messages apart. Small posted writes wait
//!   in a queue behind a send lock; the next thread to send flushes the queue first (as one
//!   REGION_WRITE_MULTI when the server accepts it), and a posted write is on the wire
//!   before its call returns, so no later request overtakes it. A send blocked longer than
//!   the timeout (the server stopped reading) closes the connection.
//! * Pending table (`pending.rs`): `msg_id` → waiter slot;
//!   a slot receives the reply message with its fds.
//! * Reading: exactly one thread at a time holds the *reader role* and owns the
//!   `Receiver`. A thread waiting for its reply takes the role itself when nobody holds
//!   it, so a lone request costs no thread hand-off; otherwise it sleeps on its slot until
//!   the reader delivers the reply or hands it the role. A background thread holds the role
//!   while no caller does, so server-initiated commands and EOF are seen while the client
//!   is idle; it steps aside while callers are active.
//! * Whoever reads dispatches every message: replies to their slots, DMA_READ/DMA_WRITE to
//!   the DMA server, anything else closes the connection.
//! * A twin socket, when negotiated, has its own thread that serves DMA on it.
//! * On disconnect or a protocol violation every waiter wakes with
//!   `Error::Disconnected` and later calls fail fast.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use vfio_user_proto::header::FLAGS_NO_REPLY;
use vfio_user_proto::wire::{WriteMulti, WriteMultiEntry};
use vfio_user_proto::{Command, FrameError, Header, Message, Negotiated, Receiver, Sender};
use vm_memory::ByteValued;

use crate::dma::DmaServer;
use crate::error::{DisconnectReason, Error, Result};
use crate::pending::{Delivery, PendingTable, ReaderRole};

/// How long the background reader stays out of the way after a caller read the socket
/// itself. Bounds the delay of server-initiated commands on the main socket while the
/// client goes idle (the twin socket has no such delay).
const BACKGROUND_BACKOFF: Duration = Duration::from_millis(1);

/// The receive timeout of the main socket: how often a reader blocked in `recvmsg` looks
/// at its deadline.
pub(crate) const RECV_TICK: Duration = Duration::from_millis(20);

/// Most entries in one REGION_WRITE_MULTI (QEMU sends at most 200).
pub(crate) const WRITE_MULTI_MAX: usize = 200;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection.
pub(crate) struct Transport {
    sender: Sender,
    send_lock: Mutex<()>,
    posted: Mutex<Vec<WriteMultiEntry>>,
    /// Whether `posted` may be non-empty (saves locking it on every send).
    has_posted: AtomicBool,
    state: Mutex<PendingTable>,
    bg_cv: Condvar,
    rx: Mutex<Receiver>,
    twin: Option<Sender>,
    /// Sends in progress, and when one last started from idle or completed ([`now_ms`]):
    /// a server that stops reading must not block senders forever.
    sends_in_flight: AtomicU64,
    send_progress: AtomicU64,
    send_timeout: Duration,
    pub(crate) negotiated: Negotiated,
    dma: Arc<DmaServer>,
}

/// A [`Transport`] with the threads that serve it.
pub(crate) struct Link {
    pub(crate) transport: Arc<Transport>,
    threads: Vec<JoinHandle<()>>,
}

impl Link {
    /// Starts the background reader (and the twin-socket thread) of `transport`.
    pub(crate) fn start(transport: Transport, twin_rx: Option<Receiver>) -> Result<Link> {
        let transport = Arc::new(transport);
        let mut threads = Vec::new();
        let t = transport.clone();
        threads.push(std::thread::Builder::new().name("vfio-user-rx".into()).spawn(move || t.background())?);
        if let Some(rx) = twin_rx {
            let t = transport.clone();
            let spawned = std::thread::Builder::new().name("vfio-user-twin".into()).spawn(move || t.twin_loop(rx));
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    let mut link = Link { transport, threads };
                    link.stop();
                    return Err(e.into());
                }
            }
        }
        Ok(Link { transport, threads })
    }

    /// Closes the connection and waits for its threads.
    pub(crate) fn stop(&mut self) {
        self.transport.fail(DisconnectReason::Shutdown);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Transport {
    /// Wraps a negotiated connection whose socket has the receive timeout [`RECV_TICK`].
    pub(crate) fn new(
        sender: Sender,
        rx: Receiver,
        twin: Option<Sender>,
        negotiated: Negotiated,
        dma: Arc<DmaServer>,
        send_timeout: Duration,
    ) -> Transport {
        Transport {
            sender,
            send_lock: Mutex::new(()),
            posted: Mutex::new(Vec::new()),
            has_posted: AtomicBool::new(false),
            state: Mutex::new(PendingTable::new()),
            bg_cv: Condvar::new(),
            rx: Mutex::new(rx),
            twin,
            sends_in_flight: AtomicU64::new(0),
            send_progress: AtomicU64::new(0),
            send_timeout,
            negotiated,
            dma,
        }
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    /// Closes the connection when a send has been blocked for longer than the timeout (the
    /// server stopped reading); the blocked sender then fails with EPIPE. Called by the
    /// background reader at least every [`RECV_TICK`].
    fn check_send_stall(&self) {
        if self.sends_in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        let since = self.send_progress.load(Ordering::SeqCst);
        if self.now_ms().saturating_sub(since) > self.send_timeout.as_millis() as u64 {
            self.fail(DisconnectReason::Io(libc::ETIMEDOUT));
        }
    }

    /// The reason the connection is down, if it is.
    pub(crate) fn dead(&self) -> Option<DisconnectReason> {
        lock(&self.state).dead.clone()
    }

    /// Sends a command and waits for its reply. Error replies become [`Error::Server`]; the
    /// returned message is a successful reply to `cmd` (not yet decoded).
    pub(crate) fn request(
        &self,
        cmd: Command,
        parts: &[&[u8]],
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<Message> {
        self.start(cmd, parts, fds, timeout)?.finish()
    }

    /// Sends a command; its reply is collected with [`Ticket::finish`]. Several tickets may
    /// be outstanding at once (pipelining from one thread).
    pub(crate) fn start(
        &self,
        cmd: Command,
        parts: &[&[u8]],
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<Ticket<'_>> {
        let deadline = now_ms().saturating_add(timeout.as_millis() as u64);
        let (id, cv) = {
            let mut st = lock(&self.state);
            if let Some(r) = &st.dead {
                return Err(Error::Disconnected(r.clone()));
            }
            st.register()?
        };
        let mut ticket = Ticket { t: self, id, cv, cmd, deadline, timeout, done: false };
        if let Err(e) = self.send(Header::command(id, cmd, 0), parts, fds) {
            ticket.done = true;
            lock(&self.state).remove(id);
            return Err(e);
        }
        Ok(ticket)
    }

    /// Sends several commands in as few system calls as possible (no fds); their replies
    /// are collected with [`Ticket::finish`], in any order.
    pub(crate) fn start_batch(&self, reqs: &[(Command, &[&[u8]])], timeout: Duration) -> Result<Vec<Ticket<'_>>> {
        let deadline = now_ms().saturating_add(timeout.as_millis() as u64);
        let mut tickets = Vec::with_capacity(reqs.len());
        {
            let mut st = lock(&self.state);
            if let Some(r) = &st.dead {
                return Err(Error::Disconnected(r.clone()));
            }
            for (cmd, _) in reqs {
                match st.register() {
                    Ok((id, cv)) => tickets.push(Ticket { t: self, id, cv, cmd: *cmd, deadline, timeout, done: false }),
                    Err(e) => {
                        for t in &mut tickets {
                            t.done = true;
                            st.remove(t.id);
                        }
                        return Err(e);
                    }
                }
            }
        }
        let msgs: Vec<(Header, &[&[u8]])> =
            tickets.iter().zip(reqs).map(|(t, (cmd, parts))| (Header::command(t.id, *cmd, 0), *parts)).collect();
        let send = || self.track(|| self.sender.send_batch(&msgs)).map_err(|e| self.send_error(e));
        let sent = if self.has_posted.load(Ordering::SeqCst) {
            // As in `send`: queued posted writes go first, under the send lock.
            let _g = lock(&self.send_lock);
            self.flush_locked().and_then(|()| send())
        } else {
            send()
        };
        if let Err(e) = sent {
            let mut st = lock(&self.state);
            for t in &mut tickets {
                t.done = true;
                st.remove(t.id);
            }
            return Err(e);
        }
        Ok(tickets)
    }

    /// Sends a command with NO_REPLY.
    pub(crate) fn post(&self, cmd: Command, parts: &[&[u8]]) -> Result<()> {
        let id = self.posted_id()?;
        let mut hdr = Header::command(id, cmd, 0);
        hdr.flags |= FLAGS_NO_REPLY;
        self.send(hdr, parts, &[])
    }

    fn posted_id(&self) -> Result<u16> {
        let mut st = lock(&self.state);
        if let Some(r) = &st.dead {
            return Err(Error::Disconnected(r.clone()));
        }
        st.posted_id()
    }

    /// Queues a small posted write for coalescing into REGION_WRITE_MULTI and sends the
    /// queue unless another thread is about to.
    pub(crate) fn post_small_write(&self, entry: WriteMultiEntry) -> Result<()> {
        if let Some(r) = self.dead() {
            return Err(Error::Disconnected(r));
        }
        lock(&self.posted).push(entry);
        self.has_posted.store(true, Ordering::SeqCst);
        let _g = lock(&self.send_lock);
        self.flush_locked()
    }

    /// Sends the posted-write queue. Only ever called with the send lock held, so that a
    /// `post_small_write` that finds its entry taken knows it is on the wire once it gets the
    /// lock.
    fn flush_locked(&self) -> Result<()> {
        // `post_small_write` raises the flag after its push and then takes the send lock
        // itself, so an entry is never stranded: whoever clears the flag takes the queue.
        if !self.has_posted.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let entries = std::mem::take(&mut *lock(&self.posted));
        // The peer bounds a REGION_WRITE_MULTI like a REGION_WRITE: 16 + max_data_xfer_size.
        let fit = (self.negotiated.peer.max_data_xfer_size as usize + 16 - 8) / 24;
        for chunk in entries.chunks(fit.clamp(1, WRITE_MULTI_MAX)) {
            let id = self.posted_id()?;
            let mut hdr;
            let mut body = Vec::with_capacity(8 + chunk.len() * 24);
            if let [e] = chunk {
                // A lone write goes out as a plain REGION_WRITE.
                hdr = Header::command(id, Command::RegionWrite, 0);
                let a = vfio_user_proto::wire::RegionAccess { offset: e.offset, region: e.region, count: e.count };
                body.extend_from_slice(a.as_slice());
                body.extend_from_slice(&e.data[..e.count as usize]);
            } else {
                hdr = Header::command(id, Command::RegionWriteMulti, 0);
                body.extend_from_slice(WriteMulti { wr_cnt: chunk.len() as u64 }.as_slice());
                for e in chunk {
                    body.extend_from_slice(e.as_slice());
                }
            }
            hdr.flags |= FLAGS_NO_REPLY;
            self.send_raw(hdr, &[&body], &[])?;
        }
        Ok(())
    }

    /// Sends one message after any queued posted writes. Without queued writes the
    /// framing layer's own lock is enough: a posted write is on the wire before its
    /// `post_small_write` returns, so nothing sent later can overtake it.
    fn send(&self, hdr: Header, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<()> {
        if self.has_posted.load(Ordering::SeqCst) {
            let _g = lock(&self.send_lock);
            self.flush_locked()?;
            return self.send_raw(hdr, parts, fds);
        }
        self.send_raw(hdr, parts, fds)
    }

    fn send_raw(&self, hdr: Header, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send_tracked(hdr, parts, fds).map_err(|e| self.send_error(e))
    }

    /// The error of a failed send: invalid arguments are the caller's; anything else breaks
    /// the connection.
    fn send_error(&self, e: FrameError) -> Error {
        match e {
            FrameError::Io(e) if e.kind() == std::io::ErrorKind::InvalidInput => Error::Send(FrameError::Io(e)),
            e => {
                let reason = DisconnectReason::Io(e.errno());
                self.fail(reason.clone());
                Error::Disconnected(self.dead().unwrap_or(reason))
            }
        }
    }

    /// Sends through the framing layer, tracking progress for [`Self::check_send_stall`].
    fn send_tracked(
        &self,
        hdr: Header,
        parts: &[&[u8]],
        fds: &[BorrowedFd<'_>],
    ) -> std::result::Result<(), FrameError> {
        self.track(|| self.sender.send(hdr, parts, fds))
    }

    /// Runs a send, recording its progress for [`Self::check_send_stall`].
    fn track<T>(&self, send: impl FnOnce() -> T) -> T {
        if self.sends_in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.send_progress.store(self.now_ms(), Ordering::SeqCst);
        }
        let sent = send();
        self.send_progress.store(self.now_ms(), Ordering::SeqCst);
        self.sends_in_flight.fetch_sub(1, Ordering::SeqCst);
        sent
    }

    /// Waits for the reply to `id`, reading the socket itself when nobody else does.
    fn wait(&self, id: u16, cv: &Condvar, deadline: u64, cmd: Command, timeout: Duration) -> Result<Message> {
        let mut st = lock(&self.state);
        // The clock is read only when a wait did not end with the reply.
        let mut check_clock = false;
        loop {
            if let Some(m) = st.take_reply(id) {
                return Ok(m);
            }
            if let Some(r) = &st.dead {
                let r = r.clone();
                st.remove(id);
                return Err(Error::Disconnected(r));
            }
            let now = if check_clock { Some(now_ms()) } else { None };
            if now.is_some_and(|now| now >= deadline) {
                st.abandon(id);
                return Err(Error::Timeout { command: cmd, timeout });
            }
            check_clock = true;
            if st.reader == ReaderRole::None {
                st.reader = ReaderRole::Caller;
                st.caller_reads = st.caller_reads.wrapping_add(1);
                drop(st);
                self.read_session(Some(id), Some(deadline));
                st = lock(&self.state);
                continue;
            }
            let left = Duration::from_millis(deadline.saturating_sub(now.unwrap_or_else(now_ms)).max(1));
            st.set_sleeping(id, true);
            st = cv.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
            st.set_sleeping(id, false);
        }
    }

    /// Holds the reader role: reads and dispatches messages until the reply to `until` (a
    /// caller) or any caller's reply (the background reader) has been delivered, the
    /// deadline passes or the connection dies. Releases the role on return.
    ///
    /// The socket has a receive timeout of [`RECV_TICK`], so a read blocks in `recvmsg`
    /// itself (one system call per message) and the deadline is checked at least that often.
    fn read_session(&self, until: Option<u16>, deadline: Option<u64>) {
        let mut rx = lock(&self.rx);
        loop {
            match rx.recv_timed() {
                Ok(msg) => match self.dispatch(msg) {
                    Ok(Delivery::Reply(got)) if until.is_none() || until == Some(got) => break,
                    Ok(_) => {
                        if deadline.is_some_and(|d| now_ms() >= d) {
                            break;
                        }
                    }
                    Err(reason) => {
                        self.fail(reason);
                        break;
                    }
                },
                Err(FrameError::WouldBlock) => {
                    if until.is_none() {
                        self.check_send_stall();
                    }
                    if self.dead().is_some() || deadline.is_some_and(|d| now_ms() >= d) {
                        break;
                    }
                }
                Err(e) => {
                    self.fail(frame_reason(e));
                    break;
                }
            }
        }
        let buffered = rx.has_buffered_message();
        drop(rx);
        let mut st = lock(&self.state);
        st.reader = ReaderRole::None;
        if !st.wake_one_waiter() && buffered {
            st.kick_background = true;
            self.bg_cv.notify_one();
        }
    }

    /// Routes one message from the main socket.
    fn dispatch(&self, msg: Message) -> std::result::Result<Delivery, DisconnectReason> {
        if msg.header.is_command() {
            if let Some((hdr, payload)) = self.dma.serve(&msg) {
                if let Err(e) = self.send_tracked(hdr, &[&payload], &[]) {
                    return Err(DisconnectReason::Io(e.errno()));
                }
            }
            return Ok(Delivery::Command);
        }
        if !msg.header.is_reply() {
            return Err(DisconnectReason::ProtocolViolation(format!(
                "message with undefined type (flags {:#x})",
                msg.header.flags
            )));
        }
        lock(&self.state).deliver(msg)
    }

    /// The background reader: holds the reader role whenever no caller does.
    fn background(&self) {
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
                    st = self.bg_cv.wait_timeout(st, BACKGROUND_BACKOFF).unwrap_or_else(|e| e.into_inner()).0;
                    if st.caller_reads != seen || st.reader != ReaderRole::None {
                        continue;
                    }
                    if st.dead.is_some() {
                        return;
                    }
                }
                st.reader = ReaderRole::Background;
                drop(st);
                self.read_session(None, None);
                st = lock(&self.state);
                continue;
            }
            st = self.bg_cv.wait_timeout(st, BACKGROUND_BACKOFF).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Serves the twin socket: only server commands arrive there.
    fn twin_loop(&self, mut rx: Receiver) {
        let Some(sender) = &self.twin else { return };
        loop {
            let msg = match rx.recv() {
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
            if let Some((hdr, payload)) = self.dma.serve(&msg) {
                if let Err(e) = sender.send(hdr, &[&payload], &[]) {
                    self.fail(DisconnectReason::Io(e.errno()));
                    return;
                }
            }
        }
    }

    /// Records a protocol violation, closes the connection and returns the error to report.
    pub(crate) fn violation(&self, why: String) -> Error {
        log::error!("vfio-user server: {why}");
        self.fail(DisconnectReason::ProtocolViolation(why.clone()));
        Error::Protocol(why)
    }

    /// Marks the connection dead (first reason wins), wakes every waiter and shuts the
    /// sockets down so that blocked readers return.
    pub(crate) fn fail(&self, reason: DisconnectReason) {
        {
            let mut st = lock(&self.state);
            if st.dead.is_some() {
                return;
            }
            if reason != DisconnectReason::Shutdown {
                log::warn!("vfio-user connection lost: {reason}");
            }
            st.dead = Some(reason);
            st.wake_all();
            self.bg_cv.notify_all();
        }
        let _ = self.sender.shutdown();
        if let Some(s) = &self.twin {
            let _ = s.shutdown();
        }
    }
}

/// A request that has been sent and whose reply has not been collected yet. Dropping it
/// unfinished abandons the request (a late reply is discarded).
pub(crate) struct Ticket<'a> {
    t: &'a Transport,
    id: u16,
    cv: Arc<Condvar>,
    cmd: Command,
    deadline: u64,
    timeout: Duration,
    done: bool,
}

impl Ticket<'_> {
    /// Waits for the reply: a successful reply to the command, or the error.
    pub(crate) fn finish(mut self) -> Result<Message> {
        self.done = true;
        let t = self.t;
        let msg = t.wait(self.id, &self.cv, self.deadline, self.cmd, self.timeout)?;
        if msg.header.command != self.cmd as u16 {
            let why = format!("reply to {} (msg_id {}) carries command {}", self.cmd, self.id, msg.header.command);
            return Err(t.violation(why));
        }
        if msg.header.is_error() {
            return Err(Error::Server { command: self.cmd, errno: msg.header.errno() });
        }
        Ok(msg)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.t.state).abandon(self.id);
        }
    }
}

/// A monotonic clock in milliseconds, read from the kernel's coarse clock (no hardware
/// counter read): timeouts are seconds, a few milliseconds of resolution are plenty.
fn now_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64).saturating_mul(1000).saturating_add(t.tv_nsec as u64 / 1_000_000)
}

fn frame_reason(e: FrameError) -> DisconnectReason {
    match e {
        FrameError::Closed | FrameError::EofMidMessage { .. } => DisconnectReason::Closed,
        FrameError::Io(e) => DisconnectReason::Io(e.raw_os_error().unwrap_or(libc::EIO)),
        other => DisconnectReason::ProtocolViolation(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::sync::RwLock;

    use vfio_user_proto::wire::WRITE_MULTI_DATA_MAX;
    use vfio_user_proto::{decode_request, Capabilities, Connection, DecodeLimits, Request};

    use super::*;
    use crate::dma::DmaTable;

    fn transport(write_multiple: bool) -> (Arc<Transport>, Connection) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(RECV_TICK)).unwrap();
        let (sender, rx) = Connection::new(a).split();
        let peer = Capabilities { write_multiple, ..Default::default() };
        let negotiated = Negotiated { major: 0, minor: 0, local: Capabilities::default(), peer, twin_socket: false };
        let dma = Arc::new(DmaServer {
            table: RwLock::new(DmaTable::default()),
            memory: None,
            limits: DecodeLimits::default(),
        });
        (Arc::new(Transport::new(sender, rx, None, negotiated, dma, Duration::from_secs(10))), Connection::new(b))
    }

    fn entry(i: u8) -> WriteMultiEntry {
        WriteMultiEntry { offset: u64::from(i) * 4, region: 1, count: 4, data: [i; WRITE_MULTI_DATA_MAX] }
    }

    #[test]
    fn posted_writes_queued_behind_a_send_are_coalesced() {
        let (t, mut peer) = transport(true);
        let guard = lock(&t.send_lock);
        let threads: Vec<_> = (0..5u8)
            .map(|i| {
                let t = t.clone();
                std::thread::spawn(move || t.post_small_write(entry(i)).unwrap())
            })
            .collect();
        // Wait until all five are queued behind the held send lock.
        while lock(&t.posted).len() < 5 {
            std::thread::yield_now();
        }
        drop(guard);
        for th in threads {
            th.join().unwrap();
        }
        let m = peer.recv().unwrap();
        assert!(m.header.no_reply());
        let limits = DecodeLimits::default();
        match decode_request(&m.header, &m.payload, 0, &limits).unwrap() {
            Request::RegionWriteMulti(e) => {
                let mut offsets: Vec<u64> = e.iter().map(|e| e.offset).collect();
                offsets.sort();
                assert_eq!(offsets, [0, 4, 8, 12, 16]);
                assert!(e.iter().all(|e| e.count == 4 && e.data[0] as u64 * 4 == e.offset));
            }
            r => panic!("expected one REGION_WRITE_MULTI, got {r:?}"),
        }
        // A lone posted write goes out as a plain REGION_WRITE.
        t.post_small_write(entry(9)).unwrap();
        let m = peer.recv().unwrap();
        match decode_request(&m.header, &m.payload, 0, &limits).unwrap() {
            Request::RegionWrite(a, d) => assert_eq!((a.offset, d), (36, &[9u8; 4][..])),
            r => panic!("{r:?}"),
        }
        t.fail(DisconnectReason::Shutdown);
    }

    #[test]
    fn a_request_flushes_queued_posted_writes_first() {
        let (t, mut peer) = transport(true);
        lock(&t.posted).push(entry(1));
        lock(&t.posted).push(entry(2));
        t.has_posted.store(true, Ordering::SeqCst);
        let t2 = t.clone();
        let h = std::thread::spawn(move || t2.request(Command::DeviceReset, &[], &[], Duration::from_secs(10)));
        let first = peer.recv().unwrap();
        assert_eq!(first.header.cmd(), Ok(Command::RegionWriteMulti));
        let reset = peer.recv().unwrap();
        assert_eq!(reset.header.cmd(), Ok(Command::DeviceReset));
        peer.send(reset.header.reply(0), &[], &[]).unwrap();
        let m = h.join().unwrap().unwrap();
        assert!(m.header.is_reply());
        t.fail(DisconnectReason::Shutdown);
    }
}
