//! Full passes (`scan_each`, `scan`, `verify`) stream the index run by run and the values through one
//! scan, in every IO mode x engine: with a small memory budget (scan reads of 64 KiB) and values of
//! every size, from a few bytes to several reads long, so blobs straddle one and many chunks; the
//! records come back exactly as the model has them, a pass that breaks early hands out exactly a
//! prefix, `verify` counts every record, and every scan buffer is given back afterwards.

mod common;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use common::{context, context_with_budget, io_matrix};
use io_engine::IoEngineKind;
use layer_writers::{
    DeltaLayerReader, DeltaLayerWriter, ImageLayerReader, ImageLayerWriter, Key, Lsn,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::{Consumer, IoContext, IoMode};

/// A budget of 256 KiB: scan reads of a quarter of it.
const BUDGET: usize = 256 << 10;

/// A value of a random size: mostly small, some of a page or two, a few longer than several scan
/// reads; random bytes (so not compressed away) or a repeated byte (compressed).
fn value(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..100) {
        0..=72 => rng.random_range(1..200),
        73..=97 => rng.random_range(4000..20_000),
        _ => rng.random_range(60_000..200_000),
    };
    if rng.random_bool(0.8) {
        (0..len).map(|_| rng.random()).collect()
    } else {
        vec![rng.random(); len]
    }
}

fn scan_buffers(ctx: &IoContext) -> u64 {
    ctx.memory_budget().snapshot().current[Consumer::ScanBuffers]
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_passes_stream_every_record(mode: IoMode, kind: IoEngineKind) {
    // written with the default budget (the writer's buffers are 1 MiB), read with a small one
    let Some(write_ctx) = context(mode, kind) else {
        return;
    };
    let ctx = context_with_budget(mode, kind, BUDGET).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(24);
    let mut model = Vec::new();
    let mut w = DeltaLayerWriter::new(&write_ctx, dir.path(), "delta")
        .await
        .unwrap();
    for k in 0..1500u128 {
        for lsn in 0..rng.random_range(1..4u64) {
            let (v, init) = (value(&mut rng), rng.random_bool(0.5));
            w.put_value(Key::from_u128(k * 7), Lsn(lsn + 1), init, &v)
                .await
                .unwrap();
            model.push((Key::from_u128(k * 7), Lsn(lsn + 1), init, v));
        }
    }
    let info = w.finish().await.unwrap();
    let r = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    assert!(
        r.summary().index_page_count > 2,
        "the index has more than one leaf"
    );

    let got = r.scan().await.unwrap();
    assert!(
        got == model,
        "{mode} {kind}: the scan differs from the model"
    );
    assert_eq!(r.verify().await.unwrap().entries, model.len() as u64);
    for stop in [1, 2, 17, model.len() / 2, model.len() - 1] {
        let mut seen = Vec::new();
        r.scan_each(|key, lsn, init, v| {
            seen.push((key, lsn, init, v));
            if seen.len() == stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
        assert!(
            seen[..] == model[..stop],
            "{mode} {kind}: break after {stop}"
        );
    }
    // reads in flight when a pass broke finish on their own tasks
    let wait = std::time::Instant::now();
    while scan_buffers(&ctx) != 0 {
        assert!(
            wait.elapsed().as_secs() < 60,
            "scan buffers never given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_passes_stream_every_record(mode: IoMode, kind: IoEngineKind) {
    // written with the default budget (the writer's buffers are 1 MiB), read with a small one
    let Some(write_ctx) = context(mode, kind) else {
        return;
    };
    let ctx = context_with_budget(mode, kind, BUDGET).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(25);
    let mut model = BTreeMap::new();
    let mut w = ImageLayerWriter::new(&write_ctx, dir.path(), "image", Lsn(9))
        .await
        .unwrap();
    for k in 0..2500u128 {
        let v = value(&mut rng);
        w.put_image(Key::from_u128(k * 3 + 1), &v).await.unwrap();
        model.insert(Key::from_u128(k * 3 + 1), v);
    }
    let info = w.finish().await.unwrap();
    let r = ImageLayerReader::open(&ctx, &info.path).await.unwrap();
    let model: Vec<(Key, Vec<u8>)> = model.into_iter().collect();
    assert!(
        r.scan().await.unwrap() == model,
        "{mode} {kind}: the scan differs from the model"
    );
    assert_eq!(r.verify().await.unwrap().entries, model.len() as u64);
    let mut seen = 0;
    r.scan_each(|key, v| {
        assert!((key, v) == model[seen]);
        seen += 1;
        if seen == 100 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await
    .unwrap();
    assert_eq!(seen, 100);
}
