// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vmm-sys-util's `EventFd` (the eventfd type of Cloud Hypervisor and other rust-vmm VMMs)
//! as the `BorrowedFd` that SET_IRQS takes. vmm-sys-util 0.15's `EventFd` implements
//! `AsRawFd` but not `AsFd`; this is the one place where the raw descriptor is borrowed,
//! so that a VMM needs no `unsafe` of its own.

use std::os::fd::{AsRawFd, BorrowedFd};

/// Borrows the descriptor of a vmm-sys-util 0.15 `EventFd` for as long as the `EventFd` is
/// borrowed, e.g. to pass it to [`Client::enable_irq_eventfds`](crate::Client::enable_irq_eventfds)
/// or [`Client::set_irqs_raw`](crate::Client::set_irqs_raw). (Feature `vmm-sys-util-0-15`.)
#[allow(unsafe_code)]
pub fn borrow_eventfd(event: &vmm_sys_util_0_15::eventfd::EventFd) -> BorrowedFd<'_> {
    // SAFETY: an `EventFd` owns its descriptor: it is created by `eventfd(2)` (or taken
    // over by `FromRawFd`, whose contract is ownership) and closed only when the `EventFd`
    // is dropped. The returned `BorrowedFd` borrows `event`, so the descriptor stays open
    // for the whole lifetime of the borrow.
    unsafe { BorrowedFd::borrow_raw(event.as_raw_fd()) }
}
