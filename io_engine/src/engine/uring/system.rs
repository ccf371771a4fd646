//! [`System`]: one io_uring, its slot table and the permits that bound what is in flight.
//!
//! Everything that touches the ring's queues happens under one mutex: pushing an SQE, `io_uring_enter`,
//! and draining the completion queue. The slot permits (a FIFO `tokio::sync::Semaphore`) are acquired
//! *before* the mutex, so a submitter never waits for a slot while holding it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use io_uring::{opcode, squeue, types, IoUring};
use tokio::sync::Semaphore;

use super::slots::{Finished, Slots};

/// `user_data` of the cancel-all SQE pushed at shutdown (slot indexes are `u32`).
const CANCEL_TAG: u64 = u64::MAX;

struct Core {
    /// `None` only after a failed shutdown drain, when the ring was leaked on purpose.
    ring: Option<IoUring>,
    slots: Slots,
    /// Cancel SQEs pushed whose CQE has not arrived.
    cancels_in_flight: usize,
    /// Shutdown could not wait for every completion: the ring and the parked resources must be leaked,
    /// never freed, since the kernel may still use them.
    must_leak: bool,
}

/// One ring with its slots. Shared (`Arc`) by the engine handle, the op futures and the reaper task.
pub(super) struct System {
    core: Mutex<Core>,
    /// One permit per free slot; waiters are served in FIFO order.
    permits: Semaphore,
    slots: usize,
    shut_down: AtomicBool,
    ftruncate_op: bool,
}

fn shut_down_error() -> io::Error {
    io::Error::other(
        "the io_uring engine has shut down (its last handle was dropped or its tokio runtime ended)",
    )
}

impl System {
    /// Wraps a ring whose completion queue holds at least twice its submission queue.
    pub(super) fn new(ring: IoUring, ftruncate_op: bool) -> Self {
        let slots = ring.params().sq_entries();
        debug_assert!(ring.params().cq_entries() >= 2 * slots);
        Self {
            core: Mutex::new(Core {
                ring: Some(ring),
                slots: Slots::new(slots),
                cancels_in_flight: 0,
                must_leak: false,
            }),
            permits: Semaphore::new(slots as usize),
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
        // Nothing under the lock leaves the core inconsistent when it panics; keep going.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (FIFO, cancellation-safe) until a slot is free and reserves it. The reservation is consumed
    /// by [`System::submit`], which must follow without an `.await` in between.
    pub(super) async fn reserve_slot(&self) -> io::Result<()> {
        match self.permits.acquire().await {
            Ok(permit) => {
                // The permit comes back with `add_permits` when the slot is freed.
                permit.forget();
                Ok(())
            }
            Err(_closed) => Err(shut_down_error()),
        }
    }

    /// Pushes `sqe` into a free slot, submits it, and drains the completion queue (a page-cache hit
    /// usually completes inside the submit). Returns the slot. On error the reservation is returned
    /// and nothing was queued.
    ///
    /// # Safety
    /// The memory `sqe` points to must stay valid, at the same address, until the slot's completion has
    /// been processed: the caller keeps it in the op future, or hands it to [`System::park`].
    pub(super) unsafe fn submit(&self, sqe: squeue::Entry) -> io::Result<u32> {
        let mut finished = Vec::new();
        let mut core = self.lock();
        if self.is_shut_down() {
            drop(core);
            self.permits.add_permits(1);
            return Err(shut_down_error());
        }
        let Core {
            ring,
            slots,
            cancels_in_flight,
            ..
        } = &mut *core;
        let ring = ring.as_mut().ok_or_else(shut_down_error)?;
        let slot = slots
            .take_free()
            .expect("a reserved permit guarantees a free slot");
        let sqe = sqe.user_data(u64::from(slot));
        // SAFETY: the caller keeps the SQE's memory valid until the slot's CQE is processed. The SQ
        // cannot be full: it holds as many entries as there are slots, and this slot was free.
        let pushed = unsafe { ring.submission().push(&sqe) };
        debug_assert!(pushed.is_ok(), "SQ full despite a free slot");
        submit_pending(ring);
        let freed = drain(ring, slots, cancels_in_flight, &mut finished);
        drop(core);
        self.after_unlock(freed, finished);
        Ok(slot)
    }

    /// The result of `slot` once its CQE arrived (the slot is then freed), else registers the waker.
    /// Drains the completion queue first: no syscall, and the completion may already be there.
    pub(super) fn poll_slot(&self, slot: u32, cx: &mut Context<'_>) -> Poll<i32> {
        let mut finished = Vec::new();
        let mut core = self.lock();
        let core = &mut *core;
        let mut freed = 0;
        let mut stuck = false;
        if let Some(ring) = core.ring.as_mut() {
            stuck = !submit_pending(ring);
            freed = drain(
                ring,
                &mut core.slots,
                &mut core.cancels_in_flight,
                &mut finished,
            );
        }
        let poll = core.slots.poll(slot, cx);
        if poll.is_ready() {
            freed += 1;
        } else if stuck {
            // An SQE could not be submitted (transient kernel shortage); no CQE will wake us for it,
            // so poll again soon and retry.
            cx.waker().wake_by_ref();
        }
        self.after_unlock(freed, finished);
        poll
    }

    /// The future of `slot` was dropped before it took its result: keep `op` (its buffer, fd, ...) in
    /// the slot until the CQE arrives, or finish it now if the CQE is already there.
    pub(super) fn park(&self, slot: u32, op: Box<dyn super::slots::Parked>) {
        let done = self.lock().slots.park(slot, op);
        if let Some(finished) = done {
            self.after_unlock(1, vec![finished]);
        }
    }

    /// Submits leftovers and processes whatever completions are there (called by the reaper task).
    pub(super) fn reap(&self) {
        let mut finished = Vec::new();
        let mut core = self.lock();
        let core = &mut *core;
        let Some(ring) = core.ring.as_mut() else {
            return;
        };
        submit_pending(ring);
        let freed = drain(
            ring,
            &mut core.slots,
            &mut core.cancels_in_flight,
            &mut finished,
        );
        self.after_unlock(freed, finished);
    }

    /// Returns `freed` permits and completes parked ops (dropping their buffers and descriptors),
    /// outside the lock.
    fn after_unlock(&self, freed: usize, finished: Vec<Finished>) {
        if freed > 0 {
            self.permits.add_permits(freed);
        }
        for (op, res) in finished {
            op.finish(res);
        }
    }

    /// Stops the system: no new ops; in-flight ops are cancelled where the kernel can, and then waited
    /// for *synchronously* (`io_uring_enter` with `min_complete`), so that no buffer, descriptor or
    /// ring memory is freed while the kernel may still use it. Idempotent; blocks the calling thread.
    pub(super) fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.permits.close();
        let mut finished = Vec::new();
        let mut core = self.lock();
        let core = &mut *core;
        let Some(ring) = core.ring.as_mut() else {
            return;
        };
        submit_pending(ring);
        let mut freed = drain(
            ring,
            &mut core.slots,
            &mut core.cancels_in_flight,
            &mut finished,
        );
        let in_flight = core.slots.in_flight();
        if in_flight > 0 {
            tracing::debug!(
                in_flight,
                "io_uring shutdown: cancelling and draining in-flight ops"
            );
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancel SQE points to no memory. A full SQ (unsubmitted leftovers) only means no
            // cancel: we still wait below.
            if unsafe { ring.submission().push(&cancel) }.is_ok() {
                core.cancels_in_flight += 1;
            }
        }
        while core.slots.in_flight() > 0 || core.cancels_in_flight > 0 {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        in_flight = core.slots.in_flight(),
                        "io_uring shutdown cannot wait for completions; leaking the ring and the \
                         in-flight buffers rather than freeing memory the kernel may still use"
                    );
                    core.must_leak = true;
                    break;
                }
            }
            freed += drain(
                ring,
                &mut core.slots,
                &mut core.cancels_in_flight,
                &mut finished,
            );
        }
        self.after_unlock(freed, finished);
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

/// Submits every SQE still in the submission queue. Returns false if some remain (the kernel refused
/// them for now; they stay queued and are retried on the next call).
fn submit_pending(ring: &mut IoUring) -> bool {
    loop {
        if ring.submission().is_empty() {
            return true;
        }
        match ring.submit() {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "io_uring_enter failed; SQEs stay queued for a retry");
                return false;
            }
        }
    }
}

/// Processes every CQE in the completion queue. Returns how many slots became free.
fn drain(
    ring: &mut IoUring,
    slots: &mut Slots,
    cancels_in_flight: &mut usize,
    finished: &mut Vec<Finished>,
) -> usize {
    let mut freed = 0;
    for cqe in ring.completion() {
        if cqe.user_data() == CANCEL_TAG {
            *cancels_in_flight = cancels_in_flight.saturating_sub(1);
            continue;
        }
        if slots.complete(cqe.user_data(), cqe.result(), finished) {
            freed += 1;
        }
    }
    freed
}
