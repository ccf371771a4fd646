//! A full pass over a layer (`scan`, `verify`) does not evict what point lookups keep hot: the index is
//! walked with scan intent, and the values are read around the page cache. A layer whose index is 4x
//! the page cache, a hot set of lookups that fits, a scan and a verification; the hot set's hit rate
//! after is at least 95% of what it was before, in every IO mode x engine.

mod common;

use common::{context_with_budget, io_matrix};
use rstest_reuse::apply;

use io_engine::IoEngineKind;
use layer_writers::{DeltaLayerReader, DeltaLayerWriter, Key, Lsn};
use rstest::rstest;
use virtual_file::{IoContext, IoMode, CACHE_PAGE_SIZE};

const RECORDS: u128 = 160_000;
const HOT: u128 = 16;

/// One pass of point lookups over the hot keys; our page cache's hit rate over it (point reads only).
async fn hot_pass(ctx: &IoContext, reader: &DeltaLayerReader) -> f64 {
    let before = ctx.page_cache_metrics();
    for i in 0..HOT {
        let key = Key::from_u128(i * (RECORDS / HOT));
        let got = reader.get(key, Lsn(0)..Lsn(10)).await.unwrap();
        assert_eq!(got.len(), 1, "key {key:?}");
    }
    let after = ctx.page_cache_metrics();
    let hits = after.point_hits() - before.point_hits();
    let misses = after.point_misses() - before.point_misses();
    hits as f64 / (hits + misses) as f64
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_keeps_the_hot_set(mode: IoMode, kind: IoEngineKind) {
    let dir = tempfile::tempdir().unwrap();
    let Some(ctx) = context_with_budget(mode, kind, 64 << 20) else {
        return;
    };
    let mut w = DeltaLayerWriter::new(&ctx, dir.path(), "layer")
        .await
        .unwrap();
    for key in 0..RECORDS {
        w.put_value(Key::from_u128(key), Lsn(1), true, &[key as u8])
            .await
            .unwrap();
    }
    let info = w.finish().await.unwrap();
    drop(ctx);

    let probe_ctx = context_with_budget(mode, kind, 64 << 20).unwrap();
    let index_pages = DeltaLayerReader::open(&probe_ctx, &info.path)
        .await
        .unwrap()
        .summary()
        .index_page_count as usize;
    drop(probe_ctx);
    // the cache: a quarter of the index, so a walk of the index reads 4x the cache
    let cache_pages = index_pages / 4;
    assert!(
        cache_pages >= 4 * HOT as usize,
        "index of {index_pages} pages is too small"
    );
    let ctx = context_with_budget(mode, kind, cache_pages * CACHE_PAGE_SIZE).unwrap();
    let mut reader = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    // index pages only: the values of the hot keys would hit too and hide index evictions
    reader.set_cache_values(false);

    hot_pass(&ctx, &reader).await;
    let before = hot_pass(&ctx, &reader).await;
    assert!(
        before > 0.99,
        "{mode} {kind}: the hot set is warm ({before})"
    );

    let records = reader.scan().await.unwrap();
    assert_eq!(records.len() as u128, RECORDS);
    let after_scan = hot_pass(&ctx, &reader).await;
    let report = reader.verify().await.unwrap();
    assert_eq!(report.index_pages as usize, index_pages);
    let after_verify = hot_pass(&ctx, &reader).await;
    for (what, rate) in [("scan", after_scan), ("verify", after_verify)] {
        assert!(
            rate >= 0.95 * before,
            "{mode} {kind}: hit rate {rate:.3} after a {what} of {index_pages} index pages through a \
             {cache_pages}-page cache, {before:.3} before"
        );
    }
}
