//! [`Core`]: what the ring's mutex protects: the ring, its slot table, and which SQEs the kernel has not
//! consumed yet. Pushing, `io_uring_enter` and draining the completion queue happen here. Nothing here
//! runs foreign code, logging included: records go to [`Deferred`] as [`LogEvent`]s.
//!
//! ## When `io_uring_enter` fails
//! The kernel consumes SQEs in order; whatever is left in the submission queue after a call was not
//! consumed, and `unsubmitted` names those SQEs (their `user_data`), oldest first.
//! - `EINTR`: retried at once.
//! - `EAGAIN` / `EBUSY` / `ENOMEM` (a transient shortage): the SQEs stay queued; the caller asks the
//!   reaper to retry with backoff. The warning is logged at most once per [`WARN_EVERY`], with the number
//!   suppressed.
//! - Anything else means the ring itself is unusable (bad descriptor, fault, torn down, ...). The ring is
//!   marked broken: the unconsumed SQEs are completed as [`Completion::NotSubmitted`] *and never
//!   submitted*, since no `io_uring_enter` with a non-zero `to_submit` is made again (their memory may be
//!   reused now); ops the kernel did consume still complete normally; the engine downgrades to `std-fs`
//!   (see [`super::health`]).
//!
//! ## Cancel requests
//! An op whose future was dropped gets an `IORING_OP_ASYNC_CANCEL` matching its `user_data` (see
//! [`Slots`]), and so do all ops in flight at shutdown. At most one cancel per slot is in flight, and at
//! most as many cancels as there are slots, so that the ops' CQEs and the cancels' CQEs together never
//! exceed the completion queue (twice the slots).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, IoUring};

use super::deferred::{Deferred, LogEvent};
#[cfg(feature = "testing")]
use super::health::EngineHealth;
use super::slots::{Completion, Slots, CANCEL_BIT};

/// `io_uring_enter(2)` flag: wait for completions (with `min_complete = 0`: run pending task work).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// The most often the "cannot submit for now" warning is logged.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// What an `io_uring_enter` error means for the SQEs it did not consume.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EBUSY | libc::EINTR | libc::ENOMEM)
    )
}

pub(super) struct Core {
    /// `None` only after a failed shutdown, when the ring was leaked on purpose.
    pub(super) ring: Option<IoUring>,
    pub(super) slots: Slots,
    /// Number of slots: the most cancel requests in flight at once.
    max_cancels: usize,
    /// Cancel SQEs pushed whose CQE has not arrived.
    cancels_in_flight: usize,
    /// Cancel SQEs ever pushed (a statistic).
    cancels_submitted: u64,
    /// `user_data` of the SQEs in the submission queue that the kernel has not consumed, oldest first.
    unsubmitted: VecDeque<u64>,
    /// The errno of a permanent `io_uring_enter` failure: nothing is submitted any more.
    pub(super) broken: Option<i32>,
    last_warning: Option<Instant>,
    warnings_suppressed: u64,
    /// Shutdown could not wait for every completion: the ring and the parked resources must be leaked,
    /// never freed, since the kernel may still use them.
    pub(super) must_leak: bool,
    /// Faults to inject into `io_uring_enter`.
    #[cfg(feature = "testing")]
    health: std::sync::Arc<EngineHealth>,
}

impl Core {
    pub(super) fn new(
        ring: IoUring,
        slots: u32,
        #[cfg(feature = "testing")] health: std::sync::Arc<EngineHealth>,
    ) -> Self {
        Self {
            ring: Some(ring),
            slots: Slots::new(slots),
            max_cancels: slots as usize,
            cancels_in_flight: 0,
            cancels_submitted: 0,
            unsubmitted: VecDeque::new(),
            broken: None,
            last_warning: None,
            warnings_suppressed: 0,
            must_leak: false,
            #[cfg(feature = "testing")]
            health,
        }
    }

    pub(super) fn cancels_submitted(&self) -> u64 {
        self.cancels_submitted
    }

    /// Ops and cancel requests whose CQE has not been processed.
    pub(super) fn outstanding(&self) -> usize {
        self.slots.in_flight() + self.cancels_in_flight
    }

    /// True if nothing but the op of the slot just taken is in flight or queued: then no other thread
    /// can post a completion while the eventfd is disabled.
    pub(super) fn only_one_in_flight(&self) -> bool {
        self.slots.in_flight() == 1 && self.cancels_in_flight == 0 && self.unsubmitted.is_empty()
    }

    /// SQEs wait in the submission queue for a retry.
    pub(super) fn has_unsubmitted(&self) -> bool {
        self.broken.is_none() && !self.unsubmitted.is_empty()
    }

    /// Pushes `sqe` and records it as not yet consumed. `false` if the submission queue is full.
    ///
    /// # Safety
    /// As `io_uring::SubmissionQueue::push`: the memory `sqe` points to stays valid until its CQE.
    pub(super) unsafe fn push(&mut self, sqe: &squeue::Entry) -> bool {
        let Some(ring) = self.ring.as_mut() else {
            return false;
        };
        // SAFETY: passed on from the caller.
        if unsafe { ring.submission().push(sqe) }.is_err() {
            return false;
        }
        self.unsubmitted.push_back(sqe.get_user_data());
        true
    }

    /// Pushes the queued cancel requests (dropped futures, shutdown), as many as may be in flight.
    fn push_cancels(&mut self) {
        while self.broken.is_none() && self.cancels_in_flight < self.max_cancels {
            let Some(target) = self.slots.next_cancel() else {
                return;
            };
            let cancel = opcode::AsyncCancel::new(target)
                .build()
                .user_data(CANCEL_BIT | target);
            // SAFETY: a cancel SQE points to no memory.
            if !unsafe { self.push(&cancel) } {
                return; // the submission queue is full: pushed at a later call
            }
            self.slots.cancel_pushed();
            self.cancels_in_flight += 1;
            self.cancels_submitted += 1;
        }
    }

    /// Forgets the SQEs the kernel consumed: those no longer in the submission queue.
    fn note_consumed(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let left = ring.submission().len();
        while self.unsubmitted.len() > left {
            self.unsubmitted.pop_front();
        }
    }

    /// `io_uring_enter` submitting every queued SQE (or an injected failure).
    fn enter_submit(&mut self) -> io::Result<usize> {
        #[cfg(feature = "testing")]
        if let Some(e) = self.health.faults.next() {
            return Err(e);
        }
        match self.ring.as_mut() {
            Some(ring) => ring.submit(),
            None => Ok(0),
        }
    }

    /// Pushes queued cancel requests and submits every SQE still in the submission queue (see the
    /// module docs for failures).
    pub(super) fn submit_pending(&mut self, deferred: &mut Deferred<'_>) {
        self.push_cancels();
        if self.unsubmitted.is_empty() || self.broken.is_some() {
            return;
        }
        loop {
            let res = self.enter_submit();
            self.note_consumed();
            match res {
                _ if self.unsubmitted.is_empty() => return,
                Ok(n) if n > 0 => {}
                Ok(_) => {
                    self.warn_transient(libc::EAGAIN, deferred);
                    deferred.retry_submit();
                    return;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if is_transient(&e) => {
                    self.warn_transient(e.raw_os_error().unwrap_or(libc::EAGAIN), deferred);
                    deferred.retry_submit();
                    return;
                }
                Err(e) => {
                    self.fail_unsubmitted(e.raw_os_error().unwrap_or(libc::EIO), deferred);
                    return;
                }
            }
        }
    }

    fn warn_transient(&mut self, errno: i32, deferred: &mut Deferred<'_>) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.warnings_suppressed += 1;
            return;
        }
        deferred.log(LogEvent::TransientEnter {
            errno,
            unsubmitted: self.unsubmitted.len(),
            suppressed: self.warnings_suppressed,
        });
        self.last_warning = Some(now);
        self.warnings_suppressed = 0;
    }

    /// A permanent `io_uring_enter` error: marks the ring broken (so that nothing is submitted again)
    /// and completes every unconsumed SQE as [`Completion::NotSubmitted`].
    fn fail_unsubmitted(&mut self, errno: i32, deferred: &mut Deferred<'_>) {
        deferred.log(LogEvent::RingBroken {
            errno,
            not_submitted: self.unsubmitted.len(),
        });
        deferred.ring_broken(errno);
        self.broken = Some(errno);
        for user_data in std::mem::take(&mut self.unsubmitted) {
            if user_data & CANCEL_BIT != 0 {
                self.cancels_in_flight -= 1;
            } else {
                self.slots
                    .complete(user_data, Completion::NotSubmitted(errno), deferred);
            }
        }
    }

    /// Processes every CQE in the completion queue.
    pub(super) fn drain(&mut self, deferred: &mut Deferred<'_>) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        for cqe in ring.completion() {
            if cqe.user_data() & CANCEL_BIT != 0 {
                // 0, ENOENT (already done) or EALREADY (running; it completes by itself): all fine.
                self.cancels_in_flight = self.cancels_in_flight.saturating_sub(1);
                continue;
            }
            self.slots
                .complete(cqe.user_data(), Completion::Cqe(cqe.result()), deferred);
        }
    }

    /// One step of shutdown, without waiting: on the `first` call, queues a cancel request for every op
    /// in flight; then submits what is queued, runs this thread's pending task work and drains. Returns
    /// how many CQEs are still to come. An error means the ring cannot even be entered any more.
    pub(super) fn shutdown_step(
        &mut self,
        first: bool,
        deferred: &mut Deferred<'_>,
    ) -> io::Result<usize> {
        if first && self.slots.in_flight() > 0 {
            deferred.log(LogEvent::ShutdownCancelling {
                in_flight: self.slots.in_flight(),
            });
            self.slots.cancel_all();
        }
        self.submit_pending(deferred);
        if self.broken.is_none() {
            if let Some(ring) = self.ring.as_mut() {
                // SAFETY: `to_submit = 0` consumes no SQE and no argument is passed; with
                // `min_complete = 0` this only runs the task work that posts completions.
                let res = unsafe {
                    ring.submitter()
                        .enter::<libc::sigset_t>(0, 0, IORING_ENTER_GETEVENTS, None)
                };
                match res {
                    Ok(_) => {}
                    Err(e) if is_transient(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.drain(deferred);
        Ok(self.outstanding())
    }
}
