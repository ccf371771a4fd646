//! [`MemoryBudget`]: one budget of bytes for all IO memory of an [`IoContext`](crate::IoContext):
//! [`BufferedWriter`](crate::buffered_writer::BufferedWriter) buffers, layer read buffers and the page cache.
//!
//! # Rules
//!
//! - A consumer *reserves before it allocates* ([`MemoryBudget::reserve`]) and gives the bytes back by
//!   dropping the [`Reservation`] after it freed (or handed on) the memory. The sum of live reservations
//!   never exceeds the budget: `current` is raised only after the bytes were taken from the semaphore and
//!   lowered before they are given back, so even the metric cannot overshoot.
//! - A reservation that does not fit *waits* (back-pressure). Before it waits, it asks the registered
//!   [`Reclaim`]ers (the page cache) to give back memory they hold only as a cache, and it asks again each
//!   time one of them reports that more became reclaimable ([`MemoryBudget::notify_reclaimable`]). So a
//!   cache may fill the whole budget while nobody else needs it, and shrinks when someone does.
//! - Reclaimers come in two kinds, asked in this order: *caches* ([`MemoryBudget::register_reclaimer`],
//!   the page cache), which drop pages at once, and *spillers* ([`MemoryBudget::register_spiller`], a
//!   [`BufferedWriter`](crate::buffered_writer::BufferedWriter) in spill mode), which write bytes they keep in memory to
//!   their file and give the memory back when the write is done. A spiller is asked only for what the
//!   caches could not give.
//! - It never fails for lack of memory, except a single request larger than the whole budget, which can
//!   never be met: [`MemoryBudgetError::TooLarge`], returned at once.
//! - Waiters are served first come, first served (the semaphore is fair), so a large request is not
//!   starved by a stream of small ones.
//!
//! # Weaknesses
//!
//! - A reservation is counted in bytes, not pages; the allocator's own rounding is not counted.
//! - Memory held outside any reservation (a lookup's transient copies of index pages, decoded values handed
//!   to the caller, the one buffer a cached read of several missing pages reads them into) is not in the
//!   budget; the budget bounds IO buffers, not the process.
//! - A waiter is told about reclaimable memory without knowing how many bytes the semaphore already
//!   assigned to it, so it may ask the caches for more than it still lacks.
//! - A consumer that holds a reservation and waits for another one can deadlock with others doing the same;
//!   the consumers in this workspace hold at most one reservation while they wait (see the page cache and
//!   the layer readers).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use enum_map::{Enum, EnumMap};
use tokio::sync::{Notify, Semaphore};

/// The environment variable with the memory budget in MiB.
pub const MEMORY_MIB_ENV: &str = io_engine::env::MEMORY_MIB;

/// Default memory budget: 256 MiB.
pub const DEFAULT_MEMORY_BYTES: usize = 256 << 20;

/// Largest single reservation (the semaphore counts permits in `u32` per acquisition).
pub const MAX_RESERVATION: usize = u32::MAX as usize;

/// Who holds IO memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, strum::Display, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Consumer {
    /// [`BufferedWriter`](crate::buffered_writer::BufferedWriter) buffers.
    WriterBuffers,
    /// Read buffers of layer readers (merged value reads).
    ReadBuffers,
    /// Pages of the page cache.
    PageCache,
    /// Buffers of object-store transfers in flight (parts being written, body chunks being read).
    StoreTransfers,
    /// Reads in flight ahead of a [`Scan`](crate::Scan)'s consumer.
    ScanBuffers,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryBudgetError {
    /// One request is larger than the whole budget (or than [`MAX_RESERVATION`]): it can never be met.
    #[error(
        "{consumer} asked for {requested} bytes at once, more than the whole memory budget of {budget} \
         bytes (set {MEMORY_MIB_ENV} or the context builder's memory budget higher)"
    )]
    TooLarge {
        /// Who asked.
        consumer: Consumer,
        /// Bytes asked for.
        requested: usize,
        /// The budget.
        budget: usize,
    },
}

/// Memory a consumer holds only as a cache, which it can give back when the budget runs short.
pub trait Reclaim: Send + Sync {
    /// Frees up to (about) `bytes` of reclaimable memory by dropping reservations; returns the bytes
    /// freed. Called without any budget lock held; must not wait.
    fn reclaim(&self, bytes: usize) -> usize;
}

/// A shared budget of IO memory; cheap to clone (clones share one budget).
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    total: usize,
    semaphore: Semaphore,
    current: EnumMap<Consumer, AtomicU64>,
    peak: EnumMap<Consumer, AtomicU64>,
    total_current: AtomicU64,
    total_peak: AtomicU64,
    waits: AtomicU64,
    reclaimers: Mutex<Vec<Weak<dyn Reclaim>>>,
    spillers: Mutex<Vec<Weak<dyn Reclaim>>>,
    reclaimable: Notify,
}

/// A point-in-time copy of a budget's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryBudgetSnapshot {
    /// The budget in bytes.
    pub total: u64,
    /// Bytes reserved now, per consumer.
    pub current: EnumMap<Consumer, u64>,
    /// Most bytes reserved at once, per consumer.
    pub peak: EnumMap<Consumer, u64>,
    /// Bytes reserved now by all consumers.
    pub total_current: u64,
    /// Most bytes reserved at once by all consumers together (never above `total`).
    pub total_peak: u64,
    /// Reservations that had to wait.
    pub waits: u64,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("total", &self.inner.total)
            .field("reserved", &self.inner.total_current.load(Relaxed))
            .finish()
    }
}

impl MemoryBudget {
    /// A budget of `bytes` (at least 1).
    pub fn new(bytes: usize) -> MemoryBudget {
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS);
        MemoryBudget {
            inner: Arc::new(Inner {
                total,
                semaphore: Semaphore::new(total),
                current: EnumMap::default(),
                peak: EnumMap::default(),
                total_current: AtomicU64::new(0),
                total_peak: AtomicU64::new(0),
                waits: AtomicU64::new(0),
                reclaimers: Mutex::new(Vec::new()),
                spillers: Mutex::new(Vec::new()),
                reclaimable: Notify::new(),
            }),
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.inner.total
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.inner.semaphore.available_permits()
    }

    /// A copy of the metrics.
    pub fn snapshot(&self) -> MemoryBudgetSnapshot {
        let i = &self.inner;
        MemoryBudgetSnapshot {
            total: i.total as u64,
            current: EnumMap::from_fn(|c| i.current[c].load(Relaxed)),
            peak: EnumMap::from_fn(|c| i.peak[c].load(Relaxed)),
            total_current: i.total_current.load(Relaxed),
            total_peak: i.total_peak.load(Relaxed),
            waits: i.waits.load(Relaxed),
        }
    }

    /// Registers memory that can be reclaimed under pressure (held weakly: a dropped reclaimer is
    /// forgotten).
    pub fn register_reclaimer(&self, reclaimer: Weak<dyn Reclaim>) {
        self.inner
            .reclaimers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reclaimer);
    }

    /// Registers memory that can be given back only after it was written to a file (held weakly). Asked
    /// after every cache; its [`Reclaim::reclaim`] starts the writes and returns 0, and the memory comes
    /// back when they finish (the bytes are then free for the waiting reservations).
    pub fn register_spiller(&self, spiller: Weak<dyn Reclaim>) {
        self.inner
            .spillers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(spiller);
    }

    /// Wakes waiting reservations so they ask the reclaimers again (a reclaimer calls this when memory it
    /// could not give back before, such as a page being read, became reclaimable).
    pub fn notify_reclaimable(&self) {
        self.inner.reclaimable.notify_waiters();
    }

    fn check_size(&self, consumer: Consumer, bytes: usize) -> Result<(), MemoryBudgetError> {
        if bytes > self.inner.total || bytes > MAX_RESERVATION {
            return Err(MemoryBudgetError::TooLarge {
                consumer,
                requested: bytes,
                budget: self.inner.total,
            });
        }
        Ok(())
    }

    /// Takes `bytes` now if they are free, without reclaiming or waiting.
    pub fn try_reserve(&self, consumer: Consumer, bytes: usize) -> Option<Reservation> {
        self.check_size(consumer, bytes).ok()?;
        if bytes == 0 {
            return Some(self.account(consumer, 0));
        }
        let permit = self.inner.semaphore.try_acquire_many(bytes as u32).ok()?;
        permit.forget();
        Some(self.account(consumer, bytes))
    }

    /// Takes `bytes` now if they are free or the caches can give them back at once (never asks a
    /// spiller, never waits): for a consumer that would rather hold memory than let a cache hold it, but
    /// would rather spill its own bytes than somebody else's.
    pub fn try_reserve_from_caches(&self, consumer: Consumer, bytes: usize) -> Option<Reservation> {
        if let Some(r) = self.try_reserve(consumer, bytes) {
            return Some(r);
        }
        self.check_size(consumer, bytes).ok()?;
        let short = bytes.saturating_sub(self.available());
        reclaim_from(&self.inner.reclaimers, short);
        self.try_reserve(consumer, bytes)
    }

    /// Waits until `bytes` are free (asking reclaimers for memory first) and takes them. A request larger
    /// than the whole budget is [`MemoryBudgetError::TooLarge`] at once.
    pub async fn reserve(
        &self,
        consumer: Consumer,
        bytes: usize,
    ) -> Result<Reservation, MemoryBudgetError> {
        self.check_size(consumer, bytes)?;
        if let Some(r) = self.try_reserve(consumer, bytes) {
            return Ok(r);
        }
        self.inner.waits.fetch_add(1, Relaxed);
        // One acquisition for the whole wait: it keeps its place in the semaphore's queue (and the
        // permits already assigned to it) across reclaim notifications, so waiters are served in
        // arrival order.
        let acquire = self.inner.semaphore.acquire_many(bytes as u32);
        tokio::pin!(acquire);
        loop {
            let notified = self.inner.reclaimable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let short = bytes.saturating_sub(self.available());
            self.reclaim(short);
            tokio::select! {
                biased;
                permit = &mut acquire => {
                    // The semaphore is never closed: it lives as long as `self`.
                    let permit = permit.expect("the budget's semaphore is never closed");
                    permit.forget();
                    return Ok(self.account(consumer, bytes));
                }
                () = &mut notified => {}
            }
        }
    }

    /// Asks the caches, then the spillers, for `bytes`.
    fn reclaim(&self, bytes: usize) {
        let short = reclaim_from(&self.inner.reclaimers, bytes);
        reclaim_from(&self.inner.spillers, short);
    }

    fn account(&self, consumer: Consumer, bytes: usize) -> Reservation {
        let i = &self.inner;
        let b = bytes as u64;
        let now = i.current[consumer].fetch_add(b, Relaxed) + b;
        i.peak[consumer].fetch_max(now, Relaxed);
        let all = i.total_current.fetch_add(b, Relaxed) + b;
        i.total_peak.fetch_max(all, Relaxed);
        Reservation {
            budget: Arc::clone(&self.inner),
            consumer,
            bytes,
        }
    }
}

/// Asks each live reclaimer of `list` in turn for what is still missing of `bytes`; returns what is still
/// missing. The list's lock is not held while a reclaimer runs.
fn reclaim_from(list: &Mutex<Vec<Weak<dyn Reclaim>>>, mut bytes: usize) -> usize {
    if bytes == 0 {
        return 0;
    }
    let reclaimers: Vec<Arc<dyn Reclaim>> = {
        let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    };
    for r in reclaimers {
        bytes = bytes.saturating_sub(r.reclaim(bytes));
        if bytes == 0 {
            break;
        }
    }
    bytes
}

/// Bytes taken from a [`MemoryBudget`]; given back on drop.
#[must_use = "the bytes are given back as soon as the reservation is dropped"]
pub struct Reservation {
    budget: Arc<Inner>,
    consumer: Consumer,
    bytes: usize,
}

impl Reservation {
    /// The bytes reserved.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Who holds it.
    pub fn consumer(&self) -> Consumer {
        self.consumer
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let b = self.bytes as u64;
        // Metrics first, then the bytes: `current` never counts bytes another reservation already took.
        self.budget.current[self.consumer].fetch_sub(b, Relaxed);
        self.budget.total_current.fetch_sub(b, Relaxed);
        self.budget.semaphore.add_permits(self.bytes);
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("consumer", &self.consumer)
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests;
