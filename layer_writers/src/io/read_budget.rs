//! [`ReadBudget`]: a budget of read-buffer bytes in flight, shared by layer readers.
//!
//! A reader acquires the size of each read from the budget *before* it allocates the read's buffer, and
//! releases it (drops the [`BudgetPermit`]) after the bytes are decoded. So however many lookups run at
//! once, the read buffers alive at any moment add up to at most the budget: IO that outpaces decoding
//! waits here instead of piling up memory.
//!
//! A budget of its own ([`ReadBudget::new`]): a single read larger than the whole budget takes the whole
//! budget, so it runs alone, after every other holder has released, and is never refused or deadlocked.
//! Memory is then bounded by `max(budget, largest single read)`.
//!
//! A budget drawn from the context's [`MemoryBudget`] ([`ReadBudget::from_memory_budget`]), shared with
//! writer buffers and the page cache (which gives pages back when a read waits): a single read larger than
//! the whole memory budget is refused with [`MemoryBudgetError::TooLarge`], since it can never fit.
//!
//! A reader holds at most one permit at a time and does no other waiting on the budget while it holds one,
//! so readers cannot deadlock each other (no hold-and-wait). Index pages (8 KiB each, one per tree level
//! per lookup) are not counted: a lookup holds several of them across reads of the next, which is exactly
//! the hold-and-wait that could deadlock a byte budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use virtual_file::{Consumer, MemoryBudget, MemoryBudgetError, Reservation};

/// Largest budget: the semaphore counts permits in `u32` per acquisition.
pub const MAX_READ_BUDGET: usize = u32::MAX as usize;

/// A shared budget of read-buffer bytes in flight; cheap to clone (all clones share one budget).
#[derive(Clone)]
pub struct ReadBudget {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set: the bytes are reserved there ([`Consumer::ReadBuffers`]) instead of in `semaphore`.
    memory: Option<MemoryBudget>,
    semaphore: Arc<Semaphore>,
    total: u32,
    /// Bytes of the reads currently holding a permit (their real sizes, not clamped to the budget).
    held: AtomicU64,
    /// Highest `held` seen.
    max_held: AtomicU64,
}

impl std::fmt::Debug for ReadBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBudget")
            .field("total", &self.inner.total)
            .field("held", &self.held())
            .field("max_held", &self.max_held())
            .finish()
    }
}

impl ReadBudget {
    /// A budget of `bytes` (clamped to `1..=MAX_READ_BUDGET`).
    pub fn new(bytes: usize) -> ReadBudget {
        let total = bytes.clamp(1, MAX_READ_BUDGET) as u32;
        ReadBudget {
            inner: Arc::new(Inner {
                memory: None,
                semaphore: Arc::new(Semaphore::new(total as usize)),
                total,
                held: AtomicU64::new(0),
                max_held: AtomicU64::new(0),
            }),
        }
    }

    /// Read buffers reserved from `memory` (consumer [`Consumer::ReadBuffers`]), shared with every other
    /// consumer of that budget.
    pub fn from_memory_budget(memory: MemoryBudget) -> ReadBudget {
        let total = memory.total().clamp(1, MAX_READ_BUDGET) as u32;
        ReadBudget {
            inner: Arc::new(Inner {
                memory: Some(memory),
                semaphore: Arc::new(Semaphore::new(0)),
                total,
                held: AtomicU64::new(0),
                max_held: AtomicU64::new(0),
            }),
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.inner.total as usize
    }

    /// Bytes of read buffers currently covered by permits.
    pub fn held(&self) -> u64 {
        self.inner.held.load(Ordering::Relaxed)
    }

    /// The most bytes ever held at once (real read sizes: an oversize read counts fully).
    pub fn max_held(&self) -> u64 {
        self.inner.max_held.load(Ordering::Relaxed)
    }

    /// Bytes not currently taken from the budget.
    pub fn available(&self) -> usize {
        match &self.inner.memory {
            Some(memory) => memory.available(),
            None => self.inner.semaphore.available_permits(),
        }
    }

    /// Waits until `bytes` are free and takes them. The permit gives them back when dropped. With a budget
    /// of its own, a read larger than the whole budget takes all of it; from a [`MemoryBudget`], it is
    /// [`MemoryBudgetError::TooLarge`].
    pub async fn acquire(&self, bytes: usize) -> Result<BudgetPermit, MemoryBudgetError> {
        if let Some(memory) = &self.inner.memory {
            let reservation = memory.reserve(Consumer::ReadBuffers, bytes).await?;
            return Ok(self.permit(bytes, Holds::Memory(reservation)));
        }
        let take = bytes.clamp(1, self.total()) as u32;
        let permit = match Arc::clone(&self.inner.semaphore)
            .acquire_many_owned(take)
            .await
        {
            Ok(permit) => Some(permit),
            Err(_) => {
                // The semaphore is never closed (only this module holds it); proceed unbudgeted rather than
                // fail a read if that ever changes.
                tracing::error!("read budget semaphore closed; reading without a budget");
                None
            }
        };
        Ok(self.permit(bytes, Holds::Own(permit)))
    }

    fn permit(&self, bytes: usize, holds: Holds) -> BudgetPermit {
        let bytes = bytes as u64;
        let now = self.inner.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.inner.max_held.fetch_max(now, Ordering::Relaxed);
        BudgetPermit {
            budget: Arc::clone(&self.inner),
            bytes,
            _holds: holds,
        }
    }
}

/// What a permit keeps taken.
enum Holds {
    Own(#[allow(dead_code)] Option<OwnedSemaphorePermit>),
    Memory(#[allow(dead_code)] Reservation),
}

/// Bytes taken from a [`ReadBudget`]; returned on drop.
#[must_use = "the bytes are returned as soon as the permit is dropped"]
pub struct BudgetPermit {
    budget: Arc<Inner>,
    bytes: u64,
    // Dropped after `Drop::drop` ran, so `held` is lowered before the bytes become available again.
    _holds: Holds,
}

impl BudgetPermit {
    /// The read size this permit covers.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for BudgetPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetPermit")
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn acquire_release_and_max() {
        let b = ReadBudget::new(1000);
        assert_eq!(b.total(), 1000);
        let p1 = b.acquire(600).await.unwrap();
        assert_eq!(b.held(), 600);
        assert_eq!(b.available(), 400);
        // 500 more does not fit until p1 is gone.
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire(500).await.unwrap().bytes() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(p1);
        assert_eq!(waiter.await.unwrap(), 500);
        assert_eq!(b.held(), 0);
        assert_eq!(b.max_held(), 600);
        assert_eq!(b.available(), 1000);
    }

    #[tokio::test]
    async fn oversize_takes_everything_and_runs_alone() {
        let b = ReadBudget::new(1000);
        let small = b.acquire(10).await.unwrap();
        let b2 = b.clone();
        let big = tokio::spawn(async move {
            let p = b2.acquire(5000).await.unwrap();
            assert_eq!(b2.available(), 0);
            p.bytes()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !big.is_finished(),
            "oversize read must wait for the other holder"
        );
        drop(small);
        assert_eq!(big.await.unwrap(), 5000);
        assert_eq!(b.max_held(), 5000);
        assert_eq!(b.held(), 0);
    }

    #[tokio::test]
    async fn from_a_memory_budget_a_read_above_it_is_refused() {
        let memory = MemoryBudget::new(1000);
        let b = ReadBudget::from_memory_budget(memory.clone());
        let p = b.acquire(700).await.unwrap();
        assert_eq!(memory.snapshot().current[Consumer::ReadBuffers], 700);
        assert_eq!(b.available(), 300);
        drop(p);
        assert_eq!(memory.available(), 1000);
        assert!(matches!(
            b.acquire(1001).await,
            Err(MemoryBudgetError::TooLarge {
                requested: 1001,
                ..
            })
        ));
    }

    #[test]
    fn clamps() {
        assert_eq!(ReadBudget::new(0).total(), 1);
        assert_eq!(ReadBudget::new(usize::MAX).total(), MAX_READ_BUDGET);
    }
}
