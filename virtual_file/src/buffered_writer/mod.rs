//! [`BufferedWriter`]: turns a stream of appends of any size into aligned, fixed-size positional writes,
//! written behind the caller by a background task.
//!
//! # Design
//!
//! The writer holds up to `depth` (default 2) [`IoBufferMut`]s of `capacity` bytes (default 64 KiB). The
//! caller's bytes are copied into the *mutable* buffer; when it is full it is frozen into an
//! [`IoBuffer`] and handed to the *flush task*, a `tokio::spawn`ed task that owns the file (any
//! [`OwnedAsyncWriter`]) and writes the buffers it receives, one after the other, in order. The writer
//! then continues in another buffer. The task hands each written buffer back through a bounded channel,
//! and the writer reuses it.
//!
//! ```text
//!  caller ──write_buffered──▶ [mutable buffer] ──full──▶ request queue ──▶ flush task ──write_all_at──▶ W
//!                                   ▲                                         │
//!                                   └──────────── recycled buffers ◀──────────┘
//! ```
//!
//! An owned buffer ([`BufferedWriter::write_owned`]) that arrives when the mutable buffer is empty and
//! whose memory is aligned skips the copy: its whole `capacity`-sized chunks go to the flush task as
//! slices of the caller's buffer. Only the remainder is copied.
//!
//! # `O_DIRECT` by construction
//!
//! `O_DIRECT` needs the memory address, the file offset and the length of every write to be multiples of
//! the device's block size. Here, with `A::ALIGN` that block size:
//! - `capacity` and `start_offset` are checked to be multiples of `A::ALIGN` at construction.
//! - Before shutdown, the task only ever receives exactly `capacity` bytes that start at
//!   `start_offset + k * capacity` in the logical stream (a full buffer is always submitted as soon as it
//!   is full; a zero-copy chunk is taken only when the stream position is at such a boundary). So every
//!   write's offset and length are multiples of `A::ALIGN`.
//! - Pool buffers are [`IoBufferMut<A>`], aligned by type; zero-copy chunks are taken only when their
//!   address is checked to be aligned (capacity multiples from an aligned start stay aligned).
//! - The one exception is the tail written at [`shutdown`](BufferedWriter::shutdown): it starts at a
//!   buffer boundary and is padded to a multiple of `A::ALIGN` (see [`ShutdownMode`]), so it obeys the
//!   same rules, only with a different length.
//!
//! # Back-pressure
//!
//! A file that names a [`MemoryBudget`](crate::MemoryBudget) (a [`VirtualFile`](crate::VirtualFile)
//! names its context's) has every pool buffer reserved there before it is allocated: the first one waits
//! for the budget; later ones are allocated only if the budget has room at once, else the writer reuses
//! the buffers it has (so it never waits for memory while holding a buffer). The reservations are given
//! back when the writer is dropped or shut down. Zero-copy chunks are the caller's memory, not counted.
//!
//! At most `depth` pool buffers exist. When all of them are queued or being written, the next write that
//! needs a buffer waits for the flush task to give one back; that wait is the only back-pressure, and it
//! bounds the writer's memory to `depth * capacity` bytes (plus zero-copy chunks, at most `depth` queued
//! requests). The request queue never grows beyond `depth` entries.
//!
//! # What reaches the file, and when
//!
//! "Durable" in this module means *acknowledged by the [`OwnedAsyncWriter`]*: `write_all_at` returned
//! `Ok`. No `fsync` is done here; that is the caller's business after shutdown.
//! - [`flush`](BufferedWriter::flush) waits until every *full* buffer written so far is in the file. The
//!   partial tail stays in the mutable buffer: writing it would break the fixed-size rule above, and the
//!   next bytes appended would have to rewrite that block.
//! - [`shutdown`](BufferedWriter::shutdown) writes (or drops) the tail according to its [`ShutdownMode`],
//!   waits for every write, and hands the file back. What each mode leaves on disk:
//!
//! | mode | bytes written after the last full buffer | file length afterwards | returned offset |
//! |---|---|---|---|
//! | `DropTail` | none; the tail is discarded | unchanged by the tail | end of the last full buffer |
//! | `ZeroPadToNextMultiple(n)` | the tail, then zeros up to the next multiple of `n` (absolute offset) | at least the padded end | the padded end |
//! | `PadThenTruncate` | the tail, then zeros up to the next multiple of `A::ALIGN` | exactly the logical end (`set_len`) | the logical end |
//! | `Discard` | none; the tail and (spill mode) the retained buffers are dropped | unchanged | end of the bytes the file acknowledged |
//!
//! # Spill mode
//!
//! With [`BufferedWriterOptions::spill`] a full buffer is not written but *retained* in memory, with its
//! own reservation from the file's memory budget, and stays readable through
//! [`read_plan`](BufferedWriter::read_plan). Retained buffers are written, oldest first, only when memory
//! runs short (this writer needs a buffer the budget cannot give, or any other consumer of the budget
//! waits), at `flush`, and at `shutdown` (except `Discard`, which drops them). Meant for spill files,
//! whose bytes may never need to reach the device. See the `spill` module.
//!
//! # Read while writing
//!
//! [`read_plan`](BufferedWriter::read_plan) takes one snapshot under the mutex shared with the flush task:
//! which prefix of the range is in the file (`flushed_end`), and the rest, copied out of the in-flight
//! buffers and the mutable buffer while the lock is held. [`ReadPlan::execute`] then reads the file part,
//! with no lock held, through any [`OwnedAsyncReader`]. Bytes below `flushed_end` never change again, so a
//! plan stays valid however long it waits.
//!
//! # Errors
//!
//! The flush task never retries. The first failed write is kept; the next `write_*`, `flush` or
//! `shutdown` returns it as [`Error::Flush`] with the number of bytes known to be in the file, and every
//! call after that returns [`Error::Poisoned`] with the same number. After a failure the task writes
//! nothing more, so no byte beyond a hole is ever written; bytes acknowledged before it are untouched.
//! No IO error panics.
//!
//! # Dropping without shutdown
//!
//! Dropping the writer abandons its flush task: the task finishes the write it is in the middle of (if
//! any), makes none of the queued ones, and then drops the file *inside the task*. Whatever dropping the
//! file does (a temp [`VirtualFile`](crate::VirtualFile) removes itself) therefore happens after the last
//! write, and nothing writes to the file after that: a removed temp file is never written again through
//! a reopen of its path. The drop itself does not wait; the task ends on its own soon after.
//!
//! # Weaknesses
//!
//! - The copy path copies every byte once (memcpy speed, about 5 GiB/s per core here). Zero copy needs an
//!   owned, aligned buffer *and* a stream position at a buffer boundary; in a stream of odd-sized records
//!   that boundary is rarely hit.
//! - One flush task, one write at a time: the device sees queue depth 1. `depth` buys buffering ahead of
//!   the device, not parallel IO. Large owned buffers are still written as `capacity`-sized writes.
//! - `flush` leaves the tail in memory; data that must be readable by *another* process needs `shutdown`.
//! - After a flush error the tail and all queued buffers are lost and the file is not handed back; the
//!   caller can only delete or truncate it to `durable_len` through another handle. `shutdown` with a
//!   bad [`ShutdownMode`] also drops the file (check the mode first with [`ShutdownMode::validate`]).
//! - A read plan copies the memory part while holding the mutex, so a large read of unflushed bytes
//!   briefly delays the task's bookkeeping (not its IO). The file part is read into an aligned scratch
//!   buffer and copied once more.
//! - `ZeroPadToNextMultiple(n)` with `n` larger than `capacity` writes a tail longer than a buffer (still
//!   aligned), allocating it for the occasion.
//! - A writer dropped without shutdown loses its tail and its queued buffers, and an error of the write
//!   under way at that moment is only logged.
//! - Spill mode allocates a fresh buffer for every full one it keeps (first-touch page faults), and a
//!   spill writes one buffer at a time, like the normal mode.

mod error;
mod flush;
mod io_traits;
mod options;
mod read_plan;
mod shutdown;
mod spill;

#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;

use io_engine::{Alignment, DefaultAlign, IoBuffer, IoBufferMut};

pub use error::{ConfigError, Error};
pub use io_traits::{OwnedAsyncReader, OwnedAsyncWriter};
pub use options::{BufferedWriterOptions, DEFAULT_CAPACITY, DEFAULT_DEPTH};
pub use read_plan::{ReadError, ReadPlan, ReadPlanError};
pub use shutdown::ShutdownMode;

use flush::{AcquireError, FlushHandle, TaskGone};

/// A double-buffered (by default) writer of a stream of bytes into an [`OwnedAsyncWriter`] at fixed-size,
/// aligned offsets. See the [module docs](self).
pub struct BufferedWriter<W: OwnedAsyncWriter, A: Alignment = DefaultAlign> {
    flush: FlushHandle<W, A>,
    /// The buffer being filled; `None` until a write needs one after a full buffer was submitted.
    mutable: Option<IoBufferMut<A>>,
    capacity: usize,
    start_offset: u64,
    /// Absolute offset of the next byte: `start_offset` + bytes accepted.
    end_offset: u64,
    /// Set once the flush error has been reported: `(durable_len, failed_offset)`.
    poisoned: Option<(u64, u64)>,
    /// The file is disposable (an ephemeral file): dropping the writer with a tail is not worth a warning.
    disposable: bool,
}

impl<W: OwnedAsyncWriter, A: Alignment> BufferedWriter<W, A> {
    /// A writer that writes into `writer` from `options.start_offset` on, and spawns its flush task on the
    /// current tokio runtime. A bad setting or a missing runtime is an [`Error::Config`] (and `writer` is
    /// dropped; [`BufferedWriterOptions::validate`] checks the settings beforehand).
    pub fn new(writer: W, options: BufferedWriterOptions) -> Result<Self, Error<W::Error>> {
        options.validate::<A>()?;
        let flush = FlushHandle::spawn(
            writer,
            options.capacity,
            options.depth,
            options.start_offset,
            options.spill,
        )?;
        Ok(Self {
            flush,
            mutable: None,
            capacity: options.capacity,
            start_offset: options.start_offset,
            end_offset: options.start_offset,
            poisoned: None,
            disposable: false,
        })
    }

    /// Bytes per buffer, and per write before shutdown.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// File offset of the first byte written.
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// File offset at which the next byte written will land (`start_offset` + bytes accepted).
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// Bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.end_offset - self.start_offset
    }

    /// Marks the file as disposable (for example an ephemeral file that is deleted with its owner):
    /// dropping the writer without [`shutdown`](Self::shutdown) then loses the tail silently instead of
    /// logging a warning.
    pub fn set_disposable(&mut self, disposable: bool) {
        self.disposable = disposable;
    }

    /// Bytes in the mutable buffer, not yet handed to the flush task.
    pub fn buffered_len(&self) -> usize {
        self.mutable.as_ref().map_or(0, |buf| buf.len())
    }

    /// Spill mode: bytes of full buffers kept in memory, not written to the file yet (0 otherwise).
    pub fn retained_len(&self) -> u64 {
        let state = self.flush.shared().lock();
        state.retained.iter().map(|r| r.buf.len() as u64).sum()
    }

    /// End of the bytes acknowledged by the file so far (absolute offset).
    pub fn durable_end(&self) -> u64 {
        self.flush.shared().lock().flushed_end
    }

    /// Appends a copy of `data`. Returns the file offset where `data` starts. Waits only when a buffer
    /// fills up and every other buffer is still being written.
    ///
    /// If the future is dropped before it completes, a prefix of `data` may have been accepted
    /// ([`end_offset`](Self::end_offset) says how much); the writer stays usable.
    pub async fn write_buffered(&mut self, data: &[u8]) -> Result<u64, Error<W::Error>> {
        self.check_failure()?;
        let at = self.end_offset;
        self.copy_in(data).await?;
        Ok(at)
    }

    /// Appends the bytes of `buf`. Returns the file offset where they start.
    ///
    /// When the mutable buffer is empty (the stream is at a buffer boundary) and `buf`'s memory is aligned
    /// to `A::ALIGN`, every whole `capacity`-sized chunk of `buf` goes to the flush task as a slice of
    /// `buf`, without a copy. Otherwise, and for the remainder, the bytes are copied as by
    /// [`write_buffered`](Self::write_buffered). If the mutable buffer holds a partial block, it is topped
    /// up from `buf` first (a copy), after which the rest of `buf` is rarely aligned any more.
    pub async fn write_owned(&mut self, buf: IoBuffer<A>) -> Result<u64, Error<W::Error>> {
        self.check_failure()?;
        let at = self.end_offset;
        let mut rest = buf;
        let pending = self.buffered_len();
        if pending > 0 {
            let n = (self.capacity - pending).min(rest.len());
            self.copy_in(&rest[..n]).await?;
            rest = rest.slice(n..);
        }
        // Not in spill mode: a retained chunk would hold the caller's memory outside the budget.
        if self.buffered_len() == 0
            && self.flush.spill.is_none()
            && (rest.as_ptr() as usize) % A::ALIGN == 0
        {
            while rest.len() >= self.capacity {
                let chunk = rest.slice(..self.capacity);
                let permit = self.flush.reserve().await.map_err(|g| self.gone(g))?;
                self.flush.submit(permit, self.end_offset, chunk, false);
                self.end_offset += self.capacity as u64;
                rest = rest.slice(self.capacity..);
            }
        }
        self.copy_in(&rest).await?;
        Ok(at)
    }

    /// Waits until every full buffer written so far has reached the file, and reports a flush error if
    /// one happened. The partial tail stays buffered (see the [module docs](self)).
    pub async fn flush(&mut self) -> Result<(), Error<W::Error>> {
        self.check_failure()?;
        if self.buffered_len() == self.capacity {
            self.submit_mutable().await?;
        }
        self.flush.spill_all().await.map_err(|g| self.gone(g))?;
        self.flush.barrier().await.map_err(|g| self.gone(g))?;
        self.check_failure()
    }

    /// Copies `data` into buffers, submitting each one that fills up.
    async fn copy_in(&mut self, mut data: &[u8]) -> Result<(), Error<W::Error>> {
        loop {
            // Also catches a full buffer left behind by a write whose future was dropped.
            if self.buffered_len() == self.capacity {
                self.submit_mutable().await?;
            }
            if data.is_empty() {
                return Ok(());
            }
            let mut buf = match self.mutable.take() {
                Some(buf) => buf,
                None => match self.flush.acquire().await {
                    Ok(buf) => buf,
                    Err(AcquireError::Gone) => return Err(self.gone(TaskGone)),
                    Err(AcquireError::Memory(e)) => return Err(Error::Memory(e)),
                },
            };
            let n = (self.capacity - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..n]);
            self.mutable = Some(buf);
            self.end_offset += n as u64;
            data = &data[n..];
        }
    }

    /// Hands the (full) mutable buffer to the flush task. Waits for room in the request queue first, so a
    /// dropped future leaves the buffer where it was.
    async fn submit_mutable(&mut self) -> Result<(), Error<W::Error>> {
        if self.flush.spill.is_some() {
            if let Some(buf) = self.mutable.take() {
                let offset = self.end_offset - buf.len() as u64;
                self.flush.retain(offset, buf.freeze());
            }
            return self.check_failure();
        }
        {
            let permit = match self.flush.reserve().await {
                Ok(permit) => permit,
                Err(gone) => return Err(self.gone(gone)),
            };
            if let Some(buf) = self.mutable.take() {
                let offset = self.end_offset - buf.len() as u64;
                self.flush.submit(permit, offset, buf.freeze(), true);
            }
        }
        // A flush error seen here is reported by this call rather than the next.
        self.check_failure()
    }

    /// Returns the first flush error once, then [`Error::Poisoned`] forever.
    fn check_failure(&mut self) -> Result<(), Error<W::Error>> {
        if let Some((durable_len, failed_offset)) = self.poisoned {
            return Err(Error::Poisoned {
                durable_len,
                failed_offset,
            });
        }
        if !self.flush.shared().failed() {
            return Ok(());
        }
        let state = self.flush.shared().lock();
        let Some(failure) = &state.failure else {
            return Ok(());
        };
        let durable_len = state.flushed_end - self.start_offset;
        let err = Error::Flush {
            offset: failure.offset,
            len: failure.len,
            durable_len,
            source: failure.error.clone(),
        };
        self.poisoned = Some((durable_len, failure.offset));
        Err(err)
    }

    fn gone(&self, _: TaskGone) -> Error<W::Error> {
        Error::FlushTaskGone {
            durable_len: self.durable_end() - self.start_offset,
        }
    }
}

impl<W: OwnedAsyncWriter, A: Alignment> Drop for BufferedWriter<W, A> {
    fn drop(&mut self) {
        // Dropping `self.flush` abandons the flush task (see the module docs).
        let tail = self.buffered_len();
        if tail > 0 && !self.disposable {
            tracing::warn!(
                tail,
                tail_offset = self.end_offset - tail as u64,
                "buffered writer dropped without shutdown: its unwritten tail is lost"
            );
        }
    }
}

impl<W: OwnedAsyncWriter, A: Alignment> std::fmt::Debug for BufferedWriter<W, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedWriter")
            .field("capacity", &self.capacity)
            .field("start_offset", &self.start_offset)
            .field("end_offset", &self.end_offset)
            .field("buffered_len", &self.buffered_len())
            .field("poisoned", &self.poisoned.is_some())
            .finish()
    }
}
