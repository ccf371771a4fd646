//! Read back-pressure: many concurrent lookups sharing a `ReadBudget` never hold more read-buffer bytes
//! than the budget, except one oversize read that then runs alone; nothing deadlocks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::context;
use io_engine::IoEngineKind;
use layer_writers::{DeltaLayerReader, DeltaLayerWriter, Key, Lsn, ReadBudget};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::IoMode;

const BUDGET: usize = 1 << 20;
const BIG: usize = 1536 * 1024;
const KEYS: u128 = 400;

fn value(key: u128, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u128 * 31 + key) as u8).collect()
}

fn len_of(key: u128) -> usize {
    if key == KEYS {
        BIG
    } else {
        (key as usize * 7919) % (20 * 1024)
    }
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_stay_within_the_budget(
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let Some(ctx) = context(IoMode::Direct, kind) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut w = DeltaLayerWriter::new(&ctx, dir.path(), "layer")
        .await
        .unwrap();
    for key in 0..=KEYS {
        w.put_value(Key::from_u128(key), Lsn(1), true, &value(key, len_of(key)))
            .await
            .unwrap();
    }
    let info = w.finish().await.unwrap();

    for with_big in [false, true] {
        let budget = ReadBudget::new(BUDGET);
        let mut reader = DeltaLayerReader::open_with_budget(&ctx, &info.path, Some(budget.clone()))
            .await
            .unwrap();
        // Every lookup reads its values from the file: with the page cache (the default for O_DIRECT
        // files) the small layer would be served from memory after the first round, and the read
        // buffers would hardly ever be held across an IO, which is what this test contends.
        reader.set_cache_values(false);
        let reader = Arc::new(reader);
        let mut tasks = Vec::new();
        for t in 0..64u64 {
            let reader = Arc::clone(&reader);
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(t);
                for round in 0..4 {
                    let mut keys: Vec<u128> = (0..24).map(|_| rng.random_range(0..KEYS)).collect();
                    if with_big && t % 16 == 0 && round == 1 {
                        keys.push(KEYS);
                    }
                    let requests: Vec<_> = keys
                        .iter()
                        .map(|&k| (Key::from_u128(k), Lsn(0)..Lsn(10)))
                        .collect();
                    let got = reader.get_many(&requests).await.unwrap();
                    for (k, got) in keys.iter().zip(got) {
                        assert_eq!(got, vec![(Lsn(1), true, value(*k, len_of(*k)))], "key {k}");
                    }
                }
            }));
        }
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("lookups sharing a budget deadlocked");
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.available(), BUDGET);
        let max = budget.max_held();
        if with_big {
            // The oversize read ran, alone: the peak is exactly it (aligned to 512).
            assert!(max >= BIG as u64, "max held {max}");
            assert!(max <= (BIG + 1024) as u64, "max held {max}");
        } else {
            assert!(max <= BUDGET as u64, "max held {max} exceeds the budget");
            if kind == IoEngineKind::TokioEpollUring {
                // 64 tasks asking for up to 128 KiB each, with reads in flight while tasks yield: the
                // budget was actually contended. (std-fs reads block their thread, so with 2 workers at
                // most 2 reads are ever in flight there.)
                assert!(max > (BUDGET / 2) as u64, "max held {max}: no concurrency?");
            }
        }
    }
}
