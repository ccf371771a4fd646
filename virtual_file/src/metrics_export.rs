//! The context's metrics in the Prometheus / OpenMetrics text format (feature `prometheus`), rendered by
//! the `prometheus-client` crate from [`MetricsSnapshot`]s.
//!
//! Families (every sample also carries the labels given with its snapshot, e.g. `io_mode`, `io_engine`):
//!
//! | family | type | labels |
//! |---|---|---|
//! | `virtual_file_op_latency_seconds` | histogram (buckets at 1 us .. 2^22 us, then `+Inf`) | `op` |
//! | `virtual_file_ops_total` | counter: ops completed | `op` |
//! | `virtual_file_op_errors_total` | counter: ops that failed | `op` |
//! | `virtual_file_op_bytes_total` | counter: bytes transferred | `op` |
//! | `virtual_file_open_file_cache_{hits,misses,evictions}_total` | counter | |
//! | `virtual_file_page_cache_{hits,misses,evictions,device_reads,inserts}_total` | counter (page cache, when given) | |
//! | `virtual_file_page_cache_scan_{hits,misses}_total` | counter: the part of `hits` / `misses` made by scan-intent reads | |
//! | `virtual_file_page_cache_resident_pages` | gauge | |
//! | `virtual_file_memory_budget_bytes` | gauge: the budget (when given) | |
//! | `virtual_file_memory_reserved_bytes` | gauge: reserved now | `consumer` |
//! | `virtual_file_memory_reserved_peak_bytes` | gauge: most reserved at once | `consumer` |
//! | `virtual_file_memory_budget_waits_total` | counter: reservations that waited | |
//!
//! The scan families are parts of `hits` and `misses` ([`ReadIntent::Scan`](crate::ReadIntent::Scan)
//! reads): point reads' hits are `hits - scan_hits`, their misses `misses - scan_misses`
//! ([`PageCacheSnapshot::point_hits`], [`PageCacheSnapshot::point_misses`]).
//!
//! `consumer` is a [`Consumer`] in kebab case (`writer-buffers`, `read-buffers`,
//! `page-cache`). The page-cache and budget families are written for the snapshots that carry those
//! figures ([`LabeledSnapshot::page_cache`], [`LabeledSnapshot::memory`];
//! [`IoContext::metrics_text`](crate::IoContext::metrics_text) gives both).
//!
//! `op` is an [`OpKind`] in snake case (`open`, `read`, `write`, `sync_all`, ...); every kind is present,
//! with zeros when it never ran, so a dashboard's queries never miss a series.
//!
//! The context keeps latency as power-of-two buckets only, not the sum of the latencies; a histogram's
//! `_sum` is therefore an estimate: each op counted at the middle of its bucket (`0.75 * 2^i` us; the
//! open last bucket at its lower bound). The buckets and `_count` are exact.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ctx = virtual_file::IoContext::from_env()?;
//! // ... open files through `ctx`, do IO ...
//! let text = ctx.metrics_text()?;
//! assert!(text.contains("# TYPE virtual_file_op_latency_seconds histogram"));
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::context::IoContext;
use crate::memory_budget::{Consumer, MemoryBudgetSnapshot};
use crate::metrics::{MetricsSnapshot, OpKind, OpMetricsSnapshot, LATENCY_BUCKETS};
use crate::page_cache::PageCacheSnapshot;

/// A label: (name, value).
pub type Label = (Cow<'static, str>, Cow<'static, str>);

/// One snapshot and the labels that tell it apart from the others in one export (a context's mode and
/// engine, a benchmark case, ...).
#[derive(Debug, Clone)]
pub struct LabeledSnapshot {
    /// Labels added to every sample of this snapshot. Names must be valid Prometheus label names and
    /// must not be `op` or `le`.
    pub labels: Vec<Label>,
    /// The values, as [`IoContext::metrics`](crate::IoContext::metrics) returned them.
    pub snapshot: MetricsSnapshot,
    /// The page cache's figures ([`IoContext::page_cache_metrics`](crate::IoContext::page_cache_metrics)),
    /// if they are to be exported.
    pub page_cache: Option<PageCacheSnapshot>,
    /// The memory budget's figures ([`IoContext::memory_metrics`](crate::IoContext::memory_metrics)), if
    /// they are to be exported.
    pub memory: Option<MemoryBudgetSnapshot>,
}

impl LabeledSnapshot {
    /// A snapshot with `labels` and only the op metrics.
    pub fn new(labels: Vec<Label>, snapshot: MetricsSnapshot) -> LabeledSnapshot {
        LabeledSnapshot {
            labels,
            snapshot,
            page_cache: None,
            memory: None,
        }
    }

    /// All figures of `ctx` now (ops, page cache, memory budget), with `labels`.
    pub fn of_context(ctx: &IoContext, labels: Vec<Label>) -> LabeledSnapshot {
        LabeledSnapshot {
            labels,
            snapshot: ctx.metrics(),
            page_cache: Some(ctx.page_cache_metrics()),
            memory: Some(ctx.memory_metrics()),
        }
    }
}

/// Rendering the text failed (`prometheus-client` reports a formatting error).
#[derive(Debug, thiserror::Error)]
#[error("cannot render {snapshots} metrics snapshot(s) in the OpenMetrics text format")]
pub struct MetricsExportError {
    /// How many snapshots were being rendered.
    pub snapshots: usize,
    #[source]
    source: std::fmt::Error,
}

/// Renders `snapshots` as one OpenMetrics text exposition (ending in `# EOF`): each family once, with one
/// series per snapshot (and per op kind).
pub fn encode_text(snapshots: &[LabeledSnapshot]) -> Result<String, MetricsExportError> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshots.to_vec())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|source| {
        MetricsExportError {
            snapshots: snapshots.len(),
            source,
        }
    })?;
    Ok(text)
}

impl IoContext {
    /// This context's metrics now (ops, page cache, memory budget), as [`encode_text`] renders them,
    /// labelled with `io_mode` and `io_engine`.
    pub fn metrics_text(&self) -> Result<String, MetricsExportError> {
        encode_text(&[LabeledSnapshot::of_context(
            self,
            vec![
                ("io_mode".into(), self.io_mode().to_string().into()),
                ("io_engine".into(), self.engine_kind().to_string().into()),
            ],
        )])
    }
}

/// Upper bound in seconds of latency bucket `i`, `f64::MAX` (rendered `+Inf`) for the open last one.
fn bucket_upper_bound_seconds(i: usize) -> f64 {
    if i + 1 == LATENCY_BUCKETS {
        f64::MAX
    } else {
        (1u64 << i) as f64 * 1e-6
    }
}

/// The estimated latency in seconds of an op counted in bucket `i` (see the module docs).
fn bucket_estimate_seconds(i: usize) -> f64 {
    match i {
        0 => 0.5e-6,
        i if i + 1 == LATENCY_BUCKETS => (1u64 << (i - 1)) as f64 * 1e-6,
        i => 0.75 * (1u64 << i) as f64 * 1e-6,
    }
}

#[derive(Debug)]
struct SnapshotCollector(Vec<LabeledSnapshot>);

/// The labels of a series: the snapshot's, then `op` when given.
fn series_labels(s: &LabeledSnapshot, op: Option<OpKind>) -> Vec<Label> {
    let mut labels = s.labels.clone();
    if let Some(op) = op {
        labels.push(("op".into(), <&'static str>::from(op).into()));
    }
    labels
}

/// The labels of a budget series: the snapshot's, then `consumer`.
fn consumer_labels(s: &LabeledSnapshot, consumer: Consumer) -> Vec<Label> {
    let mut labels = s.labels.clone();
    labels.push(("consumer".into(), <&'static str>::from(consumer).into()));
    labels
}

impl SnapshotCollector {
    /// One counter family with a series per snapshot and op kind.
    fn encode_op_counter(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&OpMetricsSnapshot) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for s in &self.0 {
            for (op, m) in &s.snapshot.ops {
                let labels = series_labels(s, Some(op));
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value(m), None)?;
            }
        }
        Ok(())
    }

    /// One family (counter or gauge) with a series per snapshot that has the figure (`value` gives
    /// `None` for the others).
    fn encode_optional(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        metric_type: MetricType,
        value: impl Fn(&LabeledSnapshot) -> Option<u64>,
    ) -> Result<(), std::fmt::Error> {
        if self.0.iter().all(|s| value(s).is_none()) {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
        for s in &self.0 {
            if let Some(v) = value(s) {
                let labels = series_labels(s, None);
                let mut metric = family.encode_family(&labels)?;
                match metric_type {
                    MetricType::Counter => metric.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
                    _ => metric.encode_gauge(&(v as i64))?,
                }
            }
        }
        Ok(())
    }

    /// One gauge family with a series per snapshot that has budget figures and per consumer.
    fn encode_consumer_gauge(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&MemoryBudgetSnapshot, Consumer) -> u64,
    ) -> Result<(), std::fmt::Error> {
        if self.0.iter().all(|s| s.memory.is_none()) {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &self.0 {
            let Some(memory) = &s.memory else { continue };
            for (consumer, _) in &memory.current {
                let labels = consumer_labels(s, consumer);
                family
                    .encode_family(&labels)?
                    .encode_gauge(&(value(memory, consumer) as i64))?;
            }
        }
        Ok(())
    }

    /// The page cache's and the memory budget's families.
    fn encode_cache_and_budget(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        type CacheFigure = fn(&PageCacheSnapshot) -> u64;
        let cache: [(&str, &str, CacheFigure); 7] = [
            ("hits", "Page lookups that found the page resident.", |c| {
                c.hits
            }),
            (
                "misses",
                "Page lookups that read the page from the file.",
                |c| c.misses,
            ),
            (
                "scan_hits",
                "The part of hits made by scan-intent reads (hits minus these are point reads' hits).",
                |c| c.scan_hits,
            ),
            (
                "scan_misses",
                "The part of misses made by scan-intent reads: pages read and not kept.",
                |c| c.scan_misses,
            ),
            (
                "evictions",
                "Pages dropped for others or to give memory back to the budget.",
                |c| c.evictions,
            ),
            (
                "device_reads",
                "Reads from files made to fill pages.",
                |c| c.device_reads,
            ),
            (
                "inserts",
                "Pages put in by writers (write-through) and by reads of several pages at once.",
                |c| c.inserts,
            ),
        ];
        for (name, help, figure) in cache {
            self.encode_optional(
                encoder,
                &format!("virtual_file_page_cache_{name}"),
                help,
                MetricType::Counter,
                |s| s.page_cache.as_ref().map(figure),
            )?;
        }
        self.encode_optional(
            encoder,
            "virtual_file_page_cache_resident_pages",
            "Pages held by the page cache now.",
            MetricType::Gauge,
            |s| s.page_cache.as_ref().map(|c| c.resident_pages),
        )?;
        self.encode_optional(
            encoder,
            "virtual_file_memory_budget_bytes",
            "The memory budget of the context (all IO memory).",
            MetricType::Gauge,
            |s| s.memory.as_ref().map(|m| m.total),
        )?;
        self.encode_consumer_gauge(
            encoder,
            "virtual_file_memory_reserved_bytes",
            "Bytes of the memory budget reserved now, by consumer.",
            |m, c| m.current[c],
        )?;
        self.encode_consumer_gauge(
            encoder,
            "virtual_file_memory_reserved_peak_bytes",
            "Most bytes of the memory budget reserved at once, by consumer.",
            |m, c| m.peak[c],
        )?;
        self.encode_optional(
            encoder,
            "virtual_file_memory_budget_waits",
            "Reservations that had to wait for memory.",
            MetricType::Counter,
            |s| s.memory.as_ref().map(|m| m.waits),
        )
    }

    /// One counter family with a series per snapshot.
    fn encode_counter(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&MetricsSnapshot) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for s in &self.0 {
            let labels = series_labels(s, None);
            encode_with_labels(&mut family, &labels, value(&s.snapshot))?;
        }
        Ok(())
    }
}

/// A counter sample under `labels` (no label block at all when there are none).
fn encode_with_labels(
    family: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> Result<(), std::fmt::Error> {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut latency = encoder.encode_descriptor(
            "virtual_file_op_latency",
            "Latency of VirtualFile ops by kind (_sum estimated from the buckets).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for s in &self.0 {
            for (op, m) in &s.snapshot.ops {
                let buckets: Vec<(f64, u64)> = (0..LATENCY_BUCKETS)
                    .map(|i| (bucket_upper_bound_seconds(i), m.latency_us[i]))
                    .collect();
                let sum: f64 = (0..LATENCY_BUCKETS)
                    .map(|i| m.latency_us[i] as f64 * bucket_estimate_seconds(i))
                    .sum();
                let count: u64 = m.latency_us.iter().sum();
                let labels = series_labels(s, Some(op));
                latency
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        self.encode_op_counter(
            &mut encoder,
            "virtual_file_ops",
            "VirtualFile ops completed, by kind.",
            |m| m.count,
        )?;
        self.encode_op_counter(
            &mut encoder,
            "virtual_file_op_errors",
            "VirtualFile ops that failed, by kind.",
            |m| m.errors,
        )?;
        self.encode_op_counter(
            &mut encoder,
            "virtual_file_op_bytes",
            "Bytes transferred by VirtualFile ops, by kind.",
            |m| m.bytes,
        )?;
        self.encode_counter(
            &mut encoder,
            "virtual_file_open_file_cache_hits",
            "IOs that found their descriptor open in its cache slot.",
            |s| s.cache_hits,
        )?;
        self.encode_counter(
            &mut encoder,
            "virtual_file_open_file_cache_misses",
            "IOs that had to (re)open their file.",
            |s| s.cache_misses,
        )?;
        self.encode_counter(
            &mut encoder,
            "virtual_file_open_file_cache_evictions",
            "Descriptors closed to make room for another file.",
            |s| s.cache_evictions,
        )?;
        self.encode_counter(
            &mut encoder,
            "virtual_file_dontcache_fallbacks",
            "buffered-dontcache files whose kernel or file system refused RWF_DONTCACHE; they do plain \
             buffered IO from then on.",
            |s| s.dontcache_fallbacks,
        )?;
        self.encode_counter(
            &mut encoder,
            "virtual_file_dontcache_pages_dropped",
            "Syncs of such files after which their written pages were dropped (POSIX_FADV_DONTNEED).",
            |s| s.dontcache_pages_dropped,
        )?;
        self.encode_cache_and_budget(&mut encoder)
    }
}

#[cfg(test)]
mod tests;
