//! The slot table: one entry per op the ring may have in flight, with the op's life cycle.
//!
//! ```text
//!            take_free                CQE arrives
//!   Free ───────────────> InFlight ─────────────────> Done(res) ──poll──> Free
//!                            │                                      (future takes the result)
//!                            │ future dropped: an IORING_OP_ASYNC_CANCEL is queued for it
//!                            v                CQE arrives (ECANCELED, or the op's own result)
//!                         Parked(op) ───────────────────────────────────> Free
//!                                      (op completed and dropped: buffer, fd, ... freed)
//! ```
//!
//! A slot's `user_data` is its index in the low 32 bits and the slot's generation (bumped at every
//! [`Slots::take_free`]) in bits 32..63; bit 63 marks the CQE of a cancel request, whose `user_data` is
//! [`CANCEL_BIT`] | the target's. The generation makes a cancel match only the op it was meant for,
//! never a later op that reuses the slot.
//!
//! A slot's resources (buffer, fd, iovecs, path) are owned either by the op future
//! (`InFlight`) or by the slot (`Parked`) until the CQE has been processed, never freed before.
//!
//! Nothing here runs foreign code: wakers (clone, drop, wake) and parked ops go out through
//! [`Deferred`], or are handed back to the caller to be dropped after the ring's mutex is released.

use std::collections::VecDeque;
use std::task::Waker;

use super::deferred::{Deferred, LogEvent};

/// Set in the `user_data` of a cancel request.
pub(super) const CANCEL_BIT: u64 = 1 << 63;

/// The generation part of a `user_data`: 31 bits (bit 63 is [`CANCEL_BIT`]).
const GEN_MASK: u32 = (1 << 31) - 1;

/// An op whose future was dropped before its completion: it is completed (and its output dropped) when
/// the CQE arrives, so that, for example, a descriptor opened by a cancelled `openat` is closed.
pub(super) trait Parked: Send {
    /// Completes the op with its completion and drops everything it owns.
    fn finish(self: Box<Self>, completion: Completion);
}

/// A parked op with the completion it got; finished outside the lock (see [`Deferred`]).
pub(super) type Finished = (Box<dyn Parked>, Completion);

/// How a slot's op ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Completion {
    /// The kernel posted this CQE result (negative: `-errno`).
    Cqe(i32),
    /// The kernel never consumed the SQE: the ring broke (permanent `io_uring_enter` error `errno`)
    /// before it was submitted. The op's memory was never used by the kernel; it may be run elsewhere.
    NotSubmitted(i32),
}

enum SlotState {
    Free,
    InFlight { waker: Option<Waker> },
    Done(Completion),
    Parked(Box<dyn Parked>),
}

struct Slot {
    generation: u32,
    /// A cancel request for this slot's current op was pushed (at most one per op).
    cancel_sent: bool,
    state: SlotState,
}

/// What [`Slots::poll`] found.
pub(super) enum SlotPoll {
    Ready(Completion),
    Pending,
    /// In flight, and no waker that wakes this task is registered: clone it (outside the lock) and
    /// call [`Slots::register_waker`].
    NeedsWaker,
}

/// All slots of one ring. Protected by the ring's mutex.
pub(super) struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots whose CQE has not been processed yet (`InFlight` + `Parked`).
    in_flight: usize,
    /// Slots held by ops whose future was dropped (`Parked`).
    parked: usize,
    /// Slots for which a cancel request should be pushed, with the generation it is meant for.
    cancel_queue: VecDeque<(u32, u32)>,
    /// The most slots ever in flight at once (a statistic for tests and benchmarks).
    max_in_flight: usize,
    /// Ops ever submitted (a statistic).
    submitted: u64,
}

impl Slots {
    pub(super) fn new(n: u32) -> Self {
        Self {
            slots: (0..n)
                .map(|_| Slot {
                    generation: 0,
                    cancel_sent: false,
                    state: SlotState::Free,
                })
                .collect(),
            // popped from the back: slot 0 first
            free: (0..n).rev().collect(),
            in_flight: 0,
            parked: 0,
            cancel_queue: VecDeque::new(),
            max_in_flight: 0,
            submitted: 0,
        }
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(super) fn parked(&self) -> usize {
        self.parked
    }

    pub(super) fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    pub(super) fn submitted(&self) -> u64 {
        self.submitted
    }

    fn user_data(&self, idx: u32) -> u64 {
        (u64::from(self.slots[idx as usize].generation) << 32) | u64::from(idx)
    }

    /// The slot of an op's `user_data`, if it names the current op of an existing slot.
    fn decode(&self, user_data: u64) -> Option<usize> {
        let idx = (user_data & u64::from(u32::MAX)) as usize;
        let generation = ((user_data >> 32) as u32) & GEN_MASK;
        (user_data & CANCEL_BIT == 0
            && self.slots.get(idx).map(|s| s.generation) == Some(generation))
        .then_some(idx)
    }

    /// Takes a free slot and marks it in flight: its index and the `user_data` of its SQE. `None` only if
    /// every slot is taken, which the permit semaphore rules out.
    pub(super) fn take_free(&mut self) -> Option<(u32, u64)> {
        let idx = self.free.pop()?;
        let slot = &mut self.slots[idx as usize];
        slot.generation = slot.generation.wrapping_add(1) & GEN_MASK;
        slot.cancel_sent = false;
        slot.state = SlotState::InFlight { waker: None };
        self.in_flight += 1;
        self.submitted += 1;
        self.max_in_flight = self.max_in_flight.max(self.in_flight);
        Some((idx, self.user_data(idx)))
    }

    fn release(&mut self, idx: usize) {
        self.slots[idx].state = SlotState::Free;
        self.free.push(idx as u32);
    }

    /// Undoes [`Slots::take_free`] for a slot whose SQE never reached the submission queue.
    pub(super) fn release_unsubmitted(&mut self, idx: u32) {
        debug_assert!(matches!(
            self.slots[idx as usize].state,
            SlotState::InFlight { waker: None }
        ));
        self.in_flight -= 1;
        self.submitted -= 1;
        self.release(idx as usize);
    }

    /// Records the completion of the op with `user_data`. The waiting future's waker, or the parked op
    /// and the freed slot's permit, go to `deferred`.
    pub(super) fn complete(
        &mut self,
        user_data: u64,
        completion: Completion,
        deferred: &mut Deferred<'_>,
    ) {
        let Some(idx) = self.decode(user_data) else {
            deferred.log(LogEvent::UnknownCompletion { user_data });
            return;
        };
        let state = &mut self.slots[idx].state;
        match std::mem::replace(state, SlotState::Done(completion)) {
            SlotState::InFlight { waker } => {
                self.in_flight -= 1;
                if let Some(w) = waker {
                    deferred.wake(w);
                }
            }
            SlotState::Parked(op) => {
                self.in_flight -= 1;
                self.parked -= 1;
                deferred.finish((op, completion));
                self.release(idx);
                deferred.free_slot();
            }
            other @ (SlotState::Free | SlotState::Done(_)) => {
                *state = other;
                deferred.log(LogEvent::UnknownCompletion { user_data });
            }
        }
    }

    /// The completion of slot `idx` if it is there (the slot is then free: return its permit). Used
    /// right after the submit, before any waker was registered.
    pub(super) fn take_done(&mut self, idx: u32) -> Option<Completion> {
        match self.slots[idx as usize].state {
            SlotState::Done(c) => {
                self.release(idx as usize);
                Some(c)
            }
            _ => None,
        }
    }

    /// The completion of slot `idx` if it arrived (the slot is then free again: return its permit);
    /// else whether `waker` is already registered. Runs no foreign code (`will_wake` compares pointers).
    pub(super) fn poll(&mut self, idx: u32, waker: &Waker) -> SlotPoll {
        match &self.slots[idx as usize].state {
            SlotState::Done(_) => match self.take_done(idx) {
                Some(c) => SlotPoll::Ready(c),
                None => unreachable!("slot {idx} was done"),
            },
            SlotState::InFlight { waker: Some(w) } if w.will_wake(waker) => SlotPoll::Pending,
            SlotState::InFlight { .. } => SlotPoll::NeedsWaker,
            SlotState::Free | SlotState::Parked(_) => {
                unreachable!("slot {idx} polled by its future while free or parked")
            }
        }
    }

    /// Registers `waker` (cloned by the caller outside the lock) for slot `idx`, unless the completion
    /// arrived meanwhile (then `Ready`, and the slot is free). The waker this replaces, or `waker` itself
    /// if not needed, is handed back: drop it after the lock is released.
    pub(super) fn register_waker(&mut self, idx: u32, waker: Waker) -> (SlotPoll, Option<Waker>) {
        match &mut self.slots[idx as usize].state {
            SlotState::InFlight { waker: registered } => {
                (SlotPoll::Pending, registered.replace(waker))
            }
            _ => (self.poll(idx, &waker), Some(waker)),
        }
    }

    /// The future of slot `idx` was dropped. If the completion already arrived, the slot is freed and
    /// the op returned with it (`Ok`: finish it and return the permit); else the op is parked in the
    /// slot until its CQE, a cancel request is queued for it (if `cancel`), and the registered waker (if any) is
    /// handed back to be dropped after the lock is released.
    pub(super) fn park(
        &mut self,
        idx: u32,
        op: Box<dyn Parked>,
        cancel: bool,
    ) -> Result<Finished, Option<Waker>> {
        let slot = &mut self.slots[idx as usize];
        match std::mem::replace(&mut slot.state, SlotState::Parked(op)) {
            SlotState::Done(c) => {
                let SlotState::Parked(op) = std::mem::replace(&mut slot.state, SlotState::Free)
                else {
                    unreachable!("just parked")
                };
                self.release(idx as usize);
                Ok((op, c))
            }
            SlotState::InFlight { waker } => {
                self.parked += 1;
                if cancel && !slot.cancel_sent {
                    self.cancel_queue.push_back((idx, slot.generation));
                }
                Err(waker)
            }
            SlotState::Free | SlotState::Parked(_) => {
                unreachable!("slot {idx} parked while free or already parked")
            }
        }
    }

    /// Queues a cancel request for every op in flight that has none yet (at shutdown).
    pub(super) fn cancel_all(&mut self) {
        for (idx, slot) in self.slots.iter().enumerate() {
            let live = matches!(
                slot.state,
                SlotState::InFlight { .. } | SlotState::Parked(_)
            );
            if live && !slot.cancel_sent {
                self.cancel_queue.push_back((idx as u32, slot.generation));
            }
        }
    }

    /// The `user_data` of the op the next queued cancel request targets, skipping ops that completed
    /// or were already cancelled meanwhile. Call [`Slots::cancel_pushed`] once its SQE is pushed.
    pub(super) fn next_cancel(&mut self) -> Option<u64> {
        while let Some(&(idx, generation)) = self.cancel_queue.front() {
            let slot = &self.slots[idx as usize];
            let live = matches!(
                slot.state,
                SlotState::InFlight { .. } | SlotState::Parked(_)
            );
            if live && slot.generation == generation && !slot.cancel_sent {
                return Some(self.user_data(idx));
            }
            self.cancel_queue.pop_front();
        }
        None
    }

    /// The cancel request named by [`Slots::next_cancel`] is in the submission queue.
    pub(super) fn cancel_pushed(&mut self) {
        if let Some((idx, _)) = self.cancel_queue.pop_front() {
            self.slots[idx as usize].cancel_sent = true;
        }
    }
}
