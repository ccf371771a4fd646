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
        ReadIntent::Point,
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
                    ReadIntent::Point,
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
            ReadIntent::Point,
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
        ReadIntent::Point,
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

/// Reads page `key` with `intent`, loading it as a page of `byte`s on a miss (and counting the load in
/// `loads`); returns the bytes seen. Fails the test if it takes over 10 s.
async fn read_page(
    cache: &PageCache,
    key: PageKey,
    intent: ReadIntent,
    byte: u8,
    loads: &AtomicU64,
) -> Vec<u8> {
    let lookup = cache.with_page(key, intent, <[u8]>::to_vec, |mut page| async move {
        loads.fetch_add(1, Ordering::SeqCst);
        page.buf.extend_from_slice(&[byte; CACHE_PAGE_SIZE]);
        (page, Ok::<(), Failed>(()))
    });
    tokio::time::timeout(Duration::from_secs(10), lookup)
        .await
        .expect("the read does not hang")
        .unwrap()
}

fn is_resident(cache: &PageCache, key: PageKey) -> bool {
    let st = cache.lock();
    st.map
        .get(&key)
        .is_some_and(|&i| matches!(st.slots[i], Slot::Ready { .. }))
}

fn loading_slots(cache: &PageCache) -> usize {
    let st = cache.lock();
    st.slots
        .iter()
        .filter(|s| matches!(s, Slot::Loading { .. }))
        .count()
}

/// A scan's miss reads the page (the caller gets its bytes) but takes no slot and no budget: the page is
/// not resident afterwards, and the next point read of it loads it again.
#[tokio::test]
async fn a_scan_miss_does_not_admit() {
    let budget = MemoryBudget::new(4 * CACHE_PAGE_SIZE);
    let cache = PageCache::new(budget.clone());
    let loads = AtomicU64::new(0);
    for _ in 0..3 {
        let bytes = read_page(&cache, (1, 0), ReadIntent::Scan, 3, &loads).await;
        assert_eq!(bytes, [3u8; CACHE_PAGE_SIZE]);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3, "every scan miss reads");
    assert_eq!(cache.pages_of(1), 0, "a scan miss is not kept");
    assert_eq!(budget.snapshot().current[Consumer::PageCache], 0);
    let m = cache.snapshot();
    assert_eq!((m.misses, m.scan_misses, m.device_reads), (3, 3, 3));
    assert_eq!((m.hits, m.point_misses()), (0, 0));
    // A point read admits; a scan then hits it.
    read_page(&cache, (1, 0), ReadIntent::Point, 3, &loads).await;
    assert_eq!(cache.pages_of(1), 1);
    read_page(&cache, (1, 0), ReadIntent::Scan, 9, &loads).await;
    assert_eq!(
        loads.load(Ordering::SeqCst),
        4,
        "the scan hit the point read's page"
    );
    let m = cache.snapshot();
    assert_eq!((m.point_misses(), m.scan_hits, m.point_hits()), (1, 1, 0));
}

/// A scan's hit (one page, or a range copied under one lock) leaves the clock's referenced bit clear: the
/// page it hit is the next victim, as it would be without the scan. The control (a point hit) shows the
/// same sequence keeps the page when the hit marks it.
#[tokio::test]
async fn a_scan_hit_does_not_promote() {
    for (intent, single_page) in [
        (ReadIntent::Scan, true),
        (ReadIntent::Scan, false),
        (ReadIntent::Point, true),
        (ReadIntent::Point, false),
    ] {
        let cache = PageCache::new(MemoryBudget::new(2 * CACHE_PAGE_SIZE));
        let seq = AtomicU64::new(0);
        let loads = AtomicU64::new(0);
        // Two pages, neither referenced (put in, not loaded), the hand before the first.
        cache.insert_pages(1, 0, &[1u8; 2 * CACHE_PAGE_SIZE], (&seq, 0), false);
        assert!(is_resident(&cache, (1, 0)) && is_resident(&cache, (1, 1)));
        if single_page {
            assert_eq!(
                read_page(&cache, (1, 0), intent, 0, &loads).await,
                [1u8; CACHE_PAGE_SIZE]
            );
        } else {
            let mut dst = [0u8; 100];
            assert!(cache.copy_if_resident(1, 10, &mut dst, intent));
            assert_eq!(dst, [1u8; 100]);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 0, "{intent:?}: a hit");
        // A third page needs a victim: the clock takes the first page without its bit.
        read_page(&cache, (1, 2), ReadIntent::Point, 2, &loads).await;
        let case = format!("{intent:?}, single page {single_page}");
        match intent {
            ReadIntent::Scan => {
                assert!(
                    !is_resident(&cache, (1, 0)),
                    "{case}: the scanned page was promoted"
                );
                assert!(is_resident(&cache, (1, 1)), "{case}");
                assert_eq!(cache.snapshot().scan_hits, 1, "{case}");
            }
            ReadIntent::Point => {
                assert!(
                    is_resident(&cache, (1, 0)),
                    "{case}: the point hit was not promoted"
                );
                assert!(!is_resident(&cache, (1, 1)), "{case}");
                assert_eq!(cache.snapshot().scan_hits, 0, "{case}");
            }
        }
        assert_eq!(cache.snapshot().hits, 1, "{case}");
    }
}

/// A scan's miss of a page that a point read is loading does not wait for it and is not merged with it:
/// it reads the page itself and returns its bytes, and the point load still puts the page in. The other
/// way round, a point miss while a scan's read of the page is in flight loads and keeps the page, and
/// the scan's read, when it completes, leaves it there.
#[tokio::test]
async fn a_scan_racing_a_point_load_returns_the_right_bytes() {
    let cache = PageCache::new(MemoryBudget::new(4 * CACHE_PAGE_SIZE));
    let content = [6u8; CACHE_PAGE_SIZE];
    // A point load in flight, held until `release`.
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let point = {
        let (cache, started, release) = (
            Arc::clone(&cache),
            Arc::clone(&started),
            Arc::clone(&release),
        );
        tokio::spawn(async move {
            cache
                .with_page((1, 0), ReadIntent::Point, <[u8]>::to_vec, |mut page| {
                    let (started, release) = (Arc::clone(&started), Arc::clone(&release));
                    async move {
                        started.notify_one();
                        release.notified().await;
                        page.buf.extend_from_slice(&content);
                        (page, Ok::<(), Failed>(()))
                    }
                })
                .await
        })
    };
    started.notified().await;
    assert_eq!(loading_slots(&cache), 1);
    let loads = AtomicU64::new(0);
    let scanned = read_page(&cache, (1, 0), ReadIntent::Scan, 6, &loads).await;
    assert_eq!(scanned, content);
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the scan read the page itself"
    );
    assert_eq!(loading_slots(&cache), 1, "the point load is untouched");
    release.notify_one();
    assert_eq!(point.await.unwrap().unwrap(), content);
    assert!(is_resident(&cache, (1, 0)), "the point load kept its page");
    assert_eq!(
        read_page(&cache, (1, 0), ReadIntent::Point, 0, &loads).await,
        content
    );
    assert_eq!(loads.load(Ordering::SeqCst), 1, "then a hit");

    // The other way round: a scan's read of page 1 in flight while a point read loads it.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = std::sync::Mutex::new(Some(rx));
    let scan = cache.with_page((1, 1), ReadIntent::Scan, <[u8]>::to_vec, |mut page| {
        let rx = rx.lock().unwrap().take();
        async move {
            if let Some(rx) = rx {
                rx.await.unwrap();
            }
            page.buf.extend_from_slice(&[7u8; CACHE_PAGE_SIZE]);
            (page, Ok::<(), Failed>(()))
        }
    });
    tokio::pin!(scan);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), scan.as_mut())
            .await
            .is_err(),
        "the scan's read is in flight"
    );
    assert_eq!(loading_slots(&cache), 0, "a scan's read takes no slot");
    let point = read_page(&cache, (1, 1), ReadIntent::Point, 7, &loads).await;
    assert_eq!(point, [7u8; CACHE_PAGE_SIZE]);
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "the point read did not wait for the scan"
    );
    tx.send(()).unwrap();
    let scanned = tokio::time::timeout(Duration::from_secs(10), scan)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(scanned, [7u8; CACHE_PAGE_SIZE]);
    assert!(
        is_resident(&cache, (1, 1)),
        "the scan left the point read's page"
    );
    let m = cache.snapshot();
    assert_eq!((m.scan_misses, m.point_misses(), m.device_reads), (2, 2, 4));
}

/// A scan's read whose future is dropped after its first poll, while the "engine" holds its buffer,
/// leaves no slot `Loading`, no page and no budget bytes behind: the next reads of the page, point or
/// scan, load it at once.
#[tokio::test]
async fn a_dropped_scan_read_leaves_no_slot_loading_and_no_budget() {
    let budget = MemoryBudget::new(2 * CACHE_PAGE_SIZE);
    let cache = PageCache::new(budget.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<PageBuf>();
    let tx = std::sync::Mutex::new(Some(tx));
    let scan = cache.with_page(
        (1, 0),
        ReadIntent::Scan,
        |b: &[u8]| b.len(),
        |page| {
            // The "engine" keeps the buffer, as the io_uring engine does for a read in flight.
            let _ = tx.lock().unwrap().take().unwrap().send(page);
            std::future::pending::<(PageBuf, Result<(), Failed>)>()
        },
    );
    let polled = tokio::time::timeout(Duration::from_millis(50), scan).await;
    assert!(polled.is_err(), "the scan's read was pending when dropped");
    let in_flight = rx.await.unwrap();
    assert_eq!(loading_slots(&cache), 0);
    assert_eq!(cache.pages_of(1), 0);
    assert_eq!(budget.snapshot().current[Consumer::PageCache], 0);
    assert_eq!(budget.available(), 2 * CACHE_PAGE_SIZE);
    let loads = AtomicU64::new(0);
    read_page(&cache, (1, 0), ReadIntent::Scan, 4, &loads).await;
    assert_eq!(
        read_page(&cache, (1, 0), ReadIntent::Point, 4, &loads).await,
        [4u8; CACHE_PAGE_SIZE]
    );
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(cache.pages_of(1), 1);
    drop(in_flight);
    assert_eq!(
        budget.snapshot().current[Consumer::PageCache],
        CACHE_PAGE_SIZE as u64,
        "only the point read's page is paid for"
    );
}
