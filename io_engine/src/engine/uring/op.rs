//! [`Op`] and [`execute`]: how one op goes through a slot, and what happens to its resources when its
//! future is dropped.

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

use io_uring::squeue;

use super::slots::{Completion, Parked};
use super::system::{shut_down_error, NoSlot, Submitted, System};

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

    /// Does the op with the `std-fs` engine on the calling thread instead (the ring is broken or never
    /// saw the op).
    fn run_inline(self) -> Self::Output;
}

/// Where a completion leaves an op whose future still waits: the CQE's result, or (never submitted)
/// the op done on `std-fs`.
fn output<O: Op>(op: O, completion: Completion) -> O::Output {
    match completion {
        Completion::Cqe(res) => op.complete(cqe_result(res)),
        Completion::NotSubmitted(_) => op.run_inline(),
    }
}

/// A CQE's `res`: negative is `-errno`.
pub(super) fn cqe_result(res: i32) -> io::Result<u32> {
    u32::try_from(res).map_err(|_| io::Error::from_raw_os_error(-res))
}

impl<O: Op> Parked for O {
    fn finish(self: Box<Self>, completion: Completion) {
        // Complete as usual and drop the output: a descriptor opened for a dropped future is closed,
        // buffers are freed. An op never submitted is not done at all: its future is gone.
        let res = match completion {
            Completion::Cqe(res) => cqe_result(res),
            Completion::NotSubmitted(errno) => Err(io::Error::from_raw_os_error(errno)),
        };
        drop((*self).complete(res));
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
            Poll::Ready(completion) => {
                // The slot is free (maybe reused) from here: take the op out of the guard before any
                // foreign code runs. If that code panics, `op` is dropped, which is safe: the kernel is
                // done with it.
                let op = self.op.take().expect("polled again after completion");
                deferred.run();
                Poll::Ready(output(op, completion))
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
/// op is parked in its slot, a cancel request is sent for it, and it is completed (its resources freed)
/// when the kernel is done.
///
/// Downgrade: once a ring of the engine broke, the op runs on `std-fs` (see [`super::health`]).
///
/// Panics in foreign code (a waker, a buffer's `Drop`) that the submit or a poll had to run are resumed
/// here, after this op's own state is safe: it is either in its `InFlight` guard (and then parked) or
/// already complete.
pub(super) async fn execute<O: Op>(system: &System, mut op: O) -> O::Output {
    if system.health().is_downgraded() && !system.is_shut_down() {
        return op.run_inline();
    }
    let reservation = match system.reserve_slot().await {
        Ok(r) => r,
        Err(NoSlot::ShutDown) => return op.complete(Err(shut_down_error())),
        Err(NoSlot::Broken) => return op.run_inline(),
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
        Err(NoSlot::ShutDown) => return op.complete(Err(shut_down_error())),
        Err(NoSlot::Broken) => return op.run_inline(),
    };
    match submitted {
        Submitted::Done(completion) => {
            // The kernel is done with `op` (or never saw it): a panic in the deferred work just drops
            // it.
            deferred.run();
            output(op, completion)
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
