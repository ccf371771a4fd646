//! [`Op`] and [`execute`]: how one op goes through a slot, and what happens to its resources when its
//! future is dropped.

use std::future::poll_fn;
use std::io;

use io_uring::squeue;

use super::slots::Parked;
use super::system::System;

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
/// dropped) parks the op in the slot.
struct InFlight<'a, O: Op> {
    system: &'a System,
    slot: u32,
    op: Option<O>,
}

impl<O: Op> Drop for InFlight<'_, O> {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            self.system.park(self.slot, Box::new(op));
        }
    }
}

/// Runs `op` on `system`: waits for a slot (FIFO), submits, and waits for the completion. When the
/// completion arrives during the submit (a page-cache hit), this returns on the first poll.
///
/// Cancellation: dropped while waiting for a slot, nothing was submitted. Dropped after submission, the
/// op is parked in its slot and completed (its resources freed) when the kernel is done.
pub(super) async fn execute<O: Op>(system: &System, mut op: O) -> O::Output {
    if let Err(e) = system.reserve_slot().await {
        return op.complete(Err(e));
    }
    let sqe = op.prepare();
    // SAFETY: the SQE points only into `op` (the `Op` contract), and `op` stays alive until the slot's
    // completion is processed: it moves into `InFlight` right away (moving `op` does not move the memory
    // it owns), which either hands it back after the completion or parks it in the slot.
    let slot = match unsafe { system.submit(sqe) } {
        Ok(slot) => slot,
        Err(e) => return op.complete(Err(e)),
    };
    let mut in_flight = InFlight {
        system,
        slot,
        op: Some(op),
    };
    let res = poll_fn(|cx| system.poll_slot(slot, cx)).await;
    let op = in_flight
        .op
        .take()
        .expect("the op stays in InFlight until here");
    op.complete(cqe_result(res))
}
