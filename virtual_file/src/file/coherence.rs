//! Page-cache coherence across every handle of one file: [`SharedFile`], the state all handles of one
//! file share in this process, and [`MutationGuard`], which every mutation holds while its IO may run.
//!
//! # The rule
//!
//! Every mutation through a [`VirtualFile`](super::VirtualFile) (a write, `set_len`, `fallocate`, the
//! truncation of an open with `truncate`) drops the cached pages it can change, in every page cache
//! (every [`IoContext`](crate::IoContext)) and for every handle of the file, twice: *before* its IO is
//! submitted and again *after* the IO completed. The second drop runs from the guard's `Drop`, and the
//! guard travels with the IO: a write's guard rides inside the buffer the engine owns (a future dropped
//! while the io_uring engine still has the write frees the buffer, and so runs the drop, only when the
//! kernel has completed it); `set_len` and `fallocate` run on a spawned tokio task that owns the guard
//! (with the `std-fs` engine, whose ops complete within the call, and outside a tokio runtime, inline).
//! So a page read before the mutation landed can be cached only until the mutation completes, never
//! after.
//!
//! Pages put in by a read of several pages or by write-through are put in only if no mutation of the file
//! began or ended since the read started (or since the write completed): [`SharedFile::seq`].
//!
//! A page shorter than [`CACHE_PAGE_SIZE`](crate::CACHE_PAGE_SIZE) (the end of the file) is never kept,
//! so a change of the file's length can only make pages from the new length on wrong, and those are the
//! ones `set_len` drops.
//!
//! # Identity
//!
//! Handles share one [`SharedFile`] when the file's (device, inode) and birth time (`statx` `btime`, where
//! the file system reports it) are the same: read-only twins, independent opens of the path, opens through
//! other contexts. It lives while any handle does; its page-cache id is new for every [`SharedFile`] and
//! never reused in the process, so a path reused by another file, or an inode number reused by a new file
//! with another birth time, never finds old pages. The pages of a file are dropped when its last handle
//! is.
//!
//! # Outside the rule
//!
//! - Writes by other processes, through raw descriptors, or through
//!   [`IoContext::engine`](crate::IoContext) directly are not seen: their pages stay until evicted.
//! - On a file system that reports no birth time, a file deleted while a handle of it is still open (its
//!   descriptor closed by the open-file cache) and a new file that gets the same inode number share
//!   pages. Where the birth time is reported, the old handle's reopen is refused
//!   ([`Error::FileReplaced`](crate::Error::FileReplaced)).
//! - A `set_len` or `fallocate` through the io_uring engine outside a tokio runtime, whose future is
//!   dropped while the kernel has the op, drops its pages the second time too early (there is no task to
//!   own the guard). So does a write or an op whose ring breaks and whose buffer the engine can only leak
//!   (then [`VirtualFile::mutations_in_flight`](super::VirtualFile::mutations_in_flight) stays above 0).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use io_engine::{FileStat, IoBuf};

use crate::page_cache::PageCache;

/// (device, inode).
type InodeKey = (u64, u64);

/// Live [`SharedFile`]s of this process by (device, inode).
static OPEN_FILES: LazyLock<Mutex<HashMap<InodeKey, Weak<SharedFile>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Page-cache ids, never reused in the process.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// What every handle of one file in this process shares.
pub(crate) struct SharedFile {
    /// The file's id in every page cache: pages are keyed by (this, page number).
    pub(crate) cache_id: u64,
    inode: InodeKey,
    birth: Option<(i64, u32)>,
    /// Counted up by every invalidation (before and after each mutation).
    seq: AtomicU64,
    /// Mutations whose guard is alive (their IO may still run).
    in_flight: AtomicUsize,
    /// The page caches that may hold pages of this file.
    caches: Mutex<Vec<Weak<PageCache>>>,
}

impl SharedFile {
    /// The shared state of the file `stat` describes: the live one if a handle of the same file is open
    /// in this process, else a new one with a new page-cache id.
    pub(crate) fn of(stat: &FileStat) -> Arc<SharedFile> {
        let inode = (stat.dev, stat.ino);
        let mut files = lock(&OPEN_FILES);
        let live = files.get(&inode).and_then(Weak::upgrade);
        if let Some(live) = live.as_ref().filter(|l| l.birth == stat.birth) {
            return Arc::clone(live);
        }
        // None, or the inode number was reused by a new file while a handle of the old one is alive:
        // the old handles keep their (now unlisted) state, the new file gets its own.
        let shared = Arc::new(SharedFile {
            cache_id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            inode,
            birth: stat.birth,
            seq: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            caches: Mutex::new(Vec::new()),
        });
        files.insert(inode, Arc::downgrade(&shared));
        drop(files);
        // The old file's state may have had its last other reference dropped meanwhile: its `Drop`
        // takes the registry's lock, so it must run after that lock is released.
        drop(live);
        shared
    }

    /// The birth time the file had when this state was made (`None` where the file system does not
    /// report one).
    pub(crate) fn birth(&self) -> Option<(i64, u32)> {
        self.birth
    }

    /// Records that `cache` may hold pages of this file from now on: later mutations invalidate there
    /// too. Must be called before anything is looked up or put in `cache` for this file.
    pub(crate) fn register_cache(&self, cache: &Arc<PageCache>) {
        let mut caches = lock(&self.caches);
        caches.retain(|c| c.strong_count() > 0);
        if !caches
            .iter()
            .any(|c| std::ptr::eq(c.as_ptr(), Arc::as_ptr(cache)))
        {
            caches.push(Arc::downgrade(cache));
        }
    }

    /// The invalidation count now: a read or write-through that took it may put pages in only while it
    /// is unchanged (`PageCache::insert_pages`).
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    pub(crate) fn seq_counter(&self) -> &AtomicU64 {
        &self.seq
    }

    /// Mutations of this file whose IO may still run.
    pub(crate) fn mutations_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Drops `pages` of this file from every cache that may hold them. The count is raised first (and
    /// before any cache lock is taken), so an insert that checks it under a cache's lock either sees the
    /// new count or is done before this drop runs there.
    pub(crate) fn invalidate(&self, pages: std::ops::Range<u64>) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let caches: Vec<Arc<PageCache>> = lock(&self.caches)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for cache in caches {
            cache.invalidate(self.cache_id, pages.clone());
        }
        seq
    }

    /// Starts a mutation that can change `pages`: drops them now and again when the guard is dropped.
    pub(crate) fn begin_mutation(self: &Arc<Self>, pages: std::ops::Range<u64>) -> MutationGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.invalidate(pages.clone());
        MutationGuard {
            file: Arc::clone(self),
            pages,
            ended: None,
        }
    }
}

impl Drop for SharedFile {
    fn drop(&mut self) {
        {
            let mut files = lock(&OPEN_FILES);
            if files
                .get(&self.inode)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
            {
                files.remove(&self.inode);
            }
        }
        // Nobody can look these pages up again: give their memory back now.
        let caches = std::mem::take(&mut *lock(&self.caches));
        for cache in caches.iter().filter_map(Weak::upgrade) {
            cache.invalidate(self.cache_id, 0..u64::MAX);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A mutation of a file that may be in flight: dropping it drops the pages the mutation can change (the
/// second of the two invalidations) and ends the mutation.
pub(crate) struct MutationGuard {
    file: Arc<SharedFile>,
    pages: std::ops::Range<u64>,
    ended: Option<u64>,
}

impl MutationGuard {
    /// Ends the mutation now; returns the invalidation count right after its drop of the pages.
    pub(crate) fn finish(mut self) -> u64 {
        self.end()
    }

    fn end(&mut self) -> u64 {
        if let Some(seq) = self.ended {
            return seq;
        }
        let seq = self.file.invalidate(self.pages.clone());
        self.file.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.ended = Some(seq);
        seq
    }
}

impl Drop for MutationGuard {
    fn drop(&mut self) {
        self.end();
    }
}

/// A write's buffer with the write's [`MutationGuard`]: the engine owns both until the kernel is done
/// with the buffer, so the guard's drop runs after the write completed, also when the write's future is
/// dropped while the io_uring engine still has it.
pub(crate) struct GuardedBuf<B> {
    pub(crate) buf: B,
    pub(crate) guard: MutationGuard,
}

// The engine gets `buf`'s memory only; the guard touches no part of it.
io_engine::forward_io_buf!(IoBuf for GuardedBuf<B: IoBuf> => buf);
