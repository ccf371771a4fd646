//! The background flush task, the state it shares with the writer, and the [`FlushHandle`] the writer
//! drives it through.
//!
//! Two channels connect the writer and the task:
//! - requests (writer -> task, bounded by the depth): full buffers (and zero-copy chunks) to write, and
//!   barriers that are answered once every earlier write has finished;
//! - recycled buffers (task -> writer, bounded by the depth): the writer waits here when all its buffers are
//!   in flight, which is the back-pressure.
//!
//! The task writes requests one after the other, in the order sent. After each write it updates the
//! [`State`] under the mutex: the write leaves the in-flight list, and on success `flushed_end` moves past
//! it. After the first error it writes nothing more (it never writes past a hole) but keeps answering
//! requests and recycling buffers, so the writer never waits forever; the writer reports the error.
//! The task ends when the request channel closes after a shutdown, and returns the file.
//!
//! A writer dropped without shutdown *abandons* the task ([`FlushHandle`]'s `Drop`): it sets a flag and
//! closes the request channel. The task finishes the one write it may be in the middle of (a write is
//! never cut short, so no kernel IO outlives the task), starts no other, drops the queued requests, and
//! then drops the file itself, inside the task. So whatever the file's owner does when the file is dropped
//! (a temp file removes itself) happens only after the task's last write, and nothing writes to the file
//! afterwards.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use io_engine::{Alignment, FullSlice, IoBuffer, IoBufferMut};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::error::ConfigError;
use super::io_traits::OwnedAsyncWriter;
use super::spill::{self, Retained};
use crate::memory_budget::{Consumer, MemoryBudget, MemoryBudgetError, Reservation};

/// A write sent to the task and not yet finished: the frozen bytes (a clone of what the task writes) and
/// where they go.
pub(super) struct InFlight<A: Alignment> {
    pub(super) offset: u64,
    pub(super) buf: IoBuffer<A>,
}

/// The first failed write.
pub(super) struct Failure<E> {
    pub(super) offset: u64,
    pub(super) len: usize,
    pub(super) error: Arc<E>,
}

/// What the writer and the task agree on, changed only under [`Shared::lock`].
///
/// Invariant while no write has failed: `[start_offset, flushed_end)` is in the file; the in-flight
/// entries follow each other without gaps from `flushed_end`; the retained buffers (spill mode) follow
/// the last of them, and the writer's mutable buffer follows the last retained one.
pub(super) struct State<A: Alignment, E> {
    pub(super) flushed_end: u64,
    pub(super) in_flight: VecDeque<InFlight<A>>,
    /// Spill mode: full buffers kept in memory, not yet handed to a write, oldest first.
    pub(super) retained: VecDeque<Retained<A>>,
    /// Spill mode: bytes of retained buffers to write and give back (asked by the budget's reclaim).
    pub(super) spill_wanted: usize,
    pub(super) failure: Option<Failure<E>>,
}

/// The state shared by the writer and its flush task.
pub(super) struct Shared<A: Alignment, E> {
    /// Set (after `state.failure`) when a write failed: lets the writer's hot path skip the lock.
    failed: AtomicBool,
    /// Set when the writer was dropped without shutdown: the task starts no further write.
    abandoned: AtomicBool,
    /// Wakes the task to write retained buffers (`state.spill_wanted` was raised).
    pub(super) spill: Notify,
    state: Mutex<State<A, E>>,
}

impl<A: Alignment, E> Shared<A, E> {
    fn new(start_offset: u64) -> Self {
        Self {
            failed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            spill: Notify::new(),
            state: Mutex::new(State {
                flushed_end: start_offset,
                in_flight: VecDeque::new(),
                retained: VecDeque::new(),
                spill_wanted: 0,
                failure: None,
            }),
        }
    }

    /// Locks the state. A panic while it was held cannot leave it half-updated (every update is a few
    /// plain assignments), so a poisoned lock is used as is.
    pub(super) fn lock(&self) -> MutexGuard<'_, State<A, E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True once a write has failed.
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// True once the writer was dropped without shutdown.
    pub(super) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }
}

/// The flush task is gone: it panicked or was cancelled by a shutting-down runtime.
#[derive(Debug)]
pub(super) struct TaskGone;

/// Why no buffer could be had.
pub(super) enum AcquireError {
    /// The flush task is gone.
    Gone,
    /// One buffer is larger than the whole memory budget.
    Memory(MemoryBudgetError),
}

enum Request<A: Alignment> {
    /// Write `buf` at `offset`; give the allocation back to the writer afterwards if `recycle`.
    Write {
        offset: u64,
        buf: IoBuffer<A>,
        recycle: bool,
    },
    /// Answer once every earlier request is done.
    Barrier(oneshot::Sender<()>),
    /// Spill mode: write every retained buffer (flush, shutdown).
    SpillAll,
}

/// A permit to send one request; obtaining it is the only wait in [`FlushHandle::submit`].
pub(super) struct SendPermit<'a, A: Alignment>(mpsc::Permit<'a, Request<A>>);

/// The writer's side of the flush task.
pub(super) struct FlushHandle<W: OwnedAsyncWriter, A: Alignment> {
    requests: Option<mpsc::Sender<Request<A>>>,
    recycled: mpsc::Receiver<IoBufferMut<A>>,
    task: Option<JoinHandle<Option<W>>>,
    shared: Arc<Shared<A, W::Error>>,
    /// Pool buffers allocated so far (at most `depth`).
    allocated: usize,
    /// The file's memory budget, and what the pool buffers took from it (one per buffer).
    budget: Option<MemoryBudget>,
    reservations: Vec<Reservation>,
    depth: usize,
    capacity: usize,
    /// Spill mode (see [`spill`]): the mutable buffer's reservation, which travels with the buffer.
    pub(super) spill: Option<spill::WriterSide>,
}

impl<W: OwnedAsyncWriter, A: Alignment> FlushHandle<W, A> {
    /// Spawns the flush task on the current tokio runtime.
    pub(super) fn spawn(
        writer: W,
        capacity: usize,
        depth: usize,
        start_offset: u64,
        spill: bool,
    ) -> Result<Self, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        let budget = writer.memory_budget();
        if spill && budget.is_none() {
            return Err(ConfigError::SpillWithoutBudget);
        }
        let (requests, request_rx) = mpsc::channel(depth);
        let (recycle_tx, recycled) = mpsc::channel(depth);
        let shared = Arc::new(Shared::new(start_offset));
        // The task's span is a child of the span the writer is created in (a layer write-out, a
        // download), so its flushes are found under that layer's name, mode and engine.
        let span = tracing::debug_span!("flush_task", capacity, depth, start_offset);
        let task = runtime.spawn(
            run(
                writer,
                request_rx,
                recycle_tx,
                Arc::clone(&shared),
                capacity,
            )
            .instrument(span),
        );
        let spill = match (&budget, spill) {
            (Some(budget), true) => Some(spill::WriterSide::register(budget, &shared)),
            _ => None,
        };
        tracing::debug!(
            capacity,
            depth,
            start_offset,
            spill = spill.is_some(),
            "buffered writer: flush task started"
        );
        Ok(Self {
            requests: Some(requests),
            recycled,
            task: Some(task),
            shared,
            allocated: 0,
            budget,
            reservations: Vec::new(),
            depth,
            capacity,
            spill,
        })
    }

    pub(super) fn shared(&self) -> &Shared<A, W::Error> {
        &self.shared
    }

    /// An empty buffer of `capacity` bytes: a recycled one, a new one while fewer than `depth` exist, or
    /// else the next one the task gives back (the back-pressure wait).
    ///
    /// A new buffer is first reserved from the file's memory budget (waiting there is back-pressure
    /// too). After the first buffer, a budget that is short waits for a recycled buffer instead, so a
    /// writer never waits for memory while it holds a buffer it could reuse.
    pub(super) async fn acquire(&mut self) -> Result<IoBufferMut<A>, AcquireError> {
        if let (Some(spill), Some(budget)) = (&mut self.spill, &self.budget) {
            return spill.acquire(budget, self.capacity).await;
        }
        match self.recycled.try_recv() {
            Ok(buf) => return Ok(buf),
            Err(mpsc::error::TryRecvError::Empty) => {}
            Err(mpsc::error::TryRecvError::Disconnected) => return Err(AcquireError::Gone),
        }
        if self.allocated < self.depth {
            match &self.budget {
                None => {}
                Some(budget) if self.allocated == 0 => {
                    let r = budget
                        .reserve(Consumer::WriterBuffers, self.capacity)
                        .await
                        .map_err(AcquireError::Memory)?;
                    self.reservations.push(r);
                }
                Some(budget) => match budget.try_reserve(Consumer::WriterBuffers, self.capacity) {
                    Some(r) => self.reservations.push(r),
                    None => return self.recycled.recv().await.ok_or(AcquireError::Gone),
                },
            }
            self.allocated += 1;
            return Ok(IoBufferMut::with_capacity(self.capacity));
        }
        self.recycled.recv().await.ok_or(AcquireError::Gone)
    }

    /// Waits for room in the request queue. Nothing is handed over yet, so dropping this future loses
    /// nothing.
    pub(super) async fn reserve(&self) -> Result<SendPermit<'_, A>, TaskGone> {
        let requests = self.requests.as_ref().ok_or(TaskGone)?;
        requests
            .reserve()
            .await
            .map(SendPermit)
            .map_err(|_| TaskGone)
    }

    /// Hands `buf` to the task to be written at `offset`, registering it as in flight first so a read
    /// plan sees it from now on. Does not wait.
    pub(super) fn submit(
        &self,
        permit: SendPermit<'_, A>,
        offset: u64,
        buf: IoBuffer<A>,
        recycle: bool,
    ) {
        self.shared.lock().in_flight.push_back(InFlight {
            offset,
            buf: buf.clone(),
        });
        permit.0.send(Request::Write {
            offset,
            buf,
            recycle,
        });
    }

    /// Spill mode: keeps the full mutable buffer `buf` (at `offset`) in memory; see [`spill`].
    pub(super) fn retain(&mut self, offset: u64, buf: IoBuffer<A>) {
        match &mut self.spill {
            Some(spill) => spill.retain(&self.shared, offset, buf),
            None => debug_assert!(false, "retain outside spill mode"),
        }
    }

    /// Spill mode: drops every retained buffer unwritten (and gives its memory back).
    pub(super) fn discard_retained(&self) {
        let dropped: Vec<_> = {
            let mut state = self.shared.lock();
            state.spill_wanted = 0;
            state.retained.drain(..).collect()
        };
        drop(dropped);
    }

    /// Spill mode: has the task write every retained buffer, and waits until it is done, so that a write
    /// submitted afterwards (the tail) follows them in the in-flight list as in the file.
    pub(super) async fn spill_all(&self) -> Result<(), TaskGone> {
        if self.spill.is_some() {
            self.reserve().await?.0.send(Request::SpillAll);
            self.barrier().await?;
        }
        Ok(())
    }

    /// Waits until every write submitted so far has finished (successfully or not).
    pub(super) async fn barrier(&self) -> Result<(), TaskGone> {
        let (done, wait) = oneshot::channel();
        self.reserve().await?.0.send(Request::Barrier(done));
        wait.await.map_err(|_| TaskGone)
    }

    /// Closes the request channel, lets the task finish every queued write, and takes the file back.
    pub(super) async fn close(&mut self) -> Result<W, TaskGone> {
        self.requests = None;
        let task = self.task.take().ok_or(TaskGone)?;
        match task.await {
            Ok(Some(writer)) => Ok(writer),
            // Abandoned: only `Drop` sets that flag, and it runs after this.
            Ok(None) => Err(TaskGone),
            Err(err) => {
                tracing::error!(%err, "buffered writer: flush task did not finish");
                Err(TaskGone)
            }
        }
    }
}

impl<W: OwnedAsyncWriter, A: Alignment> Drop for FlushHandle<W, A> {
    /// Abandons the task if it still runs (see the module docs): it finishes the write under way, if any,
    /// then drops the file; queued writes are not made.
    fn drop(&mut self) {
        if self.task.is_some() {
            self.shared.abandoned.store(true, Ordering::Release);
            self.requests = None;
        }
    }
}

/// The flush task: writes requests in order until the request channel closes, then returns the file; or,
/// abandoned, drops the file after the write under way and returns `None`.
async fn run<W: OwnedAsyncWriter, A: Alignment>(
    writer: W,
    mut requests: mpsc::Receiver<Request<A>>,
    recycle: mpsc::Sender<IoBufferMut<A>>,
    shared: Arc<Shared<A, W::Error>>,
    capacity: usize,
) -> Option<W> {
    loop {
        // A spill asked for by the budget is served between requests (the notification is kept if it
        // comes while a write is under way).
        let request = tokio::select! {
            biased;
            request = requests.recv() => match request {
                Some(request) => Some(request),
                None => break,
            },
            () = shared.spill.notified() => None,
        };
        if shared.abandoned.load(Ordering::Acquire) {
            break;
        }
        let Some(request) = request else {
            spill::write_retained(&writer, &shared, false).await;
            continue;
        };
        let (offset, buf, recycle_buf) = match request {
            Request::Barrier(done) => {
                // The writer may have stopped waiting (its future was dropped): nothing to do then.
                let _ = done.send(());
                continue;
            }
            Request::SpillAll => {
                spill::write_retained(&writer, &shared, true).await;
                continue;
            }
            Request::Write {
                offset,
                buf,
                recycle,
            } => (offset, buf, recycle),
        };
        let len = buf.len();
        let buf = if shared.failed() {
            tracing::debug!(
                offset,
                len,
                "buffered writer: skipping write after an earlier failure"
            );
            finish(&shared, offset, len, None);
            buf
        } else {
            let (slice, result) = writer
                .write_all_at(FullSlice::new(buf), offset)
                .instrument(tracing::debug_span!("flush", offset, bytes = len))
                .await;
            if result.is_ok() {
                writer.written(offset, slice.as_slice());
            }
            finish(&shared, offset, len, Some(result));
            slice.into_inner()
        };
        if recycle_buf {
            // The in-flight clone is gone (`finish`), so this is normally the only reference left; if not,
            // a new buffer keeps the number of pool buffers constant.
            let buf = match buf.into_mut() {
                Ok(mut buf) => {
                    buf.clear();
                    buf
                }
                Err(_) => IoBufferMut::with_capacity(capacity),
            };
            // Full cannot happen (at most `depth` pool buffers exist); closed means the writer is gone.
            let _ = recycle.try_send(buf);
        }
    }
    if shared.abandoned.load(Ordering::Acquire) {
        // The queued requests go first (their barriers answer "gone"), then the file, in this task.
        drop(requests);
        drop(writer);
        tracing::debug!("buffered writer: abandoned; flush task stopped and dropped the file");
        return None;
    }
    tracing::debug!("buffered writer: flush task finished");
    Some(writer)
}

/// Records the end of the write at `offset`: it leaves the in-flight list; on success the flushed end
/// moves past it; the first error is kept. `result` is `None` for a write skipped after a failure.
pub(super) fn finish<A: Alignment, E: std::error::Error>(
    shared: &Shared<A, E>,
    offset: u64,
    len: usize,
    result: Option<Result<(), E>>,
) {
    let mut state = shared.lock();
    let front = state.in_flight.pop_front();
    debug_assert_eq!(
        front.map(|f| f.offset),
        Some(offset),
        "writes finish in order"
    );
    match result {
        Some(Ok(())) => {
            debug_assert_eq!(
                state.flushed_end, offset,
                "no gap before a successful write"
            );
            state.flushed_end = offset + len as u64;
        }
        Some(Err(error)) => {
            tracing::error!(
                offset,
                len,
                flushed_end = state.flushed_end,
                %error,
                "buffered writer: flush failed; no further writes will be made"
            );
            state.failure = Some(Failure {
                offset,
                len,
                error: Arc::new(error),
            });
            shared.failed.store(true, Ordering::Release);
        }
        None => {}
    }
}
