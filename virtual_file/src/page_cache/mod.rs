//! `PageCache`: our own cache of file pages, so that `O_DIRECT` files do not read the device for every
//! index page (the kernel's page cache is bypassed by design).
//!
//! # Shape
//!
//! The pieces, each readable alone, lowest first: `slot.rs` (the slot states and the page buffer),
//! `map.rs` (the map, the slots and clock eviction), `budget.rs` (page buffers paid from the memory
//! budget, and giving them back), and here the `PageCache` API: lookups, loads, inserts, invalidation.
//!
//! - Fixed-size slots of [`CACHE_PAGE_SIZE`] bytes, each an aligned [`IoBufferMut`], carved from the
//!   context's [`MemoryBudget`] (consumer [`Consumer::PageCache`]): a slot holds a [`Reservation`] for its
//!   buffer from before the buffer is allocated until it is freed.
//! - Keyed by (file cache id, page number). The cache id belongs to the file, not to one open of it:
//!   every handle of one file in the process (read-only twins, second opens, opens through other
//!   contexts) has the same id, and a file that reuses a path or an inode gets a new one (see
//!   `file/coherence.rs` for the identity and the coherence rule: every mutation through a
//!   [`VirtualFile`](crate::VirtualFile) drops the pages it can change, before its IO and after it).
//! - Only whole pages are kept: a page that ends short (the end of the file) is served to the read that
//!   loaded it and not kept, so a later change of the file's length cannot leave a short page behind.
//! - Clock eviction (second chance): a hit sets the slot's referenced bit, the hand clears it and takes
//!   the first slot found without it. A slot being read (`Loading`) is pinned: never evicted.
//! - Admission ([`ReadIntent`]): every read says whether it is a point read (a lookup that may come
//!   again: index pages of a `get`, hot values) or a scan (one pass front to back: a full iteration, a
//!   verification). A point read admits as described here: its hit sets the referenced bit, its miss
//!   takes a slot and keeps the page. A scan uses what is resident (a hit is a hit, copied out under the
//!   lock) but leaves the referenced bit as it is, and its miss takes no slot: the page is read into a
//!   buffer of its own (a page for one page, the whole range for several), copied out and dropped. So a
//!   scan of a file larger than the cache neither evicts a page nor makes one look hot, and the pages
//!   point reads need stay. A scan miss does not wait for a point load of the same page in flight (nor
//!   is it merged with one): both read the file and return its bytes; the point load alone puts the page
//!   in. As the scan's read takes no slot, dropping its future leaves nothing behind but its buffer
//!   with the engine (freed when the kernel is done with it).
//! - Concurrent misses of one page do one IO: the first miss puts the slot in `Loading` and reads; the
//!   others wait for it (one `Notify` per cache) and then hit.
//! - A read of several pages that are not all resident reads the whole range in one IO and puts the
//!   pages in afterwards (`insert_pages`), unless a mutation of the file began or ended meanwhile (the
//!   file's invalidation count); such reads are not merged with concurrent misses of the same pages.
//! - A load is panic-safe and cancellation-safe: if it fails, panics or its future is dropped, the slot
//!   is left vacant and its waiters look again (a slot is never `Loading` forever). The page's budget
//!   reservation travels with its buffer, so a read cancelled while the kernel owns the buffer keeps its
//!   bytes reserved until the kernel gives the buffer back.
//! - The read goes straight into the slot's buffer (owned-buffer IO: the buffer leaves the slot for the
//!   read and comes back with it), also for `O_DIRECT`; no bounce buffer.
//! - A hit copies the wanted bytes out under the cache's lock; no pin outlives a call, so a lookup that
//!   reads several pages one after another holds none while it waits (no hold-and-wait, no deadlock with
//!   a budget of a few pages).
//! - Under budget pressure (a writer or reader waiting in [`MemoryBudget::reserve`]), the cache gives
//!   back free and unpinned pages ([`Reclaim`]).
//!
//! # Weaknesses
//!
//! - One mutex for the whole cache; the copy of a hit (8 KiB, about 1.5 us) is made under it. With many
//!   cores this lock would need sharding.
//! - A read that races with a write of the same page may return either version, as an uncached read
//!   may; once the write has completed, every read returns the new bytes.
//! - Writes by other processes or through raw descriptors are not seen (see `file/coherence.rs`).
//! - The last page of a file whose length is not a multiple of a page is read from the file every time,
//!   and concurrent readers of it read it one after another (each waits for the load before it, which
//!   is then not kept). Layer files are padded to whole pages; small or growing files pay this.
//!
//! [`IoBufferMut`]: io_engine::IoBufferMut
//! [`Consumer::PageCache`]: crate::memory_budget::Consumer::PageCache
//! [`Reservation`]: crate::memory_budget::Reservation

mod budget;
mod map;
mod slot;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use map::State;
use slot::Slot;
pub use slot::CACHE_PAGE_SIZE;
pub(crate) use slot::{PageBuf, PageKey};

use crate::memory_budget::{MemoryBudget, MemoryBudgetError, Reclaim};

/// How a read uses the page cache: whether the pages it loads are kept and its hits count as uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReadIntent {
    /// A read that may come again (an index lookup, a point get): a hit marks the page as recently
    /// used, a miss reads the page into the cache and keeps it.
    #[default]
    Point,
    /// One pass over a file (a full iteration, a verification): a resident page is used but not marked
    /// as recently used, and a page that is not resident is read from the file without being kept, so
    /// the pass neither evicts pages nor makes them look hot.
    Scan,
}

/// The page cache of one context.
pub(crate) struct PageCache {
    budget: MemoryBudget,
    state: Mutex<State>,
    /// A load finished (page ready, or slot free again) or a slot became free.
    changed: Notify,
    hits: AtomicU64,
    misses: AtomicU64,
    scan_hits: AtomicU64,
    scan_misses: AtomicU64,
    evictions: AtomicU64,
    device_reads: AtomicU64,
    inserts: AtomicU64,
}

/// A point-in-time copy of the page cache's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCacheSnapshot {
    /// Page lookups that found the page.
    pub hits: u64,
    /// Page lookups that read the page from the file.
    pub misses: u64,
    /// The part of `hits` made by scans ([`ReadIntent::Scan`]).
    pub scan_hits: u64,
    /// The part of `misses` made by scans ([`ReadIntent::Scan`]): pages read and not kept.
    pub scan_misses: u64,
    /// Pages dropped to make room for others or to give memory back to the budget.
    pub evictions: u64,
    /// Page reads from the file (one per miss that completed, failed or not).
    pub device_reads: u64,
    /// Pages put in other than by a single-page miss: by writers (write-through) and by reads of
    /// several pages at once.
    pub inserts: u64,
    /// Pages held now.
    pub resident_pages: u64,
}

impl PageCacheSnapshot {
    /// Hits of point reads ([`ReadIntent::Point`]). (The counters are read one after another, so a
    /// snapshot taken during reads may be off by the reads in between.)
    pub fn point_hits(&self) -> u64 {
        self.hits.saturating_sub(self.scan_hits)
    }

    /// Misses of point reads ([`ReadIntent::Point`]).
    pub fn point_misses(&self) -> u64 {
        self.misses.saturating_sub(self.scan_misses)
    }
}

/// What a lookup found.
enum Lookup<R> {
    Hit(R),
    /// Caller must read the page into this buffer, in slot `slot`.
    Load {
        slot: usize,
        page: PageBuf,
    },
    /// Wait for a change and look again.
    Wait,
    /// No slot and no memory: reserve one page from the budget (may wait), then look again.
    Grow,
}

impl PageCache {
    pub(crate) fn new(budget: MemoryBudget) -> Arc<PageCache> {
        let cache = Arc::new(PageCache {
            budget: budget.clone(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            scan_hits: AtomicU64::new(0),
            scan_misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            device_reads: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&cache);
        budget.register_reclaimer(weak);
        cache
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn snapshot(&self) -> PageCacheSnapshot {
        let resident = self.lock().map.len() as u64;
        PageCacheSnapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            scan_hits: self.scan_hits.load(Relaxed),
            scan_misses: self.scan_misses.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            device_reads: self.device_reads.load(Relaxed),
            inserts: self.inserts.load(Relaxed),
            resident_pages: resident,
        }
    }

    /// Calls `f` with the bytes of page `key` (shorter than a page only at end of file, and then not kept),
    /// reading the page with `load` on a miss. `load` gets an empty page buffer and returns it filled (or
    /// an error, and the buffer back). With [`ReadIntent::Scan`] a hit does not mark the page as used,
    /// and a miss (also of a page being loaded by another read) loads into a buffer of its own that is
    /// dropped afterwards: no slot is taken, nothing is put in.
    pub(crate) async fn with_page<R, E, L, Fut>(
        &self,
        key: PageKey,
        intent: ReadIntent,
        mut f: impl FnMut(&[u8]) -> R,
        load: L,
    ) -> Result<R, E>
    where
        L: Fn(PageBuf) -> Fut,
        Fut: std::future::Future<Output = (PageBuf, Result<(), E>)>,
        E: From<MemoryBudgetError>,
    {
        // The hit path: one lock, one lookup, the copy; no waiter registered.
        {
            let mut st = self.lock();
            if let Some(&i) = st.map.get(&key) {
                if let Slot::Ready {
                    page, referenced, ..
                } = &mut st.slots[i]
                {
                    match intent {
                        ReadIntent::Point => *referenced = true,
                        ReadIntent::Scan => {
                            self.scan_hits.fetch_add(1, Relaxed);
                        }
                    }
                    self.hits.fetch_add(1, Relaxed);
                    return Ok(f(page.buf.as_slice()));
                }
            }
        }
        if intent == ReadIntent::Scan {
            return self.scan_miss(f, load).await;
        }
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = {
                let mut st = self.lock();
                self.lookup(&mut st, key, &mut f)
            };
            match found {
                Lookup::Hit(r) => return Ok(r),
                Lookup::Wait => notified.await,
                Lookup::Grow => {
                    tokio::select! {
                        page = budget::new_page(&self.budget) => self.lock().put_free(page?),
                        () = &mut notified => {}
                    }
                }
                Lookup::Load { slot, mut page } => {
                    self.misses.fetch_add(1, Relaxed);
                    // Armed until `finish`: a load that is dropped, or a `load` or `f` that panics, leaves
                    // the slot vacant and wakes the waiters.
                    let guard = LoadGuard {
                        cache: self,
                        slot,
                        key,
                    };
                    page.buf.clear();
                    let (page, res) = load(page).await;
                    self.device_reads.fetch_add(1, Relaxed);
                    let out = res.map(|()| f(page.buf.as_slice()));
                    guard.finish(page, out.is_ok());
                    return out;
                }
            }
        }
    }

    /// A scan's miss: `load` into a buffer outside the cache (no slot, no budget: like the one buffer of
    /// a read of several pages), `f` on it, and the buffer dropped. Nothing is left to undo if the future
    /// is dropped or `f` panics.
    async fn scan_miss<R, E, L, Fut>(&self, mut f: impl FnMut(&[u8]) -> R, load: L) -> Result<R, E>
    where
        L: Fn(PageBuf) -> Fut,
        Fut: std::future::Future<Output = (PageBuf, Result<(), E>)>,
    {
        self.misses.fetch_add(1, Relaxed);
        self.scan_misses.fetch_add(1, Relaxed);
        let (page, res) = load(PageBuf::transient()).await;
        self.device_reads.fetch_add(1, Relaxed);
        res.map(|()| f(page.buf.as_slice()))
    }

    fn lookup<R>(&self, st: &mut State, key: PageKey, f: &mut impl FnMut(&[u8]) -> R) -> Lookup<R> {
        if let Some(&i) = st.map.get(&key) {
            return match &mut st.slots[i] {
                Slot::Ready {
                    page, referenced, ..
                } => {
                    *referenced = true;
                    self.hits.fetch_add(1, Relaxed);
                    Lookup::Hit(f(page.buf.as_slice()))
                }
                _ => Lookup::Wait,
            };
        }
        match self.take_slot(st) {
            Some((slot, page)) => {
                st.slots[slot] = Slot::Loading { stale: false };
                st.map_insert(key, slot);
                Lookup::Load { slot, page }
            }
            // Every page is being read (or there is none) and the budget is full: wait for memory or
            // for a read to finish, whichever comes first.
            None => Lookup::Grow,
        }
    }

    /// A slot and buffer for a new page: a free one, a new one if the budget has room now, or the clock's
    /// victim. `None` if all pages are being read and the budget is full.
    fn take_slot(&self, st: &mut State) -> Option<(usize, PageBuf)> {
        if let Some(i) = st.free.pop() {
            if let Slot::Free(page) = std::mem::replace(&mut st.slots[i], Slot::Vacant) {
                return Some((i, page));
            }
        }
        if let Some(page) = budget::try_new_page(&self.budget) {
            let i = st.vacant_index();
            return Some((i, page));
        }
        let i = st.clock_victim(true)?;
        let page = st.evict(i)?;
        self.evictions.fetch_add(1, Relaxed);
        Some((i, page))
    }

    fn finish_load(&self, slot: usize, key: PageKey, page: PageBuf, ok: bool) {
        {
            let mut st = self.lock();
            let stale = matches!(st.slots[slot], Slot::Loading { stale: true, .. });
            if ok && !stale && page.buf.len() == CACHE_PAGE_SIZE {
                st.slots[slot] = Slot::Ready {
                    key,
                    page,
                    referenced: true,
                };
            } else {
                if st.map.get(&key) == Some(&slot) {
                    st.map_remove(&key);
                }
                st.slots[slot] = Slot::Vacant;
                st.put_free_at(slot, page);
            }
        }
        self.changed.notify_waiters();
        self.budget.notify_reclaimable();
    }

    /// Counts a read of `pages` pages made outside [`with_page`](Self::with_page) (one device read): each
    /// counts as a miss, also one that happened to be resident (a range is read whole when any of its
    /// pages is missing); a scan's also as a scan miss.
    pub(crate) fn count_read(&self, pages: u64, intent: ReadIntent) {
        self.misses.fetch_add(pages, Relaxed);
        if intent == ReadIntent::Scan {
            self.scan_misses.fetch_add(pages, Relaxed);
        }
        self.device_reads.fetch_add(1, Relaxed);
    }

    /// Puts pages of file `file_id` read or written outside the cache: `data` holds pages `first`,
    /// `first + 1`, ... (a last short page is not kept). Nothing at all is put in unless `seq` still
    /// holds `seen` (the file's invalidation count, checked under the cache's lock: a mutation that
    /// began or ended since the read started, or since the write completed, may have changed the pages).
    /// With `replace`, resident pages are overwritten (write-through: `data` is what the file now holds);
    /// without, only pages not resident are put in. Takes memory only if it is free or a page can be
    /// evicted; never waits.
    pub(crate) fn insert_pages(
        &self,
        file_id: u64,
        first: u64,
        data: &[u8],
        (seq, seen): (&AtomicU64, u64),
        replace: bool,
    ) {
        let mut st = self.lock();
        if seq.load(Ordering::SeqCst) != seen {
            return;
        }
        for (i, page) in data.chunks_exact(CACHE_PAGE_SIZE).enumerate() {
            let key = (file_id, first + i as u64);
            if replace || !st.map.contains_key(&key) {
                self.insert_locked(&mut st, key, page);
            }
        }
    }

    fn insert_locked(&self, st: &mut State, key: PageKey, data: &[u8]) {
        debug_assert!(data.len() == CACHE_PAGE_SIZE);
        if let Some(&i) = st.map.get(&key) {
            match &mut st.slots[i] {
                Slot::Ready { page, .. } => {
                    page.buf.clear();
                    page.buf.extend_from_slice(data);
                }
                Slot::Loading { stale, .. } => *stale = true,
                _ => {}
            }
            return;
        }
        if let Some((i, mut page)) = self.take_slot(st) {
            page.buf.clear();
            page.buf.extend_from_slice(data);
            st.slots[i] = Slot::Ready {
                key,
                page,
                referenced: false,
            };
            st.map_insert(key, i);
            self.inserts.fetch_add(1, Relaxed);
        }
    }

    /// Appends `[offset, offset + len)` of file `file_id` to `out` if every page of it is resident (and
    /// long enough); else false and `out` as it was. One lock for the whole range.
    pub(crate) fn append_if_resident(
        &self,
        file_id: u64,
        offset: u64,
        len: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let start_len = out.len();
        out.resize(start_len + len, 0);
        if self.copy_if_resident(file_id, offset, &mut out[start_len..], ReadIntent::Point) {
            return true;
        }
        out.truncate(start_len);
        false
    }

    /// Fills `dst` with the bytes at `offset` of file `file_id` if every page they touch is resident (and
    /// long enough), counting each page as a hit (and marking it as used, unless `intent` is a scan);
    /// else false, with nothing counted and `dst` possibly partly written. One lock for the whole range.
    pub(crate) fn copy_if_resident(
        &self,
        file_id: u64,
        offset: u64,
        dst: &mut [u8],
        intent: ReadIntent,
    ) -> bool {
        let page = CACHE_PAGE_SIZE as u64;
        let len = dst.len();
        let first = offset / page;
        let last = (offset + len as u64).div_ceil(page);
        let mut st = self.lock();
        // All pages first, so nothing is copied for a range that is not whole in memory.
        if !(first..last).all(|p| {
            st.map
                .get(&(file_id, p))
                .is_some_and(|&i| matches!(st.slots[i], Slot::Ready { .. }))
        }) {
            return false;
        }
        let mut done = 0;
        let mut pages = 0;
        while done < len {
            let pos = offset + done as u64;
            let in_page = (pos % page) as usize;
            let want = (len - done).min(CACHE_PAGE_SIZE - in_page);
            let Some(&i) = st.map.get(&(file_id, pos / page)) else {
                return false;
            };
            let Slot::Ready {
                page: buf,
                referenced,
                ..
            } = &mut st.slots[i]
            else {
                return false;
            };
            let bytes = buf.buf.as_slice();
            if bytes.len() < in_page + want {
                return false;
            }
            dst[done..done + want].copy_from_slice(&bytes[in_page..in_page + want]);
            if intent == ReadIntent::Point {
                *referenced = true;
            }
            done += want;
            pages += 1;
        }
        self.hits.fetch_add(pages, Relaxed);
        if intent == ReadIntent::Scan {
            self.scan_hits.fetch_add(pages, Relaxed);
        }
        true
    }

    /// Drops the pages of file `file_id` numbered `pages` (a mutation may change them); a page being read
    /// is marked so that it is not kept when its read completes.
    pub(crate) fn invalidate(&self, file_id: u64, pages: std::ops::Range<u64>) {
        let mut st = self.lock();
        if !st.per_file.contains_key(&file_id) {
            return;
        }
        let keys: Vec<PageKey> = if pages.end - pages.start > st.map.len() as u64 {
            st.map
                .keys()
                .filter(|k| k.0 == file_id && pages.contains(&k.1))
                .copied()
                .collect()
        } else {
            pages.map(|p| (file_id, p)).collect()
        };
        for key in keys {
            st.drop_key(key);
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Number of pages held by file `file_id`, for tests.
    #[cfg(test)]
    pub(crate) fn pages_of(&self, file_id: u64) -> usize {
        let st = self.lock();
        let n = st.map.keys().filter(|k| k.0 == file_id).count();
        assert_eq!(
            st.per_file.get(&file_id).copied().unwrap_or(0),
            n,
            "per-file count"
        );
        n
    }
}

impl Reclaim for PageCache {
    fn reclaim(&self, bytes: usize) -> usize {
        let (freed, evicted) = self.lock().give_back(bytes);
        self.evictions.fetch_add(evicted, Relaxed);
        // Buffers freed and reservations dropped outside the lock.
        freed.len() * CACHE_PAGE_SIZE
    }
}

/// Undoes a load that did not finish (its future was dropped, or `load` or the copy panicked): the slot
/// is left vacant (its buffer and reservation went with the read, whose owner frees them when the kernel
/// is done) and waiters look again.
struct LoadGuard<'a> {
    cache: &'a PageCache,
    slot: usize,
    key: PageKey,
}

impl LoadGuard<'_> {
    /// The load finished: the page is kept if `ok` (and whole, and not invalidated meanwhile).
    fn finish(self, page: PageBuf, ok: bool) {
        let (cache, slot, key) = (self.cache, self.slot, self.key);
        std::mem::forget(self);
        cache.finish_load(slot, key, page, ok);
    }
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        {
            let mut st = self.cache.lock();
            if st.map.get(&self.key) == Some(&self.slot) {
                st.map_remove(&self.key);
            }
            st.slots[self.slot] = Slot::Vacant;
            st.vacant.push(self.slot);
        }
        self.cache.changed.notify_waiters();
        self.cache.budget.notify_reclaimable();
    }
}
