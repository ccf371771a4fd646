//! The slot table: one entry per op the ring may have in flight, with the op's life cycle.
//!
//! ```text
//!            take_free                CQE arrives
//!   Free ───────────────> InFlight ─────────────────> Done(res) ──poll──> Free
//!                            │                                      (future takes the result)
//!                            │ future dropped
//!                            v                CQE arrives
//!                         Parked(op) ───────────────────────────────────> Free
//!                                      (op completed and dropped: buffer, fd, ... freed)
//! ```
//!
//! A slot index is the SQE's `user_data`. Its resources (buffer, fd, iovecs, path, statx output) are
//! owned either by the op future (`InFlight`) or by the slot (`Parked`) until the CQE has been processed,
//! never freed before.

use std::task::{Context, Poll, Waker};

use super::deferred::Deferred;

/// An op whose future was dropped before its completion: it is completed (and its output dropped) when
/// the CQE arrives, so that, for example, a descriptor opened by a cancelled `openat` is closed.
pub(super) trait Parked: Send {
    /// Completes the op with the CQE's raw result and drops everything it owns.
    fn finish(self: Box<Self>, res: i32);
}

/// A parked op with the result its CQE brought; finished outside the lock (see [`Deferred`]).
pub(super) type Finished = (Box<dyn Parked>, i32);

enum SlotState {
    Free,
    InFlight { waker: Option<Waker> },
    Done(i32),
    Parked(Box<dyn Parked>),
}

/// All slots of one ring. Protected by the ring's mutex.
pub(super) struct Slots {
    states: Vec<SlotState>,
    free: Vec<u32>,
    /// Slots whose CQE has not been processed yet (`InFlight` + `Parked`).
    in_flight: usize,
    /// The most slots ever in flight at once (a statistic for tests and benchmarks).
    max_in_flight: usize,
    /// Ops ever submitted (a statistic).
    submitted: u64,
}

impl Slots {
    pub(super) fn new(n: u32) -> Self {
        Self {
            states: (0..n).map(|_| SlotState::Free).collect(),
            // popped from the back: slot 0 first
            free: (0..n).rev().collect(),
            in_flight: 0,
            max_in_flight: 0,
            submitted: 0,
        }
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(super) fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    pub(super) fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Takes a free slot and marks it in flight. `None` only if every slot is taken, which the permit
    /// semaphore rules out.
    pub(super) fn take_free(&mut self) -> Option<u32> {
        let idx = self.free.pop()?;
        self.states[idx as usize] = SlotState::InFlight { waker: None };
        self.in_flight += 1;
        self.submitted += 1;
        self.max_in_flight = self.max_in_flight.max(self.in_flight);
        Some(idx)
    }

    fn release(&mut self, idx: u32) {
        self.states[idx as usize] = SlotState::Free;
        self.free.push(idx);
    }

    /// Undoes [`Slots::take_free`] for a slot whose SQE never reached the submission queue.
    pub(super) fn release_unsubmitted(&mut self, idx: u32) {
        debug_assert!(matches!(
            self.states[idx as usize],
            SlotState::InFlight { waker: None }
        ));
        self.in_flight -= 1;
        self.submitted -= 1;
        self.release(idx);
    }

    /// Records the CQE `res` for slot `idx`. The waiting future's waker, or the parked op and the freed
    /// slot's permit, go to `deferred`: nothing foreign runs here, under the ring's mutex.
    pub(super) fn complete(&mut self, idx: u64, res: i32, deferred: &mut Deferred<'_>) {
        let Some(state) = usize::try_from(idx)
            .ok()
            .and_then(|i| self.states.get_mut(i))
        else {
            tracing::error!(user_data = idx, "io_uring completion for an unknown slot");
            return;
        };
        match std::mem::replace(state, SlotState::Done(res)) {
            SlotState::InFlight { waker } => {
                self.in_flight -= 1;
                if let Some(w) = waker {
                    deferred.wake(w);
                }
            }
            SlotState::Parked(op) => {
                self.in_flight -= 1;
                deferred.finish((op, res));
                self.release(idx as u32);
                deferred.free_slot();
            }
            other @ (SlotState::Free | SlotState::Done(_)) => {
                *state = other;
                tracing::error!(
                    user_data = idx,
                    "io_uring completion for a slot not in flight"
                );
            }
        }
    }

    /// The result of slot `idx` if its CQE already arrived (the slot is then free: return its permit).
    /// Used right after the submit, before any waker was registered.
    pub(super) fn take_done(&mut self, idx: u32) -> Option<i32> {
        match self.states[idx as usize] {
            SlotState::Done(res) => {
                self.release(idx);
                Some(res)
            }
            _ => None,
        }
    }

    /// The result of slot `idx` if its CQE arrived (the slot is then free again: return its permit),
    /// else registers `cx`'s waker.
    pub(super) fn poll(&mut self, idx: u32, cx: &mut Context<'_>) -> Poll<i32> {
        let state = &mut self.states[idx as usize];
        match state {
            SlotState::Done(res) => {
                let res = *res;
                self.release(idx);
                Poll::Ready(res)
            }
            SlotState::InFlight { waker } => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            SlotState::Free | SlotState::Parked(_) => {
                unreachable!("slot {idx} polled by its future while free or parked")
            }
        }
    }

    /// The future of slot `idx` was dropped. If the CQE already arrived, the slot is freed and the op
    /// returned with its result (`Some`: finish it and return the permit); else the op is parked in the
    /// slot until its CQE.
    pub(super) fn park(&mut self, idx: u32, op: Box<dyn Parked>) -> Option<Finished> {
        let state = &mut self.states[idx as usize];
        match state {
            SlotState::Done(res) => {
                let res = *res;
                self.release(idx);
                Some((op, res))
            }
            SlotState::InFlight { .. } => {
                *state = SlotState::Parked(op);
                None
            }
            SlotState::Free | SlotState::Parked(_) => {
                unreachable!("slot {idx} parked while free or already parked")
            }
        }
    }
}
