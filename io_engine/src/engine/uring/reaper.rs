//! The reaper task: drains a ring's completion queue when its `eventfd` becomes readable.
//!
//! The eventfd is registered with the ring (`IORING_REGISTER_EVENTFD`), so the kernel signals it for
//! every CQE it posts. It is wrapped in tokio's `AsyncFd`: the runtime's own epoll reactor tells us
//! when completions are pending; there is no extra thread or runtime. The reaper wakes the op futures
//! whose completions arrived, and completes parked ops (freeing their buffers).
//!
//! When SQEs could not be submitted (`io_uring_enter` said `EAGAIN`/`EBUSY`), the submitter notifies the
//! reaper, which retries on a timer with backoff ([`FIRST_RETRY`] doubling up to [`MAX_RETRY`]) until
//! they are in: an op future never spins on the error, and a parked op's SQE is submitted even if
//! nothing else happens on the ring. This needs the runtime's timers (checked at launch).
//!
//! The reaper is a task of the runtime the engine was launched on: completions are only processed
//! while that runtime is driven (a `current_thread` runtime whose `block_on` returned processes none).
//!
//! When the task ends or is dropped (the runtime shuts down), it shuts the ring down: in-flight ops are
//! drained synchronously before anything is freed (see [`System::shutdown`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::task::JoinHandle;

use super::system::System;
use crate::engine::error::EngineStartError;

/// First pause before retrying SQEs the kernel refused for now.
const FIRST_RETRY: Duration = Duration::from_micros(200);
/// Longest pause between retries.
const MAX_RETRY: Duration = Duration::from_millis(50);

/// Shuts the system down when the reaper task ends or is dropped with its runtime.
struct ShutdownOnDrop(Arc<System>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// Spawns the reaper of `system` on the current tokio runtime.
pub(super) fn spawn(
    system: Arc<System>,
    eventfd: OwnedFd,
) -> Result<JoinHandle<()>, EngineStartError> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| EngineStartError::NoRuntime(std::io::Error::other(e)))?;
    // `AsyncFd` panics in a runtime built without IO; report that as a start error instead.
    let afd = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _enter = handle.enter();
        // SAFETY: `eventfd` is an open descriptor owned by the `AsyncFd` from here on, and
        // `OwnedFd::as_raw_fd` always returns that same descriptor.
        unsafe { AsyncFd::register_with_interest(eventfd, Interest::READABLE) }
    }))
    .map_err(|_| {
        EngineStartError::NoRuntime(std::io::Error::other(
            "the tokio runtime has IO disabled (build it with enable_io)",
        ))
    })?
    .map_err(|e| EngineStartError::Eventfd(e.into_parts().1))?;
    // Creating a `Sleep` panics in a runtime built without timers; the retry backoff needs them.
    let timers = catch_unwind(|| {
        let _enter = handle.enter();
        drop(tokio::time::sleep(Duration::ZERO));
    });
    if timers.is_err() {
        return Err(EngineStartError::NoRuntime(std::io::Error::other(
            "the tokio runtime has timers disabled (build it with enable_time, or enable_all)",
        )));
    }
    // The guard is made here, not inside the task: a task dropped before its first poll (a runtime
    // dropped right after the launch) drops its arguments, and so still shuts the ring down.
    let shutdown = ShutdownOnDrop(system.clone());
    Ok(handle.spawn(reap(shutdown, system, afd)))
}

async fn reap(_shutdown: ShutdownOnDrop, system: Arc<System>, afd: AsyncFd<OwnedFd>) {
    // `Some` while SQEs wait for a retry: the pause before the next one.
    let mut retry: Option<Duration> = None;
    loop {
        let readable = match retry {
            Some(pause) => tokio::select! {
                r = afd.readable() => Some(r),
                () = tokio::time::sleep(pause) => None,
            },
            None => tokio::select! {
                r = afd.readable() => Some(r),
                () = system.retry_requested() => None,
            },
        };
        if let Some(ready) = readable {
            let mut ready = match ready {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::error!(error = %e, "io_uring reaper cannot wait for its eventfd; shutting the ring down");
                    return;
                }
            };
            // Reset the counter *before* draining: a CQE posted after the drain signals it again.
            let mut counter = 0u64;
            // SAFETY: reads 8 bytes into a local `u64` from the eventfd we own; the fd is non-blocking,
            // so an empty counter is `EAGAIN` and changes nothing.
            let _ = unsafe {
                libc::read(
                    afd.get_ref().as_raw_fd(),
                    (&mut counter as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            // A signal that arrives after this still sets readiness again (edge-triggered epoll event).
            ready.clear_ready();
        }
        if system.is_shut_down() {
            return;
        }
        // A waker or a buffer's `Drop` that panics must not end the reaper (and with it the ring).
        let pending = match catch_unwind(AssertUnwindSafe(|| system.reap())) {
            Ok(pending) => pending,
            Err(_) => {
                tracing::error!(
                    "a waker or a buffer's Drop panicked in the io_uring reaper; continuing"
                );
                false
            }
        };
        retry = pending.then(|| retry.map_or(FIRST_RETRY, |p| (p * 2).min(MAX_RETRY)));
    }
}
