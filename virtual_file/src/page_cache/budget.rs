//! The page cache's budget accounting: every page buffer is paid for by a [`Reservation`] of
//! [`CACHE_PAGE_SIZE`] bytes from the context's [`MemoryBudget`] (consumer [`Consumer::PageCache`]),
//! taken before the buffer is allocated and travelling with it ([`PageBuf`]) until it is freed. Under
//! budget pressure the cache gives back free and unpinned pages ([`State::give_back`], the cache's
//! `Reclaim`).
//!
//! [`Reservation`]: crate::memory_budget::Reservation

use super::map::State;
use super::slot::{PageBuf, Slot, CACHE_PAGE_SIZE};
use crate::memory_budget::{Consumer, MemoryBudget, MemoryBudgetError};

/// A new page buffer if the budget has a page's bytes free now (never waits).
pub(super) fn try_new_page(budget: &MemoryBudget) -> Option<PageBuf> {
    budget
        .try_reserve(Consumer::PageCache, CACHE_PAGE_SIZE)
        .map(PageBuf::new)
}

/// A new page buffer, waiting until the budget has a page's bytes (other consumers give back).
pub(super) async fn new_page(budget: &MemoryBudget) -> Result<PageBuf, MemoryBudgetError> {
    let reservation = budget.reserve(Consumer::PageCache, CACHE_PAGE_SIZE).await?;
    Ok(PageBuf::new(reservation))
}

impl State {
    /// Takes pages out of the cache until they hold at least `bytes` (or nothing more can go): free
    /// slots first, then the clock's victims without a second chance; pinned (`Loading`) slots stay.
    /// Returns the buffers, to be freed outside the cache's lock, and how many of them were evicted
    /// pages.
    pub(super) fn give_back(&mut self, bytes: usize) -> (Vec<PageBuf>, u64) {
        let mut freed = Vec::new();
        let mut evicted = 0;
        while freed.len() * CACHE_PAGE_SIZE < bytes {
            if let Some(i) = self.free.pop() {
                if let Slot::Free(page) = std::mem::replace(&mut self.slots[i], Slot::Vacant) {
                    freed.push(page);
                    self.vacant.push(i);
                }
                continue;
            }
            let Some(i) = self.clock_victim(false) else {
                break;
            };
            if let Some(page) = self.evict(i) {
                evicted += 1;
                freed.push(page);
                self.vacant.push(i);
            }
        }
        (freed, evicted)
    }
}
