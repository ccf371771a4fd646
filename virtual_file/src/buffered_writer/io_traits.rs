//! The two small interfaces the [`BufferedWriter`](super::BufferedWriter) talks to: the file it writes
//! ([`OwnedAsyncWriter`]) and, for read-while-writing, the file it reads flushed bytes back from
//! ([`OwnedAsyncReader`]).
//!
//! Both pass buffers by value and hand them back with the result, on success and on error, as the engines
//! below them do.

use std::future::Future;

use io_engine::{FullSlice, IoBuf, IoBufMut, Slice};

use crate::memory_budget::MemoryBudget;

/// The destination of a [`BufferedWriter`](super::BufferedWriter): positional writes of owned buffers.
///
/// The writer is moved into the background flush task, which is the only caller of its methods until
/// [`shutdown`](super::BufferedWriter::shutdown) hands it back.
pub trait OwnedAsyncWriter: Send + Sync + 'static {
    /// The error of a failed write or `set_len`.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Writes all of `buf` at `offset` (loops over short writes itself). Returns the buffer on success and
    /// on error. On error, an unknown prefix of `buf` may have reached the file.
    fn write_all_at<B: IoBuf>(
        &self,
        buf: FullSlice<B>,
        offset: u64,
    ) -> impl Future<Output = (FullSlice<B>, Result<(), Self::Error>)> + Send;

    /// Sets the file length (used by [`ShutdownMode::PadThenTruncate`](super::ShutdownMode::PadThenTruncate)).
    fn set_len(&self, len: u64) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The budget the writer's buffers are reserved from before they are allocated (`None`: unbudgeted).
    fn memory_budget(&self) -> Option<MemoryBudget> {
        None
    }

    /// Called by the flush task after `bytes` were written at `offset` successfully (a file may keep
    /// them readable from memory). Must not wait.
    fn written(&self, offset: u64, bytes: &[u8]) {
        let _ = (offset, bytes);
    }
}

/// For read-while-writing: reads bytes already flushed to the file.
pub trait OwnedAsyncReader: Send + Sync {
    /// The error of a failed read.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Fills the whole window of `buf` from the file at `offset` (loops over short reads itself) and marks
    /// it initialized; reaching the end of the file first is an error. Returns the buffer on success and
    /// on error.
    fn read_exact_at<B: IoBufMut>(
        &self,
        buf: Slice<B>,
        offset: u64,
    ) -> impl Future<Output = (Slice<B>, Result<(), Self::Error>)> + Send;

    /// Appends the `len` bytes at `offset` to `out` from memory if the file has all of them there (a
    /// page cache); returns false, with `out` as it was, if not. Must not wait.
    fn read_from_memory(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> bool {
        let _ = (offset, len, out);
        false
    }
}
