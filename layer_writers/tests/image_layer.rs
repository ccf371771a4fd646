//! Image layers in every IO mode x engine: random images written, read back by point lookups, vectored
//! lookups and a scan, and compared with a `BTreeMap` model.

mod common;

use common::{context, context_and_dir, image_workload, io_matrix};
use io_engine::IoEngineKind;
use layer_writers::{ImageLayerReader, ImageLayerWriter, Key, LayerError, Lsn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::{IoMode, OpKind};

#[apply(io_matrix)]
#[tokio::test]
async fn image_round_trip(mode: IoMode, kind: IoEngineKind) {
    let Some((ctx, dir)) = context_and_dir(mode, kind) else {
        return;
    };
    let model = image_workload(11, 250);
    let lsn = Lsn(0x1234);

    let mut writer = ImageLayerWriter::new(&ctx, dir.path(), "image-1", lsn)
        .await
        .unwrap();
    for (key, value) in &model {
        writer.put_image(*key, value).await.unwrap();
    }
    let info = writer.finish().await.unwrap();
    let first = *model.keys().next().unwrap();
    let last = *model.keys().next_back().unwrap();
    assert_eq!(info.num_entries, model.len() as u64);
    assert_eq!(info.key_range, first..last.next());
    assert_eq!(info.lsn_range, lsn..Lsn(lsn.0 + 1));
    assert_eq!(std::fs::metadata(&info.path).unwrap().len(), info.file_len);
    // Compressible values were compressed: the file is smaller than the raw values.
    let raw: usize = model.values().map(Vec::len).sum();
    assert!(info.file_len < raw as u64, "{} >= {raw}", info.file_len);

    let mut reader = ImageLayerReader::open(&ctx, &info.path).await.unwrap();
    // Values straight from the file, so the read counts below are of merged file reads.
    reader.set_cache_values(false);
    assert_eq!(reader.lsn(), lsn);
    for (key, value) in &model {
        assert_eq!(
            reader.get(*key).await.unwrap().as_ref(),
            Some(value),
            "{key}"
        );
    }
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..50 {
        let key = Key::from_u128(rng.random_range(0..1u128 << 100));
        assert_eq!(reader.get(key).await.unwrap(), model.get(&key).cloned());
    }
    assert_eq!(
        reader.get(Key::MIN).await.unwrap(),
        model.get(&Key::MIN).cloned()
    );

    // Vectored, with duplicates and absent keys, in random order.
    let keys: Vec<Key> = model.keys().copied().collect();
    let mut requests = Vec::new();
    for _ in 0..120 {
        requests.push(if rng.random_bool(0.2) {
            Key::from_u128(rng.random())
        } else {
            keys[rng.random_range(0..keys.len())]
        });
    }
    let got = reader.get_many(&requests).await.unwrap();
    for (key, got) in requests.iter().zip(&got) {
        assert_eq!(got.as_ref(), model.get(key), "{key}");
    }

    // Merged reads: every image in one call takes far fewer reads than one get per image.
    let reads = || ctx.metrics().ops[OpKind::Read].count;
    let before = reads();
    let many = reader.get_many(&keys).await.unwrap();
    let many_reads = reads() - before;
    let before = reads();
    for k in &keys {
        reader.get(*k).await.unwrap();
    }
    let single_reads = reads() - before;
    assert!(many.iter().all(Option::is_some));
    assert!(
        single_reads >= many_reads + keys.len() as u64 / 2,
        "vectored {many_reads} reads vs single {single_reads}"
    );

    let scanned = reader.scan().await.unwrap();
    let expected: Vec<(Key, Vec<u8>)> = model.into_iter().collect();
    assert!(scanned == expected, "scan differs from the model");
}

#[tokio::test]
async fn image_key_order_and_kind_checks() {
    let ctx = context(IoMode::DirectRw, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = ImageLayerWriter::new(&ctx, dir.path(), "img", Lsn(9))
        .await
        .unwrap();
    w.put_image(Key::from_u128(5), b"five").await.unwrap();
    for k in [5u128, 4] {
        assert!(matches!(
            w.put_image(Key::from_u128(k), b"x").await,
            Err(LayerError::KeyOrder { .. })
        ));
    }
    assert!(matches!(
        w.put_image(Key::MAX, b"x").await,
        Err(LayerError::RangeOverflow { .. })
    ));
    w.put_image(Key::from_u128(6), &[0u8; 1000]).await.unwrap();
    let info = w.finish().await.unwrap();
    assert_eq!(info.num_entries, 2);

    // Opening an image layer as a delta layer is a typed error.
    assert!(matches!(
        layer_writers::DeltaLayerReader::open(&ctx, &info.path).await,
        Err(LayerError::WrongKind { .. })
    ));
    let r = ImageLayerReader::open(&ctx, &info.path).await.unwrap();
    assert_eq!(
        r.get(Key::from_u128(6)).await.unwrap(),
        Some(vec![0u8; 1000])
    );
    assert!(matches!(
        ImageLayerWriter::new(&ctx, dir.path(), "x", Lsn::MAX).await,
        Err(LayerError::RangeOverflow { .. })
    ));
    for bad in ["", "a/b", "y.___temp"] {
        assert!(matches!(
            ImageLayerWriter::new(&ctx, dir.path(), bad, Lsn(1)).await,
            Err(LayerError::InvalidFileName { .. })
        ));
    }
}
