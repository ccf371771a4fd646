//! One ingest case: put values into an [`InMemoryLayer`] in batches, freeze it, optionally write it out as
//! a delta layer (with fsync), and read a sample of keys back to check them.

use std::path::Path;
use std::time::{Duration, Instant};

use io_engine::IoEngine;
use layer_writers::{DeltaLayerReader, InMemoryLayer, InMemoryLayerOptions, Key, Lsn};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use virtual_file::{IoContext, IoMode};

use crate::args::KeyLayout;
use crate::error::CaseError;
use crate::measure::{cpu_time, PageCacheSampler};
use crate::read_phase::{run_read_phase, ReadPhaseResult, ReadPhaseSpec};
use crate::remote::{round_trip, RemoteBench, RemoteRun};
use crate::scan_phase::{run_scan_phase, ScanPhaseResult};

/// Values per `put_batch` call.
pub const BATCH_VALUES: usize = 64;

/// Keys checked after each case.
pub const VERIFY_KEYS: usize = 200;

/// What one case is.
#[derive(Debug, Clone)]
pub struct CaseSpec {
    /// IO mode of the context.
    pub mode: IoMode,
    /// Bytes per value.
    pub key_size: usize,
    /// Key order.
    pub layout: KeyLayout,
    /// Payload MiB.
    pub volume_mib: u64,
    /// Write the delta layer.
    pub write_delta: bool,
    /// Memory budget of the context, MiB (`None`: `VIRTUAL_FILE_MEMORY_MIB`, else the default).
    pub memory_mib: Option<u64>,
    /// The read phase after the write-out (needs `write_delta`; `secs == 0` skips it).
    pub read_phase: ReadPhaseSpec,
    /// The scan phase after the read phase (needs `write_delta`).
    pub scan_phase: bool,
    /// The context keeps the ephemeral file's written pages in the page cache.
    pub keep_written_pages: bool,
    /// The in-memory layer keeps its ephemeral file in memory in the direct modes (spill mode).
    pub spill: bool,
}

/// What one run of a case measured.
#[derive(Debug, Clone)]
pub struct CaseRun {
    /// Wall time of ingest + freeze + delta write.
    pub wall: Duration,
    /// CPU time of the process over the same span.
    pub cpu: Duration,
    /// Peak page-cache growth, bytes.
    pub page_cache_growth: Option<u64>,
    /// Peak growth of the process's resident memory, bytes.
    pub rss_growth: Option<u64>,
    /// Peak bytes reserved from the context's memory budget.
    pub budget_peak: u64,
    /// The read phase, if run.
    pub read_phase: Option<ReadPhaseResult>,
    /// The scan phase, if run.
    pub scan_phase: Option<ScanPhaseResult>,
    /// Bytes written to files (ephemeral file + delta layer).
    pub written_bytes: u64,
    /// Keys read back and checked.
    pub verified_keys: usize,
    /// With a remote store: the upload / evict / download round trip of the delta layer.
    pub remote: Option<RemoteRun>,
    /// The metrics of the case's context at its end (ingest, write-out and check; the read phase has a
    /// context of its own).
    pub metrics: CaseMetrics,
}

/// The figures of a case's context, for `--metrics`.
#[derive(Debug, Clone)]
pub struct CaseMetrics {
    /// Op counts, bytes and latencies.
    pub ops: virtual_file::MetricsSnapshot,
    /// The page cache.
    pub page_cache: virtual_file::PageCacheSnapshot,
    /// The memory budget.
    pub memory: virtual_file::MemoryBudgetSnapshot,
}

/// The keys in put order and the LSN of each put.
pub fn key_sequence(layout: KeyLayout, n: usize, seed: u64) -> Vec<(Key, Lsn)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys: Vec<u128> = match layout {
        KeyLayout::Sequential => (0..n as u128).collect(),
        KeyLayout::Random => {
            let mut k: Vec<u128> = (0..n as u128).collect();
            k.shuffle(&mut rng);
            k
        }
        KeyLayout::RandomReuse => {
            let distinct = (n / 16).max(1) as u128;
            (0..n).map(|_| rng.random_range(0..distinct)).collect()
        }
    };
    keys.into_iter()
        .enumerate()
        .map(|(i, k)| (Key::from_u128(k), Lsn(0x1000 + i as u64)))
        .collect()
}

/// The value put for the `i`th put: `size` bytes derived from `i` (incompressible enough that zstd is not
/// what is measured, cheap to produce and to check).
pub fn value_for(pool: &[u8], i: usize, size: usize) -> &[u8] {
    let start = (i * 7919) % (pool.len() - size);
    &pool[start..start + size]
}

/// A pool of random bytes values are sliced from.
pub fn value_pool(size: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut pool = vec![0u8; size * 2 + (1 << 20)];
    rng.fill(&mut pool[..]);
    pool
}

/// The memory budget of a context in bytes: `mib` MiB if given, else `VIRTUAL_FILE_MEMORY_MIB`, else the
/// library's default.
pub fn memory_budget_bytes(mib: Option<u64>) -> Result<u64, virtual_file::Error> {
    Ok(match mib {
        Some(mib) => mib << 20,
        None => {
            let env = io_engine::env::var(virtual_file::MEMORY_MIB_ENV);
            virtual_file::parse_memory_mib(env.as_deref())?
                .map_or(virtual_file::DEFAULT_MEMORY_BYTES as u64, |m| {
                    (m as u64) << 20
                })
        }
    })
}

/// Runs one case in `dir` (which it fills and empties).
pub async fn run_case(
    engine: &IoEngine,
    spec: &CaseSpec,
    dir: &Path,
) -> Result<CaseRun, CaseError> {
    run_case_with_remote(engine, spec, dir, None).await
}

/// [`run_case`], and with a remote store (and `write_delta`), the delta layer is uploaded, evicted and
/// downloaded, and the sample is read back from the downloaded copy.
pub async fn run_case_with_remote(
    engine: &IoEngine,
    spec: &CaseSpec,
    dir: &Path,
    remote: Option<&RemoteBench>,
) -> Result<CaseRun, CaseError> {
    let memory_bytes = memory_budget_bytes(spec.memory_mib)?;
    let make_ctx_with = |budget: Option<usize>| {
        IoContext::builder()
            .engine(engine.clone())
            .mode(spec.mode)
            .memory_budget_bytes(
                budget.unwrap_or_else(|| usize::try_from(memory_bytes).unwrap_or(usize::MAX)),
            )
            .keep_written_pages(spec.keep_written_pages)
            .build()
    };
    let make_ctx = || make_ctx_with(None);
    let ctx = make_ctx()?;
    let n = ((spec.volume_mib << 20) / spec.key_size as u64).max(1) as usize;
    let puts = key_sequence(spec.layout, n, 7);
    let pool = value_pool(spec.key_size);

    // Give memory freed by earlier cases back to the kernel, so this case's RSS growth is its own.
    // SAFETY: malloc_trim only releases free heap memory; no pointer of ours is affected.
    unsafe { libc::malloc_trim(0) };
    let sampler = PageCacheSampler::start();
    let rss_sampler = PageCacheSampler::start_rss();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let options = InMemoryLayerOptions {
        spill: spec.spill,
        ..InMemoryLayerOptions::default()
    };
    let layer = InMemoryLayer::create_with_options(&ctx, dir, 1, options).await?;
    // the number of values is known: the index is sized once instead of growing on the way
    layer.reserve(n).await;
    // values are slices of the pool made above (before the clock started): nothing is generated here
    let mut batch = Vec::with_capacity(BATCH_VALUES);
    for (chunk_no, chunk) in puts.chunks(BATCH_VALUES).enumerate() {
        batch.clear();
        for (j, (key, lsn)) in chunk.iter().enumerate() {
            let i = chunk_no * BATCH_VALUES + j;
            batch.push((*key, *lsn, true, value_for(&pool, i, spec.key_size)));
        }
        layer.put_batch(&batch).await?;
    }
    layer.freeze().await?;
    let ephemeral_bytes = layer.len_bytes();
    // With a remote, the delta layer is written alone into a directory the tier manages.
    let delta_dir = match remote {
        Some(_) => {
            let d = dir.join("tier");
            std::fs::create_dir_all(&d)?;
            d
        }
        None => dir.to_owned(),
    };
    let delta = if spec.write_delta {
        Some(
            layer
                .write_to_disk(&ctx, &delta_dir, "ingest-delta")
                .await?,
        )
    } else {
        None
    };
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu0;
    let page_cache_growth = sampler.finish();
    let rss_growth = rss_sampler.finish();
    let budget_peak = ctx.memory_metrics().total_peak;
    let written_bytes = ephemeral_bytes + delta.as_ref().map_or(0, |d| d.file_len);

    // read back a sample of keys: from the delta layer if written, else from the in-memory layer
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let sample: Vec<Key> = (0..VERIFY_KEYS.min(n))
        .map(|_| puts[rng.random_range(0..n)].0)
        .collect();
    // what each sampled key should hold: (LSN, put index), in put order (LSNs increase with it)
    let mut expected: std::collections::HashMap<Key, Vec<(Lsn, usize)>> =
        sample.iter().map(|k| (*k, Vec::new())).collect();
    for (i, (key, lsn)) in puts.iter().enumerate() {
        if let Some(versions) = expected.get_mut(key) {
            versions.push((*lsn, i));
        }
    }
    let mut trip = match (&delta, remote) {
        (Some(_), Some(bench)) => Some(
            round_trip(&ctx, bench, &delta_dir, "ingest-delta", puts[0].0)
                .await
                .map_err(CaseError::Remote)?,
        ),
        _ => None,
    };
    let local_reader = match (&delta, &trip) {
        (Some(d), None) => Some(DeltaLayerReader::open(&ctx, &d.path).await?),
        _ => None,
    };
    let reader = trip.as_ref().map(|t| &t.reader).or(local_reader.as_ref());
    for key in &sample {
        let got = match reader {
            Some(r) => r.get(*key, Lsn(0)..Lsn::MAX).await?,
            None => layer.get(*key, Lsn(0)..Lsn::MAX).await?,
        };
        let want = &expected[key];
        if got.len() != want.len() {
            return Err(CaseError::Verify(format!(
                "key {key:?}: {} versions, expected {}",
                got.len(),
                want.len()
            )));
        }
        for ((lsn, _will_init, value), (want_lsn, i)) in got.iter().zip(want) {
            if lsn != want_lsn || value.as_slice() != value_for(&pool, *i, spec.key_size) {
                return Err(CaseError::Verify(format!(
                    "key {key:?} at {lsn}: wrong value"
                )));
            }
        }
    }
    drop(local_reader);
    drop(layer);
    let remote_run = match trip.take() {
        Some(t) => {
            let run = t.run.clone();
            t.finish()
                .await
                .map_err(|e| CaseError::Remote(e.to_string()))?;
            Some(run)
        }
        None => None,
    };
    let keys = || std::sync::Arc::new(puts.iter().map(|(k, _)| *k).collect::<Vec<Key>>());
    let read_phase = match &delta {
        Some(d) if spec.read_phase.secs > 0.0 => {
            Some(run_read_phase(make_ctx, &d.path, keys(), spec.read_phase).await?)
        }
        _ => None,
    };
    let scan_phase = match &delta {
        Some(d) if spec.scan_phase => Some(run_scan_phase(make_ctx_with, &d.path, &keys()).await?),
        _ => None,
    };
    if let Some(d) = delta {
        std::fs::remove_file(&d.path)?;
    }
    Ok(CaseRun {
        wall,
        cpu,
        page_cache_growth,
        rss_growth,
        budget_peak,
        read_phase,
        scan_phase,
        written_bytes,
        verified_keys: sample.len(),
        remote: remote_run,
        metrics: CaseMetrics {
            ops: ctx.metrics(),
            page_cache: ctx.page_cache_metrics(),
            memory: ctx.memory_metrics(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sequences() {
        let s = key_sequence(KeyLayout::Sequential, 5, 1);
        assert_eq!(
            s.iter().map(|(k, _)| k.to_u128()).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        let mut r: Vec<u128> = key_sequence(KeyLayout::Random, 100, 1)
            .iter()
            .map(|(k, _)| k.to_u128())
            .collect();
        assert_ne!(r, (0..100).collect::<Vec<_>>(), "shuffled");
        r.sort();
        assert_eq!(r, (0..100).collect::<Vec<_>>(), "each key once");
        let rr = key_sequence(KeyLayout::RandomReuse, 160, 1);
        assert!(rr.iter().all(|(k, _)| k.to_u128() < 10));
        assert!(rr.windows(2).all(|w| w[0].1 < w[1].1), "LSNs increase");
    }
}
