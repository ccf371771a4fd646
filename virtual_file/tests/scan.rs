//! `VirtualFile::scan` in every IO mode x engine: the chunks are exactly the range's bytes for random
//! sizes, ranges and options; the window grows to its limit and stays inside the memory budget; a
//! `next_chunk` future dropped after its first poll loses nothing; a dropped scan gives its memory back;
//! a file that shrinks under a scan is an error, not a panic, and the scan stays failed; bad options are refused.

mod common;

use common::io_matrix;
use rstest_reuse::apply;

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use common::{engine, pattern};
use io_engine::IoEngineKind;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::{Consumer, Error, IoContext, IoMode, OpKind, Scan, ScanOptions, VirtualFile};

const T: Duration = Duration::from_secs(120);

fn ctx(mode: IoMode, kind: IoEngineKind, budget: usize) -> IoContext {
    IoContext::builder()
        .engine(engine(kind))
        .mode(mode)
        .memory_budget_bytes(budget)
        .build()
        .unwrap()
}

async fn collect(scan: &mut Scan) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut at = None;
    while let Some(chunk) = scan.next_chunk().await? {
        if let Some(at) = at {
            assert_eq!(chunk.offset, at, "chunks in file order, back to back");
        }
        at = Some(chunk.offset + chunk.bytes.len() as u64);
        out.extend_from_slice(&chunk.bytes);
    }
    Ok(out)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[apply(io_matrix)]
fn chunks_are_the_range(mode: IoMode, kind: IoEngineKind) {
    runtime().block_on(async {
        let ctx = ctx(mode, kind, 64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for case in 0..24 {
            let size = match case {
                0 => 0,
                1 => 1,
                2 => 4096,
                _ => rng.random_range(1..600_000),
            };
            let data = pattern(size, case);
            let path = dir.path().join(format!("f{case}"));
            std::fs::write(&path, &data).unwrap();
            let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
            for _ in 0..4 {
                let a = rng.random_range(0..=size as u64 + 10);
                let b = rng.random_range(0..=size as u64 + 10);
                let (a, b) = (a.min(b), a.max(b));
                let options = ScanOptions {
                    read_size: rng.random_range(1..70_000),
                    initial_reads: rng.random_range(1..4),
                    max_reads: rng.random_range(1..9),
                };
                let mut scan = file.scan(a..b, options).await.unwrap();
                let got = tokio::time::timeout(T, collect(&mut scan)).await.unwrap();
                let (a, b) = ((a as usize).min(size), (b as usize).min(size));
                assert_eq!(
                    got.unwrap(),
                    &data[a..b],
                    "{mode} {kind}: size {size} range {a}..{b} {options:?}"
                );
            }
            let mut whole = file.scan(.., ScanOptions::default()).await.unwrap();
            assert_eq!(
                collect(&mut whole).await.unwrap(),
                data,
                "{mode} {kind}: whole file {size}"
            );
        }
        assert_eq!(
            ctx.memory_budget().snapshot().current[Consumer::ScanBuffers],
            0,
            "every scan buffer given back"
        );
    });
}

/// An empty range (given empty, or empty once clipped to the file's size) at an offset that is not
/// aligned hands out no chunk and reads nothing.
#[apply(io_matrix)]
fn empty_range_gives_no_chunk(mode: IoMode, kind: IoEngineKind) {
    runtime().block_on(async {
        let ctx = ctx(mode, kind, 64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(5000, 3)).unwrap();
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        for (a, b) in [
            (100, 100),
            (4999, 4999),
            (5000, 6000),
            (6000, 7000),
            (7000, 7000),
        ] {
            let reads = ctx.metrics().ops[OpKind::Read].count;
            let mut scan = file.scan(a..b, ScanOptions::default()).await.unwrap();
            let chunk = tokio::time::timeout(T, scan.next_chunk()).await.unwrap();
            assert!(
                chunk.unwrap().is_none(),
                "{mode} {kind}: scan of {a}..{b} (file of 5000 bytes) handed out a chunk"
            );
            assert_eq!(
                ctx.metrics().ops[OpKind::Read].count,
                reads,
                "{mode} {kind}: scan of {a}..{b} read the file"
            );
        }
    });
}

#[apply(io_matrix)]
fn listed_extents_are_read_in_order(mode: IoMode, kind: IoEngineKind) {
    runtime().block_on(async {
        let ctx = ctx(mode, kind, 64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let size = 700_001;
        let data = pattern(size, 9);
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20 {
            // random extents, in any order, overlapping or empty
            let extents: Vec<_> = (0..rng.random_range(0..40))
                .map(|_| {
                    let a = rng.random_range(0..=size as u64);
                    let b = (a + rng.random_range(0..100_000)).min(size as u64);
                    a..b
                })
                .collect();
            let options = ScanOptions {
                initial_reads: rng.random_range(1..3),
                max_reads: rng.random_range(1..6),
                ..ScanOptions::default()
            };
            let mut scan = file.scan_extents(extents.clone(), options).unwrap();
            for extent in &extents {
                let chunk = scan.next_chunk().await.unwrap().expect("one chunk per extent");
                assert_eq!(chunk.offset, extent.start);
                assert_eq!(
                    &chunk.bytes[..],
                    &data[extent.start as usize..extent.end as usize],
                    "{mode} {kind}: extent {extent:?}"
                );
            }
            assert!(scan.next_chunk().await.unwrap().is_none());
        }
        // an extent past the end of the file is an error, not a panic or a short chunk
        let mut scan = file
            .scan_extents(vec![0..10, size as u64 - 5..size as u64 + 4096], ScanOptions::default())
            .unwrap();
        assert_eq!(&scan.next_chunk().await.unwrap().unwrap().bytes[..], &data[..10]);
        let err = scan.next_chunk().await.unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof),
            "{err}"
        );
    });
}

#[apply(io_matrix)]
fn window_grows_within_the_budget(mode: IoMode, kind: IoEngineKind) {
    runtime().block_on(async {
        const READ: usize = 64 << 10;
        // room for 5 reads: the window (max 8) is held to what the budget has
        let ctx = ctx(mode, kind, 5 * READ);
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(40 * READ + 123, 1);
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        let options = ScanOptions {
            read_size: READ,
            initial_reads: 1,
            max_reads: 8,
        };
        let mut scan = file.scan(.., options).await.unwrap();
        let mut got = Vec::new();
        let mut most = 0;
        while let Some(chunk) = scan.next_chunk().await.unwrap() {
            most = most.max(scan.in_flight());
            got.extend_from_slice(&chunk.bytes);
        }
        assert_eq!(got, data);
        assert!(most >= 4, "the window grew: at most {most} reads in flight");
        assert!(most <= 5, "the budget holds the window: {most} in flight");
        let peak = ctx.memory_budget().snapshot().peak[Consumer::ScanBuffers];
        assert!(peak <= 5 * READ as u64, "peak {peak} within the budget");

        // with room for all, the window reaches its limit
        let ctx = self::ctx(mode, kind, 64 << 20);
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        let mut scan = file.scan(.., options).await.unwrap();
        let mut most = 0;
        while scan.next_chunk().await.unwrap().is_some() {
            most = most.max(scan.in_flight());
        }
        assert_eq!(most, 8, "window at max_reads");
    });
}

/// Polls `fut` once and drops it.
async fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Drops `path`'s pages from the kernel's page cache (they are clean: the file was synced), so reads
/// of it go to the device and are pending for a while.
fn evict(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: an advisory syscall on a descriptor that `f` keeps open for the call.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
}

#[apply(io_matrix)]
fn dropped_next_chunk_loses_nothing(mode: IoMode, kind: IoEngineKind) {
    runtime().block_on(async {
        let ctx = ctx(mode, kind, 64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(3 << 20, 2);
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        let options = ScanOptions {
            read_size: 100_000,
            ..ScanOptions::default()
        };
        // Each call is polled once; one that is pending then is dropped and the chunk is taken by a
        // new call. Scans are repeated (cold) until some calls were dropped: a scan whose reads all
        // finish before they are awaited would test nothing.
        let mut dropped = 0;
        for _ in 0..10 {
            evict(&path);
            let mut scan = file.scan(1000.., options).await.unwrap();
            let mut got = Vec::new();
            loop {
                let chunk = match poll_once(scan.next_chunk()).await {
                    Some(res) => res.unwrap(),
                    None => {
                        dropped += 1;
                        scan.next_chunk().await.unwrap()
                    }
                };
                let Some(chunk) = chunk else { break };
                got.extend_from_slice(&chunk.bytes);
            }
            assert_eq!(got, &data[1000..], "{mode} {kind}");
            if dropped > 0 {
                break;
            }
        }
        assert!(
            dropped > 0,
            "{mode} {kind}: no call was pending in 10 cold scans"
        );
    });
}

#[apply(io_matrix)]
fn dropped_scan_gives_memory_back(mode: IoMode, kind: IoEngineKind) {
    runtime().block_on(async {
        let ctx = ctx(mode, kind, 64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(8 << 20, 3)).unwrap();
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        let mut scan = file.scan(.., ScanOptions::default()).await.unwrap();
        let first = scan.next_chunk().await.unwrap().unwrap();
        assert!(scan.in_flight() > 0);
        drop(scan);
        drop(first);
        let budget = ctx.memory_budget().clone();
        tokio::time::timeout(T, async {
            while budget.snapshot().current[Consumer::ScanBuffers] != 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the reads of a dropped scan give their memory back");
    });
}

/// Chunks handed back with `Scan::recycle` are read into again: the bytes stay exact for random sizes
/// and read sizes (a recycled buffer may be larger than the read it serves), a chunk still shared is
/// not kept, the kept buffers stay paid from the budget (at most `max_reads` of them), and everything is
/// given back when the scan is dropped.
#[apply(io_matrix)]
fn recycled_buffers_are_reused(mode: IoMode, kind: IoEngineKind) {
    runtime().block_on(async {
        let ctx = ctx(mode, kind, 16 << 20);
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for case in 0..8 {
            let size = rng.random_range(1..3_000_000);
            let data = pattern(size, case + 40);
            let path = dir.path().join(format!("f{case}"));
            std::fs::write(&path, &data).unwrap();
            let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
            let options = ScanOptions {
                read_size: rng.random_range(4096..300_000),
                initial_reads: rng.random_range(1..3),
                max_reads: rng.random_range(1..6),
            };
            let start = rng.random_range(0..size as u64 / 2);
            let mut scan = file.scan(start.., options).await.unwrap();
            let mut got = Vec::new();
            let mut kept = 0;
            let mut held = None;
            while let Some(chunk) = tokio::time::timeout(T, scan.next_chunk())
                .await
                .unwrap()
                .unwrap()
            {
                assert_eq!(chunk.offset, start + got.len() as u64);
                got.extend_from_slice(&chunk.bytes);
                if held.is_none() && got.len() > 1 {
                    // a chunk with another slice of it alive is not kept
                    held = Some(chunk.bytes.slice(..1));
                    assert!(
                        !scan.recycle(chunk.bytes),
                        "{mode} {kind}: a shared buffer was kept"
                    );
                    continue;
                }
                kept += usize::from(scan.recycle(chunk.bytes));
                // at most `max_reads` in flight and `max_reads` kept, each one aligned read
                let used = ctx.memory_budget().snapshot().current[Consumer::ScanBuffers];
                let most =
                    2 * options.max_reads as u64 * options.read_size.div_ceil(4096) as u64 * 4096;
                assert!(used <= most, "{mode} {kind}: scan buffers {used} > {most}");
            }
            assert_eq!(
                got,
                &data[start as usize..],
                "{mode} {kind}: case {case} {options:?}"
            );
            let chunks = (size as u64 - start).div_ceil(options.read_size as u64);
            if chunks > 2 {
                assert!(
                    kept > 0,
                    "{mode} {kind}: no buffer was kept ({chunks} chunks)"
                );
            }
            drop(held);
            drop(scan);
            assert_eq!(
                ctx.memory_budget().snapshot().current[Consumer::ScanBuffers],
                0,
                "{mode} {kind}: a dropped scan keeps no recycled buffer"
            );
        }
    });
}

#[apply(io_matrix)]
fn shrunk_file_is_an_error(mode: IoMode, kind: IoEngineKind) {
    runtime().block_on(async {
        let ctx = ctx(mode, kind, 64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(4 << 20, 4)).unwrap();
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        let options = ScanOptions {
            read_size: 256 << 10,
            initial_reads: 1,
            max_reads: 1,
        };
        let mut scan = file.scan(.., options).await.unwrap();
        scan.next_chunk().await.unwrap().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(300 << 10)
            .unwrap();
        let err = loop {
            match scan.next_chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{mode} {kind}: a scan past the new end must fail"),
                Err(e) => break e,
            }
        };
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof),
            "{mode} {kind}: {msg}"
        );
        assert!(msg.contains(&path.display().to_string()), "names the file: {msg}");
        // the scan is over: no later call hands out the chunks after the gap
        assert!(scan.next_chunk().await.is_err(), "{mode} {kind}: a failed scan stays failed");
    });
}

#[rstest]
#[case(ScanOptions { read_size: 0, ..ScanOptions::default() })]
#[case(ScanOptions { initial_reads: 0, ..ScanOptions::default() })]
#[case(ScanOptions { max_reads: 0, ..ScanOptions::default() })]
fn bad_options_are_refused(#[case] options: ScanOptions) {
    runtime().block_on(async {
        let ctx = ctx(IoMode::DirectRw, IoEngineKind::StdFs, 1 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        let err = file.scan(.., options).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    });
}

#[test]
fn read_larger_than_the_budget_is_refused() {
    runtime().block_on(async {
        let ctx = ctx(IoMode::Buffered, IoEngineKind::StdFs, 1 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(4 << 20, 5)).unwrap();
        let file = Arc::new(VirtualFile::open(&ctx, &path).await.unwrap());
        let options = ScanOptions {
            read_size: 2 << 20,
            ..ScanOptions::default()
        };
        let mut scan = file.scan(.., options).await.unwrap();
        let err = scan.next_chunk().await.unwrap_err();
        assert!(matches!(err, Error::Memory(_)), "{err}");
    });
}
