//! [`IoContext`]: the IO mode, engine, alignment, open-file cache and metrics that files are opened
//! through.
//!
//! Nothing here is a mutable global: two contexts with different modes and engines work side by side in
//! one process, which is how the test matrix runs every mode and engine in parallel in one `cargo test`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use io_engine::{IoEngine, IoEngineKind};

use crate::cache::{OpenFileCache, DEFAULT_OPEN_FILES};
use crate::error::Error;
use crate::io_mode::IoMode;
use crate::memory_budget::{
    MemoryBudget, MemoryBudgetSnapshot, DEFAULT_MEMORY_BYTES, MEMORY_MIB_ENV,
};
use crate::metrics::{Metrics, MetricsSnapshot, OpKind};
use crate::page_cache::{PageCache, PageCacheSnapshot, CACHE_PAGE_SIZE};

/// The environment variable with the number of open-file cache slots.
pub const OPEN_FILES_ENV: &str = io_engine::env::MAX_OPEN_FILES;

/// Default alignment of `O_DIRECT` buffers, offsets and lengths.
pub const DEFAULT_ALIGNMENT: usize = 512;

/// How files are opened and IO is done: a cheap-to-clone handle.
#[derive(Clone)]
pub struct IoContext {
    pub(crate) inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pub(crate) engine: IoEngine,
    mode: IoMode,
    /// The mode was chosen by the user (builder or environment), so it must not silently change.
    mode_explicit: bool,
    /// The default mode met a file system without `O_DIRECT` and fell back to `buffered`.
    direct_fallback: AtomicBool,
    /// A file in `buffered-dontcache` mode met a refusal of `RWF_DONTCACHE` (warned once).
    dontcache_warned: AtomicBool,
    pub(crate) align: usize,
    pub(crate) cache: OpenFileCache,
    pub(crate) metrics: Metrics,
    pub(crate) memory: MemoryBudget,
    pub(crate) page_cache: Arc<PageCache>,
    /// Files that ask to keep written pages in the page cache may (see `keep_written_pages`).
    pub(crate) keep_written_pages: bool,
    #[cfg(any(test, feature = "testing"))]
    pub(crate) simulate_no_direct: bool,
}

impl std::fmt::Debug for IoContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoContext")
            .field("engine", &self.engine_kind())
            .field("mode", &self.io_mode())
            .field("align", &self.inner.align)
            .field("open_files", &self.inner.cache.capacity())
            .field("memory_budget", &self.inner.memory.total())
            .finish()
    }
}

/// Builds an [`IoContext`]. Defaults: the `std-fs` engine, mode `direct-rw` (falling back to `buffered`
/// with one warning on a file system without `O_DIRECT`), alignment 512, 100 open files, a memory budget
/// of [`DEFAULT_MEMORY_BYTES`].
#[derive(Debug, Clone)]
pub struct IoContextBuilder {
    engine: Option<IoEngine>,
    mode: Option<IoMode>,
    align: usize,
    open_files: usize,
    memory_bytes: usize,
    keep_written_pages: bool,
    #[cfg(any(test, feature = "testing"))]
    simulate_no_direct: bool,
}

impl Default for IoContextBuilder {
    fn default() -> Self {
        Self {
            engine: None,
            mode: None,
            align: DEFAULT_ALIGNMENT,
            open_files: DEFAULT_OPEN_FILES,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            keep_written_pages: true,
            #[cfg(any(test, feature = "testing"))]
            simulate_no_direct: false,
        }
    }
}

impl IoContextBuilder {
    /// The engine (default `std-fs`).
    pub fn engine(mut self, engine: IoEngine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// An explicit IO mode: a file system without `O_DIRECT` is then an error, not a fallback.
    pub fn mode(mut self, mode: IoMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Like [`mode`](Self::mode) but `None` keeps the default (`direct-rw` with fallback).
    pub fn mode_opt(mut self, mode: Option<IoMode>) -> Self {
        self.mode = mode;
        self
    }

    setters! {
        /// Alignment of `O_DIRECT` offsets, lengths and buffer addresses: 512, 1024, 2048 or 4096
        /// (default 512). Buffers of the default type are page-aligned, which satisfies any of these.
        fn alignment(align: usize);
        /// Number of open-file cache slots (at least 1).
        fn open_files(open_files: usize);
        /// The memory budget in bytes (at least one page cache page, 8 KiB), shared by every consumer of
        /// IO memory in the context: writer buffers, read buffers and the page cache (see
        /// [`MemoryBudget`]). Default [`DEFAULT_MEMORY_BYTES`].
        fn memory_budget_bytes(memory_bytes: usize);
        /// Whether files that ask for it ([`VirtualFile::keep_written_pages`](crate::VirtualFile::keep_written_pages),
        /// the ephemeral file) keep what they write in the page cache (default yes). `false` turns
        /// write-through off for the whole context, to compare.
        fn keep_written_pages(keep_written_pages: bool);
        /// Test hook: behave as if the file system rejected `O_DIRECT` at open (`EINVAL`).
        #[cfg(any(test, feature = "testing"))]
        fn simulate_fs_without_o_direct(simulate_no_direct: bool);
    }

    /// Validates the settings and builds the context.
    pub fn build(self) -> Result<IoContext, Error> {
        if !self.align.is_power_of_two() || !(512..=4096).contains(&self.align) {
            return Err(Error::Config(format!(
                "alignment {} must be 512, 1024, 2048 or 4096 (buffers are page-aligned; layer pages are 8 KiB)",
                self.align
            )));
        }
        if self.open_files == 0 {
            return Err(Error::Config(
                "the open-file cache needs at least one slot".into(),
            ));
        }
        if self.memory_bytes < CACHE_PAGE_SIZE {
            return Err(Error::Config(format!(
                "a memory budget of {} bytes is below one page cache page ({} bytes)",
                self.memory_bytes, CACHE_PAGE_SIZE
            )));
        }
        let memory = MemoryBudget::new(self.memory_bytes);
        let page_cache = PageCache::new(memory.clone());
        Ok(IoContext {
            inner: Arc::new(ContextInner {
                memory,
                page_cache,
                keep_written_pages: self.keep_written_pages,
                engine: self.engine.unwrap_or_else(IoEngine::std_fs),
                mode: self.mode.unwrap_or(IoMode::DirectRw),
                mode_explicit: self.mode.is_some(),
                direct_fallback: AtomicBool::new(false),
                dontcache_warned: AtomicBool::new(false),
                align: self.align,
                cache: OpenFileCache::new(self.open_files),
                metrics: Metrics::default(),
                #[cfg(any(test, feature = "testing"))]
                simulate_no_direct: self.simulate_no_direct,
            }),
        })
    }
}

/// Parses the budget in MiB as found in [`MEMORY_MIB_ENV`]: `None` if unset or empty.
pub fn parse_memory_mib(value: Option<&str>) -> Result<Option<usize>, Error> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1 << 30).contains(&n) => Ok(Some(n)),
            _ => Err(Error::Config(format!(
                "{MEMORY_MIB_ENV}={v:?} is not valid; accepted values: a whole number of MiB of at least 1"
            ))),
        },
    }
}

/// Parses the open-file cache size as found in [`OPEN_FILES_ENV`].
pub fn parse_open_files(value: Option<&str>) -> Result<Option<usize>, Error> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(Error::Config(format!(
                "{OPEN_FILES_ENV}={v:?} is not valid; accepted values: a whole number of at least 1"
            ))),
        },
    }
}

impl IoContext {
    /// A builder with the defaults.
    pub fn builder() -> IoContextBuilder {
        IoContextBuilder::default()
    }

    /// A context from the environment: `VIRTUAL_FILE_IO_MODE` (unset: `direct-rw` with fallback),
    /// `VIRTUAL_FILE_IO_ENGINE` (unset: `tokio-epoll-uring` where io_uring works, else `std-fs` with a
    /// warning), `VIRTUAL_FILE_MAX_OPEN_FILES` (unset: 100) and `VIRTUAL_FILE_MEMORY_MIB` (unset: 256). A bad value is an error that names the
    /// variable and the accepted values. Must be called within a tokio runtime (the ring engine starts
    /// its completion task there).
    pub fn from_env() -> Result<IoContext, Error> {
        let mode = IoMode::from_env()?;
        let open_files = parse_open_files(io_engine::env::var(OPEN_FILES_ENV).as_deref())?;
        let memory_mib = parse_memory_mib(io_engine::env::var(MEMORY_MIB_ENV).as_deref())?;
        let engine = IoEngine::from_env()?;
        Self::builder()
            .engine(engine)
            .mode_opt(mode)
            .open_files(open_files.unwrap_or(DEFAULT_OPEN_FILES))
            .memory_budget_bytes(memory_mib.map_or(DEFAULT_MEMORY_BYTES, |m| m << 20))
            .build()
    }

    /// The configured IO mode (before any fallback).
    pub fn configured_mode(&self) -> IoMode {
        self.inner.mode
    }

    /// The mode in effect: the configured one, or `buffered` after the default mode fell back.
    pub fn io_mode(&self) -> IoMode {
        if self.inner.direct_fallback.load(Ordering::Relaxed) {
            IoMode::Buffered
        } else {
            self.inner.mode
        }
    }

    /// True if the mode was chosen explicitly (no fallback allowed).
    pub fn mode_is_explicit(&self) -> bool {
        self.inner.mode_explicit
    }

    /// The IO engine every file opened through this context uses.
    pub fn engine(&self) -> &IoEngine {
        &self.inner.engine
    }

    /// The engine's kind.
    pub fn engine_kind(&self) -> IoEngineKind {
        self.inner.engine.kind()
    }

    /// Alignment of `O_DIRECT` buffers, offsets and lengths.
    pub fn alignment(&self) -> usize {
        self.inner.align
    }

    /// Number of open-file cache slots.
    pub fn max_open_files(&self) -> usize {
        self.inner.cache.capacity()
    }

    /// Number of cache slots holding an open descriptor now.
    pub fn open_files(&self) -> usize {
        self.inner.cache.open_count()
    }

    /// A copy of the metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// The memory budget shared by writer buffers, read buffers and the page cache.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.inner.memory
    }

    /// A copy of the memory budget's metrics (current and peak bytes per consumer).
    pub fn memory_metrics(&self) -> MemoryBudgetSnapshot {
        self.inner.memory.snapshot()
    }

    /// A copy of the page cache's metrics (hits, misses, evictions, device reads).
    pub fn page_cache_metrics(&self) -> PageCacheSnapshot {
        self.inner.page_cache.snapshot()
    }

    /// Records that the default mode met a file system without `O_DIRECT`; warns once per context.
    pub(crate) fn fall_back_to_buffered(&self, path: &Path, err: &std::io::Error) {
        if !self.inner.direct_fallback.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %path.display(),
                error = %err,
                "the file system rejects O_DIRECT; this context falls back from the default io mode \
                 direct-rw to buffered"
            );
        }
    }

    /// Records that the kernel or file system refused `RWF_DONTCACHE` for the file `path` (which does
    /// plain buffered IO from now on): counts it, and warns once per context naming the path and errno.
    pub(crate) fn dontcache_refused(&self, path: &Path, err: &std::io::Error) {
        self.inner.metrics.dontcache_fallback();
        if !self.inner.dontcache_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %path.display(),
                error = %err,
                errno = err.raw_os_error().unwrap_or(0),
                "RWF_DONTCACHE refused (kernel before 6.14 or a file system without uncached buffered \
                 IO); buffered-dontcache files that meet this do plain buffered IO and drop their \
                 written pages after each sync"
            );
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn simulate_no_direct(&self) -> bool {
        self.inner.simulate_no_direct
    }

    #[cfg(not(any(test, feature = "testing")))]
    pub(crate) fn simulate_no_direct(&self) -> bool {
        false
    }

    /// `fsync`s a directory, making renames and creations in it durable.
    pub async fn sync_dir(&self, dir: &Path) -> Result<(), Error> {
        let engine = &self.inner.engine;
        let io_err = |source| Error::Io {
            op: OpKind::SyncAll,
            path: dir.to_owned(),
            offset: None,
            len: None,
            mode: self.io_mode(),
            engine: engine.kind(),
            source,
        };
        let fd = engine
            .open(dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .await
            .map_err(io_err)?;
        engine.fsync(&Arc::new(fd)).await.map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        assert!(IoContext::builder().alignment(256).build().is_err());
        assert!(IoContext::builder().alignment(1000).build().is_err());
        assert!(IoContext::builder().alignment(16384).build().is_err());
        assert!(IoContext::builder().open_files(0).build().is_err());
        let ctx = IoContext::builder().alignment(4096).build().unwrap();
        assert_eq!(ctx.alignment(), 4096);
        assert_eq!(ctx.io_mode(), IoMode::DirectRw);
        assert!(!ctx.mode_is_explicit());
        assert_eq!(ctx.max_open_files(), DEFAULT_OPEN_FILES);
    }

    #[test]
    fn open_files_setting() {
        assert_eq!(parse_open_files(None).unwrap(), None);
        assert_eq!(parse_open_files(Some("32")).unwrap(), Some(32));
        let msg = parse_open_files(Some("0")).unwrap_err().to_string();
        assert!(msg.contains(OPEN_FILES_ENV), "{msg}");
        assert!(parse_open_files(Some("many")).is_err());
    }

    #[test]
    fn memory_setting() {
        assert_eq!(parse_memory_mib(None).unwrap(), None);
        assert_eq!(parse_memory_mib(Some(" 64 ")).unwrap(), Some(64));
        for bad in ["0", "-1", "lots", "1.5"] {
            let msg = parse_memory_mib(Some(bad)).unwrap_err().to_string();
            assert!(msg.contains(MEMORY_MIB_ENV), "{msg}");
        }
        assert!(IoContext::builder()
            .memory_budget_bytes(4096)
            .build()
            .is_err());
        let ctx = IoContext::builder()
            .memory_budget_bytes(1 << 20)
            .build()
            .unwrap();
        assert_eq!(ctx.memory_budget().total(), 1 << 20);
    }
}
