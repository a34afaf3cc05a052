// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One connection to a server: sending, matching replies to requests by `msg_id`, reading
//! the socket, serving server-initiated commands, timeouts and disconnects.
//!
//! # Design
//! * Sending (`send.rs`): one thread at a time holds the send lock; small messages from
//!   threads that find it taken are queued and sent by the holder in one `sendmsg`, small
//!   posted writes coalesced into REGION_WRITE_MULTI. The queue is FIFO and every sender
//!   empties it before its own message, so nothing overtakes a message submitted before.
//!   Callers a reader has just woken defer their next small requests until the last of
//!   them resumes, which sends them all at once. A send making no progress for longer than
//!   the timeout (the server stopped reading) closes the connection.
//! * Pending table (`pending.rs`): `msg_id` → waiter slot;
//!   a slot receives the reply message with its fds.
//! * Reading: exactly one thread at a time holds the *reader role* and owns the
//!   `Receiver`. A thread waiting for its reply takes the role itself when nobody holds
//!   it, so a lone request costs no thread hand-off; otherwise it sleeps until the reader
//!   delivers the reply or hands it the role. The reader handles every message a `recvmsg`
//!   brought before it looks at its own reply: the replies are delivered under one lock of
//!   the table and their owners woken after it, all with one `futex` call (`wake.rs`).
//!   A background thread holds the role while no caller does, so server-initiated
//!   commands and EOF are seen while the client is idle; it steps aside while callers are
//!   active.
//! * Whoever reads dispatches every message: replies to their slots, DMA_READ/DMA_WRITE to
//!   the DMA server, anything else closes the connection.
//! * A twin socket, when negotiated, has its own thread that serves DMA on it.
//! * On disconnect or a protocol violation every waiter wakes with
//!   `Error::Disconnected` and later calls fail fast.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::dma_serve::DmaServer;
use crate::error::{DisconnectReason, Error, Result};
use crate::notice::DisconnectNotice;
use crate::pending::{PendingTable, ReaderRole};
use crate::send::SendPath;
use crate::stats::{bump, Counters};
use crate::sync::{lock, now_ms};
use crate::wake::{bit, WakeBoard};
use vfio_user_proto::wire::WriteMultiEntry;
use vfio_user_proto::{decode_reply, Command, FrameError, Header, Message, Negotiated, Receiver, Reply, Sender};

/// How long the background reader stays out of the way after a caller read the socket
/// itself: doubling from the first to the second value while callers stay active, so that
/// it wakes rarely under load. Bounds the delay of server-initiated commands on the main
/// socket when the client goes idle (the twin socket has no such delay).
const BACKGROUND_BACKOFF: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(8));

/// The receive timeout of the main socket: how often a reader blocked in `recvmsg` looks
/// at its deadline.
pub(crate) const RECV_TICK: Duration = Duration::from_millis(20);

/// A caller further than this from its deadline sleeps without a timeout; the background
/// reader, which looks at least every [`RECV_TICK`] (or [`BACKGROUND_BACKOFF`]'s maximum),
/// wakes callers this close to theirs.
const LONG_PARK: Duration = Duration::from_millis(100);

/// Most sleeping callers a reader wakes per lock of the pending table.
const WAKE_BATCH: usize = 32;

mod reader;

/// One connection.
pub(crate) struct Transport {
    send: SendPath,
    state: Mutex<PendingTable>,
    /// Where callers waiting for their replies sleep.
    board: WakeBoard,
    bg_cv: Condvar,
    rx: Mutex<Receiver>,
    /// Payload memory of the replies to server commands on the main socket (used by
    /// whoever holds the reader role).
    scratch: Mutex<Vec<u8>>,
    twin: Option<Sender>,
    pub(crate) stats: Arc<Counters>,
    /// A send making no progress for this long (the server stopped reading) closes the
    /// connection.
    send_timeout: Duration,
    pub(crate) negotiated: Negotiated,
    dma: Arc<DmaServer>,
    /// Signalled when this connection is lost (set once, by the client that owns it).
    notice: OnceLock<Arc<DisconnectNotice>>,
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
        stats: Arc<Counters>,
    ) -> Transport {
        Transport {
            send: SendPath::new(sender, negotiated.peer.max_data_xfer_size, stats.clone()),
            stats,
            state: Mutex::new(PendingTable::new()),
            board: WakeBoard::new(),
            bg_cv: Condvar::new(),
            rx: Mutex::new(rx),
            scratch: Mutex::new(Vec::new()),
            twin,
            send_timeout,
            negotiated,
            dma,
            notice: OnceLock::new(),
        }
    }

    /// Signals `notice` when this connection is lost (at once if it already is).
    pub(crate) fn watch(&self, notice: Arc<DisconnectNotice>) {
        let notice = self.notice.get_or_init(|| notice);
        if self.dead().is_some() {
            notice.signal();
        }
    }

    /// Closes the connection when a send has been blocked for longer than the timeout (the
    /// server stopped reading); the blocked sender then fails with EPIPE. Called by the
    /// background reader at least every [`RECV_TICK`].
    fn check_send_stall(&self) {
        if self.send.stalled(self.send_timeout) {
            self.fail(DisconnectReason::Io(libc::ETIMEDOUT));
        }
        // A safety net for deferred requests (sent by the last resumed caller normally).
        if let Err(e) = self.send.recheck() {
            self.send_error(e);
        }
        // Callers asleep without a timeout that near their deadline sleep again with one.
        let mask = lock(&self.state).wake_expiring(now_ms().saturating_add(LONG_PARK.as_millis() as u64));
        if mask != 0 {
            self.board.wake(mask);
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
        let (deadline, timeout) = request_deadline(cmd, timeout)?;
        let (id, asleep) = {
            let mut st = lock(&self.state);
            if let Some(r) = &st.dead {
                return Err(Error::Disconnected(r.clone()));
            }
            let id = st.register(deadline)?;
            // Nobody reads: this caller will read its own reply; it takes the role now.
            // Otherwise it will sleep: it marks itself asleep now (and reads the wake-up
            // generation under this lock). Either spares it a lock of the table in `wait`.
            let asleep = if st.reader == ReaderRole::None {
                st.reader = ReaderRole::Caller;
                st.caller_reads = st.caller_reads.wrapping_add(1);
                None
            } else {
                st.set_sleeping(id, true);
                Some(self.board.seen())
            };
            (id, asleep)
        };
        let reader = asleep.is_none();
        let mut ticket = Ticket { t: self, id, cmd, deadline, timeout, done: false };
        let sent = self.send(Header::command(id, cmd, 0), parts, fds);
        if reader {
            if sent.is_ok() {
                if let Some(m) = self.read_session(Some(id), Some(deadline)) {
                    ticket.done = true;
                    return ticket.check(m);
                }
            } else {
                self.release_reader();
            }
        }
        if let Err(e) = sent {
            ticket.done = true;
            lock(&self.state).remove(id);
            return Err(e);
        }
        ticket.done = true;
        let m = self.wait(id, deadline, cmd, timeout, asleep)?;
        ticket.check(m)
    }

    /// Sends several commands in as few system calls as possible (no fds); their replies
    /// are collected with [`Ticket::finish`], in any order.
    pub(crate) fn start_batch(&self, reqs: &[(Command, &[&[u8]])], timeout: Duration) -> Result<Vec<Ticket<'_>>> {
        let first = reqs.first().map_or(Command::RegionRead, |r| r.0);
        let (deadline, timeout) = request_deadline(first, timeout)?;
        let mut tickets = Vec::with_capacity(reqs.len());
        {
            let mut st = lock(&self.state);
            if let Some(r) = &st.dead {
                return Err(Error::Disconnected(r.clone()));
            }
            for (cmd, _) in reqs {
                match st.register(deadline) {
                    Ok(id) => tickets.push(Ticket { t: self, id, cmd: *cmd, deadline, timeout, done: false }),
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
        if let Err(e) = self.send.send(&msgs, &[]).map_err(|e| self.send_error(e)) {
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
        self.send(Header::command(id, cmd, 0).with_no_reply(), parts, &[])
    }

    fn posted_id(&self) -> Result<u16> {
        let mut st = lock(&self.state);
        if let Some(r) = &st.dead {
            return Err(Error::Disconnected(r.clone()));
        }
        st.posted_id()
    }

    /// Sends a small posted write, coalesced into REGION_WRITE_MULTI with its neighbours
    /// when writes queue up behind another send.
    pub(crate) fn post_small_write(&self, entry: WriteMultiEntry) -> Result<()> {
        let id = self.posted_id()?;
        self.send.post_small_write(id, entry).map_err(|e| self.send_error(e))
    }

    fn send(&self, hdr: Header, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send.send(&[(hdr, parts)], fds).map_err(|e| self.send_error(e))
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

    /// Waits for the reply to `id`, reading the socket itself when nobody else does.
    ///
    /// With `asleep`, the caller already marked its slot asleep, having read this wake-up
    /// generation under the same lock: it sleeps first.
    fn wait(&self, id: u16, deadline: u64, cmd: Command, timeout: Duration, asleep: Option<u32>) -> Result<Message> {
        let mut st = match asleep {
            Some(seen) => {
                self.sleep(id, seen, deadline);
                let mut st = lock(&self.state);
                st.set_sleeping(id, false);
                st
            }
            None => lock(&self.state),
        };
        // The clock is read only when a wait did not end with the reply.
        let mut check_clock = asleep.is_some();
        loop {
            if let Some((m, woken)) = st.take_reply(id) {
                drop(st);
                if woken {
                    // The last caller of a woken batch to resume sends their deferred requests.
                    if let Err(e) = self.send.resumed() {
                        self.send_error(e);
                    }
                }
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
                bump(&self.stats.timeouts);
                return Err(Error::Timeout { command: cmd, timeout });
            }
            check_clock = true;
            if st.reader == ReaderRole::None {
                st.reader = ReaderRole::Caller;
                st.caller_reads = st.caller_reads.wrapping_add(1);
                drop(st);
                if let Some(m) = self.read_session(Some(id), Some(deadline)) {
                    return Ok(m);
                }
                st = lock(&self.state);
                continue;
            }
            if !st.set_sleeping(id, true) {
                return Err(Error::Protocol(format!("msg_id {id} vanished from the pending table")));
            }
            let seen = self.board.seen();
            drop(st);
            self.sleep(id, seen, deadline);
            st = lock(&self.state);
            st.set_sleeping(id, false);
        }
    }

    /// Sleeps until woken (by whoever delivers the reply to `id` or hands it the reader
    /// role, or by a wake-up after `seen`) or until `deadline`; a spurious wake-up just
    /// makes the caller look again. Far from the deadline, without a timeout (a timed sleep
    /// costs a kernel timer): the background reader wakes it in time (`wake_expiring`).
    fn sleep(&self, id: u16, seen: u32, deadline: u64) {
        let far = deadline.saturating_sub(now_ms()) > LONG_PARK.as_millis() as u64;
        self.board.sleep(seen, bit(id), (!far).then_some(deadline));
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
            if matches!(reason, DisconnectReason::ProtocolViolation(_)) {
                bump(&self.stats.violations);
            }
            // Signalled before `dead` is set, so whoever sees the connection dead sees the
            // notice too.
            if let Some(n) = self.notice.get() {
                n.signal();
            }
            st.dead = Some(reason);
            st.wake_all();
            self.bg_cv.notify_all();
        }
        self.board.wake(u32::MAX);
        self.send.shutdown();
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
        let msg = t.wait(self.id, self.deadline, self.cmd, self.timeout, None)?;
        self.check(msg)
    }

    /// A reply to this ticket's command: a successful one, or the error it reports.
    fn check(&self, msg: Message) -> Result<Message> {
        let t = self.t;
        if msg.header.command != self.cmd as u16 {
            let why = format!("reply to {} (msg_id {}) carries command {}", self.cmd, self.id, msg.header.command);
            return Err(t.violation(why));
        }
        if msg.header.is_error() {
            // The spec's error reply is the header alone.
            if !msg.payload.is_empty() || !msg.fds.is_empty() {
                let why = format!(
                    "error reply to {} (msg_id {}) carries {} payload bytes and {} fds",
                    self.cmd,
                    self.id,
                    msg.payload.len(),
                    msg.fds.len()
                );
                return Err(t.violation(why));
            }
            return Err(Error::Server { command: self.cmd, errno: msg.header.errno() });
        }
        Ok(msg)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let woken = !self.done && lock(&self.t.state).abandon(self.id);
        if woken {
            if let Err(e) = self.t.send.resumed() {
                self.t.send_error(e);
            }
        }
    }
}

thread_local! {
    /// The deadline (ms of [`now_ms`]) of the [`with_deadline`] scope this thread is in.
    static SCOPE_DEADLINE: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
}

/// Runs `f` with every request this thread makes cut short at `within` from now (nested
/// scopes keep the earlier deadline); see [`Client::with_deadline`](crate::Client::with_deadline).
pub(crate) fn with_deadline<R>(within: Duration, f: impl FnOnce() -> R) -> R {
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPE_DEADLINE.with(|d| d.set(self.0));
        }
    }
    let outer = SCOPE_DEADLINE.with(|d| d.get());
    let ours = now_ms().saturating_add(u64::try_from(within.as_millis()).unwrap_or(u64::MAX));
    SCOPE_DEADLINE.with(|d| d.set(outer.min(ours)));
    let _restore = Restore(outer);
    f()
}

/// The deadline (ms) of a request with `timeout`, and the timeout it amounts to: cut to what
/// is left of the thread's [`with_deadline`] scope. A scope already expired fails the request
/// with [`Error::Timeout`] before anything is sent.
fn request_deadline(cmd: Command, timeout: Duration) -> Result<(u64, Duration)> {
    let now = now_ms();
    let deadline = now.saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    let scope = SCOPE_DEADLINE.with(|d| d.get());
    if scope >= deadline {
        return Ok((deadline, timeout));
    }
    if scope <= now {
        return Err(Error::Timeout { command: cmd, timeout: Duration::ZERO });
    }
    Ok((scope, Duration::from_millis(scope - now)))
}

/// Decodes a successful reply; a malformed one closes the connection.
pub(crate) fn decode<'a>(t: &Transport, msg: &'a Message) -> Result<Reply<'a>> {
    decode_reply(&msg.header, &msg.payload, msg.fds.len()).map_err(|e| t.violation(format!("malformed reply: {e}")))
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
    use crate::dma_serve::DmaTable;

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
        (
            Arc::new(Transport::new(sender, rx, None, negotiated, dma, Duration::from_secs(10), Default::default())),
            Connection::new(b),
        )
    }

    fn entry(i: u8) -> WriteMultiEntry {
        WriteMultiEntry { offset: u64::from(i) * 4, region: 1, count: 4, data: [i; WRITE_MULTI_DATA_MAX] }
    }

    #[test]
    fn posted_writes_queued_behind_a_send_are_coalesced() {
        let (t, mut peer) = transport(true);
        let guard = t.send.hold();
        let threads: Vec<_> = (0..5u8)
            .map(|i| {
                let t = t.clone();
                std::thread::spawn(move || t.post_small_write(entry(i)).unwrap())
            })
            .collect();
        // The writers queue behind the held send lock and return.
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.send.queued_len(), 5);
        drop(guard);
        t.send.after_hold().unwrap();
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
        let st = t.stats.snapshot();
        assert_eq!((st.write_multi_messages, st.write_multi_entries), (1, 5));
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
        let guard = t.send.hold();
        t.post_small_write(entry(1)).unwrap();
        t.post_small_write(entry(2)).unwrap();
        drop(guard); // nobody drains: the next send must send them first
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
