//! Errors of the [`BufferedWriter`](super::BufferedWriter). Errors of read-while-writing live in
//! [`read_plan`](super::read_plan).

use std::sync::Arc;

/// A setting the writer cannot work with, found at construction or at shutdown before anything is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The buffer capacity must be a non-zero multiple of the buffer alignment, so that every full buffer
    /// is a valid `O_DIRECT` write.
    #[error("buffer capacity {capacity} is not a non-zero multiple of the alignment {align}")]
    Capacity {
        /// The capacity asked for.
        capacity: usize,
        /// The buffer type's alignment.
        align: usize,
    },
    /// The start offset must be a multiple of the buffer alignment.
    #[error("start offset {start_offset} is not a multiple of the alignment {align}")]
    StartOffset {
        /// The start offset asked for.
        start_offset: u64,
        /// The buffer type's alignment.
        align: usize,
    },
    /// At least two buffers: one fills while the other is written.
    #[error("write-behind depth {depth} is below the minimum of 2 buffers")]
    Depth {
        /// The depth asked for.
        depth: usize,
    },
    /// `ZeroPadToNextMultiple(n)` needs `n` to be a non-zero multiple of the alignment, or the padded tail
    /// would not be a valid `O_DIRECT` write.
    #[error(
        "ZeroPadToNextMultiple({multiple}): must be a non-zero multiple of the alignment {align}"
    )]
    PadMultiple {
        /// The `n` asked for.
        multiple: u64,
        /// The buffer type's alignment.
        align: usize,
    },
    /// Spill mode keeps buffers in memory as long as a memory budget allows; without a budget nothing
    /// would bound them.
    #[error("spill mode needs a file that names a memory budget")]
    SpillWithoutBudget,
    /// The writer spawns its flush task with `tokio::spawn`, which needs a runtime.
    #[error("BufferedWriter must be created inside a tokio runtime")]
    NoRuntime,
}

/// An error of a [`BufferedWriter`](super::BufferedWriter) whose file reports errors of type `E`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E: std::error::Error + 'static> {
    /// A bad setting; nothing was written because of it.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The first flush that failed, reported once by the first call after it happened. Nothing at or after
    /// `offset` was written by the flush task after this error; `durable_len` bytes from the start offset
    /// were acknowledged by the file before it.
    #[error(
        "flush of {len} bytes at offset {offset} failed; {durable_len} bytes from the start offset \
         reached the file"
    )]
    Flush {
        /// File offset of the failed write.
        offset: u64,
        /// Length of the failed write.
        len: usize,
        /// Bytes from the start offset known to have reached the file.
        durable_len: u64,
        /// The file's error (shared: the flush task keeps it too).
        #[source]
        source: Arc<E>,
    },

    /// A flush failed earlier and was already reported; the writer refuses new work.
    #[error(
        "writer is poisoned by an earlier flush error at offset {failed_offset}; {durable_len} bytes \
         from the start offset reached the file"
    )]
    Poisoned {
        /// Bytes from the start offset known to have reached the file.
        durable_len: u64,
        /// File offset of the write that failed.
        failed_offset: u64,
    },

    /// One buffer is larger than the whole memory budget of the file's context; nothing was written.
    #[error(transparent)]
    Memory(#[from] crate::memory_budget::MemoryBudgetError),

    /// `set_len` at the end of [`ShutdownMode::PadThenTruncate`](super::ShutdownMode::PadThenTruncate)
    /// failed; all data including the padding had been written.
    #[error("set_len({len}) after the final flush failed")]
    SetLen {
        /// The length that was to be set.
        len: u64,
        /// The file's error.
        #[source]
        source: E,
    },

    /// The flush task is gone (it panicked, or the runtime is shutting down); what it had acknowledged is
    /// `durable_len` bytes from the start offset.
    #[error("the flush task ended unexpectedly; {durable_len} bytes from the start offset reached the file")]
    FlushTaskGone {
        /// Bytes from the start offset known to have reached the file.
        durable_len: u64,
    },
}

impl<E: std::error::Error + 'static> Error<E> {
    /// Bytes from the start offset known to have reached the file, for the errors that know it.
    pub fn durable_len(&self) -> Option<u64> {
        match self {
            Error::Flush { durable_len, .. }
            | Error::Poisoned { durable_len, .. }
            | Error::FlushTaskGone { durable_len } => Some(*durable_len),
            Error::Config(_) | Error::SetLen { .. } | Error::Memory(_) => None,
        }
    }
}
