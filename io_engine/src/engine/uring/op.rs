//! [`Op`] and [`execute`]: how one op goes through a slot, and what happens to its resources when its
//! future is dropped.

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

use io_uring::squeue;

use super::slots::Parked;
use super::system::{Submitted, System};

/// One io_uring operation together with everything the kernel reads or writes while it is in flight.
///
/// # Safety
/// Implementors promise that the entry returned by [`Op::prepare`] refers only to memory owned by `self`
/// (buffers through the stable-pointer invariant of [`IoBuf`](crate::IoBuf), heap-allocated iovec
/// arrays, path strings and output structs, descriptors kept open by an `Arc<IoFd>`), and that this memory
/// stays valid and at the same address for as long as `self` is alive, even when `self` is moved.
pub(super) unsafe trait Op: Send + 'static {
    /// What the caller gets back: the resources and the result.
    type Output;

    /// The SQE (without `user_data`, which the slot sets).
    fn prepare(&mut self) -> squeue::Entry;

    /// True if the op often completes inside `io_uring_enter` (buffered reads and writes), so that
    /// suppressing the eventfd signal for that call pays off.
    fn inline_likely(&self) -> bool {
        false
    }

    /// Turns the CQE result (or an error before submission) into the output, handing back the resources.
    fn complete(self, res: io::Result<u32>) -> Self::Output;
}

/// A CQE's `res`: negative is `-errno`.
pub(super) fn cqe_result(res: i32) -> io::Result<u32> {
    u32::try_from(res).map_err(|_| io::Error::from_raw_os_error(-res))
}

impl<O: Op> Parked for O {
    fn finish(self: Box<Self>, res: i32) {
        // Complete as usual and drop the output: a descriptor opened for a dropped future is closed,
        // buffers are freed.
        drop((*self).complete(cqe_result(res)));
    }
}

/// Owns the op while its slot is in flight. Dropping it before the result was taken (the op future was
/// dropped, or deferred work panicked) parks the op in the slot.
struct InFlight<'a, O: Op> {
    system: &'a System,
    slot: u32,
    op: Option<O>,
}

impl<O: Op> InFlight<'_, O> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<O::Output> {
        let (poll, deferred) = self.system.poll_slot(self.slot, cx);
        match poll {
            Poll::Ready(res) => {
                // The slot is free (maybe reused) from here: take the op out of the guard before any
                // foreign code runs. If that code panics, `op` is dropped, which is safe: the kernel is
                // done with it.
                let op = self.op.take().expect("polled again after completion");
                deferred.run();
                Poll::Ready(op.complete(cqe_result(res)))
            }
            Poll::Pending => {
                deferred.run();
                Poll::Pending
            }
        }
    }
}

impl<O: Op> Drop for InFlight<'_, O> {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            self.system.park(self.slot, Box::new(op));
        }
    }
}

/// Runs `op` on `system`: waits for a slot (FIFO), submits, and waits for the completion. When the
/// completion arrives during the submit (a page-cache hit), this returns on the first poll, having taken
/// the ring's mutex once.
///
/// Cancellation: dropped while waiting for a slot, nothing was submitted. Dropped after submission, the
/// op is parked in its slot and completed (its resources freed) when the kernel is done.
///
/// Panics in foreign code (a waker, a buffer's `Drop`) that the submit or a poll had to run are resumed
/// here, after this op's own state is safe: it is either in its `InFlight` guard (and then parked) or
/// already complete.
pub(super) async fn execute<O: Op>(system: &System, mut op: O) -> O::Output {
    let reservation = match system.reserve_slot().await {
        Ok(r) => r,
        Err(e) => return op.complete(Err(e)),
    };
    let inline_likely = op.inline_likely();
    // A panic here drops `reservation`, which gives the permit back.
    let sqe = op.prepare();
    // SAFETY: the SQE points only into `op` (the `Op` contract), and `op` stays alive until the slot's
    // completion is processed: if not complete already, it moves into `InFlight` right away (moving `op`
    // does not move the memory it owns), which either hands it back after the completion or parks it in
    // the slot. Nothing between here and that move can panic.
    let (submitted, deferred) = match unsafe { system.submit(reservation, sqe, inline_likely) } {
        Ok(s) => s,
        Err(e) => return op.complete(Err(e)),
    };
    match submitted {
        Submitted::Done(res) => {
            // The kernel is done with `op`: a panic in the deferred work just drops it.
            deferred.run();
            op.complete(cqe_result(res))
        }
        Submitted::InFlight(slot) => {
            let mut in_flight = InFlight {
                system,
                slot,
                op: Some(op),
            };
            // Only now, with `op` guarded, may foreign code run.
            deferred.run();
            poll_fn(|cx| in_flight.poll(cx)).await
        }
    }
}
