//! The mutations of a [`VirtualFile`]: `write_all_at`, `set_len` and `fallocate`, each with the
//! invalidation of the cached pages it can change in every page cache, for every handle of the file
//! (`coherence.rs`): before its IO is submitted and again after the IO completed, also when its future
//! is dropped while the engine still has the op.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use io_engine::{FullSlice, IoBuf, IoFd};

use super::coherence::GuardedBuf;
use super::short_io::{retry_interrupted, transfer_all, Short};
use super::VirtualFile;
use crate::error::Error;
use crate::metrics::OpKind;
use crate::page_cache::CACHE_PAGE_SIZE;

impl VirtualFile {
    /// Writes all of `buf` at `offset`, looping over short writes and retrying `EINTR`. A write that makes
    /// no progress is an error of kind `WriteZero`.
    pub async fn write_all_at<B: IoBuf>(
        &self,
        buf: FullSlice<B>,
        offset: u64,
    ) -> (FullSlice<B>, Result<(), Error>) {
        let (begin, end) = (buf.begin(), buf.end());
        let len = end - begin;
        let addr = buf.stable_ptr() as usize;
        let pinned = match self.begin_transfer(OpKind::Write, offset, len, addr).await {
            Ok(Some(p)) => p,
            Ok(None) => return (buf, Ok(())),
            Err(e) => return (buf, Err(e)),
        };
        let start = Instant::now();
        // The guard rides with the buffer: it is dropped (and the written pages invalidated a second
        // time) when the engine gives the buffer back, which for a write whose future was dropped is
        // when the kernel completed it.
        let page = CACHE_PAGE_SIZE as u64;
        let pages = offset / page..(offset + len as u64).div_ceil(page);
        let inner = GuardedBuf {
            buf: buf.into_inner(),
            guard: self.begin_mutation(pages),
        };
        let engine = &self.ctx.inner.engine;
        let fd = pinned.fd();
        let align = self.direct.then(|| self.ctx.alignment());
        let (inner, done, res) = transfer_all(inner, len, align, |inner, done| {
            let part = FullSlice::with_range(inner, begin + done..end);
            async move {
                let pos = offset + done as u64;
                let (p, res) = self
                    .retry_io(fd, part, |p| engine.write_at(fd, pos, p))
                    .await;
                if let Ok(n) = res {
                    self.note_written(fd, pos, n);
                }
                (p.into_inner(), res)
            }
        })
        .await;
        let write_zero = |msg: String| {
            let source = io::Error::new(io::ErrorKind::WriteZero, msg);
            self.io_error(OpKind::Write, Some(offset), Some(len), source)
        };
        let result = res.map_err(|short| match short {
            Short::Failed(e) => self.io_error(OpKind::Write, Some(offset), Some(len), e),
            Short::Zero => write_zero(format!(
                "write made no progress after {done} of {len} bytes"
            )),
            Short::Unaligned => write_zero(format!(
                "short O_DIRECT write of {done} of {len} bytes ended at an unaligned position"
            )),
        });
        self.record(OpKind::Write, start, done, result.is_ok());
        drop(pinned);
        let GuardedBuf { buf, guard } = inner;
        let seq = guard.finish();
        *self.last_write.lock().unwrap_or_else(|p| p.into_inner()) =
            result.is_ok().then_some((offset, len, seq));
        (FullSlice::with_range(buf, begin..end), result)
    }

    /// Sets the file's length (any length, also for `O_DIRECT` files). Cached pages from the new length
    /// on are dropped for every handle of the file (only whole pages are cached, so growing changes
    /// none of them).
    pub async fn set_len(&self, len: u64) -> Result<(), Error> {
        let pages = len / CACHE_PAGE_SIZE as u64..u64::MAX;
        self.mutating_op(
            OpKind::SetLen,
            Some(len),
            None,
            pages,
            move |engine, fd| async move { engine.ftruncate(&fd, len).await },
        )
        .await
    }

    /// Runs the mutation `f` (retrying `EINTR`) with its page invalidation: the pages `pages` are
    /// dropped before and after the op. The op runs on a spawned task that owns the guard, so if this
    /// future is dropped while the engine still has the op, the second drop of the pages happens when
    /// the op completed, not before. With the `std-fs` engine (nothing stays in flight) and outside a
    /// tokio runtime it runs inline.
    async fn mutating_op<F, Fut>(
        &self,
        op: OpKind,
        offset: Option<u64>,
        len: Option<usize>,
        pages: std::ops::Range<u64>,
        f: F,
    ) -> Result<(), Error>
    where
        F: Fn(io_engine::IoEngine, Arc<IoFd>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = io::Result<()>> + Send + 'static,
    {
        let pinned = self.pin().await?;
        let fd = Arc::clone(pinned.fd());
        let ctx = self.ctx.clone();
        let guard = self.begin_mutation(pages);
        let task = async move {
            let start = Instant::now();
            let engine = ctx.inner.engine.clone();
            let ((), res) = retry_interrupted((), move |()| {
                let op = f(engine.clone(), Arc::clone(&fd));
                async move { ((), op.await) }
            })
            .await;
            ctx.inner.metrics.ops[op].record(start.elapsed(), 0, res.is_ok());
            guard.finish();
            res
        };
        // `std-fs` ops complete within the call: a future dropped at this await has nothing in flight.
        let inline = matches!(self.ctx.inner.engine, io_engine::IoEngine::StdFs(_));
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|_| !inline);
        let res = match runtime {
            Some(runtime) => match runtime.spawn(task).await {
                Ok(res) => res,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(io::Error::other(
                    "the runtime shut down before the op ran (its pages were dropped)",
                )),
            },
            None => task.await,
        };
        drop(pinned);
        res.map_err(|e| self.io_error(op, offset, len, e))
    }

    /// `fallocate(mode, offset, len)`: reserves space, or with `FALLOC_FL_*` flags punches holes, zeroes,
    /// collapses or inserts ranges. Cached pages the op can change are dropped for every handle of the
    /// file: the range's pages, or every page from `offset` on for `COLLAPSE_RANGE` / `INSERT_RANGE`
    /// (which shift the rest of the file) and for flags this code does not know.
    pub async fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> Result<(), Error> {
        let page = CACHE_PAGE_SIZE as u64;
        const IN_PLACE: libc::c_int = libc::FALLOC_FL_KEEP_SIZE
            | libc::FALLOC_FL_PUNCH_HOLE
            | libc::FALLOC_FL_ZERO_RANGE
            | libc::FALLOC_FL_UNSHARE_RANGE;
        let pages = if mode & !IN_PLACE == 0 {
            offset / page..offset.saturating_add(len).div_ceil(page)
        } else {
            offset / page..u64::MAX
        };
        self.mutating_op(
            OpKind::Fallocate,
            Some(offset),
            Some(len as usize),
            pages,
            move |engine, fd| async move { engine.fallocate(&fd, mode, offset, len).await },
        )
        .await
    }
}
