//! `buffered-dontcache`: the fallback of a [`VirtualFile`] whose kernel or file system refuses
//! `RWF_DONTCACHE`.
//!
//! A file opened in [`IoMode::BufferedDontcache`](crate::IoMode::BufferedDontcache) marks its descriptor
//! dontcache ([`IoFd::set_dontcache`]): the engines pass the flag on every read and write. A kernel
//! before 6.14, or a file system without uncached buffered IO (tmpfs, for one), fails such an IO with
//! `EOPNOTSUPP` (a kernel may also say `EINVAL`). Then, in [`VirtualFile::retry_io`]:
//! - the descriptor, and every later reopen of this file, does plain buffered IO from now on, and the
//!   IO is retried that way; the caller never sees the refusal;
//! - the context counts the file in [`MetricsSnapshot::dontcache_fallbacks`] and warns once (naming the
//!   path and the errno);
//! - what the file writes from then on goes through the page cache and stays there, so after each
//!   `sync_all` / `sync_data` (when those pages are clean) the written range gets
//!   `posix_fadvise(POSIX_FADV_DONTNEED)`, and what it reads gets the same right after the read (its
//!   pages are clean), so the page cache does not grow with the file.
//!
//! An `EINVAL` is ambiguous (it is also the answer to a bad argument): it counts as a refusal only if
//! the retry without the flag succeeds; otherwise the flag is restored and the retry's error returned.
//!
//! [`MetricsSnapshot::dontcache_fallbacks`]: crate::MetricsSnapshot::dontcache_fallbacks

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use io_engine::IoFd;

use super::short_io::retry_interrupted;
use super::VirtualFile;

/// Whether `err` may be the kernel refusing `RWF_DONTCACHE`: `Some(true)` for certain (`EOPNOTSUPP`),
/// `Some(false)` if only a retry without the flag can tell (`EINVAL`), `None` if not.
fn refusal(err: &io::Error) -> Option<bool> {
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Some(true),
        Some(libc::EINVAL) => Some(false),
        _ => None,
    }
}

impl VirtualFile {
    /// Runs the read or write `op` on `buf` with [`retry_interrupted`]; if `fd` is dontcache and the
    /// kernel refuses the flag, falls back to plain buffered IO (see the module docs) and runs `op`
    /// again.
    pub(super) async fn retry_io<B, T, F, Fut>(
        &self,
        fd: &Arc<IoFd>,
        buf: B,
        mut op: F,
    ) -> (B, io::Result<T>)
    where
        F: FnMut(B) -> Fut,
        Fut: Future<Output = (B, io::Result<T>)>,
    {
        let was_dontcache = fd.is_dontcache();
        let (buf, res) = retry_interrupted(buf, &mut op).await;
        let err = match res {
            Err(e) if was_dontcache => e,
            res => return (buf, res),
        };
        let Some(certain) = refusal(&err) else {
            return (buf, Err(err));
        };
        fd.set_dontcache(false);
        let (buf, retry) = retry_interrupted(buf, op).await;
        if certain || retry.is_ok() {
            self.fall_back_from_dontcache(&err);
        } else {
            // an EINVAL that was not about the flag: keep the flag for the IO to come
            fd.set_dontcache(self.dontcache_now());
        }
        (buf, retry)
    }

    /// Records that this file's IO is plain buffered from now on (also after a reopen); counts it and
    /// warns once per context.
    fn fall_back_from_dontcache(&self, err: &io::Error) {
        if self.dontcache.swap(false, Ordering::Relaxed) {
            self.ctx.dontcache_refused(&self.path, err);
        }
    }

    /// True if the file was opened in `buffered-dontcache` mode and fell back to plain buffered IO.
    pub fn dontcache_fell_back(&self) -> bool {
        self.opened_dontcache && !self.dontcache.load(Ordering::Relaxed)
    }

    /// Whether a descriptor of this file passes `RWF_DONTCACHE` now (for a new open or a reopen).
    pub(super) fn dontcache_now(&self) -> bool {
        self.dontcache.load(Ordering::Relaxed)
    }

    /// Notes `len` bytes written at `offset` through `fd`: if they went through the page cache without
    /// `RWF_DONTCACHE` in a dontcache file, their pages are dropped after the next sync.
    pub(super) fn note_written(&self, fd: &IoFd, offset: u64, len: usize) {
        if len > 0 && !fd.is_dontcache() && self.dontcache_fell_back() {
            self.note_fallback_written(offset, offset + len as u64);
        }
    }

    /// Notes `len` bytes read at `offset` through `fd`: if they came through the page cache without
    /// `RWF_DONTCACHE` in a dontcache file, their (clean) pages are dropped right away.
    pub(super) fn note_read(&self, fd: &Arc<IoFd>, offset: u64, len: usize) {
        if len > 0 && !fd.is_dontcache() && self.dontcache_fell_back() {
            let res =
                (self.ctx.inner.engine).fadvise(fd, offset, len as u64, libc::POSIX_FADV_DONTNEED);
            if let Err(e) = res {
                self.fadvise_failed(&e);
            }
        }
    }

    fn fadvise_failed(&self, err: &io::Error) {
        tracing::debug!(
            path = %self.path.display(),
            error = %err,
            "posix_fadvise(POSIX_FADV_DONTNEED) failed"
        );
    }

    /// Adds `start..end` to the range whose pages the next sync drops.
    pub(super) fn note_fallback_written(&self, start: u64, end: u64) {
        let mut range = self
            .fallback_written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *range = Some(match *range {
            Some((s, e)) => (s.min(start), e.max(end)),
            None => (start, end),
        });
    }

    /// Takes the range written as plain buffered IO so far (before a sync: what that sync makes clean).
    pub(super) fn take_fallback_written(&self) -> Option<(u64, u64)> {
        self.fallback_written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// After a successful sync: drops the (now clean) pages of `start..end`, written as plain buffered
    /// IO before it (`POSIX_FADV_DONTNEED`). Advisory: a failure is logged, not returned.
    pub(super) async fn drop_synced_pages(&self, start: u64, end: u64) {
        let res = match self.pin().await {
            Ok(pinned) => self.ctx.inner.engine.fadvise(
                pinned.fd(),
                start,
                end - start,
                libc::POSIX_FADV_DONTNEED,
            ),
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        match res {
            Ok(()) => self.ctx.inner.metrics.dontcache_pages_dropped(),
            Err(e) => self.fadvise_failed(&e),
        }
    }
}
