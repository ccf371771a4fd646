//! [`System`]: one io_uring, its slot table and the permits that bound what is in flight.
//!
//! Everything that touches the ring's queues happens under one mutex (the [`Core`]): pushing an SQE,
//! `io_uring_enter`, and draining the completion queue. The slot permits (a FIFO
//! `tokio::sync::Semaphore`) are acquired *before* the mutex, so a submitter never waits for a slot while
//! holding it. No foreign code (wakers, buffers' `Drop`, the semaphore waking a waiter) runs under the
//! mutex: each call returns its [`Deferred`] work, which the caller runs once its own op is safe.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use io_uring::{squeue, IoUring};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use super::deferred::Deferred;
use super::ring_core::Core;
use super::slots::{Parked, Slots};

/// One ring with its slots. Shared (`Arc`) by the engine handle, the op futures and the reaper task.
pub(super) struct System {
    core: Mutex<Core>,
    /// One permit per free slot; waiters are served in FIFO order.
    permits: Semaphore,
    /// Wakes the reaper when SQEs could not be submitted and must be retried.
    reaper: Notify,
    /// A `dup` of the eventfd registered with the ring, to signal it ourselves (see `submit`).
    eventfd: OwnedFd,
    slots: usize,
    shut_down: AtomicBool,
    ftruncate_op: bool,
}

/// A reserved slot (a permit of the semaphore). Dropped unused, for example when preparing the SQE
/// panics or the submit fails, it gives the permit back.
pub(super) struct Reservation<'a>(SemaphorePermit<'a>);

/// Where an op stands right after its submit.
pub(super) enum Submitted {
    /// In flight in this slot: wait for its completion.
    InFlight(u32),
    /// Completed inside the submit (a page-cache hit); the slot is already free again.
    Done(i32),
}

fn shut_down_error() -> io::Error {
    io::Error::other(
        "the io_uring engine has shut down (its last handle was dropped or its tokio runtime ended)",
    )
}

fn broken_error(errno: i32) -> io::Error {
    let cause = io::Error::from_raw_os_error(errno);
    io::Error::new(
        cause.kind(),
        format!("the io_uring ring is unusable: io_uring_enter failed: {cause}"),
    )
}

impl System {
    /// Wraps a ring whose completion queue holds at least twice its submission queue; `eventfd` is a
    /// `dup` of the eventfd registered with it.
    pub(super) fn new(ring: IoUring, eventfd: OwnedFd, ftruncate_op: bool) -> Self {
        let slots = ring.params().sq_entries();
        debug_assert!(ring.params().cq_entries() >= 2 * slots);
        Self {
            core: Mutex::new(Core::new(ring, Slots::new(slots))),
            permits: Semaphore::new(slots as usize),
            reaper: Notify::new(),
            eventfd,
            slots: slots as usize,
            shut_down: AtomicBool::new(false),
            ftruncate_op,
        }
    }

    /// Number of slots (the most ops in flight at once).
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// The most slots that were ever in flight at once, and how many ops were submitted.
    pub(super) fn counters(&self) -> (usize, u64) {
        let core = self.lock();
        (core.slots.max_in_flight(), core.slots.submitted())
    }

    /// Whether the kernel supports `IORING_OP_FTRUNCATE`.
    pub(super) fn has_ftruncate_op(&self) -> bool {
        self.ftruncate_op
    }

    pub(super) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // Nothing under the lock runs foreign code, and our own code leaves the core consistent at
        // every panic point it has; keep going.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deferred(&self) -> Deferred<'_> {
        Deferred::new(&self.permits, &self.reaper, self.eventfd.as_fd())
    }

    /// Completes when the reaper should retry SQEs that could not be submitted.
    pub(super) fn retry_requested(&self) -> Notified<'_> {
        self.reaper.notified()
    }

    /// Waits (FIFO, cancellation-safe) until a slot is free and reserves it, for [`System::submit`].
    pub(super) async fn reserve_slot(&self) -> io::Result<Reservation<'_>> {
        match self.permits.acquire().await {
            Ok(permit) => Ok(Reservation(permit)),
            Err(_closed) => Err(shut_down_error()),
        }
    }

    /// Pushes `sqe` into a free slot, submits it, and drains the completion queue (a page-cache hit
    /// usually completes inside the submit, and then its result is returned right away). On error the
    /// reservation is given back and nothing was queued. The returned [`Deferred`] must be run once the
    /// op is safe: guarded by its `InFlight` (or, if `Done`, no longer needed by the kernel).
    ///
    /// `inline_likely`: the op often completes inside `io_uring_enter` (buffered IO). If nothing else is
    /// in flight, the eventfd is then disabled around push, enter and drain: an inline completion
    /// costs no eventfd signal and no reaper wakeup.
    ///
    /// # Safety
    /// The memory `sqe` points to must stay valid, at the same address, until the slot's completion has
    /// been processed: the caller keeps it in the op future, or hands it to [`System::park`].
    pub(super) unsafe fn submit<'a>(
        &'a self,
        reservation: Reservation<'a>,
        sqe: squeue::Entry,
        inline_likely: bool,
    ) -> io::Result<(Submitted, Deferred<'a>)> {
        let mut deferred = self.deferred();
        let mut core = self.lock();
        if self.is_shut_down() || core.ring.is_none() {
            drop(core);
            drop(reservation);
            return Err(shut_down_error());
        }
        if let Some(errno) = core.broken {
            drop(core);
            drop(reservation);
            return Err(broken_error(errno));
        }
        let slot = core
            .slots
            .take_free()
            .expect("a reserved permit guarantees a free slot");
        let sqe = sqe.user_data(u64::from(slot));
        // Only when no other thread can post a CQE meanwhile: a completion posted by another thread
        // while the eventfd is disabled could be missed both by the eventfd and by our drain below
        // (the kernel does not order its CQ tail store before its read of the flag).
        let window = inline_likely && core.only_one_in_flight();
        let set_eventfd = |core: &mut Core, disabled: bool| {
            if let Some(ring) = core.ring.as_mut() {
                if disabled {
                    ring.completion().disable_eventfd();
                } else {
                    ring.completion().enable_eventfd();
                }
            }
        };
        if window {
            set_eventfd(&mut core, true);
        }
        // SAFETY: the caller keeps the SQE's memory valid until the slot's CQE is processed.
        if !unsafe { core.push(&sqe) } {
            // Cannot happen while the SQ has as many entries as there are slots, but is not assumed.
            core.slots.release_unsubmitted(slot);
            if window {
                set_eventfd(&mut core, false);
            }
            drop(core);
            drop(reservation);
            return Err(io::Error::other(
                "the io_uring submission queue is full (SQEs are waiting for a retry)",
            ));
        }
        // The permit now belongs to the slot; it is returned when the slot is freed.
        reservation.0.forget();
        core.submit_pending(&mut deferred);
        core.drain(&mut deferred);
        if window {
            set_eventfd(&mut core, false);
            // Order the flag store before the drain's load of the CQ tail.
            fence(Ordering::SeqCst);
            core.drain(&mut deferred);
        }
        let submitted = match core.slots.take_done(slot) {
            Some(res) => {
                deferred.free_slot();
                Submitted::Done(res)
            }
            None => {
                if window {
                    // If our op's CQE was posted by another thread (io-wq) just as we re-enabled the
                    // eventfd, neither the signal nor our drain may have seen it: have the reaper look.
                    deferred.signal_eventfd();
                }
                Submitted::InFlight(slot)
            }
        };
        drop(core);
        Ok((submitted, deferred))
    }

    /// The result of `slot` once its CQE arrived (the slot is then freed), else registers the waker.
    /// Retries unsubmitted SQEs and drains the completion queue first (no syscall if nothing is queued).
    /// Run the returned [`Deferred`] after taking the op out of its `InFlight` guard when `Ready`.
    pub(super) fn poll_slot(&self, slot: u32, cx: &mut Context<'_>) -> (Poll<i32>, Deferred<'_>) {
        let mut deferred = self.deferred();
        let mut core = self.lock();
        core.submit_pending(&mut deferred);
        core.drain(&mut deferred);
        let poll = core.slots.poll(slot, cx);
        if poll.is_ready() {
            deferred.free_slot();
        }
        (poll, deferred)
    }

    /// The future of `slot` was dropped before it took its result: keep `op` (its buffer, fd, ...) in
    /// the slot until the CQE arrives, or finish it now if the CQE is already there.
    pub(super) fn park(&self, slot: u32, op: Box<dyn Parked>) {
        let mut deferred = self.deferred();
        let done = self.lock().slots.park(slot, op);
        if let Some(finished) = done {
            deferred.free_slot();
            deferred.finish(finished);
        }
        deferred.run();
    }

    /// Retries unsubmitted SQEs and processes whatever completions are there (called by the reaper
    /// task). Returns true if SQEs still wait for a retry.
    pub(super) fn reap(&self) -> bool {
        let mut deferred = self.deferred();
        let mut core = self.lock();
        core.submit_pending(&mut deferred);
        core.drain(&mut deferred);
        let pending = core.has_unsubmitted();
        drop(core);
        deferred.run();
        pending
    }

    /// Stops the system: no new ops; in-flight ops are cancelled where the kernel can, and then waited
    /// for *synchronously* (`io_uring_enter` with `min_complete`), so that no buffer, descriptor or
    /// ring memory is freed while the kernel may still use it. Idempotent; blocks the calling thread.
    pub(super) fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.permits.close();
        let mut deferred = self.deferred();
        let mut core = self.lock();
        if core.ring.is_some() {
            core.shutdown_drain(&mut deferred);
        }
        drop(core);
        deferred.run();
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown();
        let core = self.core.get_mut().unwrap_or_else(PoisonError::into_inner);
        if core.must_leak {
            std::mem::forget(core.ring.take());
            std::mem::forget(std::mem::replace(&mut core.slots, Slots::new(0)));
        }
    }
}
