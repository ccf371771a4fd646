//! [`ObjRow`]: one store x phase of `bench_ingest objstore`, as JSON or as a table line, and the ratios
//! to `local_fs` and to the device limit of the same phase.

use serde::Serialize;

use super::store_phases::Moved;
use crate::measure::Span;

/// `store` of `object_store`'s `LocalFileSystem` (with fsync).
pub const LOCAL_FS: &str = "local_fs";
/// `store` of our store over `VirtualFile`.
pub const VIRTUAL_FILE: &str = "virtual_file";
/// `store` of the raw `O_DIRECT` loop.
pub const DEVICE_LIMIT: &str = "device_limit";

/// One store x phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjRow {
    /// `local_fs`, `virtual_file` or `device_limit`.
    pub store: String,
    /// IO mode (`buffered`, `direct`, `direct-rw`).
    pub io_mode: String,
    /// IO engine (`std-fs`, `tokio-epoll-uring`).
    pub io_engine: String,
    /// `put`, `get` or `get_range`.
    pub phase: String,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Operations: parts put, objects read whole, ranges read.
    pub ops: u64,
    /// Wall time of the phase.
    pub seconds: f64,
    /// Payload MiB per second.
    pub mib_per_s: f64,
    /// Operations per second.
    pub ops_per_s: f64,
    /// User + system CPU seconds of the process per GiB moved.
    pub cpu_s_per_gib: f64,
    /// Peak growth of the kernel's page cache during the phase, MiB.
    pub page_cache_growth_mib: Option<f64>,
    /// `mib_per_s` over `local_fs`'s in the same phase.
    pub ratio_to_local_fs: Option<f64>,
    /// `mib_per_s` over the device limit's in the same phase.
    pub ratio_to_device_limit: Option<f64>,
    /// `mib_per_s` of each round, in the order run (one value without `--rounds`).
    pub mib_per_s_rounds: Vec<f64>,
}

impl ObjRow {
    /// The row of a measured phase (ratios still unset).
    pub fn new(
        store: &str,
        io_mode: &str,
        io_engine: &str,
        phase: &str,
        moved: Moved,
        span: Span,
    ) -> Self {
        let seconds = span.wall.as_secs_f64().max(1e-9);
        let mib = moved.bytes as f64 / (1u64 << 20) as f64;
        Self {
            store: store.to_owned(),
            io_mode: io_mode.to_owned(),
            io_engine: io_engine.to_owned(),
            phase: phase.to_owned(),
            bytes: moved.bytes,
            ops: moved.ops,
            seconds,
            mib_per_s: mib / seconds,
            ops_per_s: moved.ops as f64 / seconds,
            cpu_s_per_gib: span.cpu.as_secs_f64() / (mib / 1024.0).max(1e-12),
            page_cache_growth_mib: span
                .page_cache_growth
                .map(|g| g as f64 / (1u64 << 20) as f64),
            ratio_to_local_fs: None,
            ratio_to_device_limit: None,
            mib_per_s_rounds: vec![mib / seconds],
        }
    }

    fn same_case(&self, other: &ObjRow) -> bool {
        (&self.store, &self.io_mode, &self.io_engine, &self.phase)
            == (&other.store, &other.io_mode, &other.io_engine, &other.phase)
    }
}

/// The median of `values` (the lower middle one for an even count); `None` if empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// One row per store x phase from the rows of several rounds (each with its ratios set): the row of
/// the round with the median MiB/s, with the median of the per-round ratios and every round's MiB/s.
pub fn medians(rounds: &[Vec<ObjRow>]) -> Vec<ObjRow> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|r| {
            let same: Vec<&ObjRow> = rounds
                .iter()
                .filter_map(|round| round.iter().find(|o| o.same_case(r)))
                .collect();
            let mut by_rate = same.clone();
            by_rate.sort_by(|a, b| a.mib_per_s.total_cmp(&b.mib_per_s));
            let mut out = by_rate[(by_rate.len() - 1) / 2].clone();
            out.ratio_to_local_fs =
                median(same.iter().filter_map(|o| o.ratio_to_local_fs).collect());
            out.ratio_to_device_limit = median(
                same.iter()
                    .filter_map(|o| o.ratio_to_device_limit)
                    .collect(),
            );
            out.mib_per_s_rounds = same.iter().map(|o| o.mib_per_s).collect();
            out
        })
        .collect()
}

/// Sets every row's ratios to the `local_fs` and `device_limit` rows of its phase (left `None` where
/// that row is missing).
pub fn set_ratios(rows: &mut [ObjRow]) {
    let reference = |rows: &[ObjRow], store: &str, phase: &str| {
        rows.iter()
            .find(|r| r.store == store && r.phase == phase)
            .map(|r| r.mib_per_s)
    };
    let refs: Vec<(Option<f64>, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                reference(rows, LOCAL_FS, &r.phase),
                reference(rows, DEVICE_LIMIT, &r.phase),
            )
        })
        .collect();
    for (r, (local, device)) in rows.iter_mut().zip(refs) {
        r.ratio_to_local_fs = local.map(|l| r.mib_per_s / l);
        r.ratio_to_device_limit = device.map(|d| r.mib_per_s / d);
    }
}

/// The table header.
pub fn header() -> String {
    format!(
        "{:<13} {:<9} {:<17} {:<9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9}",
        "store",
        "io_mode",
        "io_engine",
        "phase",
        "MiB/s",
        "ops/s",
        "CPU s/GiB",
        "cache MiB",
        "/local",
        "/device"
    )
}

/// One table line.
pub fn line(r: &ObjRow) -> String {
    let opt = |v: Option<f64>, prec: usize, suffix: &str| {
        v.map_or("n/a".to_string(), |v| format!("{v:.prec$}{suffix}"))
    };
    format!(
        "{:<13} {:<9} {:<17} {:<9} {:>9.1} {:>9.0} {:>9.2} {:>10} {:>8} {:>9}",
        r.store,
        r.io_mode,
        r.io_engine,
        r.phase,
        r.mib_per_s,
        r.ops_per_s,
        r.cpu_s_per_gib,
        opt(r.page_cache_growth_mib, 1, ""),
        opt(r.ratio_to_local_fs, 2, "x"),
        opt(r.ratio_to_device_limit, 2, "x"),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(store: &str, phase: &str, secs: u64) -> ObjRow {
        let moved = Moved {
            bytes: 1 << 30,
            ops: 128,
        };
        let span = Span {
            wall: Duration::from_secs(secs),
            cpu: Duration::from_millis(500),
            page_cache_growth: Some(3 << 20),
        };
        ObjRow::new(store, "buffered", "std-fs", phase, moved, span)
    }

    #[test]
    fn figures_and_ratios() {
        let mut rows = vec![
            row(LOCAL_FS, "put", 2),
            row(VIRTUAL_FILE, "put", 1),
            row(VIRTUAL_FILE, "get", 1),
            row(DEVICE_LIMIT, "put", 1),
        ];
        assert_eq!(rows[0].mib_per_s, 512.0);
        assert_eq!(rows[0].ops_per_s, 64.0);
        assert_eq!(rows[0].cpu_s_per_gib, 0.5);
        assert_eq!(rows[0].page_cache_growth_mib, Some(3.0));
        set_ratios(&mut rows);
        assert_eq!(rows[0].ratio_to_local_fs, Some(1.0));
        assert_eq!(rows[1].ratio_to_local_fs, Some(2.0));
        assert_eq!(rows[0].ratio_to_device_limit, Some(0.5));
        assert_eq!(rows[2].ratio_to_local_fs, None, "no local_fs get row");
        let v: serde_json::Value =
            serde_json::from_str(&crate::report::to_json_line(&rows[1])).unwrap();
        assert_eq!(v["store"], "virtual_file");
        assert_eq!(v["ratio_to_local_fs"], 2.0);
        assert!(line(&rows[1]).contains("2.00x"));
        assert!(header().contains("/device"));
    }

    #[test]
    fn medians_over_rounds() {
        // three rounds; ours at 1 s, 4 s, 2 s against local_fs at 2 s, 2 s, 8 s
        let round = |ours: u64, local: u64| {
            let mut rows = vec![row(LOCAL_FS, "put", local), row(VIRTUAL_FILE, "put", ours)];
            set_ratios(&mut rows);
            rows
        };
        let rounds = vec![round(1, 2), round(4, 2), round(2, 8)];
        let m = medians(&rounds);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].store, VIRTUAL_FILE);
        // MiB/s 1024, 256, 512: the median is 512 (the third round's row)
        assert_eq!(m[1].mib_per_s, 512.0);
        assert_eq!(m[1].mib_per_s_rounds, vec![1024.0, 256.0, 512.0]);
        // per-round ratios 2.0, 0.5, 4.0: median 2.0 (not 512 / 512)
        assert_eq!(m[1].ratio_to_local_fs, Some(2.0));
        assert_eq!(m[0].ratio_to_local_fs, Some(1.0));
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0]), Some(1.0));
        assert_eq!(medians(&[]), Vec::<ObjRow>::new());
    }
}
