//! Scan-resistant admission in every IO mode x engine: a hot set that fits in the page cache is read
//! with point reads until warm, a file four times the cache is read front to back through the scan API
//! (`ReadIntent::Scan`), and the hot set's hit rate afterwards must be at least 95% of what it was
//! before. The control runs the same sequence with the scan read as point reads, and its hit rate must
//! collapse: the test proves that the scan would evict the hot set without the scan intent.

mod common;

use common::io_matrix;
use rstest_reuse::apply;

use std::time::Duration;

use common::{engine, pattern};
use io_engine::{FullSlice, IoBufferMut, IoEngineKind};
use rstest::rstest;
use virtual_file::{
    IoContext, IoMode, PageCacheSnapshot, ReadIntent, VirtualFile, CACHE_PAGE_SIZE,
};

const PAGE: usize = CACHE_PAGE_SIZE;
const T: Duration = Duration::from_secs(120);
/// The memory budget, and so the most the page cache can hold, in pages.
const CACHE_PAGES: usize = 64;
/// The hot set: a file of half the cache.
const HOT_PAGES: usize = CACHE_PAGES / 2;
/// The scanned file: four times the cache.
const SCAN_PAGES: usize = 4 * CACHE_PAGES;

/// Writes `data` to a new file at `path` and returns a read-only open of it.
async fn file_with(ctx: &IoContext, path: &std::path::Path, data: &[u8]) -> VirtualFile {
    let f = VirtualFile::create(ctx, path).await.unwrap();
    let mut buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(data.len());
    buf.extend_from_slice(data);
    f.write_all_at(FullSlice::new(buf), 0).await.1.unwrap();
    f.sync_all().await.unwrap();
    VirtualFile::open(ctx, path).await.unwrap()
}

/// The hit rate of point reads between two snapshots.
fn point_hit_rate(before: &PageCacheSnapshot, after: &PageCacheSnapshot) -> f64 {
    let hits = after.point_hits() - before.point_hits();
    let misses = after.point_misses() - before.point_misses();
    assert!(
        hits + misses > 0,
        "no point reads between {before:?} and {after:?}"
    );
    hits as f64 / (hits + misses) as f64
}

/// One round of point reads over the hot set (every page, 100 bytes from an odd offset in it); returns
/// its hit rate.
async fn hot_round(ctx: &IoContext, hot: &VirtualFile, data: &[u8]) -> f64 {
    let before = ctx.page_cache_metrics();
    for p in 0..HOT_PAGES {
        let offset = p * PAGE + 123;
        let mut out = vec![0u8; 100];
        hot.read_cached_at(offset as u64, &mut out).await.unwrap();
        assert!(out == data[offset..offset + 100], "hot page {p}");
    }
    point_hit_rate(&before, &ctx.page_cache_metrics())
}

/// Reads all of `file` front to back with `intent`: single pages in the first half, 64 KiB reads (several
/// pages at once) in the second, every read checked against `data`.
async fn read_through(file: &VirtualFile, data: &[u8], intent: ReadIntent) {
    let mut offset = 0;
    while offset < data.len() {
        let len = if offset < data.len() / 2 {
            PAGE
        } else {
            8 * PAGE
        }
        .min(data.len() - offset);
        let mut out = vec![0u8; len];
        file.read_cached_at_with(offset as u64, &mut out, intent)
            .await
            .unwrap();
        assert!(
            out == data[offset..offset + len],
            "{intent:?} read at {offset}"
        );
        offset += len;
    }
}

/// Warms the hot set, reads the large file with `scan_intent`, and returns the hot set's hit rate
/// before and after, with the cache's metrics around the scan.
async fn hot_set_around_a_scan(
    mode: IoMode,
    kind: IoEngineKind,
    scan_intent: ReadIntent,
) -> (f64, f64, PageCacheSnapshot, PageCacheSnapshot) {
    let ctx = IoContext::builder()
        .engine(engine(kind))
        .mode(mode)
        .memory_budget_bytes(CACHE_PAGES * PAGE)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hot_data = pattern(HOT_PAGES * PAGE, 1);
    let big_data = pattern(SCAN_PAGES * PAGE, 2);
    let hot = file_with(&ctx, &dir.path().join("hot"), &hot_data).await;
    let big = file_with(&ctx, &dir.path().join("big"), &big_data).await;
    // Warm: repeated until a whole round hits.
    let mut rounds = 0;
    while hot_round(&ctx, &hot, &hot_data).await < 1.0 {
        rounds += 1;
        assert!(rounds < 10, "{mode}/{kind}: the hot set never warms");
    }
    let before = hot_round(&ctx, &hot, &hot_data).await;
    let at_scan = ctx.page_cache_metrics();
    // A scan over the hot file itself (all hits), then over the large file.
    read_through(&hot, &hot_data, scan_intent).await;
    read_through(&big, &big_data, scan_intent).await;
    let after_scan = ctx.page_cache_metrics();
    let after = hot_round(&ctx, &hot, &hot_data).await;
    (before, after, at_scan, after_scan)
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_keeps_the_hot_set(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(T, async {
        let (before, after, at, done) = hot_set_around_a_scan(mode, kind, ReadIntent::Scan).await;
        let (c_before, c_after, ..) = hot_set_around_a_scan(mode, kind, ReadIntent::Point).await;
        eprintln!(
            "{mode}/{kind}: hot-set hit rate before/after a scan of {SCAN_PAGES} pages through a \
             {CACHE_PAGES}-page cache: scan intent {before:.3}/{after:.3}, point intent (control) \
             {c_before:.3}/{c_after:.3}"
        );
        assert_eq!(before, 1.0, "{mode}/{kind}: warm");
        assert!(
            after >= 0.95 * before,
            "{mode}/{kind}: the scan evicted the hot set: hit rate {before} before, {after} after"
        );
        // The scan admitted nothing and evicted nothing; its reads of the hot file were hits.
        assert_eq!(
            done.evictions, at.evictions,
            "{mode}/{kind}: {at:?} -> {done:?}"
        );
        assert_eq!(
            done.resident_pages, HOT_PAGES as u64,
            "{mode}/{kind}: {done:?}"
        );
        assert_eq!(done.point_hits(), at.point_hits(), "{mode}/{kind}");
        assert_eq!(done.point_misses(), at.point_misses(), "{mode}/{kind}");
        assert_eq!(
            done.scan_misses - at.scan_misses,
            SCAN_PAGES as u64,
            "{mode}/{kind}: every page of the large file read once"
        );
        assert_eq!(
            done.scan_hits - at.scan_hits,
            HOT_PAGES as u64,
            "{mode}/{kind}: the hot file scanned from the cache"
        );
        // The control: the same sequence with point reads for the scan loses the hot set.
        assert_eq!(c_before, 1.0, "{mode}/{kind}: control warm");
        assert!(
            c_after < 0.5,
            "{mode}/{kind}: control: a point-read scan should evict the hot set, hit rate {c_after}"
        );
    })
    .await
    .unwrap();
}
