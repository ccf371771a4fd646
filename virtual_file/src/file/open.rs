//! Opening a [`VirtualFile`]: the flags, the `O_DIRECT` decision and its fallback, the identity and
//! alignment checks at open, and the reopen of a descriptor the open-file cache evicted ([`pin`]).
//!
//! [`pin`]: VirtualFile::pin

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use io_engine::{FileStat, IoFd};
use tokio::sync::RwLockWriteGuard;

use super::coherence::SharedFile;
use super::id::FileId;
use super::open_options::{reopen_flags, OpenOptions};
use super::{PinnedFd, VirtualFile};
use crate::cache::SlotInner;
use crate::context::IoContext;
use crate::error::Error;
use crate::io_mode::IoMode;
use crate::metrics::OpKind;

impl VirtualFile {
    /// Opens an existing file read-only.
    pub async fn open(ctx: &IoContext, path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with_options(ctx, path, OpenOptions::new().read(true)).await
    }

    /// Creates (or truncates) a file for reading and writing.
    pub async fn create(ctx: &IoContext, path: impl AsRef<Path>) -> Result<Self, Error> {
        let opts = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true);
        Self::open_with_options(ctx, path, opts).await
    }

    /// Opens `path` with `opts`. `O_DIRECT` is decided by the context's mode and `opts.is_write()`. With
    /// the default mode, a file system that rejects `O_DIRECT` makes the context fall back to `buffered`
    /// (one warning); with an explicit mode it is [`Error::DirectUnsupported`].
    pub async fn open_with_options(
        ctx: &IoContext,
        path: impl AsRef<Path>,
        opts: OpenOptions,
    ) -> Result<Self, Error> {
        let path = path.as_ref().to_owned();
        let mode = ctx.io_mode();
        let base_flags = opts
            .flags()
            .map_err(|msg| Error::Config(format!("open {}: {msg}", path.display())))?;
        // A truncation is a mutation like any other (`set_len(0)` below, with its page invalidation), not
        // a side effect of the open that the page caches could not see.
        let truncate = base_flags & libc::O_TRUNC != 0;
        let base_flags = base_flags & !libc::O_TRUNC;
        let mut direct = mode.uses_direct(opts.is_write());
        let (index, mut guard) = ctx.inner.cache.victim().await;
        if guard.fd.take().is_some() {
            ctx.inner
                .metrics
                .cache_evictions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let fd = loop {
            let flags = base_flags | if direct { libc::O_DIRECT } else { 0 };
            let res = if direct && ctx.simulate_no_direct() {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            } else {
                Self::timed_open(ctx, &path, flags).await
            };
            match res {
                Ok(fd) => break fd,
                Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    if ctx.mode_is_explicit() {
                        return Err(Error::DirectUnsupported {
                            path,
                            mode,
                            source: e,
                        });
                    }
                    ctx.fall_back_to_buffered(&path, &e);
                    direct = false;
                }
                Err(source) => return Err(open_error(ctx, mode, OpKind::Open, path, source)),
            }
        };
        // Uncached buffered IO in `buffered-dontcache` mode (the descriptor ignores it with O_DIRECT).
        let dontcache = mode.uses_dontcache() && !direct;
        fd.set_dontcache(dontcache);
        let fd = Arc::new(fd);
        // The identity (and the O_DIRECT alignment) from the descriptor just opened, before the cache
        // can hand its slot to another file. A file this open created exclusively is ours alone: if the
        // open fails from here on, it is removed again, so a failed create leaves nothing behind.
        let created = opts.is_create_new();
        let stat = match Self::timed_statx(ctx, &fd).await {
            Ok(stat) => stat,
            Err(source) => {
                drop(guard);
                drop(fd);
                if created {
                    let _ = ctx.inner.engine.unlink(&path).await;
                }
                return Err(open_error(ctx, mode, OpKind::Metadata, path, source));
            }
        };
        let flags = reopen_flags(base_flags) | if direct { libc::O_DIRECT } else { 0 };
        let handle = ctx.inner.cache.install(index, &mut guard, Arc::clone(&fd));
        drop(guard);
        let mut file = VirtualFile {
            ctx: ctx.clone(),
            path,
            shared: SharedFile::of(&stat),
            registered: AtomicBool::new(false),
            last_write: Mutex::new(None),
            keep_written: false,
            reopen_flags: flags,
            direct,
            opened_dontcache: dontcache,
            dontcache: AtomicBool::new(dontcache),
            fallback_written: Mutex::new(None),
            id: FileId::of(&stat),
            // until the open has succeeded: dropping the file on an error below removes what we created
            remove_on_drop: created,
            handle: Mutex::new(handle),
        };
        if direct {
            file.check_dio_alignment(&stat)?;
        }
        if truncate && stat.size > 0 {
            file.set_len(0).await?;
        }
        file.remove_on_drop = false;
        Ok(file)
    }

    pub(super) async fn timed_open(
        ctx: &IoContext,
        path: &Path,
        flags: libc::c_int,
    ) -> io::Result<IoFd> {
        let start = Instant::now();
        let res = ctx.inner.engine.open(path, flags, 0o644).await;
        ctx.inner.metrics.ops[OpKind::Open].record(start.elapsed(), 0, res.is_ok());
        res
    }

    pub(super) async fn timed_statx(ctx: &IoContext, fd: &Arc<IoFd>) -> io::Result<FileStat> {
        let start = Instant::now();
        let res = ctx.inner.engine.statx(fd).await;
        ctx.inner.metrics.ops[OpKind::Metadata].record(start.elapsed(), 0, res.is_ok());
        res
    }

    /// `statx(STATX_DIOALIGN)`: a file system that needs more alignment than the context provides is an
    /// error at open, not at the first IO.
    fn check_dio_alignment(&self, stat: &FileStat) -> Result<(), Error> {
        let align = self.ctx.alignment();
        if let Some(dio) = stat.dio {
            if dio.mem_align as usize > align || dio.offset_align as usize > align {
                return Err(Error::AlignmentUnsupported {
                    path: self.path.clone(),
                    mem_align: dio.mem_align,
                    offset_align: dio.offset_align,
                    align,
                    mode: self.ctx.io_mode(),
                });
            }
        }
        Ok(())
    }

    /// The descriptor, pinned for the duration of one IO; reopens the file if it was evicted.
    pub(super) async fn pin(&self) -> Result<PinnedFd<'_>, Error> {
        let cache = &self.ctx.inner.cache;
        let metrics = &self.ctx.inner.metrics;
        let handle = *self.handle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(guard) = cache.get(handle).await {
            metrics
                .cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(PinnedFd { guard });
        }
        metrics
            .cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (index, mut guard): (usize, RwLockWriteGuard<'_, SlotInner>) = cache.victim().await;
        if guard.fd.take().is_some() {
            metrics
                .cache_evictions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let fd = Self::timed_open(&self.ctx, &self.path, self.reopen_flags)
            .await
            .map_err(|e| self.io_error(OpKind::Open, None, None, e))?;
        fd.set_dontcache(self.dontcache_now());
        let fd = Arc::new(fd);
        // Dropped unused (and the slot left empty) if the path now names another file.
        self.check_identity(&fd).await?;
        let new_handle = cache.install(index, &mut guard, fd);
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = new_handle;
        Ok(PinnedFd {
            guard: guard.downgrade(),
        })
    }
}

/// The error of an open (or of the `statx` right after it) of `path` in `mode`.
fn open_error(
    ctx: &IoContext,
    mode: IoMode,
    op: OpKind,
    path: PathBuf,
    source: io::Error,
) -> Error {
    Error::Io {
        op,
        path,
        offset: None,
        len: None,
        mode,
        engine: ctx.engine_kind(),
        source,
    }
}
