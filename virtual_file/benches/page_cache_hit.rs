//! A page-cache hit (`VirtualFile::read_cached_at` of one whole 8 KiB page that is resident) against a
//! `memcpy` of an 8 KiB page, over the same number of pages in random order, in the same run. The goal:
//! a hit costs at most 1.3x the copy (the copy is what a hit must do; the rest is the lookup).
//!
//! `cargo bench -p virtual_file --bench page_cache_hit`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use io_engine::{FullSlice, IoBufferMut, IoEngineKind};
use rand::{Rng, SeedableRng};
use virtual_file::{IoContext, IoMode, VirtualFile, CACHE_PAGE_SIZE};

const PAGES: usize = 1024;

fn order() -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    (0..4096).map(|_| rng.random_range(0..PAGES)).collect()
}

fn hit_vs_memcpy(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let order = order();
    let mut group = c.benchmark_group("page_cache_hit");
    group.throughput(Throughput::Bytes(CACHE_PAGE_SIZE as u64));

    let src: Vec<Vec<u8>> = (0..PAGES).map(|i| vec![i as u8; CACHE_PAGE_SIZE]).collect();
    let mut dst = vec![0u8; CACHE_PAGE_SIZE];
    let mut i = 0;
    group.bench_function("memcpy_8k", |b| {
        b.iter(|| {
            i = (i + 1) % order.len();
            dst.copy_from_slice(&src[order[i]]);
            std::hint::black_box(&mut dst);
        })
    });

    for kind in [IoEngineKind::StdFs, IoEngineKind::TokioEpollUring] {
        let Ok(engine) = rt.block_on(async { io_engine::IoEngine::launch(kind) }) else {
            eprintln!("{kind} cannot start here: skipped");
            continue;
        };
        let ctx = IoContext::builder()
            .engine(engine)
            .mode(IoMode::DirectRw)
            .memory_budget_bytes(4 * PAGES * CACHE_PAGE_SIZE)
            .build()
            .unwrap();
        let path = dir.path().join(format!("f-{kind}"));
        let file = rt.block_on(async {
            let f = VirtualFile::create(&ctx, &path).await.unwrap();
            let mut buf =
                IoBufferMut::<io_engine::DefaultAlign>::with_capacity(PAGES * CACHE_PAGE_SIZE);
            buf.resize(PAGES * CACHE_PAGE_SIZE);
            f.write_all_at(FullSlice::new(buf), 0).await.1.unwrap();
            let r = VirtualFile::open(&ctx, &path).await.unwrap();
            let mut page = vec![0u8; CACHE_PAGE_SIZE];
            for p in 0..PAGES {
                r.read_cached_at((p * CACHE_PAGE_SIZE) as u64, &mut page)
                    .await
                    .unwrap();
            }
            r
        });
        let before = ctx.page_cache_metrics().device_reads;
        group.bench_function(format!("hit_8k/{kind}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = std::time::Instant::now();
                    for k in 0..iters as usize {
                        let off = (order[k % order.len()] * CACHE_PAGE_SIZE) as u64;
                        file.read_cached_at(off, &mut dst).await.unwrap();
                        std::hint::black_box(&mut dst);
                    }
                    start.elapsed()
                })
            })
        });
        assert_eq!(
            ctx.page_cache_metrics().device_reads,
            before,
            "every read was a hit"
        );
    }
    group.finish();
}

criterion_group!(benches, hit_vs_memcpy);
criterion_main!(benches);
