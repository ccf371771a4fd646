//! The page cache in every IO mode x engine: cached reads return exactly what the file holds, across
//! eviction, concurrent misses of one page, writes, and a path reused by another file; a budget of a few
//! pages with many readers does not deadlock.

mod common;

use common::{io_matrix, write_matrix};
use rstest_reuse::apply;

use std::sync::Arc;
use std::time::Duration;

use common::{engine, pattern};
use io_engine::{FullSlice, IoBufferMut, IoEngineKind};
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::{IoContext, IoMode, VirtualFile, CACHE_PAGE_SIZE};

const PAGE: usize = CACHE_PAGE_SIZE;
const T: Duration = Duration::from_secs(120);

fn ctx(mode: IoMode, kind: IoEngineKind, budget_pages: usize) -> IoContext {
    IoContext::builder()
        .engine(engine(kind))
        .mode(mode)
        .memory_budget_bytes(budget_pages * PAGE)
        .build()
        .unwrap()
}

/// Writes `data` to a new file at `path` and returns a read-only open of it.
async fn file_with(ctx: &IoContext, path: &std::path::Path, data: &[u8]) -> VirtualFile {
    let f = VirtualFile::create(ctx, path).await.unwrap();
    let padded = data.len().next_multiple_of(512);
    let mut buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(padded);
    buf.extend_from_slice(data);
    buf.resize(padded);
    f.write_all_at(FullSlice::new(buf), 0).await.1.unwrap();
    f.set_len(data.len() as u64).await.unwrap();
    f.sync_all().await.unwrap();
    VirtualFile::open(ctx, path).await.unwrap()
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_equal_the_file_across_eviction(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(T, async {
        let ctx = ctx(mode, kind, 16);
        let dir = tempfile::tempdir().unwrap();
        // 100 pages and a partial one: the last page is short.
        let data = pattern(100 * PAGE + 1234, 7);
        let file = file_with(&ctx, &dir.path().join("f"), &data).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..2000 {
            let offset = rng.random_range(0..data.len());
            let len = rng.random_range(0..=(3 * PAGE).min(data.len() - offset));
            let mut out = vec![0u8; len];
            file.read_cached_at(offset as u64, &mut out).await.unwrap();
            assert!(out == data[offset..offset + len], "{offset}+{len}");
        }
        // Past the end: a typed end-of-file error.
        let mut out = vec![0u8; 2000];
        let err = file
            .read_cached_at(data.len() as u64 - 1000, &mut out)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
        // The same across pages (read concurrently): the pages before the end are right, the error
        // is typed, and a page wholly past the end does not break it.
        for start in [data.len() - PAGE - 10, data.len() - 2 * PAGE - 10] {
            let mut out = vec![0u8; 3 * PAGE];
            let err = file
                .read_cached_at(start as u64, &mut out)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
            let n = data.len() - start;
            assert!(out[..n] == data[start..], "{start}");
        }
        let m = ctx.page_cache_metrics();
        assert!(m.evictions > 0, "{m:?}");
        assert!(m.hits > 0, "{m:?}");
        assert!(m.resident_pages <= 16, "{m:?}");
        assert!(ctx.memory_metrics().total_peak <= 16 * PAGE as u64);
    })
    .await
    .unwrap();
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_page_do_one_read(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(T, async {
        let ctx = ctx(mode, kind, 64);
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(4 * PAGE, 3);
        let file = Arc::new(file_with(&ctx, &dir.path().join("f"), &data).await);
        let reads_before = ctx.metrics().ops[virtual_file::OpKind::Read].count;
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (file, barrier) = (Arc::clone(&file), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    let mut out = vec![0u8; 100];
                    file.read_cached_at(2 * PAGE as u64 + 50, &mut out)
                        .await
                        .unwrap();
                    out
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap() == data[2 * PAGE + 50..2 * PAGE + 150]);
        }
        let m = ctx.page_cache_metrics();
        assert_eq!((m.misses, m.device_reads), (1, 1), "{m:?}");
        assert_eq!(m.hits, 31, "{m:?}");
        let reads = ctx.metrics().ops[virtual_file::OpKind::Read].count - reads_before;
        assert_eq!(reads, 1, "one page read from the file");
    })
    .await
    .unwrap();
}

#[apply(io_matrix)]
#[tokio::test]
async fn a_reused_path_never_hits_old_pages(mode: IoMode, kind: IoEngineKind) {
    let ctx = ctx(mode, kind, 64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let old = pattern(8 * PAGE, 1);
    let new = pattern(8 * PAGE, 2);
    let a = file_with(&ctx, &path, &old).await;
    let mut out = vec![0u8; 8 * PAGE];
    a.read_cached_at(0, &mut out).await.unwrap();
    assert!(out == old);
    drop(a);
    std::fs::remove_file(&path).unwrap();
    let b = file_with(&ctx, &path, &new).await;
    b.read_cached_at(0, &mut out).await.unwrap();
    assert!(
        out == new,
        "the new file's bytes, not the old file's cached pages"
    );
    // A second open of the same file while `b` is open shares its pages: all hits, no read.
    let before = ctx.page_cache_metrics();
    let c = VirtualFile::open(&ctx, &path).await.unwrap();
    c.read_cached_at(0, &mut out).await.unwrap();
    assert!(out == new);
    let after = ctx.page_cache_metrics();
    assert_eq!(after.device_reads, before.device_reads, "{after:?}");
    assert_eq!(after.hits - before.hits, 8, "{after:?}");
    // Once every handle is gone, the pages go with them, and an open reads the file again.
    drop((b, c));
    assert_eq!(ctx.page_cache_metrics().resident_pages, 0);
    let d = VirtualFile::open(&ctx, &path).await.unwrap();
    d.read_cached_at(0, &mut out).await.unwrap();
    assert!(out == new);
    let again = ctx.page_cache_metrics();
    // all 8 pages missed, and were read in one read
    assert_eq!(again.misses - after.misses, 8);
    assert_eq!(again.device_reads - after.device_reads, 1);
    // and are cached now: a second read is all hits
    d.read_cached_at(0, &mut out).await.unwrap();
    assert!(out == new);
    assert_eq!(ctx.page_cache_metrics().device_reads, again.device_reads);
}

#[apply(write_matrix)]
#[tokio::test]
async fn writes_drop_the_pages_they_change(mode: IoMode, kind: IoEngineKind) {
    let ctx = ctx(mode, kind, 64);
    let dir = tempfile::tempdir().unwrap();
    let f = VirtualFile::create(&ctx, dir.path().join("f"))
        .await
        .unwrap();
    let first = pattern(4 * PAGE, 1);
    let second = pattern(PAGE, 2);
    let mut buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(4 * PAGE);
    buf.extend_from_slice(&first);
    f.write_all_at(FullSlice::new(buf), 0).await.1.unwrap();
    let mut out = vec![0u8; 4 * PAGE];
    f.read_cached_at(0, &mut out).await.unwrap();
    assert!(out == first);
    let mut buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(PAGE);
    buf.extend_from_slice(&second);
    f.write_all_at(FullSlice::new(buf), PAGE as u64)
        .await
        .1
        .unwrap();
    f.read_cached_at(0, &mut out).await.unwrap();
    let mut expected = first.clone();
    expected[PAGE..2 * PAGE].copy_from_slice(&second);
    assert!(out == expected);
    f.set_len(PAGE as u64 + 10).await.unwrap();
    let mut out = vec![0u8; PAGE + 10];
    f.read_cached_at(0, &mut out).await.unwrap();
    assert!(out == expected[..PAGE + 10]);
    let mut more = vec![0u8; PAGE + 11];
    assert!(f.read_cached_at(0, &mut more).await.is_err());
}

#[apply(write_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_three_pages_serves_many_readers(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(T, async {
        let ctx = ctx(mode, kind, 3);
        let dir = tempfile::tempdir().unwrap();
        let data = Arc::new(pattern(50 * PAGE, 9));
        let file = Arc::new(file_with(&ctx, &dir.path().join("f"), &data).await);
        let tasks: Vec<_> = (0..64u64)
            .map(|seed| {
                let (file, data) = (Arc::clone(&file), Arc::clone(&data));
                tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                    for _ in 0..50 {
                        let offset = rng.random_range(0..data.len() - 2 * PAGE);
                        let len = rng.random_range(1..2 * PAGE);
                        let mut out = vec![0u8; len];
                        file.read_cached_at(offset as u64, &mut out).await.unwrap();
                        assert!(out == data[offset..offset + len]);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let m = ctx.page_cache_metrics();
        assert!(m.resident_pages <= 3, "{m:?}");
        assert!(ctx.memory_metrics().total_peak <= 3 * PAGE as u64);
    })
    .await
    .unwrap();
}

#[rstest]
#[tokio::test]
async fn written_pages_are_read_back_from_memory(
    #[values(IoMode::Direct, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions};
    use virtual_file::OpKind;
    let ctx = ctx(mode, kind, 1024);
    let dir = tempfile::tempdir().unwrap();
    let mut file = VirtualFile::create(&ctx, dir.path().join("e"))
        .await
        .unwrap();
    file.keep_written_pages(true);
    let reader = file.open_again_read_only().await.unwrap();
    let mut w: BufferedWriter<VirtualFile> =
        BufferedWriter::new(file, BufferedWriterOptions::default()).unwrap();
    let data = pattern(1 << 20, 4);
    w.write_buffered(&data).await.unwrap();
    w.flush().await.unwrap();
    let reads = ctx.metrics().ops[OpKind::Read].count;
    for (offset, len) in [(0usize, 1 << 20), (100, 5000), (65_000, 200_000)] {
        let plan = w.read_plan(offset as u64, len).unwrap();
        let got = plan.execute(&reader).await.unwrap();
        assert!(got == data[offset..offset + len], "{offset}+{len}");
    }
    assert_eq!(
        ctx.metrics().ops[OpKind::Read].count,
        reads,
        "served from the page cache, not the file"
    );
    // In buffered mode nothing is kept (the kernel's page cache has the pages).
    let bctx = self::ctx(IoMode::Buffered, kind, 1024);
    let mut file = VirtualFile::create(&bctx, dir.path().join("b"))
        .await
        .unwrap();
    file.keep_written_pages(true);
    let mut w: BufferedWriter<VirtualFile> =
        BufferedWriter::new(file, BufferedWriterOptions::default()).unwrap();
    w.write_buffered(&data).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(bctx.page_cache_metrics().inserts, 0);
}

/// A write future dropped after its first poll (the io_uring engine still has the write) drops the
/// written pages again once the kernel is done: a read after that sees what the file holds.
#[apply(write_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_write_drops_its_pages_when_the_kernel_is_done(mode: IoMode, kind: IoEngineKind) {
    let ctx = ctx(mode, kind, 64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let w = VirtualFile::create(&ctx, &path).await.unwrap();
    for round in 0..50u8 {
        let mut buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(4 * PAGE);
        buf.extend_from_slice(&vec![round; 4 * PAGE]);
        {
            let fut = w.write_all_at(FullSlice::new(buf), 0);
            let mut fut = std::pin::pin!(fut);
            std::future::poll_fn(|cx| {
                let _ = std::future::Future::poll(fut.as_mut(), cx);
                std::task::Poll::Ready(())
            })
            .await;
            // read the old or new bytes into the cache while the write may be in flight
            let mut out = vec![0u8; PAGE];
            let _ = w.read_cached_at(0, &mut out).await;
        }
        tokio::time::timeout(T, async {
            while w.mutations_in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
        let real = std::fs::read(&path).unwrap();
        let mut out = vec![0u8; real.len().min(4 * PAGE)];
        w.read_cached_at(0, &mut out).await.unwrap();
        assert!(out == real[..out.len()], "round {round}: a stale page");
    }
}
