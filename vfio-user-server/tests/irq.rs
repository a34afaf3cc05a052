// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! DEVICE_SET_IRQS in every DATA × ACTION combination, and mask / pending semantics of
//! MSI, MSI-X and INTx as the device raises vectors through its `IrqHandle`.

mod common;

use common::*;
use vfio_user_proto::wire::*;
use vfio_user_server::irq::{INTX, MSI, MSIX};
use vfio_user_server::VectorState;

const EFD_TRIGGER: u32 = IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER;
const NONE_TRIGGER: u32 = IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER;
const BOOL_TRIGGER: u32 = IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER;

/// Finds a capability's offset by walking the list over the socket.
fn find_cap(c: &mut Client, id: u8) -> u64 {
    let mut p = u64::from(c.read32(7, 0x34) & 0xff);
    while p != 0 {
        let h = c.read32(7, p);
        if h as u8 == id {
            return p;
        }
        p = u64::from(h >> 8 & 0xff);
    }
    panic!("capability {id:#x} not found");
}

#[test]
fn eventfds_fire_deassign_and_disable() {
    let mut h = spawn();
    let efds: Vec<_> = (0..3).map(|_| eventfd()).collect();
    let refs: Vec<_> = efds.iter().collect();
    h.client.set_irqs(EFD_TRIGGER, MSIX, 0, 3, &[], &refs).unwrap();
    assert_eq!(h.irq.state(MSIX, 1), VectorState { enabled: true, masked: false });
    h.irq.trigger_msix(1).unwrap();
    h.irq.trigger_msix(1).unwrap();
    assert_eq!(efds.iter().map(efd_count).collect::<Vec<_>>(), vec![0, 2, 0]);
    // DATA_NONE and DATA_BOOL triggers come from the client.
    h.client.set_irqs(NONE_TRIGGER, MSIX, 0, 2, &[], &[]).unwrap();
    assert_eq!(efds.iter().map(efd_count).collect::<Vec<_>>(), vec![1, 1, 0]);
    h.client.set_irqs(BOOL_TRIGGER, MSIX, 1, 2, &[0, 1], &[]).unwrap();
    assert_eq!(efds.iter().map(efd_count).collect::<Vec<_>>(), vec![0, 0, 1]);
    // Zero fds de-assign the range.
    h.client.set_irqs(EFD_TRIGGER, MSIX, 1, 1, &[], &[]).unwrap();
    assert!(!h.irq.state(MSIX, 1).enabled && h.irq.state(MSIX, 0).enabled);
    h.irq.trigger_msix(1).unwrap();
    assert_eq!(efd_count(&efds[1]), 0);
    // count 0 + DATA_NONE disables the whole index.
    h.client.set_irqs(NONE_TRIGGER, MSIX, 0, 0, &[], &[]).unwrap();
    assert!(!h.irq.state(MSIX, 0).enabled && !h.irq.state(MSIX, 2).enabled);
    h.irq.trigger_msix(0).unwrap();
    assert_eq!(efd_count(&efds[0]), 0);
    // The device heard about every change.
    let seen = h.dev.seen();
    assert!(seen.contains(&Seen::Irq(MSIX, 1, VectorState { enabled: true, masked: false })));
    assert!(seen.contains(&Seen::Irq(MSIX, 2, VectorState { enabled: false, masked: false })));
    h.client.assert_alive();
}

#[test]
fn invalid_set_irqs() {
    let mut h = spawn();
    let e = eventfd();
    let c = &mut h.client;
    assert_eq!(c.set_irqs(EFD_TRIGGER, 5, 0, 1, &[], &[&e]).unwrap_err(), libc::EINVAL, "index");
    assert_eq!(c.set_irqs(EFD_TRIGGER, MSI, 3, 2, &[], &[&e, &e]).unwrap_err(), libc::EINVAL, "range");
    assert_eq!(c.set_irqs(EFD_TRIGGER, MSI, 0, 2, &[], &[&e]).unwrap_err(), libc::EINVAL, "fd count");
    assert_eq!(c.set_irqs(NONE_TRIGGER, MSI, 1, 0, &[], &[]).unwrap_err(), libc::EINVAL, "count 0, start 1");
    assert_eq!(c.set_irqs(BOOL_TRIGGER, MSI, 0, 0, &[], &[]).unwrap_err(), libc::EINVAL, "count 0 with BOOL");
    assert_eq!(
        c.set_irqs(IRQ_SET_DATA_NONE | IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, MSI, 0, 1, &[], &[]).unwrap_err(),
        libc::EINVAL
    );
    assert_eq!(c.set_irqs(IRQ_SET_DATA_NONE, MSI, 0, 1, &[], &[]).unwrap_err(), libc::EINVAL, "no action");
    assert_eq!(c.set_irqs(BOOL_TRIGGER, MSI, 0, 2, &[1], &[]).unwrap_err(), libc::EINVAL, "short bools");
    assert_eq!(c.set_irqs(NONE_TRIGGER, MSI, 0, 1, &[], &[&e]).unwrap_err(), libc::EINVAL, "fd with DATA_NONE");
    let many: Vec<_> = (0..17).map(|_| eventfd()).collect();
    let refs: Vec<_> = many.iter().collect();
    assert_eq!(c.set_irqs(EFD_TRIGGER, MSIX, 0, 17, &[], &refs).unwrap_err(), libc::EINVAL, "over max_msg_fds");
    assert!(!h.irq.state(MSI, 0).enabled);
    h.client.assert_alive();
}

#[test]
fn set_irqs_mask_unmask_and_pending() {
    let mut h = spawn();
    let trig = eventfd();
    let on_mask = eventfd();
    let on_unmask = eventfd();
    let c = &mut h.client;
    c.set_irqs(EFD_TRIGGER, INTX, 0, 1, &[], &[&trig]).unwrap();
    c.set_irqs(IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_MASK, INTX, 0, 1, &[], &[&on_mask]).unwrap();
    c.set_irqs(IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_UNMASK, INTX, 0, 1, &[], &[&on_unmask]).unwrap();
    c.set_irqs(IRQ_SET_DATA_NONE | IRQ_SET_ACTION_MASK, INTX, 0, 1, &[], &[]).unwrap();
    assert_eq!(efd_count(&on_mask), 1);
    h.irq.trigger_intx().unwrap();
    assert_eq!(efd_count(&trig), 0, "masked: pending instead");
    assert!(h.irq.pending(INTX, 0));
    let c = &mut h.client;
    c.set_irqs(IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_UNMASK, INTX, 0, 1, &[1], &[]).unwrap();
    assert_eq!((efd_count(&trig), efd_count(&on_unmask)), (1, 1), "unmasking fires the pending vector");
    assert!(!h.irq.pending(INTX, 0));
    // Interrupt Disable in the command register masks INTx too.
    c.write32(7, 4, 1 << 10);
    h.irq.trigger_intx().unwrap();
    assert_eq!(efd_count(&trig), 0);
    c.write32(7, 4, 0);
    assert_eq!(efd_count(&trig), 1);
    c.assert_alive();
}

#[test]
fn msix_function_and_vector_masks_use_the_pba() {
    let mut h = spawn();
    let efds: Vec<_> = (0..2).map(|_| eventfd()).collect();
    let refs: Vec<_> = efds.iter().collect();
    h.client.set_irqs(EFD_TRIGGER, MSIX, 0, 2, &[], &refs).unwrap();
    let cap = find_cap(&mut h.client, 0x11);
    let c = &mut h.client;
    // Not enabled in config space: the table's reset mask bits do not apply (QEMU case).
    h.irq.trigger_msix(0).unwrap();
    assert_eq!(efd_count(&efds[0]), 1);
    // Enable MSI-X with the function masked.
    c.write(7, cap + 2, &0xc000u16.to_le_bytes()).unwrap();
    // Program and unmask entry 0 in the table (BAR2 + 0x2000).
    c.write(2, 0x2000, &0xfee0_0000u64.to_le_bytes()).unwrap();
    c.write32(2, 0x2008, 0x31);
    c.write32(2, 0x200c, 0);
    assert_eq!(h.irq.msix_message(0), Some((0xfee0_0000, 0x31)));
    h.irq.trigger_msix(0).unwrap();
    assert_eq!(efd_count(&efds[0]), 0, "function masked");
    let c = &mut h.client;
    assert_eq!(c.read(2, 0x3000, 8).unwrap(), vec![1, 0, 0, 0, 0, 0, 0, 0], "PBA bit 0 pending");
    c.write(2, 0x3000, &[0; 8]).unwrap();
    assert_eq!(c.read(2, 0x3000, 1).unwrap(), vec![1], "PBA is read-only");
    c.write(7, cap + 2, &0x8000u16.to_le_bytes()).unwrap();
    assert_eq!(efd_count(&efds[0]), 1, "function unmask delivers the pending vector");
    assert_eq!(c.read(2, 0x3000, 1).unwrap(), vec![0]);
    // Vector 1 is still masked in its table entry.
    h.irq.trigger_msix(1).unwrap();
    assert_eq!(efd_count(&efds[1]), 0);
    assert!(h.irq.pending(MSIX, 1));
    assert_eq!(h.client.read(2, 0x3000, 1).unwrap(), vec![2]);
    h.client.write32(2, 0x201c, 0);
    assert_eq!(efd_count(&efds[1]), 1, "vector unmask delivers");
    assert!(h.dev.seen().contains(&Seen::Irq(MSIX, 1, VectorState { enabled: true, masked: false })));
    // Table reads are served by the framework, other BAR2 bytes by the device.
    assert_eq!(h.client.read32(2, 0x2008), 0x31);
    assert_eq!(h.client.read(2, 0x1ffe, 4).unwrap(), vec![0xa5, 0xa5, 0, 0], "straddles device and table");
    h.client.assert_alive();
}

#[test]
fn msi_per_vector_mask() {
    let mut h = spawn();
    let efds: Vec<_> = (0..4).map(|_| eventfd()).collect();
    let refs: Vec<_> = efds.iter().collect();
    h.client.set_irqs(EFD_TRIGGER, MSI, 0, 4, &[], &refs).unwrap();
    let cap = find_cap(&mut h.client, 0x05);
    let c = &mut h.client;
    assert_eq!(c.read32(7, cap) >> 16 & 0x18e, 0x184, "64-bit, per-vector mask, 4 vectors");
    c.write(7, cap + 2, &1u16.to_le_bytes()).unwrap();
    c.write32(7, cap + 16, 0b0100);
    h.irq.trigger_msi(2).unwrap();
    h.irq.trigger_msi(3).unwrap();
    assert_eq!((efd_count(&efds[2]), efd_count(&efds[3])), (0, 1));
    assert_eq!(h.client.read32(7, cap + 20), 0b0100, "pending bits register");
    h.client.write32(7, cap + 16, 0);
    assert_eq!(efd_count(&efds[2]), 1);
    assert_eq!(h.client.read32(7, cap + 20), 0);
    assert!(h.irq.trigger_msi(4).is_err(), "no vector 4");
    h.client.assert_alive();
}

#[test]
fn irq_handle_works_from_other_threads() {
    let mut h = spawn();
    let e = eventfd();
    h.client.set_irqs(EFD_TRIGGER, MSIX, 3, 1, &[], &[&e]).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let irq = h.irq.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    irq.trigger_msix(3).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(efd_count(&e), 400);
}

#[test]
fn msix_enabled_by_a_client_that_keeps_its_own_table() {
    // QEMU and Cloud Hypervisor write MSI-X Enable through but never the table.
    let mut h = spawn();
    let e = eventfd();
    h.client.set_irqs(EFD_TRIGGER, MSIX, 5, 1, &[], &[&e]).unwrap();
    let cap = find_cap(&mut h.client, 0x11);
    h.client.write(7, cap + 2, &0x8000u16.to_le_bytes()).unwrap();
    h.irq.trigger_msix(5).unwrap();
    assert_eq!(efd_count(&e), 1, "the untouched table's reset mask bits do not apply");
    // The function mask still does, with the pending bit and delivery on unmask.
    h.client.write(7, cap + 2, &0xc000u16.to_le_bytes()).unwrap();
    h.irq.trigger_msix(5).unwrap();
    assert_eq!(efd_count(&e), 0);
    assert_eq!(h.client.read(2, 0x3000, 1).unwrap(), vec![1 << 5]);
    h.client.write(7, cap + 2, &0x8000u16.to_le_bytes()).unwrap();
    assert_eq!(efd_count(&e), 1);
}

/// The eventfds a client passes stay as the client made them: the server shares their
/// open file, and libvfio-user's client reads its INTx eventfd blocking (a server that set
/// O_NONBLOCK on it made that read fail with EAGAIN). That signalling still never blocks
/// is `hostile.rs`'s concern.
#[test]
fn client_eventfd_flags_are_left_alone() {
    let mut h = spawn();
    let blocking = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    h.client.set_irqs(EFD_TRIGGER, INTX, 0, 1, &[], &[&blocking]).unwrap();
    let flags = rustix::fs::fcntl_getfl(&blocking).unwrap();
    assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK), "the server changed the client's fd flags");
    h.irq.trigger_intx().unwrap();
    // A blocking read returns the signal.
    let mut b = [0u8; 8];
    assert_eq!(rustix::io::read(&blocking, &mut b).unwrap(), 8);
    assert_eq!(u64::from_ne_bytes(b), 1);
}
