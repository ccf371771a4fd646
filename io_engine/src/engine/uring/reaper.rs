//! The reaper task: drains a ring's completion queue when its `eventfd` becomes readable.
//!
//! The eventfd is registered with the ring (`IORING_REGISTER_EVENTFD`), so the kernel signals it for
//! every CQE it posts. It is wrapped in tokio's `AsyncFd`: the runtime's own epoll reactor tells us
//! when completions are pending; there is no extra thread or runtime. The reaper wakes the op futures
//! whose completions arrived, and completes parked ops (freeing their buffers).
//!
//! When the task ends or is dropped (the runtime shuts down), it shuts the ring down: in-flight ops are
//! drained synchronously before anything is freed (see [`System::shutdown`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::task::JoinHandle;

use super::system::System;
use crate::engine::error::EngineStartError;

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
    Ok(handle.spawn(reap(system, afd)))
}

async fn reap(system: Arc<System>, afd: AsyncFd<OwnedFd>) {
    let _shutdown = ShutdownOnDrop(system.clone());
    loop {
        let mut ready = match afd.readable().await {
            Ok(ready) => ready,
            Err(e) => {
                tracing::error!(error = %e, "io_uring reaper cannot wait for its eventfd; shutting the ring down");
                return;
            }
        };
        // Reset the counter *before* draining: a CQE posted after the drain signals the eventfd again.
        let mut counter = 0u64;
        // SAFETY: reads 8 bytes into a local `u64` from the eventfd we own; the fd is non-blocking, so
        // an empty counter is `EAGAIN` and changes nothing.
        let _ = unsafe {
            libc::read(
                afd.get_ref().as_raw_fd(),
                (&mut counter as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        // A signal that arrives after this still sets readiness again (edge-triggered epoll event).
        ready.clear_ready();
        if system.is_shut_down() {
            return;
        }
        system.reap();
    }
}
