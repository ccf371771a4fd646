//! [`ShutdownMode`] and [`BufferedWriter::shutdown`]: what happens to the unfinished tail, and handing the
//! file back.

use io_engine::{Alignment, IoBufferMut};

use super::error::{ConfigError, Error};
use super::io_traits::OwnedAsyncWriter;
use super::BufferedWriter;

/// What [`BufferedWriter::shutdown`] does with the tail: the bytes after the last full buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Discard the tail. The file holds the full buffers only; `shutdown` returns the end of the last one.
    DropTail,
    /// Write the tail followed by zeros up to the next multiple of `n` (an absolute file offset; nothing is
    /// added if the end already is one). `n` must be a non-zero multiple of the buffer alignment.
    /// `shutdown` returns the padded end.
    ZeroPadToNextMultiple(u64),
    /// Write the tail followed by zeros up to the next multiple of the buffer alignment (not of the
    /// capacity), then `set_len` the file to the logical end, so the file ends exactly after the last byte
    /// written. `shutdown` returns the logical end.
    PadThenTruncate,
    /// Write nothing more: the tail and, in spill mode, the full buffers kept in memory are dropped
    /// (their memory given back at once); writes already under way finish. For a file that is deleted
    /// next (a spill file). `shutdown` returns the end of the bytes the file acknowledged.
    Discard,
}

impl ShutdownMode {
    /// Checks the mode against alignment `A`; [`BufferedWriter::shutdown`] does this first.
    pub fn validate<A: Alignment>(&self) -> Result<(), ConfigError> {
        match *self {
            ShutdownMode::ZeroPadToNextMultiple(n) if n == 0 || n % A::ALIGN as u64 != 0 => {
                Err(ConfigError::PadMultiple {
                    multiple: n,
                    align: A::ALIGN,
                })
            }
            _ => Ok(()),
        }
    }
}

impl<W: OwnedAsyncWriter, A: Alignment> BufferedWriter<W, A> {
    /// Finishes the stream as `mode` says, waits for every write, and hands the file back with the end
    /// offset `mode` defines (see [`ShutdownMode`]).
    ///
    /// A flush error not yet reported is returned here; so is one of a write still in flight or of the
    /// tail. On any error the flush task is ended and the file dropped before this returns, so no
    /// descriptor outlives the call.
    pub async fn shutdown(mut self, mode: ShutdownMode) -> Result<(u64, W), Error<W::Error>> {
        let result = self.shutdown_inner(mode).await;
        if result.is_err() {
            // End the task (it writes nothing more after a failure) so the file is dropped now; it may
            // already be gone, which is what we want.
            let _ = self.flush.close().await;
        }
        result
    }

    async fn shutdown_inner(&mut self, mode: ShutdownMode) -> Result<(u64, W), Error<W::Error>> {
        self.check_failure()?;
        mode.validate::<A>()?;
        if mode == ShutdownMode::Discard {
            self.mutable = None;
            self.flush.discard_retained();
            let writer = self.flush.close().await.map_err(|g| self.gone(g))?;
            self.check_failure()?;
            let end = self.durable_end();
            tracing::debug!(?mode, end, "buffered writer: shut down");
            return Ok((end, writer));
        }
        if self.buffered_len() == self.capacity {
            self.submit_mutable().await?;
        }
        // Spill mode: every retained buffer is written before the tail.
        self.flush.spill_all().await.map_err(|g| self.gone(g))?;
        let logical_end = self.end_offset;
        let tail = self.mutable.take().filter(|buf| !buf.is_empty());
        let tail_start = logical_end - tail.as_ref().map_or(0, |buf| buf.len() as u64);
        let (final_write, end) = match mode {
            // (`Discard` returned above; it drops the tail too)
            ShutdownMode::DropTail | ShutdownMode::Discard => {
                if tail.is_some() {
                    tracing::debug!(
                        tail_start,
                        tail_len = logical_end - tail_start,
                        "buffered writer: dropping the tail"
                    );
                }
                (None, tail_start)
            }
            ShutdownMode::ZeroPadToNextMultiple(n) => {
                let padded = logical_end.next_multiple_of(n);
                let write = (padded > tail_start).then(|| {
                    let mut buf = tail.unwrap_or_else(|| {
                        IoBufferMut::with_capacity((padded - tail_start) as usize)
                    });
                    buf.put_zeros((padded - logical_end) as usize);
                    buf
                });
                (write, padded)
            }
            ShutdownMode::PadThenTruncate => {
                let write = tail.map(|mut buf| {
                    let padded = logical_end.next_multiple_of(A::ALIGN as u64);
                    buf.put_zeros((padded - logical_end) as usize);
                    buf
                });
                (write, logical_end)
            }
        };
        if let Some(buf) = final_write {
            let permit = self.flush.reserve().await.map_err(|g| self.gone(g))?;
            self.flush.submit(permit, tail_start, buf.freeze(), false);
        }
        let writer = match self.flush.close().await {
            Ok(writer) => writer,
            Err(gone) => return Err(self.gone(gone)),
        };
        // Every write is done: report a failure among the last ones.
        self.check_failure()?;
        if mode == ShutdownMode::PadThenTruncate {
            writer
                .set_len(logical_end)
                .await
                .map_err(|source| Error::SetLen {
                    len: logical_end,
                    source,
                })?;
        }
        tracing::debug!(?mode, end, logical_end, "buffered writer: shut down");
        Ok((end, writer))
    }
}
