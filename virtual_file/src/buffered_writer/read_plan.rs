//! Read while writing, in two phases so that no lock is held over disk IO:
//! [`BufferedWriter::read_plan`] takes one snapshot under the shared mutex and copies the in-memory part;
//! [`ReadPlan::execute`] reads the file part afterwards.
//!
//! The logical stream is laid out as three consecutive regions, and the snapshot names their borders:
//!
//! ```text
//!  start_offset        flushed_end                        mutable start       end_offset
//!  |  in the file (W)  |  in flight: frozen buffers, in order  |  mutable buffer  |
//! ```
//!
//! In spill mode the buffers kept in memory (retained) lie between the in-flight ones and the mutable
//! buffer, and count as in flight in the plan.
//!
//! A requested range is therefore a prefix from the file and a suffix from memory. The file prefix stays
//! valid after the lock is released because bytes below `flushed_end` are never written again.

use std::marker::PhantomData;
use std::ops::Range;

use io_engine::{Alignment, DefaultAlign, IoBufferMut, Slice};

use super::io_traits::{OwnedAsyncReader, OwnedAsyncWriter};
use super::BufferedWriter;

/// Why a range cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadPlanError {
    /// The range starts before the writer's start offset.
    #[error(
        "read of {len} bytes at offset {offset} starts before the start offset {start_offset}"
    )]
    BeforeStart {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: usize,
        /// The writer's start offset.
        start_offset: u64,
    },
    /// The range reaches beyond what was written.
    #[error("read of {len} bytes at offset {offset} reaches beyond the end of the written bytes {end_offset}")]
    BeyondEnd {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: usize,
        /// End of the bytes written so far.
        end_offset: u64,
    },
    /// A flush failed: only bytes that reached the file before it can be read.
    #[error(
        "read of {len} bytes at offset {offset} reaches beyond the {durable_len} bytes that reached the \
         file before a flush failed"
    )]
    Poisoned {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: usize,
        /// Bytes from the start offset in the file.
        durable_len: u64,
    },
    /// The snapshot did not cover the range: a bug in the writer, reported instead of wrong bytes.
    #[error(
        "read of {len} bytes at offset {offset}: the writer's snapshot does not cover it (a bug)"
    )]
    Inconsistent {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: usize,
    },
}

/// Why [`ReadPlan::execute`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError<E: std::error::Error + 'static> {
    /// Reading the file part failed.
    #[error("reading {len} bytes at offset {offset} from the file failed")]
    Read {
        /// File offset of the (aligned) read.
        offset: u64,
        /// Length of the (aligned) read.
        len: usize,
        /// The reader's error.
        #[source]
        source: E,
    },
    /// The reader reported success but did not fill the window.
    #[error("reading {len} bytes at offset {offset} from the file returned only {filled} bytes")]
    ShortRead {
        /// File offset of the (aligned) read.
        offset: u64,
        /// Length of the (aligned) read.
        len: usize,
        /// Bytes the reader marked as filled.
        filled: usize,
    },
}

/// A read of `[offset, offset + len)` planned by [`BufferedWriter::read_plan`]: a prefix to read from the
/// file, and the rest already copied from memory. Holds no lock and no reference to the writer.
#[derive(Debug, Clone)]
pub struct ReadPlan<A: Alignment = DefaultAlign> {
    offset: u64,
    len: usize,
    /// The first `disk_len` bytes of the range come from the file.
    disk_len: usize,
    /// The other `len - disk_len` bytes.
    memory: Vec<u8>,
    /// How many of `memory` came from in-flight (and, in spill mode, retained) buffers; the rest from the
    /// mutable buffer.
    in_flight_len: usize,
    _align: PhantomData<A>,
}

impl<W: OwnedAsyncWriter, A: Alignment> BufferedWriter<W, A> {
    /// Plans a read of `len` bytes at file offset `offset`: one snapshot of what is in the file, in flight
    /// and buffered, taken under the mutex shared with the flush task; the in-memory bytes are copied
    /// under it. Run the plan with [`ReadPlan::execute`] (no lock needed).
    pub fn read_plan(&self, offset: u64, len: usize) -> Result<ReadPlan<A>, ReadPlanError> {
        if offset < self.start_offset {
            return Err(ReadPlanError::BeforeStart {
                offset,
                len,
                start_offset: self.start_offset,
            });
        }
        let end = match offset.checked_add(len as u64) {
            Some(end) if end <= self.end_offset => end,
            _ => {
                return Err(ReadPlanError::BeyondEnd {
                    offset,
                    len,
                    end_offset: self.end_offset,
                })
            }
        };

        let state = self.flush.shared().lock();
        let flushed_end = state.flushed_end;
        if state.failure.is_some() && end > flushed_end {
            return Err(ReadPlanError::Poisoned {
                offset,
                len,
                durable_len: flushed_end - self.start_offset,
            });
        }
        let disk_len = end.min(flushed_end).saturating_sub(offset) as usize;
        let mut memory = Vec::with_capacity(len - disk_len);
        let mut cursor = offset + disk_len as u64;
        for part in &state.in_flight {
            copy_overlap(&mut memory, &mut cursor, end, part.offset, &part.buf);
        }
        for part in &state.retained {
            copy_overlap(&mut memory, &mut cursor, end, part.offset, &part.buf);
        }
        let in_flight_len = memory.len();
        if let Some(buf) = &self.mutable {
            copy_overlap(
                &mut memory,
                &mut cursor,
                end,
                self.end_offset - buf.len() as u64,
                buf,
            );
        }
        drop(state);
        if cursor != end {
            // The regions did not follow each other: a bug in the writer's bookkeeping. Refuse rather than
            // return wrong bytes.
            debug_assert_eq!(
                cursor, end,
                "in-flight and buffered regions follow each other"
            );
            tracing::error!(
                offset,
                len,
                cursor,
                flushed_end,
                "buffered writer: inconsistent read snapshot"
            );
            return Err(ReadPlanError::Inconsistent { offset, len });
        }
        Ok(ReadPlan {
            offset,
            len,
            disk_len,
            memory,
            in_flight_len,
            _align: PhantomData,
        })
    }
}

/// Appends the part of `[*cursor, end)` that `bytes` (placed at `at`) holds to `out`, if it starts at the
/// cursor, and advances the cursor.
fn copy_overlap(out: &mut Vec<u8>, cursor: &mut u64, end: u64, at: u64, bytes: &[u8]) {
    let part_end = at + bytes.len() as u64;
    if *cursor >= end || *cursor < at || *cursor >= part_end {
        return;
    }
    let upto = end.min(part_end);
    out.extend_from_slice(&bytes[(*cursor - at) as usize..(upto - at) as usize]);
    *cursor = upto;
}

impl<A: Alignment> ReadPlan<A> {
    /// The planned range's offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The planned range's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The part to read from the file, if any (always a prefix of the range).
    pub fn disk_range(&self) -> Option<Range<u64>> {
        (self.disk_len > 0).then(|| self.offset..self.offset + self.disk_len as u64)
    }

    /// Bytes copied from buffers that were in flight when the plan was made.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight_len
    }

    /// Bytes copied from the mutable buffer when the plan was made.
    pub fn buffered_len(&self) -> usize {
        self.memory.len() - self.in_flight_len
    }

    /// Reads the file part through `reader` and returns the range's bytes.
    ///
    /// The file is read in one read widened to `A::ALIGN` boundaries (so it is a valid `O_DIRECT` read;
    /// the widened range is still below the flushed end, which is aligned) into an aligned scratch buffer.
    pub async fn execute<R: OwnedAsyncReader>(
        self,
        reader: &R,
    ) -> Result<Vec<u8>, ReadError<R::Error>> {
        if self.disk_len == 0 {
            // all of it was copied from memory already
            return Ok(self.memory);
        }
        let mut out = Vec::with_capacity(self.len);
        if self.disk_len > 0 && reader.read_from_memory(self.offset, self.disk_len, &mut out) {
            out.extend_from_slice(&self.memory);
            return Ok(out);
        }
        if self.disk_len > 0 {
            let align = A::ALIGN as u64;
            let read_start = self.offset - self.offset % align;
            let read_end = (self.offset + self.disk_len as u64).next_multiple_of(align);
            let read_len = (read_end - read_start) as usize;
            let scratch = IoBufferMut::<A>::with_capacity(read_len);
            let (slice, result) = reader
                .read_exact_at(Slice::new(scratch, ..), read_start)
                .await;
            if let Err(source) = result {
                return Err(ReadError::Read {
                    offset: read_start,
                    len: read_len,
                    source,
                });
            }
            let scratch = slice.into_inner();
            if scratch.len() < read_len {
                return Err(ReadError::ShortRead {
                    offset: read_start,
                    len: read_len,
                    filled: scratch.len(),
                });
            }
            let skip = (self.offset - read_start) as usize;
            out.extend_from_slice(&scratch[skip..skip + self.disk_len]);
        }
        out.extend_from_slice(&self.memory);
        Ok(out)
    }
}
