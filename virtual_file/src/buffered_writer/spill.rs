//! Spill mode ([`BufferedWriterOptions::spill`](super::BufferedWriterOptions::spill)): full buffers are
//! *retained* in memory instead of written, and written to the file only when memory runs short.
//!
//! # How memory is found
//!
//! Every buffer is reserved from the file's [`MemoryBudget`] with its own [`Reservation`], which travels
//! with it: from the writer's mutable buffer to the retained list, into the write, and is dropped after
//! the written buffer is freed. A new buffer is taken, in this order:
//! 1. free budget, or pages the caches give back at once ([`MemoryBudget::try_reserve_from_caches`]);
//! 2. else [`MemoryBudget::reserve`], which waits. It asks the caches again and then the spillers, this
//!    writer among them: [`SpillReclaim`] raises `spill_wanted` and wakes the flush task, which writes the
//!    oldest retained buffers and drops their reservations, and the bytes go to whoever waits first.
//!
//! So any consumer of the budget that waits (a layer writer, a reader, the page cache with every page
//! pinned) makes a spilling writer write and give memory back, even a writer nobody appends to any more
//! (a frozen in-memory layer): its flush task still runs and answers. After a spill that left retained
//! buffers, the task wakes the budget's waiters again so that one still short asks again.
//!
//! # Order
//!
//! Only the flush task writes, oldest retained buffer first, and a buffer moves from the retained list to
//! the in-flight list under the shared lock before its write starts, so the regions stay in file order:
//! file | in flight | retained | mutable buffer (what [`read_plan`](super::BufferedWriter::read_plan)
//! relies on). A flush or a shutdown sends a request that writes every retained buffer before the
//! requests after it (the tail). [`ShutdownMode::Discard`](super::ShutdownMode::Discard) drops them.
//!
//! # Failure
//!
//! As in the normal mode: the first failed write poisons the writer; retained buffers after it are never
//! written (dropped when the task reaches them, memory given back) and reads of them are refused.

use std::sync::{Arc, Weak};

use io_engine::{Alignment, FullSlice, IoBuffer, IoBufferMut};

use super::flush::{finish, AcquireError, InFlight, Shared};
use super::io_traits::OwnedAsyncWriter;
use crate::memory_budget::{Consumer, MemoryBudget, Reclaim, Reservation};

/// A full buffer kept in memory, not yet handed to a write.
pub(super) struct Retained<A: Alignment> {
    pub(super) offset: u64,
    pub(super) buf: IoBuffer<A>,
    pub(super) reservation: Option<Reservation>,
}

/// The writer's side of spill mode: its registration as a spiller, and the reservation of the mutable
/// buffer.
pub(super) struct WriterSide {
    /// Registered weakly with the budget: dropping the writer unregisters it.
    _reclaimer: Arc<dyn Reclaim>,
    mutable_reservation: Option<Reservation>,
}

impl WriterSide {
    /// Registers the writer whose state is `shared` as a spiller of `budget`.
    pub(super) fn register<A, E>(budget: &MemoryBudget, shared: &Arc<Shared<A, E>>) -> WriterSide
    where
        A: Alignment,
        E: std::error::Error + Send + Sync + 'static,
    {
        let reclaimer: Arc<dyn Reclaim> = Arc::new(SpillReclaim {
            shared: Arc::downgrade(shared),
        });
        budget.register_spiller(Arc::downgrade(&reclaimer));
        WriterSide {
            _reclaimer: reclaimer,
            mutable_reservation: None,
        }
    }

    /// A new mutable buffer of `capacity` bytes, reserved first (see the module docs for where the memory
    /// comes from). Dropping the future loses nothing.
    pub(super) async fn acquire<A: Alignment>(
        &mut self,
        budget: &MemoryBudget,
        capacity: usize,
    ) -> Result<IoBufferMut<A>, AcquireError> {
        let reservation = match budget.try_reserve_from_caches(Consumer::WriterBuffers, capacity) {
            Some(r) => r,
            None => budget
                .reserve(Consumer::WriterBuffers, capacity)
                .await
                .map_err(AcquireError::Memory)?,
        };
        self.mutable_reservation = Some(reservation);
        Ok(IoBufferMut::with_capacity(capacity))
    }

    /// Keeps the full buffer `buf` (written at `offset` in the stream) in memory with its reservation.
    pub(super) fn retain<A: Alignment, E>(
        &mut self,
        shared: &Shared<A, E>,
        offset: u64,
        buf: IoBuffer<A>,
    ) {
        let reservation = self.mutable_reservation.take();
        shared.lock().retained.push_back(Retained {
            offset,
            buf,
            reservation,
        });
    }
}

/// A spilling writer as the budget sees it.
struct SpillReclaim<A: Alignment, E> {
    shared: Weak<Shared<A, E>>,
}

impl<A, E> Reclaim for SpillReclaim<A, E>
where
    A: Alignment,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Asks the flush task to write (at least) `bytes` of retained buffers and give their memory back.
    /// Nothing is free yet when this returns, hence 0.
    fn reclaim(&self, bytes: usize) -> usize {
        let Some(shared) = self.shared.upgrade() else {
            return 0;
        };
        {
            let mut state = shared.lock();
            if state.retained.is_empty() {
                return 0;
            }
            state.spill_wanted = state.spill_wanted.max(bytes);
        }
        shared.spill.notify_one();
        0
    }
}

/// The flush task's part: writes the oldest retained buffers, every one if `all`, else until
/// `spill_wanted` bytes were written, and gives each one's memory back after its write.
pub(super) async fn write_retained<W, A>(writer: &W, shared: &Shared<A, W::Error>, all: bool)
where
    W: OwnedAsyncWriter,
    A: Alignment,
{
    let mut written = 0usize;
    while !shared.abandoned() {
        let next = {
            let mut state = shared.lock();
            if !all && state.spill_wanted == 0 {
                None
            } else if let Some(r) = state.retained.pop_front() {
                state.spill_wanted = state.spill_wanted.saturating_sub(r.buf.len());
                state.in_flight.push_back(InFlight {
                    offset: r.offset,
                    buf: r.buf.clone(),
                });
                Some(r)
            } else {
                state.spill_wanted = 0;
                None
            }
        };
        let Some(Retained {
            offset,
            buf,
            reservation,
        }) = next
        else {
            break;
        };
        let len = buf.len();
        if shared.failed() {
            finish(shared, offset, len, None);
            drop(buf);
        } else {
            let (slice, result) = writer.write_all_at(FullSlice::new(buf), offset).await;
            if result.is_ok() {
                writer.written(offset, slice.as_slice());
            }
            finish(shared, offset, len, Some(result));
            drop(slice);
        }
        // The buffer is freed (its in-flight clone went in `finish`): now the bytes go back.
        drop(reservation);
        written += len;
    }
    if written > 0 {
        tracing::trace!(written, all, "buffered writer: spilled retained buffers");
        if !shared.lock().retained.is_empty() {
            if let Some(budget) = writer.memory_budget() {
                budget.notify_reclaimable();
            }
        }
    }
}
