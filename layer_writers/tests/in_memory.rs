//! The in-memory layer in every IO mode x engine: reads that span disk, in-flight and mutable buffers
//! while appends continue from another task, compared with a `BTreeMap` model; the ordered write-out
//! equals a delta layer written directly; typed errors for misuse. With the default budget the direct
//! modes keep the ephemeral file in memory (spill mode); with a small one they spill part of it, so reads
//! span the file, retained buffers and the mutable buffer there too.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{context, context_with_budget, io_matrix};
use io_engine::IoEngineKind;
use layer_writers::{
    DeltaLayerReader, DeltaLayerWriter, InMemoryLayer, InMemoryLayerError, InMemoryLayerOptions,
    Key, Lsn,
};
use rand::{Rng, SeedableRng};
use rstest::rstest;
use rstest_reuse::apply;
use tokio::sync::Mutex;
use virtual_file::IoMode;

type Model = BTreeMap<(Key, Lsn), (bool, Vec<u8>)>;

fn value(rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..10) {
        0 => 0,
        1..=6 => rng.random_range(1..300),
        _ => rng.random_range(300..20_000),
    };
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

fn small_buffers() -> InMemoryLayerOptions {
    // small buffers: many flushes, so reads really span disk, in-flight and mutable buffers
    InMemoryLayerOptions {
        buffer_capacity: 8192,
        readout_batch_bytes: 256 * 1024,
        ..InMemoryLayerOptions::default()
    }
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_concurrent_appends(
    mode: IoMode,
    kind: IoEngineKind,
    // about 1.2 MiB of values: all in memory, or most of it spilled
    #[values(256 << 20, 256 << 10)] budget: usize,
) {
    let Some(ctx) = context_with_budget(mode, kind, budget) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layer = Arc::new(
        InMemoryLayer::create_with_options(&ctx, dir.path(), 1, small_buffers())
            .await
            .unwrap(),
    );
    let model: Arc<Mutex<Model>> = Arc::default();
    let writer = {
        let (layer, model) = (layer.clone(), model.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1);
            for step in 0..600u64 {
                let key = Key::from_u128(rng.random_range(0..80));
                let lsn = Lsn(0x100 + step);
                let v = value(&mut rng);
                let will_init = rng.random_bool(0.3);
                // the model is updated under its lock together with the put, so a reader that sees
                // a value in the model will find it in the layer
                let mut m = model.lock().await;
                layer.put_value(key, lsn, will_init, &v).await.unwrap();
                m.insert((key, lsn), (will_init, v));
            }
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut checked = 0;
    while !writer.is_finished() || checked < 50 {
        let key = Key::from_u128(rng.random_range(0..80));
        let (a, b) = (rng.random_range(0..700u64), rng.random_range(0..700u64));
        let range = Lsn(0x100 + a.min(b))..Lsn(0x100 + a.max(b) + 1);
        let want: Vec<_> = {
            let m = model.lock().await;
            m.range((key, range.start)..(key, range.end))
                .map(|((_, l), (w, v))| (*l, *w, v.clone()))
                .collect()
        };
        let got = layer.get(key, range.clone()).await.unwrap();
        // appends may have added newer versions since the model snapshot: everything in the snapshot
        // must be there, with the right bytes
        for w in &want {
            assert!(
                got.contains(w),
                "{mode}/{kind}: {key} {range:?} misses {:?}",
                w.0
            );
        }
        checked += 1;
    }
    writer.await.unwrap();
    if mode != IoMode::Buffered {
        // spill mode: the ephemeral file is written only when the budget is short
        let on_disk = std::fs::metadata(layer.path()).unwrap().len();
        if budget < layer.len_bytes() as usize {
            assert!(on_disk > 0, "{mode}/{kind}: nothing spilled");
        } else {
            assert_eq!(on_disk, 0, "{mode}/{kind}: written although it fits");
        }
    }
    // after all appends: exact equality for every key
    let m = model.lock().await;
    for k in 0..80u128 {
        let key = Key::from_u128(k);
        let want: Vec<_> = m
            .range((key, Lsn(0))..(key, Lsn(u64::MAX)))
            .map(|((_, l), (w, v))| (*l, *w, v.clone()))
            .collect();
        assert_eq!(
            layer.get(key, Lsn(0)..Lsn(u64::MAX)).await.unwrap(),
            want,
            "{mode}/{kind}: {key}"
        );
    }
    assert_eq!(layer.num_entries(), 600);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_to_disk_equals_a_delta_layer_written_directly(
    #[values("sequential", "random", "random-reuse")] layout: &str,
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] engine: IoEngineKind,
    // about 3 MiB of values: all in memory, or spilled while put and while the 1 MiB buffers of the
    // write-out's delta writer are taken
    #[values(256 << 20, 2 << 20)] budget: usize,
) {
    let Some(ctx) = context_with_budget(mode, engine, budget) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let n = 1500u64;
    let keys: Vec<u128> = match layout {
        "sequential" => (0..n as u128).collect(),
        "random" => {
            let mut k: Vec<u128> = (0..n as u128).collect();
            for i in (1..k.len()).rev() {
                k.swap(i, rng.random_range(0..=i));
            }
            k
        }
        _ => (0..n).map(|_| rng.random_range(0..50)).collect(),
    };
    let layer = InMemoryLayer::create_with_options(&ctx, dir.path(), 7, small_buffers())
        .await
        .unwrap();
    let mut model = Model::new();
    for (i, k) in keys.iter().enumerate() {
        let (key, lsn, v) = (Key::from_u128(*k), Lsn(0x1000 + i as u64), value(&mut rng));
        let batch = [(key, lsn, i % 4 == 0, v.as_slice())];
        layer.put_batch(&batch).await.unwrap();
        model.insert((key, lsn), (i % 4 == 0, v));
    }
    let err = layer
        .write_to_disk(&ctx, dir.path(), "early")
        .await
        .unwrap_err();
    assert!(matches!(err, InMemoryLayerError::NotFrozen { .. }), "{err}");
    layer.freeze().await.unwrap();
    let err = layer
        .put_value(Key::from_u128(1), Lsn(1), false, b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, InMemoryLayerError::Frozen { .. }), "{err}");

    let info = layer
        .write_to_disk(&ctx, dir.path(), "from-memory")
        .await
        .unwrap();
    let mut direct = DeltaLayerWriter::new(&ctx, dir.path(), "direct")
        .await
        .unwrap();
    for ((key, lsn), (will_init, v)) in &model {
        direct.put_value(*key, *lsn, *will_init, v).await.unwrap();
    }
    let direct = direct.finish().await.unwrap();
    assert_eq!(
        std::fs::read(&info.path).unwrap(),
        std::fs::read(&direct.path).unwrap(),
        "{layout}/{mode}/{engine}: write_to_disk output differs from a directly written delta layer"
    );
    let reader = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    let scanned = reader.scan().await.unwrap();
    let want: Vec<_> = model
        .iter()
        .map(|((k, l), (w, v))| (*k, *l, *w, v.clone()))
        .collect();
    assert_eq!(scanned, want);
}

#[tokio::test]
async fn misuse_is_a_typed_error_and_the_file_is_removed_on_drop() {
    let ctx = context(IoMode::Buffered, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layer = InMemoryLayer::create(&ctx, dir.path(), 3).await.unwrap();
    let path = layer.path().to_owned();
    layer
        .put_value(Key::from_u128(1), Lsn(5), true, b"a")
        .await
        .unwrap();
    let err = layer
        .put_value(Key::from_u128(1), Lsn(5), true, b"b")
        .await
        .unwrap_err();
    assert!(matches!(err, InMemoryLayerError::Duplicate { .. }), "{err}");
    let dup_in_batch = [
        (Key::from_u128(2), Lsn(6), false, &b"x"[..]),
        (Key::from_u128(2), Lsn(6), false, &b"y"[..]),
    ];
    let err = layer.put_batch(&dup_in_batch).await.unwrap_err();
    assert!(matches!(err, InMemoryLayerError::Duplicate { .. }), "{err}");
    assert_eq!(layer.num_entries(), 1, "a refused batch writes nothing");
    assert_eq!(
        layer
            .get(Key::from_u128(1), Lsn(0)..Lsn(100))
            .await
            .unwrap(),
        vec![(Lsn(5), true, b"a".to_vec())]
    );
    assert!(layer
        .get(Key::from_u128(1), Lsn(6)..Lsn(100))
        .await
        .unwrap()
        .is_empty());
    assert!(path.exists());
    layer.remove().await.unwrap();
    assert!(!path.exists(), "remove() removes the ephemeral file");

    // dropped: the writer's flush task removes the file once it has stopped
    let layer = InMemoryLayer::create(&ctx, dir.path(), 3).await.unwrap();
    let path = layer.path().to_owned();
    layer
        .put_value(Key::from_u128(1), Lsn(5), true, &[1; 5000])
        .await
        .unwrap();
    drop(layer);
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while path.exists() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the ephemeral file is removed after the layer is dropped");
}

/// The reproduction of issue 11: a second layer with a live layer's id, in the same directory, used to
/// truncate and overwrite the first one's ephemeral file; the first then returned the second's bytes.
#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_layer_with_the_same_id_has_its_own_file(mode: IoMode, kind: IoEngineKind) {
    let Some(ctx) = context(mode, kind) else {
        return;
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let opts = InMemoryLayerOptions {
            buffer_capacity: 4096,
            ..InMemoryLayerOptions::default()
        };
        let value_of = |layer: u8, i: u64| vec![layer.wrapping_mul(31).wrapping_add(i as u8); 1000];
        let a = InMemoryLayer::create_with_options(&ctx, dir.path(), 7, opts)
            .await
            .unwrap();
        for i in 0..8u64 {
            a.put_value(Key::from_u128(1), Lsn(i + 1), false, &value_of(1, i))
                .await
                .unwrap();
        }
        let b = InMemoryLayer::create_with_options(&ctx, dir.path(), 7, opts)
            .await
            .unwrap();
        assert_ne!(a.path(), b.path(), "{mode}/{kind}: one file per layer");
        for i in 0..8u64 {
            b.put_value(Key::from_u128(1), Lsn(i + 1), false, &value_of(2, i))
                .await
                .unwrap();
        }
        for (layer, which) in [(&a, 1u8), (&b, 2)] {
            let got = layer
                .get(Key::from_u128(1), Lsn(0)..Lsn(100))
                .await
                .unwrap();
            let want: Vec<_> = (0..8u64)
                .map(|i| (Lsn(i + 1), false, value_of(which, i)))
                .collect();
            assert_eq!(
                got, want,
                "{mode}/{kind}: layer {which} reads its own bytes"
            );
        }
    })
    .await
    .expect("test timed out");
}
