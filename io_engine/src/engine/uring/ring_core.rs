//! [`Core`]: what the ring's mutex protects: the ring, its slot table, and which SQEs the kernel has not
//! consumed yet. Pushing, `io_uring_enter` and draining the completion queue happen here.
//!
//! ## When `io_uring_enter` fails
//! The kernel consumes SQEs in order; whatever is left in the submission queue after a call was not
//! consumed, and `unsubmitted` names those SQEs (their `user_data`), oldest first.
//! - `EINTR`: retried at once.
//! - `EAGAIN` / `EBUSY` (a transient shortage): the SQEs stay queued; the caller asks the reaper to retry
//!   with backoff. The warning is logged at most once per [`WARN_EVERY`], with the number suppressed.
//! - Anything else means the ring itself is unusable (bad descriptor, fault, torn down, ...). The ring is
//!   marked broken: the unconsumed SQEs are completed with that error *and never submitted*, since no
//!   `io_uring_enter` with a non-zero `to_submit` is made again (their memory may be freed now); ops
//!   the kernel did consume still complete normally; new ops fail.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use super::deferred::Deferred;
use super::slots::Slots;

/// `user_data` of the cancel-all SQE pushed at shutdown (slot indexes are `u32`).
const CANCEL_TAG: u64 = u64::MAX;

/// `io_uring_enter(2)` flag: wait for completions.
const IORING_ENTER_GETEVENTS: u32 = 1;

/// The most often the "cannot submit for now" warning is logged.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// How often shutdown retries an `EAGAIN`/`EBUSY` from its wait, and the first pause (doubling, at most
/// [`SHUTDOWN_MAX_PAUSE`]): about 10 s in all before the ring is leaked.
const SHUTDOWN_RETRIES: u32 = 110;
const SHUTDOWN_FIRST_PAUSE: Duration = Duration::from_micros(100);
const SHUTDOWN_MAX_PAUSE: Duration = Duration::from_millis(100);

/// What an `io_uring_enter` error means for the SQEs it did not consume.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EBUSY | libc::EINTR)
    )
}

pub(super) struct Core {
    /// `None` only after a failed shutdown drain, when the ring was leaked on purpose.
    pub(super) ring: Option<IoUring>,
    pub(super) slots: Slots,
    /// Cancel SQEs pushed whose CQE has not arrived.
    cancels_in_flight: usize,
    /// `user_data` of the SQEs in the submission queue that the kernel has not consumed, oldest first.
    unsubmitted: VecDeque<u64>,
    /// The errno of a permanent `io_uring_enter` failure: nothing is submitted any more.
    pub(super) broken: Option<i32>,
    last_warning: Option<Instant>,
    warnings_suppressed: u64,
    /// Shutdown could not wait for every completion: the ring and the parked resources must be leaked,
    /// never freed, since the kernel may still use them.
    pub(super) must_leak: bool,
}

impl Core {
    pub(super) fn new(ring: IoUring, slots: Slots) -> Self {
        Self {
            ring: Some(ring),
            slots,
            cancels_in_flight: 0,
            unsubmitted: VecDeque::new(),
            broken: None,
            last_warning: None,
            warnings_suppressed: 0,
            must_leak: false,
        }
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

    /// Submits every SQE still in the submission queue (see the module docs for failures).
    pub(super) fn submit_pending(&mut self, deferred: &mut Deferred<'_>) {
        if self.unsubmitted.is_empty() || self.broken.is_some() {
            return;
        }
        loop {
            let Some(ring) = self.ring.as_mut() else {
                return;
            };
            let res = ring.submit();
            self.note_consumed();
            match res {
                _ if self.unsubmitted.is_empty() => return,
                Ok(n) if n > 0 => {}
                Ok(_) => {
                    self.warn_transient(&io::Error::from_raw_os_error(libc::EAGAIN));
                    deferred.retry_submit();
                    return;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if is_transient(&e) => {
                    self.warn_transient(&e);
                    deferred.retry_submit();
                    return;
                }
                Err(e) => {
                    self.fail_unsubmitted(&e, deferred);
                    return;
                }
            }
        }
    }

    fn warn_transient(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.warnings_suppressed += 1;
            return;
        }
        tracing::warn!(
            error = %e,
            unsubmitted = self.unsubmitted.len(),
            suppressed = self.warnings_suppressed,
            "io_uring_enter failed for now; the SQEs stay queued and are retried with backoff"
        );
        self.last_warning = Some(now);
        self.warnings_suppressed = 0;
    }

    /// A permanent `io_uring_enter` error: completes every unconsumed SQE with it and marks the ring
    /// broken, so that they are never submitted.
    fn fail_unsubmitted(&mut self, e: &io::Error, deferred: &mut Deferred<'_>) {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        tracing::error!(
            error = %e,
            unsubmitted = self.unsubmitted.len(),
            "io_uring_enter failed permanently; the queued ops fail with this error and the ring \
             takes no new ops"
        );
        self.broken = Some(errno);
        for user_data in std::mem::take(&mut self.unsubmitted) {
            if user_data == CANCEL_TAG {
                self.cancels_in_flight = self.cancels_in_flight.saturating_sub(1);
            } else {
                self.slots.complete(user_data, -errno, deferred);
            }
        }
    }

    /// Processes every CQE in the completion queue.
    pub(super) fn drain(&mut self, deferred: &mut Deferred<'_>) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        for cqe in ring.completion() {
            if cqe.user_data() == CANCEL_TAG {
                self.cancels_in_flight = self.cancels_in_flight.saturating_sub(1);
                continue;
            }
            self.slots.complete(cqe.user_data(), cqe.result(), deferred);
        }
    }

    /// Cancels what the kernel can and waits, blocking the thread, until no op is in flight. On a
    /// permanent failure to wait, sets `must_leak`.
    pub(super) fn shutdown_drain(&mut self, deferred: &mut Deferred<'_>) {
        self.submit_pending(deferred);
        self.drain(deferred);
        let in_flight = self.slots.in_flight();
        if in_flight > 0 && self.broken.is_none() {
            tracing::debug!(
                in_flight,
                "io_uring shutdown: cancelling and draining in-flight ops"
            );
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(CANCEL_TAG);
            // SAFETY: a cancel SQE points to no memory. A full SQ only means no cancel: we still wait.
            if unsafe { self.push(&cancel) } {
                self.cancels_in_flight += 1;
            }
        }
        let mut retries = 0;
        let mut pause = SHUTDOWN_FIRST_PAUSE;
        while self.slots.in_flight() > 0 || self.cancels_in_flight > 0 {
            let Some(ring) = self.ring.as_mut() else {
                return;
            };
            let res = if self.broken.is_some() {
                // SAFETY: `to_submit = 0` consumes no SQE (the unsubmitted ones were failed and their
                // memory may be gone); this only waits for one completion. No argument is passed.
                unsafe {
                    ring.submitter()
                        .enter::<libc::sigset_t>(0, 1, IORING_ENTER_GETEVENTS, None)
                }
            } else {
                ring.submit_and_wait(1)
            };
            self.note_consumed();
            match res {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if is_transient(&e) && retries < SHUTDOWN_RETRIES => {
                    retries += 1;
                    // EBUSY can mean completions to reap first; drain before pausing.
                    self.drain(deferred);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(SHUTDOWN_MAX_PAUSE);
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        retries,
                        in_flight = self.slots.in_flight(),
                        "io_uring shutdown cannot wait for completions; leaking the ring and the \
                         in-flight buffers rather than freeing memory the kernel may still use"
                    );
                    self.must_leak = true;
                    break;
                }
            }
            self.drain(deferred);
        }
    }
}
