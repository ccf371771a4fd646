use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use enum_map::EnumMap;
use io_engine::{DefaultAlign, FullSlice, IoBufferMut, IoEngine, IoEngineKind, Slice};

use super::*;
use crate::file::VirtualFile;
use crate::io_mode::IoMode;
use crate::page_cache::ReadIntent;

/// A series: metric name and labels.
type Series = (String, BTreeMap<String, String>);

/// Parses `name{k="v",...}` (label values here hold no `"` or `,`).
fn parse_series(series: &str) -> Series {
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_owned(), BTreeMap::new());
    };
    let body = rest
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("unclosed labels: {series:?}"));
    let labels = body
        .split(',')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("bad label {kv:?} in {series:?}"));
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect();
    (name.to_owned(), labels)
}

/// The samples of a text exposition. Fails on a line that is neither a comment nor `series value`, and
/// on a series given twice.
fn scrape(text: &str) -> HashMap<Series, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        assert!(
            samples.insert(parse_series(series), value).is_none(),
            "series twice: {series}"
        );
    }
    samples
}

/// The value of series `name` with exactly `labels`.
fn get(samples: &HashMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    *samples
        .get(&key)
        .unwrap_or_else(|| panic!("no series {key:?}"))
}

fn all_kinds() -> Vec<OpKind> {
    EnumMap::<OpKind, ()>::default()
        .into_iter()
        .map(|(k, ())| k)
        .collect()
}

/// A `buffered`, `std-fs` context with a memory budget of `budget` bytes (inside a runtime).
fn buffered_std_fs(budget: usize) -> IoContext {
    IoContext::builder()
        .engine(IoEngine::launch(IoEngineKind::StdFs).unwrap())
        .mode(IoMode::Buffered)
        .memory_budget_bytes(budget)
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_op_kind_has_a_histogram_matching_the_snapshot() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let ctx = buffered_std_fs(crate::DEFAULT_MEMORY_BYTES);
        let dir = tempfile::tempdir().unwrap();
        let file = VirtualFile::create(&ctx, dir.path().join("f"))
            .await
            .unwrap();
        let buf = IoBufferMut::<DefaultAlign>::from_slice(&[7u8; 8192]);
        let (_, res) = file.write_all_at(FullSlice::new(buf), 0).await;
        res.unwrap();
        file.sync_data().await.unwrap();
        file.sync_all().await.unwrap();
        file.set_len(4096).await.unwrap();
        file.metadata().await.unwrap();
        let buf = IoBufferMut::<DefaultAlign>::with_capacity(4096);
        let (_, res) = file.read_exact_at(Slice::new(buf, ..), 0).await;
        res.unwrap();

        let snapshot = ctx.metrics();
        let text = ctx.metrics_text().unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE virtual_file_op_latency_seconds histogram\n"));
        let samples = scrape(&text);
        let h = "virtual_file_op_latency_seconds";
        for kind in all_kinds() {
            let op: &str = kind.into();
            let want: &OpMetricsSnapshot = &snapshot.ops[kind];
            let labels = [("io_mode", "buffered"), ("io_engine", "std-fs"), ("op", op)];
            let with_le = |le: &str| {
                let mut l = labels.to_vec();
                l.push(("le", le));
                get(&samples, &format!("{h}_bucket"), &l)
            };
            let count = get(&samples, &format!("{h}_count"), &labels);
            assert_eq!(count, want.count as f64, "{op}");
            assert_eq!(with_le("+Inf"), count, "{op}: the open bucket counts all");
            let sum = get(&samples, &format!("{h}_sum"), &labels);
            assert_eq!(sum > 0.0, count > 0.0, "{op}: sum {sum}, count {count}");
            // every bound present, cumulative counts never decrease
            let mut prev = 0.0;
            for i in 0..LATENCY_BUCKETS - 1 {
                let le = format!("{}", bucket_upper_bound_seconds(i));
                let le = samples
                    .keys()
                    .filter(|(n, l)| {
                        *n == format!("{h}_bucket") && l.get("op").map(String::as_str) == Some(op)
                    })
                    .filter_map(|(_, l)| l.get("le"))
                    .find(|v| v.parse::<f64>().ok() == le.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{op}: no bucket le={le}"))
                    .clone();
                let c = with_le(&le);
                assert!(c >= prev, "{op}: bucket {i} decreases");
                prev = c;
            }
            assert_eq!(
                get(&samples, "virtual_file_ops_total", &labels),
                want.count as f64
            );
            assert_eq!(
                get(&samples, "virtual_file_op_bytes_total", &labels),
                want.bytes as f64
            );
            assert_eq!(
                get(&samples, "virtual_file_op_errors_total", &labels),
                want.errors as f64
            );
        }
        for kind in [
            OpKind::Open,
            OpKind::Read,
            OpKind::Write,
            OpKind::SyncAll,
            OpKind::SyncData,
            OpKind::SetLen,
            OpKind::Metadata,
        ] {
            assert!(snapshot.ops[kind].count > 0, "{kind} ran");
        }
        let ctx_labels = [("io_mode", "buffered"), ("io_engine", "std-fs")];
        assert_eq!(
            get(
                &samples,
                "virtual_file_open_file_cache_hits_total",
                &ctx_labels
            ),
            snapshot.cache_hits as f64
        );
    })
    .await
    .expect("timed out");
}

#[test]
fn buckets_are_cumulative_and_the_sum_is_estimated_from_them() {
    let mut snapshot = MetricsSnapshot::default();
    snapshot.ops[OpKind::Read].latency_us[0] = 2; // < 1 us
    snapshot.ops[OpKind::Read].latency_us[3] = 1; // 4..8 us
    snapshot.ops[OpKind::Read].latency_us[LATENCY_BUCKETS - 1] = 1; // open
    snapshot.ops[OpKind::Read].count = 4;
    let text = encode_text(&[
        LabeledSnapshot::new(vec![("case".into(), "a".into())], snapshot.clone()),
        LabeledSnapshot::new(
            vec![("case".into(), "b".into())],
            MetricsSnapshot::default(),
        ),
    ])
    .unwrap();
    assert_eq!(
        text.matches("# TYPE virtual_file_op_latency_seconds histogram")
            .count(),
        1,
        "one family, a series per snapshot"
    );
    let samples = scrape(&text);
    let h = "virtual_file_op_latency_seconds";
    let bucket = |le: &str| {
        get(
            &samples,
            &format!("{h}_bucket"),
            &[("case", "a"), ("op", "read"), ("le", le)],
        )
    };
    assert_eq!(bucket("0.000001"), 2.0);
    assert_eq!(bucket("0.000004"), 2.0);
    assert_eq!(bucket("0.000008"), 3.0);
    assert_eq!(bucket("+Inf"), 4.0);
    let a = [("case", "a"), ("op", "read")];
    assert_eq!(get(&samples, &format!("{h}_count"), &a), 4.0);
    let want_sum = (2.0 * 0.5 + 0.75 * 8.0 + (1u64 << 22) as f64) * 1e-6;
    let sum = get(&samples, &format!("{h}_sum"), &a);
    assert!((sum - want_sum).abs() < 1e-12, "sum {sum}, want {want_sum}");
    let b = [("case", "b"), ("op", "read")];
    assert_eq!(get(&samples, &format!("{h}_count"), &b), 0.0);
    assert_eq!(get(&samples, "virtual_file_ops_total", &a), 4.0);
}

/// The page cache's and the memory budget's figures are in the export, equal to the snapshots.
#[tokio::test]
async fn page_cache_and_budget_figures_are_exported() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let ctx = buffered_std_fs(1 << 20);
        let dir = tempfile::tempdir().unwrap();
        let file = VirtualFile::create(&ctx, dir.path().join("f"))
            .await
            .unwrap();
        let buf = IoBufferMut::<DefaultAlign>::from_slice(&[7u8; 3 * 8192]);
        file.write_all_at(FullSlice::new(buf), 0).await.1.unwrap();
        let mut out = vec![0u8; 8192];
        for _ in 0..3 {
            file.read_cached_at(8192, &mut out).await.unwrap();
        }
        let held = ctx
            .memory_budget()
            .reserve(crate::Consumer::ReadBuffers, 4096)
            .await
            .unwrap();
        let cache = ctx.page_cache_metrics();
        let memory = ctx.memory_metrics();
        let samples = scrape(&ctx.metrics_text().unwrap());
        drop(held);
        let l = [("io_mode", "buffered"), ("io_engine", "std-fs")];
        assert_eq!(cache.misses, 1);
        assert_eq!(cache.hits, 2);
        for (name, value) in [
            ("virtual_file_page_cache_hits_total", cache.hits),
            ("virtual_file_page_cache_misses_total", cache.misses),
            ("virtual_file_page_cache_scan_hits_total", cache.scan_hits),
            (
                "virtual_file_page_cache_scan_misses_total",
                cache.scan_misses,
            ),
            ("virtual_file_page_cache_evictions_total", cache.evictions),
            (
                "virtual_file_page_cache_device_reads_total",
                cache.device_reads,
            ),
            ("virtual_file_page_cache_inserts_total", cache.inserts),
            (
                "virtual_file_page_cache_resident_pages",
                cache.resident_pages,
            ),
            ("virtual_file_memory_budget_bytes", 1 << 20),
            ("virtual_file_memory_budget_waits_total", memory.waits),
        ] {
            assert_eq!(get(&samples, name, &l), value as f64, "{name}");
        }
        for (consumer, current) in &memory.current {
            let name: &str = consumer.into();
            let cl = [l[0], l[1], ("consumer", name)];
            assert_eq!(
                get(&samples, "virtual_file_memory_reserved_bytes", &cl),
                *current as f64,
                "{name}"
            );
            assert_eq!(
                get(&samples, "virtual_file_memory_reserved_peak_bytes", &cl),
                memory.peak[consumer] as f64,
                "{name}"
            );
        }
        assert_eq!(memory.current[crate::Consumer::ReadBuffers], 4096);
        assert!(memory.current[crate::Consumer::PageCache] >= 8192);
        // A snapshot without these figures exports none of their families.
        let text = encode_text(&[LabeledSnapshot::new(Vec::new(), ctx.metrics())]).unwrap();
        assert!(!text.contains("virtual_file_page_cache"), "{text}");
        assert!(!text.contains("virtual_file_memory"), "{text}");
    })
    .await
    .expect("timed out");
}

/// Reads with scan intent are counted apart: the scan families hold the scan-intent part of the hits and
/// misses, with the values the reads made.
#[tokio::test]
async fn scan_hits_and_misses_are_exported() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let ctx = buffered_std_fs(1 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![3u8; 4 * 8192]).unwrap();
        let file = VirtualFile::open(&ctx, &path).await.unwrap();
        let mut page = vec![0u8; 8192];
        // page 0: a point miss (kept), a point hit, a scan hit
        file.read_cached_at(0, &mut page).await.unwrap();
        file.read_cached_at(0, &mut page).await.unwrap();
        file.read_cached_at_with(0, &mut page, ReadIntent::Scan)
            .await
            .unwrap();
        // page 1 twice, then pages 2 and 3 in one read: scan misses, none kept
        for _ in 0..2 {
            file.read_cached_at_with(8192, &mut page, ReadIntent::Scan)
                .await
                .unwrap();
        }
        let mut two = vec![0u8; 2 * 8192];
        file.read_cached_at_with(2 * 8192, &mut two, ReadIntent::Scan)
            .await
            .unwrap();
        let cache = ctx.page_cache_metrics();
        assert_eq!(
            (cache.hits, cache.misses, cache.scan_hits, cache.scan_misses),
            (2, 5, 1, 4)
        );
        assert_eq!((cache.point_hits(), cache.point_misses()), (1, 1));
        let text = ctx.metrics_text().unwrap();
        assert!(
            text.contains("# TYPE virtual_file_page_cache_scan_hits counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE virtual_file_page_cache_scan_misses counter\n"),
            "{text}"
        );
        let samples = scrape(&text);
        let l = [("io_mode", "buffered"), ("io_engine", "std-fs")];
        for (name, value) in [
            ("virtual_file_page_cache_hits_total", 2),
            ("virtual_file_page_cache_misses_total", 5),
            ("virtual_file_page_cache_scan_hits_total", 1),
            ("virtual_file_page_cache_scan_misses_total", 4),
        ] {
            assert_eq!(get(&samples, name, &l), f64::from(value), "{name}");
        }
    })
    .await
    .expect("timed out");
}
