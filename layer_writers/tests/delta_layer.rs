//! Delta layers in every IO mode x engine: random records written, read back by point lookups, vectored
//! lookups and a scan, and compared with a `BTreeMap` model.

mod common;

use common::{context, context_and_dir, delta_expect, delta_workload, io_matrix};
use io_engine::IoEngineKind;
use layer_writers::{DeltaLayerReader, DeltaLayerWriter, Key, LayerError, Lsn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::{IoMode, OpKind};

#[apply(io_matrix)]
#[tokio::test]
async fn delta_round_trip(mode: IoMode, kind: IoEngineKind) {
    let Some((ctx, dir)) = context_and_dir(mode, kind) else {
        return;
    };
    let model = delta_workload(7, 250);

    let mut writer = DeltaLayerWriter::new(&ctx, dir.path(), "delta-1")
        .await
        .unwrap();
    for ((key, lsn), (will_init, value)) in &model {
        writer
            .put_value(*key, *lsn, *will_init, value)
            .await
            .unwrap();
    }
    let info = writer.finish().await.unwrap();
    let (first, last) = (
        model.keys().next().unwrap(),
        model.keys().next_back().unwrap(),
    );
    assert_eq!(info.path, dir.path().join("delta-1"));
    assert_eq!(info.num_entries, model.len() as u64);
    assert_eq!(info.key_range, first.0..last.0.next());
    let min_lsn = model.keys().map(|k| k.1).min().unwrap();
    let max_lsn = model.keys().map(|k| k.1).max().unwrap();
    assert_eq!(info.lsn_range, min_lsn..Lsn(max_lsn.0 + 1));
    assert_eq!(std::fs::metadata(&info.path).unwrap().len(), info.file_len);
    assert_eq!(info.file_len % 8192, 0);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );

    let mut reader = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    assert_eq!(reader.summary().key_range, info.key_range);
    // Values straight from the file, so the read counts below are of merged file reads.
    reader.set_cache_values(false);

    // Point lookups: every key over all LSNs, random sub-ranges, and absent keys.
    let keys: std::collections::BTreeSet<Key> = model.keys().map(|k| k.0).collect();
    let mut rng = StdRng::seed_from_u64(1);
    for &key in &keys {
        let all = reader.get(key, Lsn(0)..Lsn(u64::MAX)).await.unwrap();
        assert_eq!(
            all,
            delta_expect(&model, key, Lsn(0)..Lsn(u64::MAX)),
            "{key}"
        );
        let a = Lsn(rng.random_range(0..2100));
        let b = Lsn(rng.random_range(0..2100));
        let got = reader.get(key, a..b).await.unwrap();
        assert_eq!(got, delta_expect(&model, key, a..b), "{key} {a}..{b}");
    }
    for absent in [
        Key::MIN,
        first.0.next().next(),
        Key::from_u128(u128::MAX - 5),
    ] {
        if !keys.contains(&absent) {
            assert!(reader
                .get(absent, Lsn(0)..Lsn::MAX)
                .await
                .unwrap()
                .is_empty());
        }
    }

    // Vectored: many requests at once, with duplicates, absent keys and empty ranges.
    let mut requests = Vec::new();
    for _ in 0..60 {
        let key = match rng.random_range(0..5) {
            0 => Key::from_u128(rng.random()),
            _ => *keys.iter().nth(rng.random_range(0..keys.len())).unwrap(),
        };
        let a = Lsn(rng.random_range(0..2100));
        let b = Lsn(rng.random_range(0..2100));
        requests.push((key, a..b));
    }
    let got = reader.get_many(&requests).await.unwrap();
    assert_eq!(got.len(), requests.len());
    for ((key, lsns), got) in requests.iter().zip(&got) {
        assert_eq!(
            got,
            &delta_expect(&model, *key, lsns.clone()),
            "{key} {lsns:?}"
        );
    }

    // Vectored reads merge: fetching every record in one call takes far fewer reads than one per blob.
    let all: Vec<(Key, std::ops::Range<Lsn>)> =
        keys.iter().map(|&k| (k, Lsn(0)..Lsn::MAX)).collect();
    let reads = || ctx.metrics().ops[OpKind::Read].count;
    let before = reads();
    let many = reader.get_many(&all).await.unwrap();
    let many_reads = reads() - before;
    let before = reads();
    for (k, r) in &all {
        reader.get(*k, r.clone()).await.unwrap();
    }
    let single_reads = reads() - before;
    assert_eq!(many.iter().map(Vec::len).sum::<usize>(), model.len());
    // Both did the same index lookups; the single gets read each key's blobs separately.
    assert!(
        single_reads >= many_reads + keys.len() as u64 / 2,
        "vectored {many_reads} reads vs single {single_reads}"
    );

    // Scan: the index pages, then the values in big chunks (up to 1 MiB), not one read per record.
    let before = reads();
    let scanned = reader.scan().await.unwrap();
    let scan_reads = reads() - before;
    let summary = reader.summary();
    let value_bytes = summary.values_end - 8192;
    let max_scan_reads = u64::from(summary.index_page_count) + value_bytes / (512 * 1024) + 2;
    assert!(
        scan_reads <= max_scan_reads,
        "scan took {scan_reads} reads for {value_bytes} bytes of values"
    );
    let expected: Vec<_> = model
        .iter()
        .map(|((k, l), (wi, v))| (*k, *l, *wi, v.clone()))
        .collect();
    assert_eq!(scanned.len(), expected.len());
    assert!(scanned == expected, "scan differs from the model");

    // A delta reader refuses other kinds and a scan can stop early.
    let mut n = 0;
    reader
        .scan_each(|_, _, _, _| {
            n += 1;
            if n == 3 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
    assert_eq!(n, 3);
}

#[tokio::test]
async fn key_order_is_enforced_and_the_writer_stays_usable() {
    let ctx = context(IoMode::Buffered, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = DeltaLayerWriter::new(&ctx, dir.path(), "d").await.unwrap();
    let k = Key::from_u128(10);
    w.put_value(k, Lsn(5), true, b"a").await.unwrap();
    for (key, lsn) in [(k, Lsn(5)), (k, Lsn(4)), (Key::from_u128(9), Lsn(100))] {
        let err = w.put_value(key, lsn, false, b"x").await.unwrap_err();
        assert!(
            matches!(err, LayerError::KeyOrder { key: ek, lsn: el, prev_key, prev_lsn, .. }
                if ek == key && el == lsn && prev_key == k && prev_lsn == Lsn(5)),
            "{err}"
        );
    }
    assert!(matches!(
        w.put_value(Key::MAX, Lsn(1), false, b"x").await,
        Err(LayerError::RangeOverflow { .. })
    ));
    w.put_value(k, Lsn(6), false, b"b").await.unwrap();
    w.put_value(k.next(), Lsn(1), false, b"").await.unwrap();
    let info = w.finish().await.unwrap();
    assert_eq!(info.num_entries, 3);
    assert_eq!(info.key_range, k..k.next().next());
    assert_eq!(info.lsn_range, Lsn(1)..Lsn(7));
    let r = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    assert_eq!(
        r.get(k, Lsn(0)..Lsn(10)).await.unwrap(),
        vec![
            (Lsn(5), true, b"a".to_vec()),
            (Lsn(6), false, b"b".to_vec())
        ]
    );
    assert_eq!(
        r.get(k.next(), Lsn(0)..Lsn(10)).await.unwrap(),
        vec![(Lsn(1), false, vec![])]
    );
}

#[tokio::test]
async fn empty_delta_layer() {
    let ctx = context(IoMode::DirectRw, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = DeltaLayerWriter::new(&ctx, dir.path(), "empty")
        .await
        .unwrap();
    let info = w.finish().await.unwrap();
    assert_eq!(info.num_entries, 0);
    assert_eq!(info.file_len, 2 * 8192);
    let r = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    assert!(r.scan().await.unwrap().is_empty());
    assert!(r.get(Key::MIN, Lsn(0)..Lsn::MAX).await.unwrap().is_empty());
}
