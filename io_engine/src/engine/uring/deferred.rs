//! [`Deferred`]: work that runs code the engine does not control (a task's `Waker`, the `Drop` of a
//! user's buffer, a `tracing` subscriber, tokio's semaphore waking a waiter), collected under the ring's
//! mutex and run only after the mutex is released *and* after the op that collected it has made its own
//! bookkeeping safe.
//!
//! Why: foreign code may panic or re-enter the engine. Run under the mutex, a waker that polls or drops
//! its task right away (some executors do) would take the same mutex again and deadlock. Run while the
//! calling op is half-way through a transition (submitted but not yet guarded by its `InFlight`, or its
//! slot already freed but the op not yet taken out of the guard), a panic would drop an op whose buffer
//! the kernel still owns, or park a finished op into a slot that is free or reused.
//!
//! The same holds for `tracing`: a subscriber is foreign code, so records made under the mutex are kept as
//! [`LogEvent`]s and emitted here.
//!
//! Every item runs even if an earlier one panics; the first panic is then resumed (or, if the thread is
//! already unwinding, logged and dropped: a second panic would abort).

use std::any::Any;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::task::Waker;

use tokio::sync::{Notify, Semaphore};

use super::health::EngineHealth;
use super::slots::Finished;

/// A log record made under the ring's mutex, emitted by [`Deferred::run`]: a `tracing` subscriber is
/// foreign code too (it may panic, or block).
#[derive(Debug)]
pub(super) enum LogEvent {
    /// A CQE whose `user_data` names no op in flight.
    UnknownCompletion { user_data: u64 },
    /// `io_uring_enter` failed for now; the SQEs stay queued and are retried with backoff.
    TransientEnter {
        errno: i32,
        unsubmitted: usize,
        suppressed: u64,
    },
    /// `io_uring_enter` failed permanently: the ring takes no more SQEs.
    RingBroken { errno: i32, not_submitted: usize },
    /// Shutdown found ops in flight and cancels them.
    ShutdownCancelling { in_flight: usize },
    /// Shutdown cannot wait for the kernel: the ring and the in-flight ops' memory are leaked.
    ShutdownLeaks { error: String, in_flight: usize },
}

impl LogEvent {
    fn emit(&self) {
        match self {
            Self::UnknownCompletion { user_data } => {
                tracing::error!(user_data, "io_uring completion for no op in flight")
            }
            Self::TransientEnter {
                errno,
                unsubmitted,
                suppressed,
            } => tracing::warn!(
                error = %std::io::Error::from_raw_os_error(*errno),
                unsubmitted,
                suppressed,
                "io_uring_enter failed for now; the SQEs stay queued and are retried with backoff"
            ),
            Self::RingBroken {
                errno,
                not_submitted,
            } => tracing::error!(
                error = %std::io::Error::from_raw_os_error(*errno),
                not_submitted,
                "io_uring_enter failed permanently; the ring takes no new ops (ops the kernel had \
                 consumed still complete; the others run on std-fs)"
            ),
            Self::ShutdownCancelling { in_flight } => tracing::debug!(
                in_flight,
                "io_uring shutdown: cancelling and draining in-flight ops"
            ),
            Self::ShutdownLeaks { error, in_flight } => tracing::error!(
                error,
                in_flight,
                "io_uring shutdown cannot wait for completions; leaking the ring and the in-flight \
                 buffers rather than freeing memory the kernel may still use"
            ),
        }
    }
}

/// Deferred work of one call into the ring. Run it with [`Deferred::run`]; dropping it unrun runs it too.
#[must_use = "run it once the op's own state is safe"]
pub(super) struct Deferred<'a> {
    permits: &'a Semaphore,
    reaper: &'a Notify,
    eventfd: BorrowedFd<'a>,
    health: &'a EngineHealth,
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
    /// Wakers replaced or no longer needed: dropping one is foreign code.
    dropped_wakers: Vec<Waker>,
    /// Log records made under the mutex.
    logs: Vec<LogEvent>,
    /// The ring broke with this errno: downgrade the engine, and let waiters for a slot go elsewhere.
    ring_broken: Option<i32>,
}

impl<'a> Deferred<'a> {
    pub(super) fn new(
        permits: &'a Semaphore,
        reaper: &'a Notify,
        eventfd: BorrowedFd<'a>,
        health: &'a EngineHealth,
    ) -> Self {
        Self {
            permits,
            reaper,
            eventfd,
            health,
            freed: 0,
            wakers: Vec::new(),
            finished: Vec::new(),
            retry_submit: false,
            signal_eventfd: false,
            dropped_wakers: Vec::new(),
            logs: Vec::new(),
            ring_broken: None,
        }
    }

    pub(super) fn drop_waker(&mut self, waker: Option<Waker>) {
        self.dropped_wakers.extend(waker);
    }

    pub(super) fn log(&mut self, event: LogEvent) {
        self.logs.push(event);
    }

    pub(super) fn ring_broken(&mut self, errno: i32) {
        self.ring_broken = Some(errno);
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
                // A subscriber that panics now would abort: its panic is dropped too.
                let _ = catch_unwind(|| {
                    tracing::error!(
                        "a waker or a buffer's Drop panicked while the thread was unwinding"
                    )
                });
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
        let broken = self.ring_broken.take();
        if broken.is_some() {
            self.health.note_ring_broken();
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
        if let Some(errno) = broken {
            // Waiters for a slot of this ring run their op on std-fs instead (closing wakes them).
            let (permits, health) = (self.permits, self.health);
            guarded(&mut || permits.close());
            guarded(&mut || health.warn_downgrade_once(errno));
        }
        for event in std::mem::take(&mut self.logs) {
            guarded(&mut || event.emit());
        }
        for waker in std::mem::take(&mut self.dropped_wakers) {
            let mut waker = Some(waker);
            guarded(&mut || drop(waker.take()));
        }
        for waker in std::mem::take(&mut self.wakers) {
            let mut waker = Some(waker);
            guarded(&mut || waker.take().expect("taken once").wake());
        }
        for (op, completion) in std::mem::take(&mut self.finished) {
            let mut op = Some(op);
            guarded(&mut || op.take().expect("taken once").finish(completion));
        }
        first_panic
    }
}

impl Drop for Deferred<'_> {
    fn drop(&mut self) {
        // Normally already run (and empty). Run what is left rather than lose permits or wakeups; a
        // panic here is not resumed (this may be an unwinding drop).
        if self.run_all().is_some() {
            let _ = catch_unwind(|| {
                tracing::error!("a waker or a buffer's Drop panicked in deferred engine work")
            });
        }
    }
}
