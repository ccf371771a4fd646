//! [`System`]: one io_uring, its slot table and the permits that bound what is in flight.
//!
//! Everything that touches the ring's queues happens under one mutex (the [`Core`]): pushing an SQE,
//! `io_uring_enter`, and draining the completion queue. The slot permits (a FIFO
//! `tokio::sync::Semaphore`) are acquired *before* the mutex, so a submitter never waits for a slot while
//! holding it. No foreign code (wakers, buffers' `Drop`, the semaphore waking a waiter, `tracing`) runs
//! under the mutex: each call returns its [`Deferred`] work, which the caller runs once its own op is safe.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use io_uring::{squeue, IoUring};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use super::deferred::{Deferred, LogEvent};
use super::health::{EngineHealth, BROKEN_SHUTDOWN_WAIT};
use super::ring_core::Core;
use super::slots::{Completion, Parked, SlotPoll, Slots};

/// How long shutdown sleeps in `poll(2)` on the ring's descriptor before it looks again (a completion
/// drained by another thread meanwhile would otherwise leave it waiting for a wakeup that never comes).
const SHUTDOWN_POLL_MS: libc::c_int = 10;

/// One ring with its slots. Shared (`Arc`) by the engine handle, the op futures and the reaper task.
pub(super) struct System {
    core: Mutex<Core>,
    /// One permit per free slot; waiters are served in FIFO order. Closed at shutdown and when the ring
    /// breaks.
    permits: Semaphore,
    /// Wakes the reaper when SQEs could not be submitted and must be retried.
    reaper: Notify,
    /// A `dup` of the eventfd registered with the ring, to signal it ourselves (see `submit`).
    eventfd: OwnedFd,
    /// The ring's own descriptor (owned by the ring in `core`), polled by shutdown without the mutex.
    ring_fd: RawFd,
    slots: usize,
    shut_down: AtomicBool,
    ftruncate_op: bool,
    /// The kernel has `cq_off.flags` (Linux 5.8+), so `IORING_CQ_EVENTFD_DISABLED` can be set.
    eventfd_window: AtomicBool,
    health: Arc<EngineHealth>,
}

/// A reserved slot (a permit of the semaphore). Dropped unused, for example when preparing the SQE
/// panics or the submit fails, it gives the permit back.
pub(super) struct Reservation<'a>(SemaphorePermit<'a>);

/// Why no slot could be reserved.
pub(super) enum NoSlot {
    /// The engine shut down.
    ShutDown,
    /// The ring broke: run the op elsewhere (the engine is downgraded).
    Broken,
}

/// Where an op stands right after its submit.
pub(super) enum Submitted {
    /// In flight in this slot: wait for its completion.
    InFlight(u32),
    /// Completed inside the submit (a page-cache hit, or the ring broke before the kernel consumed the
    /// SQE); the slot is already free again.
    Done(Completion),
}

pub(super) fn shut_down_error() -> io::Error {
    io::Error::other(
        "the io_uring engine has shut down (its last handle was dropped or its tokio runtime ended)",
    )
}

/// The ring's configuration, as set up.
pub(super) struct RingSetup {
    pub(super) ring: IoUring,
    /// A `dup` of the eventfd registered with the ring.
    pub(super) eventfd: OwnedFd,
    pub(super) ftruncate_op: bool,
    pub(super) eventfd_window: bool,
}

impl System {
    /// Wraps a ring whose completion queue holds at least twice its submission queue.
    pub(super) fn new(setup: RingSetup, health: Arc<EngineHealth>) -> Self {
        let ring = setup.ring;
        // Room in the SQ for an op and a cancel request per slot; the CQ holds twice that.
        let slots = ring.params().sq_entries() / 2;
        debug_assert!(ring.params().cq_entries() >= 4 * slots);
        let ring_fd = ring.as_raw_fd();
        Self {
            core: Mutex::new(Core::new(
                ring,
                slots,
                #[cfg(feature = "testing")]
                health.clone(),
            )),
            permits: Semaphore::new(slots as usize),
            reaper: Notify::new(),
            eventfd: setup.eventfd,
            ring_fd,
            slots: slots as usize,
            shut_down: AtomicBool::new(false),
            ftruncate_op: setup.ftruncate_op,
            eventfd_window: AtomicBool::new(setup.eventfd_window),
            health,
        }
    }

    /// Number of slots (the most ops in flight at once).
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// Counters of this ring.
    pub(super) fn counters(&self) -> RingCounters {
        let core = self.lock();
        RingCounters {
            max_in_flight: core.slots.max_in_flight(),
            in_flight: core.slots.in_flight(),
            parked: core.slots.parked(),
            submitted: core.slots.submitted(),
            cancels_submitted: core.cancels_submitted(),
        }
    }

    /// Whether the kernel supports `IORING_OP_FTRUNCATE`.
    pub(super) fn has_ftruncate_op(&self) -> bool {
        self.ftruncate_op
    }

    /// Whether the eventfd is switched off around inline-likely submits.
    pub(super) fn has_eventfd_window(&self) -> bool {
        self.eventfd_window.load(Ordering::Relaxed)
    }

    /// Keeps the eventfd always on (tests of the path taken on kernels before 5.8).
    #[cfg(feature = "testing")]
    pub(super) fn disable_eventfd_window(&self) {
        self.eventfd_window.store(false, Ordering::Relaxed);
    }

    /// The engine's shared state (downgrade, faults).
    pub(super) fn health(&self) -> &EngineHealth {
        &self.health
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
        Deferred::new(
            &self.permits,
            &self.reaper,
            self.eventfd.as_fd(),
            &self.health,
        )
    }

    /// Completes when the reaper should retry SQEs that could not be submitted.
    pub(super) fn retry_requested(&self) -> Notified<'_> {
        self.reaper.notified()
    }

    /// Waits (FIFO, cancellation-safe) until a slot is free and reserves it, for [`System::submit`].
    pub(super) async fn reserve_slot(&self) -> Result<Reservation<'_>, NoSlot> {
        match self.permits.acquire().await {
            Ok(permit) => Ok(Reservation(permit)),
            Err(_closed) if self.is_shut_down() => Err(NoSlot::ShutDown),
            Err(_closed) => Err(NoSlot::Broken),
        }
    }

    /// Pushes `sqe` into a free slot, submits it, and drains the completion queue (a page-cache hit
    /// usually completes inside the submit, and then its result is returned right away). On error the
    /// reservation is given back and nothing was queued. The returned [`Deferred`] must be run once the
    /// op is safe: guarded by its `InFlight` (or, if `Done`, no longer needed by the kernel).
    ///
    /// `inline_likely`: the op often completes inside `io_uring_enter` (buffered IO). If nothing else is
    /// in flight and the kernel has `cq_off.flags`, the eventfd is then disabled around push, enter and
    /// drain: an inline completion costs no eventfd signal and no reaper wakeup.
    ///
    /// # Safety
    /// The memory `sqe` points to must stay valid, at the same address, until the slot's completion has
    /// been processed: the caller keeps it in the op future, or hands it to [`System::park`].
    pub(super) unsafe fn submit<'a>(
        &'a self,
        reservation: Reservation<'a>,
        sqe: squeue::Entry,
        inline_likely: bool,
    ) -> Result<(Submitted, Deferred<'a>), NoSlot> {
        let mut deferred = self.deferred();
        let mut core = self.lock();
        if self.is_shut_down() || core.ring.is_none() {
            drop(core);
            drop(reservation);
            return Err(NoSlot::ShutDown);
        }
        if core.broken.is_some() {
            drop(core);
            drop(reservation);
            return Err(NoSlot::Broken);
        }
        let (slot, user_data) = core
            .slots
            .take_free()
            .expect("a reserved permit guarantees a free slot");
        let sqe = sqe.user_data(user_data);
        // Only when no other thread can post a CQE meanwhile: a completion posted by another thread
        // while the eventfd is disabled could be missed both by the eventfd and by our drain below
        // (the kernel does not order its CQ tail store before its read of the flag). And only where
        // the kernel has the flag at all: before 5.8 `cq_off.flags` is 0, and the write would land in
        // the completion queue's head.
        let window = inline_likely && self.has_eventfd_window() && core.only_one_in_flight();
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
            // Cannot happen: the SQ has room for an op and a cancel request per slot. Not assumed
            // either: the kernel never saw the op, so it runs on std-fs.
            core.slots.release_unsubmitted(slot);
            if window {
                set_eventfd(&mut core, false);
            }
            drop(core);
            drop(reservation);
            return Ok((
                Submitted::Done(Completion::NotSubmitted(libc::EAGAIN)),
                deferred,
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
            Some(c) => {
                deferred.free_slot();
                Submitted::Done(c)
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

    /// The completion of `slot` once it arrived (the slot is then freed), else registers the waker.
    /// Retries unsubmitted SQEs and drains the completion queue first (no syscall if nothing is queued).
    /// The waker is cloned, and a replaced one dropped, outside the mutex.
    /// Run the returned [`Deferred`] after taking the op out of its `InFlight` guard when `Ready`.
    pub(super) fn poll_slot(
        &self,
        slot: u32,
        cx: &mut Context<'_>,
    ) -> (Poll<Completion>, Deferred<'_>) {
        let mut deferred = self.deferred();
        let mut core = self.lock();
        core.submit_pending(&mut deferred);
        core.drain(&mut deferred);
        let mut poll = core.slots.poll(slot, cx.waker());
        if let SlotPoll::NeedsWaker = poll {
            drop(core);
            // Foreign code: a panic here leaves the slot in flight with its old waker, and the op in
            // its guard (which parks it).
            let waker = cx.waker().clone();
            let (p, unused) = self.lock().slots.register_waker(slot, waker);
            deferred.drop_waker(unused);
            poll = p;
        }
        let poll = match poll {
            SlotPoll::Ready(c) => {
                deferred.free_slot();
                Poll::Ready(c)
            }
            SlotPoll::Pending | SlotPoll::NeedsWaker => Poll::Pending,
        };
        (poll, deferred)
    }

    /// The future of `slot` was dropped before it took its result: keep `op` (its buffer, fd, ...) in
    /// the slot until the CQE arrives (a cancel request is sent for it), or finish it now if the CQE is
    /// already there.
    pub(super) fn park(&self, slot: u32, op: Box<dyn Parked>) {
        let mut deferred = self.deferred();
        let mut core = self.lock();
        let cancel = self.health.cancel_dropped_ops();
        match core.slots.park(slot, op, cancel) {
            Ok(finished) => {
                deferred.free_slot();
                deferred.finish(finished);
            }
            Err(waker) => {
                deferred.drop_waker(waker);
                core.submit_pending(&mut deferred);
                core.drain(&mut deferred);
            }
        }
        drop(core);
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

    /// Stops the system: no new ops; every op in flight gets a cancel request, and then they are
    /// waited for *synchronously* (the calling thread blocks), so that no buffer, descriptor or ring
    /// memory is freed while the kernel may still use it. The wait is a `poll(2)` on the ring's
    /// descriptor with the mutex released: other threads' ops keep draining meanwhile. A ring that
    /// cannot be entered any more, or a broken ring whose ops do not complete within
    /// [`BROKEN_SHUTDOWN_WAIT`], is leaked instead. Idempotent.
    pub(super) fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.permits.close();
        let started = Instant::now();
        let mut first = true;
        loop {
            let mut deferred = self.deferred();
            let mut core = self.lock();
            if core.ring.is_none() {
                return;
            }
            let step = core.shutdown_step(std::mem::take(&mut first), &mut deferred);
            let leak = match &step {
                Ok(0) => None,
                Ok(_) if core.broken.is_some() && started.elapsed() > BROKEN_SHUTDOWN_WAIT => Some(
                    format!("the ring is broken and its ops did not complete within {BROKEN_SHUTDOWN_WAIT:?}"),
                ),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(error) = leak {
                core.must_leak = true;
                deferred.log(LogEvent::ShutdownLeaks {
                    error,
                    in_flight: core.slots.in_flight(),
                });
            }
            let done = core.must_leak || matches!(step, Ok(0));
            drop(core);
            deferred.run();
            if done {
                return;
            }
            let mut pfd = libc::pollfd {
                fd: self.ring_fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one `pollfd` on the stack, valid for the call; `ring_fd` stays open while `self`
            // lives (the ring is owned by `core`, and only freed or leaked in `Drop`).
            // Any result (ready, timeout, EINTR) just leads to the next step.
            let _ = unsafe { libc::poll(&mut pfd, 1, SHUTDOWN_POLL_MS) };
        }
    }
}

/// Counters of one ring.
pub(super) struct RingCounters {
    pub(super) max_in_flight: usize,
    pub(super) in_flight: usize,
    pub(super) parked: usize,
    pub(super) submitted: u64,
    pub(super) cancels_submitted: u64,
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
