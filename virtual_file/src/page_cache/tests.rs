use std::time::Duration;

use super::*;
use crate::memory_budget::MemoryBudget;

#[derive(Debug)]
struct Failed;

impl From<MemoryBudgetError> for Failed {
    fn from(_: MemoryBudgetError) -> Failed {
        Failed
    }
}

#[tokio::test]
async fn a_dropped_load_frees_its_slot_and_memory() {
    let budget = MemoryBudget::new(2 * CACHE_PAGE_SIZE);
    let cache = PageCache::new(budget.clone());
    let started = Arc::new(Notify::new());
    let never = {
        let started = Arc::clone(&started);
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .with_page(
                    (1, 0),
                    |b: &[u8]| b.len(),
                    |buf| {
                        let started = Arc::clone(&started);
                        async move {
                            started.notify_one();
                            std::future::pending::<()>().await;
                            (buf, Ok::<(), Failed>(()))
                        }
                    },
                )
                .await
        })
    };
    started.notified().await;
    assert_eq!(
        budget.snapshot().current[Consumer::PageCache],
        CACHE_PAGE_SIZE as u64
    );
    never.abort();
    assert!(never.await.unwrap_err().is_cancelled());
    assert_eq!(budget.snapshot().current[Consumer::PageCache], 0);
    // The page is loadable again, by another caller.
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        cache.with_page(
            (1, 0),
            |b: &[u8]| b.len(),
            |mut buf| async move {
                buf.extend_from_slice(&[7; 100]);
                (buf, Ok::<(), Failed>(()))
            },
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n, 100);
    assert_eq!(cache.pages_of(1), 1);
}

#[tokio::test]
async fn reclaim_gives_back_unpinned_pages() {
    let budget = MemoryBudget::new(4 * CACHE_PAGE_SIZE);
    let cache = PageCache::new(budget.clone());
    for p in 0..4 {
        cache.insert((1, p), &[p as u8; 10]);
    }
    assert_eq!(budget.available(), 0);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        budget.reserve(Consumer::WriterBuffers, 3 * CACHE_PAGE_SIZE),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(cache.pages_of(1), 1);
    drop(r);
    assert!(budget.snapshot().total_peak <= 4 * CACHE_PAGE_SIZE as u64);
}

/// Pages read outside the cache are put in only if no invalidation happened since the read started
/// (a write in between may have changed them), and never over a resident page.
#[test]
fn a_read_outside_the_cache_is_not_put_in_after_an_invalidation() {
    let cache = PageCache::new(MemoryBudget::new(16 * CACHE_PAGE_SIZE));
    let data = vec![7u8; 3 * CACHE_PAGE_SIZE - 100];
    let epoch = cache.epoch();
    cache.invalidate(1, 0..1);
    cache.insert_read(1, 0, &data, epoch);
    assert_eq!(cache.pages_of(1), 0, "stale read put in");
    let epoch = cache.epoch();
    cache.insert((1, 1), &[9u8; CACHE_PAGE_SIZE]);
    cache.insert_read(1, 0, &data, epoch);
    assert_eq!(cache.pages_of(1), 3);
    let mut out = Vec::new();
    assert!(cache.append_if_resident(1, 0, 3 * CACHE_PAGE_SIZE - 100, &mut out));
    assert!(out[..CACHE_PAGE_SIZE].iter().all(|&b| b == 7));
    assert!(
        out[CACHE_PAGE_SIZE..2 * CACHE_PAGE_SIZE]
            .iter()
            .all(|&b| b == 9),
        "a resident page is not replaced"
    );
    assert!(out[2 * CACHE_PAGE_SIZE..].iter().all(|&b| b == 7));
}
