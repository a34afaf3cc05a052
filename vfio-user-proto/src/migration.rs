// Copyright 2026 The vfio-user-rs Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Migration v2 device states and the rules for moving between them.
//!
//! The spec defines nine direct arcs; any other transition is the shortest composition of
//! direct arcs that never passes *through* PRE_COPY or STOP_COPY (those may only start or end
//! a path). STOP_COPY → PRE_COPY is forbidden outright, and ERROR can never be requested.

use std::fmt;

/// A migration v2 device state (`enum vfio_device_mig_state`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MigState {
    /// The device failed a transition and needs a reset.
    Error = 0,
    /// Stopped; not running, not saving.
    Stop = 1,
    /// Running normally.
    Running = 2,
    /// Stopped, saving the final state.
    StopCopy = 3,
    /// Loading state from MIG_DATA_WRITE.
    Resuming = 4,
    /// Running but not initiating peer-to-peer DMA (not used by vfio-user).
    RunningP2p = 5,
    /// Running and saving pre-copy data.
    PreCopy = 6,
    /// PRE_COPY without peer-to-peer DMA (not used by vfio-user).
    PreCopyP2p = 7,
}

impl MigState {
    /// Every state, by value.
    pub const ALL: [MigState; 8] = [
        MigState::Error,
        MigState::Stop,
        MigState::Running,
        MigState::StopCopy,
        MigState::Resuming,
        MigState::RunningP2p,
        MigState::PreCopy,
        MigState::PreCopyP2p,
    ];

    /// Whether MIG_DATA_READ is valid in this state.
    pub fn is_saving(self) -> bool {
        matches!(self, MigState::PreCopy | MigState::StopCopy)
    }

    /// Whether the device is stopped (no DMA, no interrupts).
    pub fn is_stopped(self) -> bool {
        matches!(self, MigState::Stop | MigState::StopCopy)
    }
}

impl TryFrom<u32> for MigState {
    type Error = u32;

    fn try_from(v: u32) -> Result<Self, u32> {
        MigState::ALL.get(v as usize).copied().ok_or(v)
    }
}

impl fmt::Display for MigState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MigState::Error => "ERROR",
            MigState::Stop => "STOP",
            MigState::Running => "RUNNING",
            MigState::StopCopy => "STOP_COPY",
            MigState::Resuming => "RESUMING",
            MigState::RunningP2p => "RUNNING_P2P",
            MigState::PreCopy => "PRE_COPY",
            MigState::PreCopyP2p => "PRE_COPY_P2P",
        })
    }
}

/// Whether `from → to` is one of the spec's direct arcs. Arcs touching PRE_COPY exist only
/// when `pre_copy` is supported. The P2P states have no arcs in vfio-user.
pub fn is_direct_arc(from: MigState, to: MigState, pre_copy: bool) -> bool {
    use MigState::*;
    match (from, to) {
        (Running, Stop) | (StopCopy, Stop) | (Resuming, Stop) | (Stop, Running) => true,
        (Stop, StopCopy) | (Stop, Resuming) => true,
        (PreCopy, Running) | (Running, PreCopy) | (PreCopy, StopCopy) => pre_copy,
        _ => false,
    }
}

/// The states a transition from `from` to `to` passes through, `to` included, or `None`
/// when the transition is not allowed. `from == to` gives an empty path, except for ERROR,
/// which is never a valid request.
pub fn transition_path(from: MigState, to: MigState, pre_copy: bool) -> Option<Vec<MigState>> {
    use MigState::*;
    // ERROR can never be requested, not even by a device already in it.
    if to == Error {
        return None;
    }
    if from == to {
        return Some(Vec::new());
    }
    if matches!(to, RunningP2p | PreCopyP2p) || matches!(from, Error | RunningP2p | PreCopyP2p) {
        return None;
    }
    if from == StopCopy && to == PreCopy {
        return None;
    }
    // Breadth-first search over the eight states; intermediate states may not be saving ones.
    let mut prev: [Option<MigState>; 8] = [None; 8];
    let mut seen = [false; 8];
    let mut queue = std::collections::VecDeque::new();
    seen[from as usize] = true;
    queue.push_back(from);
    while let Some(s) = queue.pop_front() {
        if s != from && s != to && s.is_saving() {
            continue;
        }
        for n in MigState::ALL {
            if !seen[n as usize] && is_direct_arc(s, n, pre_copy) {
                seen[n as usize] = true;
                prev[n as usize] = Some(s);
                if n == to {
                    let mut path = vec![to];
                    let mut cur = s;
                    while cur != from {
                        path.push(cur);
                        cur = prev[cur as usize]?;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(n);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::MigState::*;
    use super::*;

    #[test]
    fn direct_arcs_are_single_steps() {
        for (a, b) in [
            (Running, Stop),
            (StopCopy, Stop),
            (Resuming, Stop),
            (PreCopy, Running),
            (Stop, Running),
            (Running, PreCopy),
            (Stop, StopCopy),
            (PreCopy, StopCopy),
            (Stop, Resuming),
        ] {
            assert_eq!(transition_path(a, b, true), Some(vec![b]), "{a} -> {b}");
        }
    }

    #[test]
    fn composed_paths_follow_libvfio_user_examples() {
        assert_eq!(transition_path(Running, StopCopy, true), Some(vec![Stop, StopCopy]));
        assert_eq!(transition_path(Resuming, Running, true), Some(vec![Stop, Running]));
        assert_eq!(transition_path(PreCopy, Stop, true), Some(vec![Running, Stop]));
        assert_eq!(transition_path(Running, Resuming, true), Some(vec![Stop, Resuming]));
        assert_eq!(transition_path(StopCopy, Running, true), Some(vec![Stop, Running]));
        assert_eq!(transition_path(StopCopy, Resuming, true), Some(vec![Stop, Resuming]));
        assert_eq!(transition_path(Stop, PreCopy, true), Some(vec![Running, PreCopy]));
    }

    #[test]
    fn forbidden_transitions() {
        assert_eq!(transition_path(StopCopy, PreCopy, true), None);
        assert_eq!(transition_path(Resuming, PreCopy, true), Some(vec![Stop, Running, PreCopy]));
        for s in MigState::ALL {
            assert_eq!(transition_path(s, Error, true), None, "{s} -> ERROR");
            assert_eq!(transition_path(Error, Running, true), None);
            assert_eq!(transition_path(s, RunningP2p, true).is_some(), s == RunningP2p);
            // Without PRE_COPY support, nothing reaches or leaves it.
            if s != PreCopy {
                assert_eq!(transition_path(s, PreCopy, false), None);
            }
        }
    }

    #[test]
    fn no_path_passes_through_a_saving_state() {
        for a in MigState::ALL {
            for b in MigState::ALL {
                if let Some(p) = transition_path(a, b, true) {
                    for mid in &p[..p.len().saturating_sub(1)] {
                        assert!(!mid.is_saving(), "{a}->{b} passes {mid}");
                    }
                }
            }
        }
    }

    #[test]
    fn state_values() {
        assert_eq!(MigState::try_from(6), Ok(PreCopy));
        assert_eq!(MigState::try_from(8), Err(8));
        assert_eq!(StopCopy as u32, 3);
    }
}
