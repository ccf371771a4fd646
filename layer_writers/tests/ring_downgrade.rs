//! A running ingest survives a broken io_uring ring: the engine downgrades itself to `std-fs` while
//! puts, reads and the write-out go on, and the delta layer written at the end holds every value.

mod common;

use std::time::Duration;

use io_engine::{IoEngine, IoEngineKind, RingFault};
use layer_writers::{DeltaLayerReader, InMemoryLayer, InMemoryLayerOptions, Key, Lsn};
use rstest::rstest;
use virtual_file::{IoContext, IoMode};

const BATCHES: u64 = 200;
const BATCH: u64 = 16;
const BREAK_AFTER: u64 = 80;

fn value_of(key: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (key as usize * 31 + i) as u8).collect()
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_write_out_continue_across_a_broken_ring(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(9 /* EBADF */, 14 /* EFAULT */)] errno: i32,
) {
    let engine = match IoEngine::launch(IoEngineKind::TokioEpollUring) {
        Ok(engine) => engine,
        Err(e) => return common::engine_unavailable(IoEngineKind::TokioEpollUring, &e),
    };
    let IoEngine::TokioEpollUring(ring) = &engine else {
        unreachable!("launched the ring engine explicitly")
    };
    let ring = ring.clone();
    let ctx = IoContext::builder()
        .engine(engine)
        .mode(mode)
        // about 5 MiB of values: in direct-rw the ephemeral file's buffers (spill mode) outgrow this
        // budget before the break, so the ingest writes through the ring before and after it
        .memory_budget_bytes(1536 << 10)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = InMemoryLayerOptions {
        buffer_capacity: 8192,
        readout_batch_bytes: 64 * 1024,
        ..InMemoryLayerOptions::default()
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        let layer = InMemoryLayer::create_with_options(&ctx, dir.path(), 1, options)
            .await
            .unwrap();
        for b in 0..BATCHES {
            if b == BREAK_AFTER {
                assert!(!ring.is_downgraded());
                assert!(
                    ring.stats().submitted > 0,
                    "the ring was used before the break"
                );
                ring.inject_ring_fault(RingFault::Broken { errno });
            }
            let values: Vec<(u64, Vec<u8>)> = (0..BATCH)
                .map(|i| {
                    let key = b * BATCH + i;
                    (key, value_of(key, 100 + (key as usize * 97) % 3000))
                })
                .collect();
            let batch: Vec<_> = values
                .iter()
                .map(|(k, v)| (Key::from_u128(*k as u128), Lsn(*k + 1), false, &v[..]))
                .collect();
            layer.put_batch(&batch).await.unwrap();
            // a read of an earlier batch on the way, from disk or buffers
            let probe = b / 2 * BATCH;
            let got = layer
                .get(Key::from_u128(probe as u128), Lsn(0)..Lsn(u64::MAX - 1))
                .await
                .unwrap();
            assert_eq!(got.len(), 1, "key {probe}");
            assert_eq!(
                got[0].2,
                value_of(probe, 100 + (probe as usize * 97) % 3000)
            );
        }
        if mode == IoMode::DirectRw {
            // O_DIRECT writes go through the ring: the break hit the ingest itself, which went on
            assert!(ring.is_downgraded(), "{:?}", ring.stats());
        }
        layer.freeze().await.unwrap();
        let info = layer
            .write_to_disk(&ctx, dir.path(), "after-break")
            .await
            .unwrap();
        // (in buffered mode the puts' writes and cached reads are made inline, without entering the
        // ring; the write-out's fsync enters it at the latest)
        assert!(
            ring.is_downgraded(),
            "the injected break downgraded the engine"
        );
        let reader = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
        reader.verify().await.unwrap();
        for key in 0..BATCHES * BATCH {
            let got = reader
                .get(Key::from_u128(key as u128), Lsn(0)..Lsn(u64::MAX - 1))
                .await
                .unwrap();
            assert_eq!(got.len(), 1, "key {key}");
            assert_eq!(got[0].0, Lsn(key + 1));
            assert_eq!(got[0].2, value_of(key, 100 + (key as usize * 97) % 3000));
        }
        assert_eq!(info.num_entries, BATCHES * BATCH);
        layer.remove().await.unwrap();
    })
    .await
    .expect("the ingest finished across the break");
}
