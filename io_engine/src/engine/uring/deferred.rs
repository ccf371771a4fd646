//! [`Deferred`]: work that runs code the engine does not control (a task's `Waker`, the `Drop` of a
//! user's buffer, tokio's semaphore waking a waiter), collected under the ring's mutex and run only after
//! the mutex is released *and* after the op that collected it has made its own bookkeeping safe.
//!
//! Why: foreign code may panic or re-enter the engine. Run under the mutex, a waker that polls or drops
//! its task right away (some executors do) would take the same mutex again and deadlock. Run while the
//! calling op is half-way through a transition (submitted but not yet guarded by its `InFlight`, or its
//! slot already freed but the op not yet taken out of the guard), a panic would drop an op whose buffer
//! the kernel still owns, or park a finished op into a slot that is free or reused.
//!
//! Every item runs even if an earlier one panics; the first panic is then resumed (or, if the thread is
//! already unwinding, logged and dropped: a second panic would abort).

use std::any::Any;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::task::Waker;

use tokio::sync::{Notify, Semaphore};

use super::slots::Finished;

/// Deferred work of one call into the ring. Run it with [`Deferred::run`]; dropping it unrun runs it too.
#[must_use = "run it once the op's own state is safe"]
pub(super) struct Deferred<'a> {
    permits: &'a Semaphore,
    reaper: &'a Notify,
    eventfd: BorrowedFd<'a>,
    /// Slots freed: one permit each goes back to the semaphore.
    freed: usize,
    /// Futures whose completion arrived.
    wakers: Vec<Waker>,
    /// Parked ops whose completion arrived: completed and dropped (buffers, descriptors freed).
    finished: Vec<Finished>,
    /// SQEs could not be submitted for now: ask the reaper to retry them with backoff.
    retry_submit: bool,
    /// The eventfd was disabled while a completion may have been posted: signal it, so that the reaper
    /// drains once more.
    signal_eventfd: bool,
}

impl<'a> Deferred<'a> {
    pub(super) fn new(permits: &'a Semaphore, reaper: &'a Notify, eventfd: BorrowedFd<'a>) -> Self {
        Self {
            permits,
            reaper,
            eventfd,
            freed: 0,
            wakers: Vec::new(),
            finished: Vec::new(),
            retry_submit: false,
            signal_eventfd: false,
        }
    }

    pub(super) fn free_slot(&mut self) {
        self.freed += 1;
    }

    pub(super) fn wake(&mut self, waker: Waker) {
        self.wakers.push(waker);
    }

    pub(super) fn finish(&mut self, finished: Finished) {
        self.finished.push(finished);
    }

    pub(super) fn retry_submit(&mut self) {
        self.retry_submit = true;
    }

    pub(super) fn signal_eventfd(&mut self) {
        self.signal_eventfd = true;
    }

    /// Runs everything; then resumes the first panic, if any (unless the thread is already unwinding).
    pub(super) fn run(mut self) {
        if let Some(panic) = self.run_all() {
            if std::thread::panicking() {
                tracing::error!(
                    "a waker or a buffer's Drop panicked while the thread was unwinding"
                );
            } else {
                resume_unwind(panic);
            }
        }
    }

    fn run_all(&mut self) -> Option<Box<dyn Any + Send>> {
        let mut first_panic = None;
        let mut guarded = |f: &mut dyn FnMut()| {
            if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
                first_panic.get_or_insert(p);
            }
        };
        // Our own code first: these cannot leave the engine inconsistent however the rest goes.
        if self.signal_eventfd {
            self.signal_eventfd = false;
            let one = 1u64;
            // SAFETY: writes 8 bytes from a local `u64` to the ring's eventfd, which the `System` owns
            // (a `dup`) and keeps open for as long as this borrow lives. Non-blocking: a full counter is
            // `EAGAIN`, which still leaves the eventfd readable, which is all that is needed.
            let _ = unsafe {
                libc::write(
                    self.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
        if std::mem::take(&mut self.retry_submit) {
            let reaper = self.reaper;
            guarded(&mut || reaper.notify_one());
        }
        let freed = std::mem::take(&mut self.freed);
        if freed > 0 {
            // Wakes tasks waiting for a slot: their wakers are foreign code too.
            let permits = self.permits;
            guarded(&mut || permits.add_permits(freed));
        }
        for waker in std::mem::take(&mut self.wakers) {
            let mut waker = Some(waker);
            guarded(&mut || waker.take().expect("taken once").wake());
        }
        for (op, res) in std::mem::take(&mut self.finished) {
            let mut op = Some(op);
            guarded(&mut || op.take().expect("taken once").finish(res));
        }
        first_panic
    }
}

impl Drop for Deferred<'_> {
    fn drop(&mut self) {
        // Normally already run (and empty). Run what is left rather than lose permits or wakeups; a
        // panic here is not resumed (this may be an unwinding drop).
        if self.run_all().is_some() {
            tracing::error!("a waker or a buffer's Drop panicked in deferred engine work");
        }
    }
}
