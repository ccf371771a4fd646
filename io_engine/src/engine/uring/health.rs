//! [`EngineHealth`]: what the rings of one engine share about their state: whether a ring broke (and the
//! engine therefore runs new ops on `std-fs`), and, with the `testing` feature, the ring faults to inject.
//!
//! ## Live downgrade
//! A permanent `io_uring_enter` error (anything but `EAGAIN`, `EBUSY`, `EINTR`, `ENOMEM`) breaks a ring:
//! it never submits again. The engine then downgrades itself to `std-fs` for every new op (one
//! `tracing::warn!` per engine, [`UringStats::downgraded`](super::UringStats)). Ops already in the ring:
//! - consumed by the kernel: they keep their buffers and complete when the kernel posts their CQE, which
//!   needs no `io_uring_enter` (the completion queue is shared memory, signalled through the eventfd);
//! - still in the submission queue (never consumed): the kernel never saw them, so they run on `std-fs`
//!   instead (a dropped future's op is just dropped);
//! - waiting for a slot: they run on `std-fs`.
//!
//! So a stream of IO keeps going across the failure, with no error. What it cannot fix: an op the kernel
//! consumed but never completes keeps its slot, buffer and future forever (as a blocking syscall would);
//! shutdown of a broken ring waits for such ops at most [`BROKEN_SHUTDOWN_WAIT`] and then leaks the ring
//! and their buffers deliberately rather than free memory the kernel may still write.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long shutdown waits for the in-flight ops of a broken ring before it leaks them.
pub(super) const BROKEN_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Shared by the rings of one engine.
#[derive(Debug, Default)]
pub(super) struct EngineHealth {
    downgraded: AtomicBool,
    broken_rings: AtomicUsize,
    warned: AtomicBool,
    #[cfg(feature = "testing")]
    pub(super) faults: super::faults::RingFaults,
    /// Tests only: ops whose future was dropped get no cancel request (as if the kernel could not
    /// cancel them), to test what happens while they stay parked. Shutdown still cancels them.
    #[cfg(feature = "testing")]
    pub(super) no_cancel_on_drop: AtomicBool,
}

impl EngineHealth {
    /// Whether an op whose future was dropped gets a cancel request (always, but in some tests).
    pub(super) fn cancel_dropped_ops(&self) -> bool {
        #[cfg(feature = "testing")]
        if self.no_cancel_on_drop.load(Ordering::Relaxed) {
            return false;
        }
        true
    }

    /// New ops run on `std-fs`.
    pub(super) fn is_downgraded(&self) -> bool {
        self.downgraded.load(Ordering::Acquire)
    }

    pub(super) fn broken_rings(&self) -> usize {
        self.broken_rings.load(Ordering::Relaxed)
    }

    /// A ring broke: downgrade the engine (our own state; no foreign code).
    pub(super) fn note_ring_broken(&self) {
        self.broken_rings.fetch_add(1, Ordering::Relaxed);
        self.downgraded.store(true, Ordering::Release);
    }

    /// The one warning of the downgrade (a `tracing` call: run it as deferred work).
    pub(super) fn warn_downgrade_once(&self, errno: i32) {
        if !self.warned.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                error = %std::io::Error::from_raw_os_error(errno),
                "an io_uring ring broke (permanent io_uring_enter error); the engine runs new ops on \
                 std-fs from now on"
            );
        }
    }
}
