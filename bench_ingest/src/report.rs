//! One result row per case, printed as a table line or as a JSON object.

use serde::Serialize;

use crate::args::KeyLayout;

/// The measured result of one case (the median of the measured runs).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// IO mode (`buffered`, `direct`, `direct-rw`).
    pub io_mode: String,
    /// IO engine (`std-fs`, `tokio-epoll-uring`).
    pub io_engine: String,
    /// Bytes per value.
    pub key_size: usize,
    /// The order keys were put in (`--key-layout`).
    pub key_layout: KeyLayout,
    /// Whether the delta layer was written.
    pub write_delta: bool,
    /// Payload MiB put in.
    pub volume_mib: u64,
    /// Payload MiB per second, wall time of ingest + freeze + delta write (median run).
    pub mib_per_s: f64,
    /// User + system CPU seconds per GiB of payload.
    pub cpu_s_per_gib: f64,
    /// Peak growth of the page cache during the case, MiB.
    pub page_cache_growth_mib: Option<f64>,
    /// Page-cache growth as a percentage of the bytes written to files.
    pub page_cache_growth_pct: Option<f64>,
    /// Bytes written to files (ephemeral + delta layer), MiB.
    pub written_mib: f64,
    /// The reference: the same bytes by a plain pwrite loop + fsync, MiB/s of payload.
    pub reference_mib_per_s: f64,
    /// `mib_per_s / reference_mib_per_s`.
    pub ratio_to_reference: f64,
    /// Measured runs (the median is reported).
    pub runs: u32,
    /// Sampled keys read back and checked.
    pub verified_keys: usize,
    /// Peak growth of the process's resident memory during the case, MiB.
    pub rss_growth_mib: Option<f64>,
    /// What the case cost in memory: page-cache growth + RSS growth, MiB.
    pub memory_mib: Option<f64>,
    /// Peak bytes reserved from the context's memory budget, MiB.
    pub budget_peak_mib: f64,
    /// The read phase, if run.
    #[serde(flatten)]
    pub read: Option<ReadColumns>,
    /// The scan phase, if run.
    #[serde(flatten)]
    pub scan: Option<ScanColumns>,
    /// With `--remote`: the delta layer's round trip through object storage.
    #[serde(flatten)]
    pub remote: Option<RemoteFigures>,
}

/// The remote round trip of a case's delta layer (medians of the measured runs). MiB/s count the layer
/// file's bytes.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteFigures {
    /// The store: `local` or `s3`.
    pub remote: String,
    /// Size of the delta layer, MiB.
    pub layer_mib: f64,
    /// Upload through `TieredLayers::upload` (checksum pass, parts, index), MiB/s.
    pub upload_mib_per_s: f64,
    /// `object_store`'s plain `put` of the same bytes from memory, MiB/s.
    pub put_reference_mib_per_s: f64,
    /// `upload_mib_per_s / put_reference_mib_per_s`.
    pub upload_ratio: f64,
    /// `object_store`'s own multipart upload of the same bytes from memory (same part size), MiB/s.
    pub multipart_reference_mib_per_s: f64,
    /// `upload_mib_per_s / multipart_reference_mib_per_s`.
    pub upload_multipart_ratio: f64,
    /// Download of the evicted layer (temp file, writes, fsync, checksum, rename, dir fsync), MiB/s.
    pub download_mib_per_s: f64,
    /// `object_store`'s plain `get` of the same bytes into memory, MiB/s.
    pub get_reference_mib_per_s: f64,
    /// `download_mib_per_s / get_reference_mib_per_s`.
    pub download_ratio: f64,
    /// Peak page-cache growth during the download, as a percentage of the layer size.
    pub download_page_cache_growth_pct: Option<f64>,
    /// Evict + download + open + first lookup, milliseconds.
    pub evict_download_first_read_ms: f64,
}

/// The read phase's columns (medians over the runs; device reads: the largest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReadColumns {
    /// Cold: point lookups per second.
    pub cold_lookups_per_s: f64,
    /// Cold: 99th percentile lookup latency, us.
    pub cold_p99_us: f64,
    /// Warm: point lookups per second.
    pub warm_lookups_per_s: f64,
    /// Warm: 99th percentile lookup latency, us.
    pub warm_p99_us: f64,
    /// Pages our page cache read from the layer file during the cold half.
    pub cold_cache_device_reads: u64,
    /// Pages our page cache read from the layer file during the warm half (0 when the index fits).
    pub warm_cache_device_reads: u64,
    /// Index pages of the layer.
    pub index_pages: u32,
}

/// The scan phase's columns (medians over the runs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScanColumns {
    /// Cold full scan of the delta layer, MiB/s of the file.
    pub scan_cold_mib_per_s: f64,
    /// Raw sequential `O_DIRECT` reads of the same file (1 MiB, 4 in flight), MiB/s.
    pub scan_limit_mib_per_s: f64,
    /// `scan_cold_mib_per_s / scan_limit_mib_per_s` (median of the runs' ratios).
    pub scan_ratio_to_limit: f64,
    /// Our page cache's hit rate over a pass of the hot set, before a full scan.
    pub hot_hit_rate_before: f64,
    /// The same, after the scan.
    pub hot_hit_rate_after: f64,
}

/// The table header; with `remote`, the remote round trip's columns too.
pub fn header(remote: bool) -> String {
    let base = format!(
        "{:<9} {:<17} {:>6} {:<12} {:>8} {:>9} {:>10} {:>10} {:>9} {:>7} {:>8} {:>8} {:>9} {:>8} {:>9} {:>8} {:>10} {:>8} {:>7} {:>7}",
        "io_mode",
        "io_engine",
        "value",
        "layout",
        "MiB/s",
        "CPU s/GiB",
        "cache MiB",
        "cache %",
        "ref MiB/s",
        "ratio",
        "RSS MiB",
        "mem MiB",
        "cold lk/s",
        "p99 us",
        "warm lk/s",
        "p99 us",
        "scan MiB/s",
        "scan/lim",
        "hot hit",
        "after"
    );
    if !remote {
        return base;
    }
    format!(
        "{base} {:>8} {:>9} {:>6} {:>9} {:>6} {:>9} {:>9} {:>8} {:>8} {:>9}",
        "up MiB/s",
        "put MiB/s",
        "up/put",
        "mpu MiB/s",
        "up/mpu",
        "dl MiB/s",
        "get MiB/s",
        "dl/get",
        "dl cch%",
        "ev+dl+rd"
    )
}

/// One table line.
pub fn line(r: &Row) -> String {
    let opt = |v: Option<f64>, prec: usize| v.map_or("n/a".to_string(), |v| format!("{v:.prec$}"));
    let read = |f: fn(&ReadColumns) -> f64| r.read.as_ref().map(f);
    let scan = |f: fn(&ScanColumns) -> f64| r.scan.as_ref().map(f);
    format!(
        "{:<9} {:<17} {:>6} {:<12} {:>8.1} {:>9.2} {:>10} {:>10} {:>9.1} {:>6.2}x {:>8} {:>8} {:>9} {:>8} {:>9} {:>8} {:>10} {:>8} {:>7} {:>7}",
        r.io_mode,
        r.io_engine,
        r.key_size,
        r.key_layout.to_string(),
        r.mib_per_s,
        r.cpu_s_per_gib,
        opt(r.page_cache_growth_mib, 1),
        opt(r.page_cache_growth_pct, 1),
        r.reference_mib_per_s,
        r.ratio_to_reference,
        opt(r.rss_growth_mib, 1),
        opt(r.memory_mib, 1),
        opt(read(|c| c.cold_lookups_per_s), 0),
        opt(read(|c| c.cold_p99_us), 0),
        opt(read(|c| c.warm_lookups_per_s), 0),
        opt(read(|c| c.warm_p99_us), 0),
        opt(scan(|c| c.scan_cold_mib_per_s), 0),
        opt(scan(|c| c.scan_ratio_to_limit), 2),
        opt(scan(|c| c.hot_hit_rate_before), 3),
        opt(scan(|c| c.hot_hit_rate_after), 3),
    ) + &r.remote.as_ref().map_or(String::new(), |m| {
        format!(
            " {:>8.1} {:>9.1} {:>5.2}x {:>9.1} {:>5.2}x {:>9.1} {:>9.1} {:>7.2}x {:>8} {:>7.0}ms",
            m.upload_mib_per_s,
            m.put_reference_mib_per_s,
            m.upload_ratio,
            m.multipart_reference_mib_per_s,
            m.upload_multipart_ratio,
            m.download_mib_per_s,
            m.get_reference_mib_per_s,
            m.download_ratio,
            opt(m.download_page_cache_growth_pct, 1),
            m.evict_download_first_read_ms
        )
    })
}

/// The row as one line of JSON.
pub fn json(r: &Row) -> String {
    to_json_line(r)
}

/// Any row as one line of JSON (the rows here are plain structs of numbers and strings, which always
/// serialize).
pub fn to_json_line<T: Serialize>(r: &T) -> String {
    serde_json::to_string(r).expect("a row of numbers and strings always serializes")
}

/// The median of `v` (upper median for even lengths); `v` must be non-empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_runs() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
    }

    #[test]
    fn json_has_the_columns() {
        let r = Row {
            io_mode: "direct-rw".into(),
            io_engine: "std-fs".into(),
            key_size: 8192,
            key_layout: KeyLayout::Sequential,
            write_delta: true,
            volume_mib: 128,
            mib_per_s: 500.0,
            cpu_s_per_gib: 0.5,
            page_cache_growth_mib: Some(1.0),
            page_cache_growth_pct: Some(0.5),
            written_mib: 256.0,
            reference_mib_per_s: 600.0,
            ratio_to_reference: 0.83,
            runs: 1,
            verified_keys: 100,
            remote: None,
            rss_growth_mib: Some(20.0),
            memory_mib: Some(21.0),
            budget_peak_mib: 8.0,
            read: Some(ReadColumns {
                cold_lookups_per_s: 1000.0,
                cold_p99_us: 900.0,
                warm_lookups_per_s: 50000.0,
                warm_p99_us: 80.0,
                cold_cache_device_reads: 30,
                warm_cache_device_reads: 0,
                index_pages: 30,
            }),
            scan: Some(ScanColumns {
                scan_cold_mib_per_s: 1500.0,
                scan_limit_mib_per_s: 1600.0,
                scan_ratio_to_limit: 0.94,
                hot_hit_rate_before: 0.999,
                hot_hit_rate_after: 0.998,
            }),
        };
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["io_mode"], "direct-rw");
        assert_eq!(v["key_layout"], "sequential");
        assert!(line(&r).contains("0.83x"));
        assert!(header(false).contains("MiB/s"));
        assert!(v.get("upload_mib_per_s").is_none());
        let with_remote = Row {
            remote: Some(RemoteFigures {
                remote: "s3".into(),
                layer_mib: 130.0,
                upload_mib_per_s: 400.0,
                put_reference_mib_per_s: 450.0,
                upload_ratio: 0.89,
                multipart_reference_mib_per_s: 420.0,
                upload_multipart_ratio: 0.95,
                download_mib_per_s: 500.0,
                get_reference_mib_per_s: 520.0,
                download_ratio: 0.96,
                download_page_cache_growth_pct: Some(0.4),
                evict_download_first_read_ms: 300.0,
            }),
            ..r.clone()
        };
        let v: serde_json::Value = serde_json::from_str(&json(&with_remote)).unwrap();
        assert_eq!(v["remote"], "s3");
        assert_eq!(v["download_ratio"], 0.96);
        assert!(line(&with_remote).contains("0.89x"));
        assert!(header(true).contains("dl MiB/s"));
        assert!(header(false).contains("MiB/s"));
        assert_eq!(v["memory_mib"], 21.0);
        assert_eq!(v["warm_lookups_per_s"], 50000.0);
        assert!(line(&r).contains("50000"));
        assert_eq!(v["scan_cold_mib_per_s"], 1500.0);
        assert_eq!(v["hot_hit_rate_after"], 0.998);
        assert!(header(false).contains("scan MiB/s"));
        assert!(line(&r).contains("0.998"));
    }
}
