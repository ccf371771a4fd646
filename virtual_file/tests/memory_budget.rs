//! The memory budget holds: writers, readers and the page cache drawing on one budget concurrently never
//! reserve more than it, and a single request above it is a typed error.

mod common;

use common::write_matrix;
use rstest_reuse::apply;

use std::sync::Arc;
use std::time::Duration;

use common::{engine, pattern};
use io_engine::IoEngineKind;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::buffered_writer::Error as WriterError;
use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
use virtual_file::{Consumer, IoContext, IoMode, MemoryBudgetError, VirtualFile, CACHE_PAGE_SIZE};

const T: Duration = Duration::from_secs(120);
const BUDGET: usize = 1 << 20;

#[apply(write_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_readers_and_cache_stay_within_the_budget(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(T, async {
        let ctx = IoContext::builder()
            .engine(engine(kind))
            .mode(mode)
            .memory_budget_bytes(BUDGET)
            .build()
            .unwrap();
        let dir = Arc::new(tempfile::tempdir().unwrap());
        // A file for the cache readers.
        let data = Arc::new(pattern(64 * CACHE_PAGE_SIZE, 5));
        {
            let f = VirtualFile::create(&ctx, dir.path().join("r"))
                .await
                .unwrap();
            let mut w: BufferedWriter<VirtualFile> =
                BufferedWriter::new(f, BufferedWriterOptions::default()).unwrap();
            w.write_buffered(&data).await.unwrap();
            w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap();
        }
        let reader = Arc::new(VirtualFile::open(&ctx, dir.path().join("r")).await.unwrap());
        let mut tasks = Vec::new();
        // Writers: 128 KiB buffers, depth 4, keeping written pages in the cache; the odd ones in spill
        // mode (each keeps as much of its 1 MiB in memory as the budget allows).
        for w in 0..4u64 {
            let (ctx, dir) = (ctx.clone(), Arc::clone(&dir));
            tasks.push(tokio::spawn(async move {
                let path = dir.path().join(format!("w{w}"));
                let mut f = VirtualFile::create(&ctx, &path).await.unwrap();
                f.keep_written_pages(true);
                let opts = BufferedWriterOptions::default()
                    .with_capacity(128 << 10)
                    .with_depth(4)
                    .with_spill(w % 2 == 1);
                let mut writer: BufferedWriter<VirtualFile> = BufferedWriter::new(f, opts).unwrap();
                let bytes = pattern(1 << 20, 100 + w);
                for chunk in bytes.chunks(10_000) {
                    writer.write_buffered(chunk).await.unwrap();
                }
                writer
                    .shutdown(ShutdownMode::PadThenTruncate)
                    .await
                    .unwrap();
                assert!(std::fs::read(&path).unwrap() == bytes);
            }));
        }
        // Read buffers: reserve, hold across a yield, release.
        for r in 0..8u64 {
            let budget = ctx.memory_budget().clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(r);
                for _ in 0..200 {
                    let n = rng.random_range(1..256 << 10);
                    let res = budget.reserve(Consumer::ReadBuffers, n).await.unwrap();
                    let buf = vec![1u8; res.bytes()];
                    tokio::task::yield_now().await;
                    drop(buf);
                }
            }));
        }
        // Cache readers.
        for r in 0..8u64 {
            let (reader, data) = (Arc::clone(&reader), Arc::clone(&data));
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(50 + r);
                for _ in 0..300 {
                    let offset = rng.random_range(0..data.len() - 20_000);
                    let len = rng.random_range(1..20_000);
                    let mut out = vec![0u8; len];
                    reader
                        .read_cached_at(offset as u64, &mut out)
                        .await
                        .unwrap();
                    assert!(out == data[offset..offset + len]);
                }
            }));
        }
        // A sampler: the reserved total never exceeds the budget at any moment it looks.
        let sampler = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                loop {
                    let s = ctx.memory_metrics();
                    assert!(s.total_current <= BUDGET as u64, "{s:?}");
                    tokio::task::yield_now().await;
                }
            })
        };
        for t in tasks {
            t.await.unwrap();
        }
        sampler.abort();
        let s = ctx.memory_metrics();
        assert!(s.total_peak <= BUDGET as u64, "{s:?}");
        for c in [
            Consumer::WriterBuffers,
            Consumer::ReadBuffers,
            Consumer::PageCache,
        ] {
            assert!(s.peak[c] > 0, "{c} never reserved: {s:?}");
        }
        assert!(s.waits > 0, "the budget was never short: {s:?}");
        assert_eq!(s.current[Consumer::WriterBuffers], 0);
        assert_eq!(s.current[Consumer::ReadBuffers], 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_request_above_the_budget_is_a_typed_error() {
    let ctx = IoContext::builder()
        .memory_budget_bytes(BUDGET)
        .build()
        .unwrap();
    let err = ctx
        .memory_budget()
        .reserve(Consumer::ReadBuffers, BUDGET + 1)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        MemoryBudgetError::TooLarge {
            consumer: Consumer::ReadBuffers,
            requested,
            budget: BUDGET
        } if requested == BUDGET + 1
    ));
    // A writer whose buffer is above the budget: the first write says so, typed.
    let dir = tempfile::tempdir().unwrap();
    let f = VirtualFile::create(&ctx, dir.path().join("w"))
        .await
        .unwrap();
    let opts = BufferedWriterOptions::default().with_capacity(2 * BUDGET);
    let mut w: BufferedWriter<VirtualFile> = BufferedWriter::new(f, opts).unwrap();
    let err = w.write_buffered(b"x").await.unwrap_err();
    assert!(
        matches!(err, WriterError::Memory(MemoryBudgetError::TooLarge { .. })),
        "{err}"
    );
}
