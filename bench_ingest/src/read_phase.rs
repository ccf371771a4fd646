//! The read phase after a case's write-out: random point lookups over the written delta layer from many
//! tasks for a fixed time, first *cold* (the layer's pages dropped from the kernel's page cache with
//! `posix_fadvise(DONTNEED)`, and a fresh context, so our page cache is empty too), then *warm* (the same
//! reader again). Reports lookups per second and the 99th percentile latency of each.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layer_writers::{DeltaLayerReader, Key, Lsn};
use rand::{Rng, SeedableRng};
use virtual_file::IoContext;

use crate::error::CaseError;
use crate::measure::evict_from_page_cache;

/// Settings of the read phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadPhaseSpec {
    /// Seconds of lookups, cold and then warm (0: no read phase).
    pub secs: f64,
    /// Concurrent lookup tasks.
    pub readers: usize,
}

impl Default for ReadPhaseSpec {
    fn default() -> Self {
        Self {
            secs: 2.0,
            readers: 32,
        }
    }
}

/// What one half (cold or warm) of the read phase measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LookupStats {
    /// Point lookups completed.
    pub lookups: u64,
    /// Lookups per second.
    pub per_s: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Pages our page cache read from the file in this half.
    pub cache_device_reads: u64,
}

/// Both halves, and the layer's index size (to compare with the cache's device reads).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ReadPhaseResult {
    /// The first half: the layer's pages dropped from the kernel's page cache (`POSIX_FADV_DONTNEED`)
    /// and a fresh context, so our page cache is empty too.
    pub cold: LookupStats,
    /// The second half: the same reader again, with what the first half cached.
    pub warm: LookupStats,
    /// Index pages of the layer.
    pub index_pages: u32,
}

/// Runs the read phase over the delta layer at `path`, whose keys are `keys`, with a fresh context made
/// by `make_ctx`.
pub async fn run_read_phase(
    make_ctx: impl FnOnce() -> Result<IoContext, virtual_file::Error>,
    path: &Path,
    keys: Arc<Vec<Key>>,
    spec: ReadPhaseSpec,
) -> Result<ReadPhaseResult, CaseError> {
    evict_from_page_cache(path);
    let ctx = make_ctx()?;
    let reader = Arc::new(DeltaLayerReader::open(&ctx, path).await?);
    let index_pages = reader.summary().index_page_count;
    let cold = lookups(&ctx, &reader, &keys, spec, 1).await?;
    let warm = lookups(&ctx, &reader, &keys, spec, 2).await?;
    Ok(ReadPhaseResult {
        cold,
        warm,
        index_pages,
    })
}

async fn lookups(
    ctx: &IoContext,
    reader: &Arc<DeltaLayerReader>,
    keys: &Arc<Vec<Key>>,
    spec: ReadPhaseSpec,
    seed: u64,
) -> Result<LookupStats, CaseError> {
    let reads_before = ctx.page_cache_metrics().device_reads;
    let deadline = Instant::now() + Duration::from_secs_f64(spec.secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..spec.readers.max(1))
        .map(|t| {
            let (reader, keys) = (Arc::clone(reader), Arc::clone(keys));
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 1000 + t as u64);
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let key = keys[rng.random_range(0..keys.len())];
                    let t0 = Instant::now();
                    let got = reader.get(key, Lsn(0)..Lsn::MAX).await?;
                    latencies.push(t0.elapsed());
                    if got.is_empty() {
                        return Err(CaseError::Verify(format!(
                            "read phase: key {key:?} missing"
                        )));
                    }
                }
                Ok::<_, CaseError>(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let lat = t
            .await
            .map_err(|e| CaseError::Verify(format!("read task failed: {e}")))??;
        all.extend(lat);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let p99 = all
        .get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Ok(LookupStats {
        lookups: all.len() as u64,
        per_s: all.len() as f64 / elapsed,
        p99_us: p99.as_secs_f64() * 1e6,
        cache_device_reads: ctx.page_cache_metrics().device_reads - reads_before,
    })
}
