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
