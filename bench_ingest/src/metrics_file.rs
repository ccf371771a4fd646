//! `--metrics FILE`: the metrics of each case's context, written once at the end in the Prometheus /
//! OpenMetrics text format (through `virtual_file`'s `prometheus` feature), one series per case.

use std::path::Path;

use crate::workload::CaseMetrics;

use crate::report::Row;

/// The labels that name a case in the export: `io_mode`, `io_engine`, `value_size`, `key_layout`.
pub fn case_labels(row: &Row) -> Vec<(String, String)> {
    vec![
        ("io_mode".into(), row.io_mode.clone()),
        ("io_engine".into(), row.io_engine.clone()),
        ("value_size".into(), row.key_size.to_string()),
        ("key_layout".into(), row.key_layout.to_string()),
    ]
}

/// The text of `cases` ((labels, figures) per case): ops, page cache and memory budget.
#[cfg(feature = "prometheus")]
pub fn render(cases: &[(Vec<(String, String)>, CaseMetrics)]) -> Result<String, String> {
    use virtual_file::metrics_export::{encode_text, LabeledSnapshot};
    let snapshots: Vec<LabeledSnapshot> = cases
        .iter()
        .map(|(labels, m)| LabeledSnapshot {
            labels: labels
                .iter()
                .map(|(k, v)| (k.clone().into(), v.clone().into()))
                .collect(),
            snapshot: m.ops.clone(),
            page_cache: Some(m.page_cache),
            memory: Some(m.memory.clone()),
        })
        .collect();
    encode_text(&snapshots).map_err(|e| e.to_string())
}

/// Without the `prometheus` feature there is no exporter.
#[cfg(not(feature = "prometheus"))]
pub fn render(_cases: &[(Vec<(String, String)>, CaseMetrics)]) -> Result<String, String> {
    Err("--metrics needs bench_ingest built with its `prometheus` feature (on by default)".into())
}

/// Renders `cases` and writes them to `path`.
pub fn write(path: &Path, cases: &[(Vec<(String, String)>, CaseMetrics)]) -> Result<(), String> {
    let text = render(cases)?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
