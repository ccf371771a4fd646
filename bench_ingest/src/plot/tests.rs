use super::*;
use crate::args::KeyLayout;

/// A row; `cache` is its page-cache growth, and its memory is that plus 2 MiB of RSS growth (none
/// without a cache figure, as the harness does).
fn row(mode: &str, engine: &str, key_size: usize, mib_per_s: f64, cache: Option<f64>) -> Row {
    Row {
        io_mode: mode.into(),
        io_engine: engine.into(),
        key_size,
        key_layout: KeyLayout::Sequential,
        write_delta: true,
        volume_mib: 64,
        mib_per_s,
        cpu_s_per_gib: 3.0,
        page_cache_growth_mib: cache,
        page_cache_growth_pct: cache.map(|c| c / 1.28),
        written_mib: 128.0,
        reference_mib_per_s: 700.0,
        ratio_to_reference: mib_per_s / 700.0,
        runs: 1,
        verified_keys: 200,
        rss_growth_mib: Some(2.0),
        memory_mib: cache.map(|c| c + 2.0),
        budget_peak_mib: 4.0,
        read: None,
        scan: None,
        remote: None,
    }
}

/// Filled rectangles of `colour` in the SVG text.
fn bars_of(svg: &str, colour: RGBColor) -> usize {
    let hex = format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2);
    svg.lines()
        .filter(|l| l.contains("<rect") && l.contains(&format!("fill=\"{hex}\"")))
        .count()
}

#[test]
fn draws_a_bar_per_row_and_value_with_labels_and_legend() {
    let rows = vec![
        row("buffered", "std-fs", 100, 300.0, Some(120.0)),
        row("direct-rw", "std-fs", 100, 250.0, Some(1.0)),
        row("buffered", "std-fs", 8192, 800.0, None),
        row("direct-rw", "std-fs", 8192, 900.0, Some(0.5)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.svg");
    draw_svg(&rows, &path, "test run").unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    for text in [
        "test run",
        "100 B values, sequential",
        "8192 B values, sequential",
        "buffered / std-fs",
        "direct-rw / std-fs",
        "reference (same run)",
        "memory: page-cache growth + RSS growth during the case, MiB",
    ] {
        assert!(svg.contains(text), "no {text:?} in the SVG");
    }
    // series 0 (buffered): 2 rate bars + 1 memory bar (one row has no figure) + 2 legend swatches
    assert_eq!(bars_of(&svg, colour(0)), 2 + 1 + 2);
    // series 1 (direct-rw): 2 + 2 + 2
    assert_eq!(bars_of(&svg, colour(1)), 2 + 2 + 2);
}

#[test]
fn no_rows_is_an_error_not_an_empty_picture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.svg");
    assert!(matches!(
        draw_svg(&[], &path, "x"),
        Err(PlotError::NoRows { .. })
    ));
    assert!(!path.exists());
}
