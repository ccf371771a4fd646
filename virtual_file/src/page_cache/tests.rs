use std::time::Duration;

use super::*;
use crate::memory_budget::{Consumer, MemoryBudget};

#[derive(Debug)]
struct Failed;

impl From<MemoryBudgetError> for Failed {
    fn from(_: MemoryBudgetError) -> Failed {
        Failed
    }
}

/// Looks up page (1, 0), loading it as a page of `byte`s on a miss, and returns the length the lookup
/// saw; `None` if it takes over 10 s (a slot left loading).
async fn load_page_of(cache: &PageCache, byte: u8) -> Option<usize> {
    let lookup = cache.with_page(
        (1, 0),
        |b: &[u8]| b.len(),
        |mut page| async move {
            page.buf.extend_from_slice(&[byte; CACHE_PAGE_SIZE]);
            (page, Ok::<(), Failed>(()))
        },
    );
    let res = tokio::time::timeout(Duration::from_secs(10), lookup)
        .await
        .ok()?;
    Some(res.unwrap())
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
    let n = load_page_of(&cache, 7).await.unwrap();
    assert_eq!(n, CACHE_PAGE_SIZE);
    assert_eq!(cache.pages_of(1), 1);
}

#[tokio::test]
async fn reclaim_gives_back_unpinned_pages() {
    let budget = MemoryBudget::new(4 * CACHE_PAGE_SIZE);
    let cache = PageCache::new(budget.clone());
    let seq = AtomicU64::new(0);
    for p in 0..4 {
        cache.insert_pages(1, p, &[p as u8; CACHE_PAGE_SIZE], (&seq, 0), true);
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

/// Pages read outside the cache are put in only if the file's invalidation count is what it was when
/// the read started (a mutation in between may have changed them), never over a resident page unless
/// asked (write-through), and a short last page is never kept.
#[test]
fn a_read_outside_the_cache_is_not_put_in_after_an_invalidation() {
    let cache = PageCache::new(MemoryBudget::new(16 * CACHE_PAGE_SIZE));
    let seq = AtomicU64::new(0);
    let data = vec![7u8; 3 * CACHE_PAGE_SIZE - 100];
    let seen = seq.load(Ordering::SeqCst);
    seq.fetch_add(1, Ordering::SeqCst);
    cache.insert_pages(1, 0, &data, (&seq, seen), false);
    assert_eq!(cache.pages_of(1), 0, "stale read put in");
    let seen = seq.load(Ordering::SeqCst);
    cache.insert_pages(1, 1, &[9u8; CACHE_PAGE_SIZE], (&seq, seen), true);
    cache.insert_pages(1, 0, &data, (&seq, seen), false);
    assert_eq!(cache.pages_of(1), 2, "the short last page is not kept");
    let mut out = Vec::new();
    assert!(cache.append_if_resident(1, 0, 2 * CACHE_PAGE_SIZE, &mut out));
    assert!(out[..CACHE_PAGE_SIZE].iter().all(|&b| b == 7));
    assert!(
        out[CACHE_PAGE_SIZE..].iter().all(|&b| b == 9),
        "a resident page is not replaced"
    );
    cache.insert_pages(1, 1, &[5u8; CACHE_PAGE_SIZE], (&seq, seen), true);
    out.clear();
    assert!(cache.append_if_resident(1, CACHE_PAGE_SIZE as u64, 10, &mut out));
    assert_eq!(out, [5u8; 10], "write-through replaces");
}

/// A load whose copy panics leaves the slot vacant: the next lookup loads again instead of waiting for
/// a `Loading` slot forever.
#[tokio::test]
async fn a_panicking_load_leaves_no_slot_loading() {
    let cache = PageCache::new(MemoryBudget::new(4 * CACHE_PAGE_SIZE));
    let c = Arc::clone(&cache);
    let panicked = tokio::spawn(async move {
        c.with_page(
            (1, 0),
            |_: &[u8]| -> usize { panic!("copy failed") },
            |mut page| async move {
                page.buf.extend_from_slice(&[1; CACHE_PAGE_SIZE]);
                (page, Ok::<(), Failed>(()))
            },
        )
        .await
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let n = load_page_of(&cache, 2)
        .await
        .expect("the page is not left loading");
    assert_eq!(n, CACHE_PAGE_SIZE);
}

/// A page read cancelled while the engine holds its buffer keeps its budget bytes reserved until the
/// buffer is given back (the reservation travels with the buffer).
#[tokio::test]
async fn a_cancelled_load_keeps_its_reservation_with_the_buffer() {
    let budget = MemoryBudget::new(4 * CACHE_PAGE_SIZE);
    let cache = PageCache::new(budget.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<PageBuf>();
    let tx = std::sync::Mutex::new(Some(tx));
    let load = cache.with_page(
        (1, 0),
        |b: &[u8]| b.len(),
        |page| {
            // The "engine" keeps the buffer, as the io_uring engine does for a read in flight.
            let _ = tx.lock().unwrap().take().unwrap().send(page);
            std::future::pending::<(PageBuf, Result<(), Failed>)>()
        },
    );
    let polled = tokio::time::timeout(Duration::from_millis(50), load).await;
    assert!(polled.is_err(), "the load is pending");
    let in_flight = rx.await.unwrap();
    assert_eq!(
        budget.snapshot().current[Consumer::PageCache],
        CACHE_PAGE_SIZE as u64,
        "reserved while the engine holds the buffer"
    );
    drop(in_flight);
    assert_eq!(budget.snapshot().current[Consumer::PageCache], 0);
}
