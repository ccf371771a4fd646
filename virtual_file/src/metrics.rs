//! Per-op metrics (count, bytes, latency histogram) and open-file cache counters, readable from the
//! [`IoContext`](crate::IoContext).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use enum_map::{Enum, EnumMap};

/// The kinds of operation a [`VirtualFile`](crate::VirtualFile) performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, strum::Display, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum OpKind {
    /// Opening (and reopening after cache eviction).
    Open,
    /// Positional reads.
    Read,
    /// Positional writes.
    Write,
    /// `fsync`.
    SyncAll,
    /// `fdatasync`.
    SyncData,
    /// `ftruncate`.
    SetLen,
    /// `fallocate`.
    Fallocate,
    /// `statx`.
    Metadata,
}

/// Number of latency buckets: bucket `i` counts ops that took `< 2^i` microseconds (the last one is open).
pub const LATENCY_BUCKETS: usize = 24;

/// Counters of one op kind.
#[derive(Debug, Default)]
pub struct OpMetrics {
    count: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    latency_us: [AtomicU64; LATENCY_BUCKETS],
}

/// A point-in-time copy of one op kind's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpMetricsSnapshot {
    /// Completed ops (success or error).
    pub count: u64,
    /// Ops that ended in an error.
    pub errors: u64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Histogram: `latency_us[i]` ops took less than `2^i` us (and at least `2^(i-1)`).
    pub latency_us: [u64; LATENCY_BUCKETS],
}

impl OpMetrics {
    pub(crate) fn record(&self, elapsed: Duration, bytes: usize, ok: bool) {
        self.count.fetch_add(1, Relaxed);
        if !ok {
            self.errors.fetch_add(1, Relaxed);
        }
        self.bytes.fetch_add(bytes as u64, Relaxed);
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        let bucket = ((u64::BITS - us.leading_zeros()) as usize).min(LATENCY_BUCKETS - 1);
        self.latency_us[bucket].fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> OpMetricsSnapshot {
        OpMetricsSnapshot {
            count: self.count.load(Relaxed),
            errors: self.errors.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            latency_us: std::array::from_fn(|i| self.latency_us[i].load(Relaxed)),
        }
    }
}

/// All metrics of one context.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) ops: EnumMap<OpKind, OpMetrics>,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) cache_evictions: AtomicU64,
    dontcache_fallbacks: AtomicU64,
    dontcache_pages_dropped: AtomicU64,
}

/// A point-in-time copy of a context's op metrics.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// Per op kind.
    pub ops: EnumMap<OpKind, OpMetricsSnapshot>,
    /// IOs that found their descriptor open in its cache slot.
    pub cache_hits: u64,
    /// IOs that had to (re)open their file.
    pub cache_misses: u64,
    /// Descriptors closed to make room for another file.
    pub cache_evictions: u64,
    /// Files opened in `buffered-dontcache` mode whose kernel or file system refused `RWF_DONTCACHE`
    /// (`EOPNOTSUPP`, or `EINVAL` on some kernels): they do plain buffered IO from then on.
    pub dontcache_fallbacks: u64,
    /// Syncs of such files after which the pages they wrote were dropped (`POSIX_FADV_DONTNEED`).
    pub dontcache_pages_dropped: u64,
}

impl Metrics {
    /// A copy of the current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            ops: EnumMap::from_fn(|k| self.ops[k].snapshot()),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            cache_evictions: self.cache_evictions.load(Relaxed),
            dontcache_fallbacks: self.dontcache_fallbacks.load(Relaxed),
            dontcache_pages_dropped: self.dontcache_pages_dropped.load(Relaxed),
        }
    }

    /// Counts a file that fell back from `RWF_DONTCACHE` to plain buffered IO.
    pub(crate) fn dontcache_fallback(&self) {
        self.dontcache_fallbacks.fetch_add(1, Relaxed);
    }

    /// Counts a sync after which a fallen-back dontcache file's written pages were dropped.
    pub(crate) fn dontcache_pages_dropped(&self) {
        self.dontcache_pages_dropped.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let m = OpMetrics::default();
        m.record(Duration::from_nanos(500), 10, true); // 0 us -> bucket 0
        m.record(Duration::from_micros(1), 10, true); // bucket 1
        m.record(Duration::from_micros(3), 10, false); // bucket 2
        m.record(Duration::from_secs(100_000), 10, true); // clamped to the last bucket
        let s = m.snapshot();
        assert_eq!((s.count, s.errors, s.bytes), (4, 1, 40));
        assert_eq!(s.latency_us[0], 1);
        assert_eq!(s.latency_us[1], 1);
        assert_eq!(s.latency_us[2], 1);
        assert_eq!(s.latency_us[LATENCY_BUCKETS - 1], 1);
    }
}
