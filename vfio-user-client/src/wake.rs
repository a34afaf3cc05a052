// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Where callers waiting for their replies sleep: one futex word for the whole connection,
//! so that a reader that has just delivered a batch of replies wakes all their owners with
//! a single `FUTEX_WAKE_BITSET` instead of one system call per thread.
//!
//! Every sleeper waits on the same word with a bit of its own, [`bit`] of its request's
//! `msg_id`; a wake-up names the bits to wake. Ids of concurrent requests are consecutive,
//! so up to 32 sleepers have distinct bits; beyond that two sleepers can share a bit, and
//! the one that was not meant wakes, finds nothing for it and sleeps again.
//!
//! The word is a generation counter, bumped by every wake-up. A sleeper reads it
//! ([`WakeBoard::seen`]) in the same critical section of the pending table in which it
//! found nothing to do and marked itself asleep; a waker changes the table first and bumps
//! the counter after. A wake-up that happens between the sleeper's look and its sleep
//! changes the counter, so the sleep returns at once instead of missing it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::futex;

/// The bit that a sleeper waiting for the reply to `id` sleeps with.
pub(crate) fn bit(id: u16) -> u32 {
    1 << (id & 31)
}

/// The futex word callers sleep on.
pub(crate) struct WakeBoard {
    gen: AtomicU32,
}

impl WakeBoard {
    pub(crate) const fn new() -> Self {
        WakeBoard { gen: AtomicU32::new(0) }
    }

    /// The generation to sleep against: read while holding the lock under which the
    /// sleeper saw that it has to sleep.
    pub(crate) fn seen(&self) -> u32 {
        self.gen.load(Ordering::SeqCst)
    }

    /// Sleeps with `bit` until a wake-up names it or any wake-up happened after `seen`
    /// was read, or until `until` (the coarse monotonic clock, in ms) when given. Returns
    /// early on a signal; the caller always looks again.
    pub(crate) fn sleep(&self, seen: u32, bit: u32, until: Option<u64>) {
        let Some(mask) = NonZeroU32::new(bit) else { return };
        // FUTEX_WAIT_BITSET's timeout is absolute, on CLOCK_MONOTONIC; `until` is on the
        // coarse clock, which lags it by up to a tick: what is left of `until` is added to
        // the precise clock, so that the sleep does not end before the coarse deadline.
        let timeout = until.map(|ms| {
            let left = ms.saturating_sub(crate::sync::now_ms());
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let nanos = (now.tv_nsec as u64).saturating_add((left % 1000) * 1_000_000);
            let secs = (now.tv_sec as u64).saturating_add(left / 1000).saturating_add(nanos / 1_000_000_000);
            rustix::time::Timespec { tv_sec: secs.min(i64::MAX as u64) as i64, tv_nsec: (nanos % 1_000_000_000) as _ }
        });
        let _ = futex::wait_bitset(&self.gen, futex::Flags::PRIVATE, seen, timeout.as_ref(), mask);
    }

    /// Wakes every sleeper whose bit is in `mask` (and makes sleeps about to start against
    /// an older generation return at once).
    pub(crate) fn wake(&self, mask: u32) {
        self.gen.fetch_add(1, Ordering::SeqCst);
        if let Some(mask) = NonZeroU32::new(mask) {
            // The count is a C int: every sleeper whose bit matches.
            let _ = futex::wake_bitset(&self.gen, futex::Flags::PRIVATE, i32::MAX as u32, mask);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn bits_of_consecutive_ids_are_distinct_for_32_ids() {
        let mask = (100u16..132).fold(0u32, |m, id| {
            assert_eq!(m & bit(id), 0);
            m | bit(id)
        });
        assert_eq!(mask, u32::MAX);
        assert_eq!(bit(u16::MAX), bit(31));
    }

    #[test]
    fn a_wake_naming_the_bit_wakes_the_sleeper_and_others_do_not() {
        let board = Arc::new(WakeBoard::new());
        let done = Arc::new(AtomicBool::new(false));
        let (b, d) = (board.clone(), done.clone());
        let sleeper = std::thread::spawn(move || {
            let mut wakes = 0;
            loop {
                let seen = b.seen();
                if d.load(Ordering::SeqCst) {
                    return wakes;
                }
                b.sleep(seen, bit(3), None);
                wakes += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        // Another bit: the sleeper stays asleep.
        board.wake(bit(4));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!sleeper.is_finished());
        done.store(true, Ordering::SeqCst);
        board.wake(bit(3));
        let wakes = sleeper.join().unwrap();
        assert!((1..=2).contains(&wakes), "woken {wakes} times");
    }

    #[test]
    fn a_wake_between_look_and_sleep_is_not_lost() {
        let board = WakeBoard::new();
        let seen = board.seen();
        board.wake(0);
        let t = Instant::now();
        // No timeout: it would hang if the wake-up were missed.
        board.sleep(seen, bit(1), None);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_sleep_ends_at_its_deadline() {
        let board = WakeBoard::new();
        let t = Instant::now();
        board.sleep(board.seen(), bit(1), Some(crate::sync::now_ms() + 30));
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(15) && e < Duration::from_secs(5), "{e:?}");
    }
}
