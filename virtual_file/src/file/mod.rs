//! [`VirtualFile`]: a file opened through an [`IoContext`], with positional async IO on owned buffers.
//!
//! All IO of one file lives here, each piece a set of methods of [`VirtualFile`]: `open.rs` (open,
//! `O_DIRECT` fallback, reopen after eviction), `identity.rs`, this file (the uncached reads and the
//! simple ops), `cached_reads.rs` (reads through the page cache, write-through), `mutations.rs` (writes,
//! `set_len`, `fallocate`), `temp.rs`, `scan.rs` (front-to-back reads with readahead), `owned_io.rs` (the writer traits). Below them: `id.rs`
//! ([`FileId`], the lowest floor of the crate), `short_io.rs`, `open_options.rs` and `coherence.rs`.
//!
//! - Reads and writes are positional only; one loop (`short_io.rs`) completes short transfers for every
//!   positional read and write, retries `EINTR`, and the callers report `UnexpectedEof` / `WriteZero` as
//!   `std` does.
//! - For an `O_DIRECT` file, offset, length and buffer address are checked against the context's
//!   alignment on every call, before any syscall ([`Error::Misaligned`]).
//! - The descriptor lives in the context's open-file cache; an evicted file reopens transparently on its
//!   next IO, with the same flags (and the same `O_DIRECT` decision) minus create/truncate.
//! - A reopen checks the file's identity: the (device, inode) recorded at first open must be what the path
//!   names now, else [`Error::FileReplaced`] and nothing is read or written ([`FileId`], `identity.rs`).
//! - Temp files get unique names and are created exclusively (`O_CREAT | O_EXCL`); they are removed on
//!   drop unless persisted, and persisting renames without replacing an existing file unless asked
//!   (`RENAME_NOREPLACE`); see [`VirtualFile::create_temp`] and [`VirtualFile::persist`] (`temp.rs`).
//! - Every handle of one file shares one set of cached pages, and every mutation through any of them
//!   (write, `set_len`, `fallocate`, an open that truncates) drops the pages it can change before its IO
//!   and again after it completed, also when its future is dropped (`coherence.rs`).

mod cached_reads;
mod coherence;
mod dontcache;
pub(crate) mod id;
mod identity;
mod mutations;
mod open;
mod open_options;
mod owned_io;
mod scan;
mod short_io;
mod temp;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use coherence::{MutationGuard, SharedFile};
use short_io::{retry_interrupted, transfer_all, Short};

use io_engine::{FileStat, IoBufMut, IoFd, Slice};
use tokio::sync::RwLockReadGuard;

pub use id::FileId;
pub use open_options::OpenOptions;
pub use scan::{Scan, ScanChunk, ScanOptions, DEFAULT_SCAN_READ, DEFAULT_SCAN_READS};
pub use temp::TEMP_NAME_ATTEMPTS;

use crate::cache::{SlotHandle, SlotInner};
use crate::context::IoContext;
use crate::error::{Error, MisalignedPart};
use crate::io_mode::IoMode;
use crate::metrics::OpKind;

/// A file opened through an [`IoContext`].
pub struct VirtualFile {
    pub(crate) ctx: IoContext,
    pub(crate) path: PathBuf,
    /// What every handle of this file in the process shares: its page-cache id and the invalidation of
    /// cached pages by mutations (`coherence.rs`).
    pub(crate) shared: Arc<SharedFile>,
    /// This handle registered its context's page cache with `shared` (so mutations through any handle
    /// drop pages there).
    registered: AtomicBool,
    /// (offset, length, invalidation count after it) of this handle's last completed write, for
    /// write-through ([`Self::cache_written`]).
    last_write: Mutex<Option<(u64, usize, u64)>>,
    /// Pages written through a `BufferedWriter` are put in the page cache ([`Self::keep_written_pages`]).
    keep_written: bool,
    /// Flags for reopening after eviction (includes `O_DIRECT` if the file uses it).
    reopen_flags: libc::c_int,
    direct: bool,
    /// Opened in `buffered-dontcache` mode (never together with `direct`).
    opened_dontcache: bool,
    /// Reads and writes pass `RWF_DONTCACHE`: set at open in `buffered-dontcache` mode, cleared for good
    /// when the kernel refuses the flag (`dontcache.rs`); every reopen's descriptor gets this value.
    dontcache: AtomicBool,
    /// `(start, end)` of what was written as plain buffered IO after such a refusal, since the last
    /// sync: its pages are dropped after the next sync (`dontcache.rs`).
    fallback_written: Mutex<Option<(u64, u64)>>,
    /// Device and inode at first open: every reopen by path must find the same.
    id: FileId,
    /// Remove the file from its directory on drop (a temp file not yet persisted, see `temp.rs`).
    remove_on_drop: bool,
    handle: Mutex<SlotHandle>,
}

impl std::fmt::Debug for VirtualFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualFile")
            .field("path", &self.path)
            .field("direct", &self.direct)
            .field("dontcache", &self.dontcache.load(Ordering::Relaxed))
            .field("id", &self.id)
            .field("remove_on_drop", &self.remove_on_drop)
            .finish()
    }
}

/// A pinned descriptor: the slot's read lock is held while the IO runs.
struct PinnedFd<'a> {
    guard: RwLockReadGuard<'a, SlotInner>,
}

impl PinnedFd<'_> {
    fn fd(&self) -> &Arc<IoFd> {
        self.guard
            .fd
            .as_ref()
            .expect("a pinned slot always holds a descriptor")
    }
}

impl VirtualFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's identity (device, inode), taken at first open and checked at every reopen.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// True if the file uses `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// True if the file was opened in `buffered-dontcache` mode (its reads and writes pass
    /// `RWF_DONTCACHE`, or did until the kernel refused it; see [`Self::dontcache_fell_back`]).
    pub fn is_dontcache(&self) -> bool {
        self.opened_dontcache
    }

    /// The context the file was opened through.
    pub fn context(&self) -> &IoContext {
        &self.ctx
    }

    /// Records that the file has (or may soon have) pages in this handle's page cache: from now on every
    /// mutation of the file, through any handle, drops the pages it changes there. Called before
    /// anything is looked up or put in.
    pub(crate) fn mark_cached(&self) {
        if !self.registered.load(Ordering::Acquire) {
            self.shared.register_cache(&self.ctx.inner.page_cache);
            self.registered.store(true, Ordering::Release);
        }
    }

    /// The file's id in the page caches (shared by every handle of the file in this process).
    pub(crate) fn cache_id(&self) -> u64 {
        self.shared.cache_id
    }

    /// Mutations (writes, `set_len`, `fallocate`) of this file through any handle in this process whose
    /// IO has not completed yet, including those whose futures were dropped while the io_uring engine
    /// still had them. For tests and orderly shutdown: 0 means every mutation started so far is in the
    /// file and its stale pages are dropped.
    pub fn mutations_in_flight(&self) -> usize {
        self.shared.mutations_in_flight()
    }

    /// The invalidation count after this handle's last completed write, if that write was `len` bytes at
    /// `offset`.
    pub(crate) fn last_write_seq(&self, offset: u64, len: usize) -> Option<u64> {
        let last = *self.last_write.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            Some((o, l, seq)) if o == offset && l == len => Some(seq),
            _ => None,
        }
    }

    /// Starts a mutation that can change the cached pages `pages` of this file (`coherence.rs`).
    fn begin_mutation(&self, pages: std::ops::Range<u64>) -> MutationGuard {
        self.shared.begin_mutation(pages)
    }

    /// Keep what a [`BufferedWriter`](crate::buffered_writer::BufferedWriter) writes to this file readable from the page
    /// cache while the memory budget allows (write-through: the file gets every byte, the cache keeps a
    /// copy of the pages). Meant for spill files read back soon after they are written (the ephemeral
    /// file); reads of the pages go through [`read_cached_at`](Self::read_cached_at), or through a read
    /// plan, by this open or by one made with [`open_again_read_only`](Self::open_again_read_only).
    /// Has no effect in `buffered` mode, where the kernel's page cache keeps them already.
    pub fn keep_written_pages(&mut self, keep: bool) {
        self.keep_written = keep;
    }

    /// True if written pages are kept in the page cache.
    pub fn keeps_written_pages(&self) -> bool {
        self.keep_written
    }

    fn mode(&self) -> IoMode {
        self.ctx.io_mode()
    }

    fn io_error(
        &self,
        op: OpKind,
        offset: Option<u64>,
        len: Option<usize>,
        source: io::Error,
    ) -> Error {
        Error::Io {
            op,
            path: self.path.clone(),
            offset,
            len,
            mode: self.mode(),
            engine: self.ctx.engine_kind(),
            source,
        }
    }

    /// For an `O_DIRECT` file: offset, length and buffer address must be multiples of the alignment.
    fn check_aligned(&self, op: OpKind, offset: u64, len: usize, addr: usize) -> Result<(), Error> {
        if !self.direct {
            return Ok(());
        }
        let align = self.ctx.alignment();
        let part = if offset % align as u64 != 0 {
            MisalignedPart::Offset
        } else if len % align != 0 {
            MisalignedPart::Length
        } else if addr % align != 0 {
            MisalignedPart::Buffer
        } else {
            return Ok(());
        };
        Err(Error::Misaligned {
            op,
            path: self.path.clone(),
            part,
            offset,
            len,
            addr,
            align,
            mode: self.mode(),
        })
    }

    /// `offset + len` must stay within the largest file offset the kernel takes (`i64::MAX`): else an
    /// `InvalidInput` error naming the range, before any syscall (and before any arithmetic on the
    /// range can overflow).
    fn check_range(&self, op: OpKind, offset: u64, len: usize) -> Result<(), Error> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= i64::MAX as u64 => Ok(()),
            _ => Err(self.io_error(
                op,
                Some(offset),
                Some(len),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{len} bytes at offset {offset} end past the largest file offset ({})",
                        i64::MAX
                    ),
                ),
            )),
        }
    }

    /// The checks before any IO of `len` bytes at `offset` to or from the buffer at `addr`: the range
    /// ([`Self::check_range`]), then the `O_DIRECT` alignment ([`Self::check_aligned`]).
    fn check_io(&self, op: OpKind, offset: u64, len: usize, addr: usize) -> Result<(), Error> {
        self.check_range(op, offset, len)
            .and_then(|()| self.check_aligned(op, offset, len, addr))
    }

    /// Starts a transfer that must move all `len` bytes at `offset` ([`Self::read_exact_at`],
    /// [`Self::write_all_at`]): [`Self::check_io`], then the pinned descriptor, or `None` for an empty
    /// transfer (which needs no descriptor and no IO).
    async fn begin_transfer(
        &self,
        op: OpKind,
        offset: u64,
        len: usize,
        addr: usize,
    ) -> Result<Option<PinnedFd<'_>>, Error> {
        self.check_io(op, offset, len, addr)?;
        if len == 0 {
            return Ok(None);
        }
        self.pin().await.map(Some)
    }

    fn record(&self, op: OpKind, start: Instant, bytes: usize, ok: bool) {
        self.ctx.inner.metrics.ops[op].record(start.elapsed(), bytes, ok);
    }

    /// Reads once into `buf`'s window at `offset`, retrying `EINTR`. Returns the bytes read (0 at end of
    /// file); fewer than the window is not an error.
    pub async fn read_at<B: IoBufMut>(
        &self,
        mut buf: Slice<B>,
        offset: u64,
    ) -> (Slice<B>, Result<usize, Error>) {
        let len = buf.len();
        if let Err(e) = self.check_io(OpKind::Read, offset, len, buf.stable_mut_ptr() as usize) {
            return (buf, Err(e));
        }
        let pinned = match self.pin().await {
            Ok(p) => p,
            Err(e) => return (buf, Err(e)),
        };
        let start = Instant::now();
        let engine = &self.ctx.inner.engine;
        let fd = pinned.fd();
        let (buf, res) = self
            .retry_io(fd, buf, |buf| engine.read_at(fd, offset, buf))
            .await;
        match res {
            Ok(n) => {
                self.note_read(fd, offset, n);
                self.record(OpKind::Read, start, n, true);
                (buf, Ok(n))
            }
            Err(e) => {
                self.record(OpKind::Read, start, 0, false);
                (
                    buf,
                    Err(self.io_error(OpKind::Read, Some(offset), Some(len), e)),
                )
            }
        }
    }

    /// Fills `buf`'s window from `offset`, looping over short reads and retrying `EINTR`. End of file
    /// before the window is full is an error of kind `UnexpectedEof`.
    pub async fn read_exact_at<B: IoBufMut>(
        &self,
        mut buf: Slice<B>,
        offset: u64,
    ) -> (Slice<B>, Result<(), Error>) {
        let (begin, end) = (buf.begin(), buf.end());
        let len = end - begin;
        let addr = buf.stable_mut_ptr() as usize;
        let pinned = match self.begin_transfer(OpKind::Read, offset, len, addr).await {
            Ok(Some(p)) => p,
            Ok(None) => return (buf, Ok(())),
            Err(e) => return (buf, Err(e)),
        };
        let start = Instant::now();
        let engine = &self.ctx.inner.engine;
        let fd = pinned.fd();
        let align = self.direct.then(|| self.ctx.alignment());
        let (inner, done, res) = transfer_all(buf.into_inner(), len, align, |inner, done| {
            let window = Slice::new(inner, begin + done..end);
            async move {
                let pos = offset + done as u64;
                let (w, res) = self
                    .retry_io(fd, window, |w| engine.read_at(fd, pos, w))
                    .await;
                if let Ok(n) = res {
                    self.note_read(fd, pos, n);
                }
                (w.into_inner(), res)
            }
        })
        .await;
        let result = res.map_err(|short| match short {
            Short::Failed(e) => self.io_error(OpKind::Read, Some(offset), Some(len), e),
            Short::Zero | Short::Unaligned => self.eof_error(offset, len, done),
        });
        self.record(OpKind::Read, start, done, result.is_ok());
        (Slice::new(inner, begin..end), result)
    }

    fn eof_error(&self, offset: u64, len: usize, done: usize) -> Error {
        let msg = format!("end of file after {done} of {len} bytes");
        self.io_error(
            OpKind::Read,
            Some(offset),
            Some(len),
            io::Error::new(io::ErrorKind::UnexpectedEof, msg),
        )
    }

    async fn simple_op<T, F, Fut>(
        &self,
        op: OpKind,
        offset: Option<u64>,
        len: Option<usize>,
        f: F,
    ) -> Result<T, Error>
    where
        F: Fn(Arc<IoFd>) -> Fut,
        Fut: std::future::Future<Output = io::Result<T>>,
    {
        let pinned = self.pin().await?;
        let start = Instant::now();
        let ((), res) = retry_interrupted((), |()| {
            let op = f(Arc::clone(pinned.fd()));
            async move { ((), op.await) }
        })
        .await;
        self.record(op, start, 0, res.is_ok());
        res.map_err(|e| self.io_error(op, offset, len, e))
    }

    /// `fsync`: data and metadata durable.
    pub async fn sync_all(&self) -> Result<(), Error> {
        self.sync(OpKind::SyncAll).await
    }

    /// `fdatasync`: data (and what is needed to read it) durable.
    pub async fn sync_data(&self) -> Result<(), Error> {
        self.sync(OpKind::SyncData).await
    }

    /// `fsync` ([`OpKind::SyncAll`]) or `fdatasync`; then, for a dontcache file that fell back to
    /// plain buffered IO, drops the pages of what it wrote before the sync (`dontcache.rs`).
    async fn sync(&self, op: OpKind) -> Result<(), Error> {
        let engine = &self.ctx.inner.engine;
        let written = self.take_fallback_written();
        let res = self
            .simple_op(op, None, None, |fd| async move {
                if op == OpKind::SyncAll {
                    engine.fsync(&fd).await
                } else {
                    engine.fdatasync(&fd).await
                }
            })
            .await;
        if let Some((start, end)) = written {
            match res {
                Ok(()) => self.drop_synced_pages(start, end).await,
                Err(_) => self.note_fallback_written(start, end),
            }
        }
        res
    }

    /// Size, block size and `O_DIRECT` alignment.
    pub async fn metadata(&self) -> Result<FileStat, Error> {
        let engine = &self.ctx.inner.engine;
        self.simple_op(OpKind::Metadata, None, None, |fd| async move {
            engine.statx(&fd).await
        })
        .await
    }
}

impl Drop for VirtualFile {
    fn drop(&mut self) {
        let handle = *self.handle.lock().unwrap_or_else(|p| p.into_inner());
        self.ctx.inner.cache.close_if_idle(handle);
        if self.remove_on_drop {
            self.remove_now_if_same_file();
        }
    }
}
