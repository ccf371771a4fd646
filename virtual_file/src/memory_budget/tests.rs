use super::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn reserve_release_peak_and_wait() {
    let b = MemoryBudget::new(1000);
    let r1 = b.reserve(Consumer::WriterBuffers, 600).await.unwrap();
    assert_eq!(b.available(), 400);
    assert!(b.try_reserve(Consumer::ReadBuffers, 500).is_none());
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        b2.reserve(Consumer::ReadBuffers, 500)
            .await
            .unwrap()
            .bytes()
    });
    // The waiter is counted as waiting before r1 goes: wait until it is.
    tokio::time::timeout(T, async {
        while b.snapshot().waits == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(!waiter.is_finished());
    drop(r1);
    assert_eq!(tokio::time::timeout(T, waiter).await.unwrap().unwrap(), 500);
    let s = b.snapshot();
    assert_eq!(s.total_current, 0);
    assert_eq!(s.peak[Consumer::WriterBuffers], 600);
    assert_eq!(s.peak[Consumer::ReadBuffers], 500);
    assert_eq!(s.total_peak, 600);
    assert_eq!(b.available(), 1000);
}

#[tokio::test]
async fn larger_than_the_budget_is_a_typed_error() {
    let b = MemoryBudget::new(1000);
    let err = b.reserve(Consumer::ReadBuffers, 1001).await.unwrap_err();
    assert_eq!(
        err,
        MemoryBudgetError::TooLarge {
            consumer: Consumer::ReadBuffers,
            requested: 1001,
            budget: 1000
        }
    );
    assert!(err.to_string().contains(MEMORY_MIB_ENV), "{err}");
    // The whole budget is fine.
    let all = b.reserve(Consumer::ReadBuffers, 1000).await.unwrap();
    assert_eq!(all.bytes(), 1000);
}

struct Hoard {
    held: Mutex<Vec<Reservation>>,
}

impl Reclaim for Hoard {
    fn reclaim(&self, bytes: usize) -> usize {
        let mut held = self.held.lock().unwrap();
        let mut got = 0;
        while got < bytes {
            match held.pop() {
                Some(r) => got += r.bytes(),
                None => break,
            }
        }
        got
    }
}

#[tokio::test]
async fn a_waiter_reclaims_cache_memory() {
    let b = MemoryBudget::new(1000);
    let hoard = Arc::new(Hoard {
        held: Mutex::new(Vec::new()),
    });
    for _ in 0..10 {
        let r = b.try_reserve(Consumer::PageCache, 100).unwrap();
        hoard.held.lock().unwrap().push(r);
    }
    let weak: Weak<dyn Reclaim> = Arc::downgrade(&hoard) as Weak<dyn Reclaim>;
    b.register_reclaimer(weak);
    let r = tokio::time::timeout(T, b.reserve(Consumer::WriterBuffers, 350))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.bytes(), 350);
    assert_eq!(hoard.held.lock().unwrap().len(), 6);
    assert!(b.snapshot().total_peak <= 1000);
}

/// First come, first served: a large request that waits is not overtaken by small requests that arrive
/// after it, however often reclaimable memory is announced in between (each announcement used to drop
/// the large request's place in the queue and put it back at the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_waiter_is_not_overtaken_by_small_ones() {
    const PAGE: usize = 8 << 10;
    let b = MemoryBudget::new(16 * PAGE);
    let mut held: Vec<Reservation> = (0..16)
        .map(|_| b.try_reserve(Consumer::PageCache, PAGE).unwrap())
        .collect();
    let order = Arc::new(Mutex::new(Vec::new()));
    let wait_for_waiters = |n: u64| {
        let b = b.clone();
        async move {
            tokio::time::timeout(T, async {
                while b.snapshot().waits < n {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap();
        }
    };
    let spawn = |name: &'static str, bytes: usize| {
        let (b, order) = (b.clone(), Arc::clone(&order));
        tokio::spawn(async move {
            let r = b.reserve(Consumer::WriterBuffers, bytes).await.unwrap();
            order.lock().unwrap().push(name);
            // Hold it a little, then give it back.
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(r);
        })
    };
    let large = spawn("large", 8 * PAGE);
    wait_for_waiters(1).await;
    // counted just before it queues in the same poll: give that poll time to end
    tokio::time::sleep(Duration::from_millis(20)).await;
    let small: Vec<_> = (0..20).map(|_| spawn("small", PAGE)).collect();
    wait_for_waiters(21).await;
    // Memory comes back one page at a time, each time announced as reclaimable.
    while let Some(r) = held.pop() {
        drop(r);
        b.notify_reclaimable();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::timeout(T, large).await.unwrap().unwrap();
    for s in small {
        tokio::time::timeout(T, s).await.unwrap().unwrap();
    }
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 21);
    assert_eq!(order[0], "large", "served in the order {order:?}");
    assert!(b.snapshot().total_peak <= 16 * PAGE as u64);
}
