// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A one-shot timer on a thread of its own: the sample's stand-in for the C sample's
//! `setitimer` + SIGALRM. Arming replaces any earlier deadline, disarming cancels it, and
//! the action runs on the timer thread, with no lock of the timer held (so it may take
//! as long as it needs, e.g. DMA that waits for the client).

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Instant;

#[derive(Debug, Default)]
struct State {
    deadline: Option<Instant>,
    quit: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The action a timer runs when it fires.
pub(crate) type Action = Arc<dyn Fn() + Send + Sync>;

/// A one-shot timer. Its thread starts on the first [`arm`](Timer::arm) and ends when the
/// timer is dropped (after the action, if it is running).
pub(crate) struct Timer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    action: Action,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").field("deadline", &self.deadline()).finish()
    }
}

impl Timer {
    /// A disarmed timer that runs `action` when it fires.
    pub(crate) fn new(action: Action) -> Self {
        Timer { shared: Arc::default(), thread: Mutex::new(None), action }
    }

    /// Fires once at `at` (at once if `at` has passed), replacing any earlier deadline.
    /// Fails only if the timer thread cannot be started.
    pub(crate) fn arm(&self, at: Instant) -> io::Result<()> {
        self.start()?;
        self.shared.lock().deadline = Some(at);
        self.shared.cond.notify_all();
        Ok(())
    }

    /// Cancels the pending deadline, if any (an action already running completes).
    pub(crate) fn disarm(&self) {
        self.shared.lock().deadline = None;
        self.shared.cond.notify_all();
    }

    /// The pending deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.shared.lock().deadline
    }

    fn start(&self) -> io::Result<()> {
        let mut t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if t.is_none() {
            let (shared, action) = (self.shared.clone(), self.action.clone());
            *t = Some(thread::Builder::new().name("sample-timer".into()).spawn(move || run(&shared, &*action))?);
        }
        Ok(())
    }
}

fn run(shared: &Shared, action: &(dyn Fn() + Send + Sync)) {
    let mut s = shared.lock();
    loop {
        if s.quit {
            return;
        }
        match s.deadline {
            None => s = shared.cond.wait(s).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    s.deadline = None;
                    drop(s);
                    action();
                    s = shared.lock();
                } else {
                    s = shared.cond.wait_timeout(s, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shared.lock().quit = true;
        self.shared.cond.notify_all();
        let t = self.thread.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            // The action cannot drop its own timer (it holds no reference to it), so this
            // never joins the current thread.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn counting() -> (Timer, Arc<AtomicUsize>, mpsc::Receiver<Instant>) {
        let n = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let c = n.clone();
        let t = Timer::new(Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            let _ = tx.lock().unwrap().send(Instant::now());
        }));
        (t, n, rx)
    }

    #[test]
    fn fires_once_at_the_deadline() {
        let (t, n, rx) = counting();
        let at = Instant::now() + Duration::from_millis(50);
        t.arm(at).unwrap();
        assert_eq!(t.deadline(), Some(at));
        let fired = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(fired >= at);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "one shot");
        assert_eq!((n.load(Ordering::SeqCst), t.deadline()), (1, None));
        // A deadline in the past fires at once.
        t.arm(Instant::now() - Duration::from_secs(1)).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn rearming_replaces_and_disarming_cancels() {
        let (t, n, rx) = counting();
        t.arm(Instant::now() + Duration::from_secs(3600)).unwrap();
        let at = Instant::now() + Duration::from_millis(20);
        t.arm(at).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap() >= at);
        t.arm(Instant::now() + Duration::from_millis(50)).unwrap();
        t.disarm();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!((n.load(Ordering::SeqCst), t.deadline()), (1, None));
    }

    #[test]
    fn drop_stops_the_thread_of_an_armed_timer() {
        let (t, n, _rx) = counting();
        t.arm(Instant::now() + Duration::from_secs(3600)).unwrap();
        let start = Instant::now();
        drop(t);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(n.load(Ordering::SeqCst), 0);
        // A timer never armed has no thread to stop.
        drop(counting().0);
    }
}
