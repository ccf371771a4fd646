//! Injected `io_uring_enter` failures (feature `testing`): the next calls that would submit SQEs fail
//! with an errno instead of entering the kernel, as if the kernel had refused them.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

/// A failure of `io_uring_enter` to inject (see [`UringEngine::inject_ring_fault`](super::UringEngine)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFault {
    /// The next `times` submitting calls fail with `errno` (meant for `EAGAIN`, `EBUSY`, `EINTR`,
    /// `ENOMEM`: the engine retries them), then the kernel is entered as usual.
    Transient {
        /// The errno the calls fail with.
        errno: i32,
        /// How many calls fail.
        times: u32,
    },
    /// Every submitting call from now on fails with `errno` (e.g. `EBADF`, `EFAULT`): a broken ring.
    Broken {
        /// The errno the calls fail with.
        errno: i32,
    },
}

/// The faults still to inject, shared by the rings of one engine.
#[derive(Debug, Default)]
pub(super) struct RingFaults {
    state: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    transient: VecDeque<i32>,
    broken: Option<i32>,
}

impl RingFaults {
    pub(super) fn inject(&self, fault: RingFault) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match fault {
            RingFault::Transient { errno, times } => {
                state.transient.extend((0..times).map(|_| errno));
            }
            RingFault::Broken { errno } => state.broken = Some(errno),
        }
    }

    /// The error the next submitting `io_uring_enter` gives instead of entering the kernel, if any.
    pub(super) fn next(&self) -> Option<io::Error> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let errno = state.transient.pop_front().or(state.broken)?;
        Some(io::Error::from_raw_os_error(errno))
    }
}
