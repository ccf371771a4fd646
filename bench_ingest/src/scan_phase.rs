//! The scan phase after a case's write-out: a cold full scan of the written delta layer, the raw
//! sequential `O_DIRECT` read limit of the same file, and what a scan does to a hot set in our page cache.
//!
//! - **Cold scan**: the layer's pages dropped from the kernel's page cache (`posix_fadvise(DONTNEED)`,
//!   which also covers the buffered modes) and a fresh context, then
//!   [`DeltaLayerReader::scan_each`] over every record (index walk, then the values front to back with
//!   reads in flight ahead). MiB/s of the layer file's bytes.
//! - **Limit**: the same file read front to back with `O_DIRECT` `pread`s of [`LIMIT_READ`] bytes,
//!   [`LIMIT_IN_FLIGHT`] threads each taking the next block (about `fio --rw=read --direct=1 --bs=1M
//!   --iodepth=4`), in the same run.
//! - **Hot set**: a fresh context whose memory budget is a quarter of the layer (so the scan reads at
//!   least 4x the cache), a reader that caches values, [`HOT_KEYS`] keys looked up until warm; the hit
//!   rate of our page cache over one more pass of them (before), then a full scan, then one more pass
//!   (after).

use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use io_engine::{DefaultAlign, IoBufferMut};
use layer_writers::{DeltaLayerReader, Key, Lsn};
use rand::{Rng, SeedableRng};
use virtual_file::IoContext;

use crate::error::CaseError;
use crate::measure::evict_from_page_cache;

/// Bytes per read of the raw limit.
pub const LIMIT_READ: usize = 1 << 20;
/// Reads in flight of the raw limit.
pub const LIMIT_IN_FLIGHT: usize = 4;
/// Keys in the hot set (capped so that their pages take at most half of the hot context's budget).
pub const HOT_KEYS: usize = 1024;
/// Smallest memory budget of the hot-set context.
const HOT_BUDGET_MIN: usize = 8 << 20;

/// What the scan phase measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ScanPhaseResult {
    /// Cold full scan of the delta layer through `scan_each`, MiB/s of the file.
    pub scan_cold_mib_per_s: f64,
    /// Raw sequential `O_DIRECT` reads of the same file, MiB/s.
    pub scan_limit_mib_per_s: f64,
    /// Our page cache's hit rate over a pass of the hot set before the scan.
    pub hot_hit_rate_before: f64,
    /// The same after a full scan of the layer.
    pub hot_hit_rate_after: f64,
    /// Keys in the hot set.
    pub hot_keys: usize,
    /// The hot-set context's memory budget, MiB (the layer is at least 4x this).
    pub hot_budget_mib: f64,
}

/// Runs the scan phase over the delta layer at `path` (keys `keys`), with fresh contexts made by
/// `make_ctx(memory budget bytes)`.
pub async fn run_scan_phase(
    make_ctx: impl Fn(Option<usize>) -> Result<IoContext, virtual_file::Error>,
    path: &Path,
    keys: &[Key],
) -> Result<ScanPhaseResult, CaseError> {
    let file_len = std::fs::metadata(path)?.len();
    let mib = file_len as f64 / (1 << 20) as f64;

    evict_from_page_cache(path);
    let ctx = make_ctx(None)?;
    let reader = DeltaLayerReader::open(&ctx, path).await?;
    let start = Instant::now();
    let records = full_scan(&reader).await?;
    let scan_cold_mib_per_s = mib / start.elapsed().as_secs_f64();
    if records == 0 {
        return Err(CaseError::Verify(
            "scan phase: the layer has no records".into(),
        ));
    }
    drop(reader);
    drop(ctx);

    evict_from_page_cache(path);
    let limit_path = path.to_owned();
    let start = Instant::now();
    tokio::task::spawn_blocking(move || raw_sequential_read(&limit_path, file_len))
        .await
        .map_err(|e| CaseError::Verify(format!("limit read task failed: {e}")))??;
    let scan_limit_mib_per_s = mib / start.elapsed().as_secs_f64();

    let budget = usize::try_from(file_len / 4)
        .unwrap_or(usize::MAX)
        .max(HOT_BUDGET_MIN);
    let ctx = make_ctx(Some(budget))?;
    let mut reader = DeltaLayerReader::open(&ctx, path).await?;
    reader.set_cache_values(true);
    // at most half the budget: a value page and a leaf page per key
    let hot_keys = HOT_KEYS
        .min(budget / 2 / (2 * virtual_file::CACHE_PAGE_SIZE))
        .min(keys.len());
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let hot: Vec<Key> = (0..hot_keys)
        .map(|_| keys[rng.random_range(0..keys.len())])
        .collect();
    for _ in 0..2 {
        hot_pass(&ctx, &reader, &hot).await?;
    }
    let hot_hit_rate_before = hot_pass(&ctx, &reader, &hot).await?;
    full_scan(&reader).await?;
    let hot_hit_rate_after = hot_pass(&ctx, &reader, &hot).await?;
    Ok(ScanPhaseResult {
        scan_cold_mib_per_s,
        scan_limit_mib_per_s,
        hot_hit_rate_before,
        hot_hit_rate_after,
        hot_keys,
        hot_budget_mib: budget as f64 / (1 << 20) as f64,
    })
}

/// Every record of the layer through `scan_each`; returns how many.
async fn full_scan(reader: &DeltaLayerReader) -> Result<u64, CaseError> {
    let mut records = 0u64;
    reader
        .scan_each(|_, _, _, value| {
            records += 1;
            std::hint::black_box(value);
            std::ops::ControlFlow::Continue(())
        })
        .await?;
    Ok(records)
}

/// One lookup of every hot key; returns our page cache's hit rate over the pass.
async fn hot_pass(
    ctx: &IoContext,
    reader: &DeltaLayerReader,
    hot: &[Key],
) -> Result<f64, CaseError> {
    let before = ctx.page_cache_metrics();
    for key in hot {
        if reader.get(*key, Lsn(0)..Lsn::MAX).await?.is_empty() {
            return Err(CaseError::Verify(format!(
                "scan phase: key {key:?} missing"
            )));
        }
    }
    let after = ctx.page_cache_metrics();
    let hits = after.hits - before.hits;
    let misses = after.misses - before.misses;
    Ok(if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    })
}

/// Reads `len` bytes of the file at `path` front to back with `O_DIRECT` `pread`s of [`LIMIT_READ`]
/// bytes on [`LIMIT_IN_FLIGHT`] threads, each taking the next block.
fn raw_sequential_read(path: &Path, len: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let blocks = len.div_ceil(LIMIT_READ as u64);
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..LIMIT_IN_FLIGHT)
            .map(|_| {
                s.spawn(|| {
                    let mut buf = IoBufferMut::<DefaultAlign>::zeroed(LIMIT_READ);
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= blocks {
                            return Ok::<(), std::io::Error>(());
                        }
                        let offset = b * LIMIT_READ as u64;
                        let mut done = 0;
                        // the last block may end short, at the end of the file
                        while offset + (done as u64) < len {
                            match file.read_at(&mut buf[done..], offset + done as u64)? {
                                0 => break,
                                n => done += n,
                            }
                        }
                        std::hint::black_box(&buf);
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}
