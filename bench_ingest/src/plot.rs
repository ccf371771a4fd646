//! `--plot FILE.svg`: the result matrix as a picture, drawn with `plotters` (SVG backend).
//!
//! Two panels over the same bars, one bar per row (grouped by value size and key layout, one colour per
//! IO mode x IO engine): payload MiB/s with the row's reference (the plain `pwrite` + `fsync` loop of the
//! same bytes in the same run) as a black cross, and the case's memory in MiB (the `mem MiB` column:
//! page-cache growth + RSS growth, what the mode costs the machine in memory).

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::report::Row;

/// Width and height of the picture, pixels.
pub const SIZE: (u32, u32) = (1200, 820);

/// Drawing the picture failed.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No rows to draw.
    #[error("nothing to plot into {path}: no result rows")]
    NoRows {
        /// The SVG file asked for.
        path: PathBuf,
    },
    /// `plotters` failed (it reports errors as text).
    #[error("cannot draw {path}: {message}")]
    Draw {
        /// The SVG file asked for.
        path: PathBuf,
        /// What `plotters` said.
        message: String,
    },
}

/// One bar: where it goes and what it shows.
struct Bar<'a> {
    slot: i32,
    series: usize,
    row: &'a Row,
}

/// The bar layout: series (mode x engine, in order of appearance), groups (value size x layout) with
/// their label and centre slot, and the bars; one empty slot between groups.
struct Layout<'a> {
    series: Vec<String>,
    groups: Vec<(String, i32)>,
    bars: Vec<Bar<'a>>,
    slots: i32,
}

fn layout(rows: &[Row]) -> Layout<'_> {
    let mut series: Vec<String> = Vec::new();
    let mut group_keys: Vec<(usize, String)> = Vec::new();
    for r in rows {
        let s = format!("{} / {}", r.io_mode, r.io_engine);
        if !series.contains(&s) {
            series.push(s);
        }
        let g = (r.key_size, r.key_layout.to_string());
        if !group_keys.contains(&g) {
            group_keys.push(g);
        }
    }
    let mut bars = Vec::new();
    let mut groups = Vec::new();
    let mut slot = 0i32;
    for (size, key_layout) in &group_keys {
        let first = slot;
        for r in rows
            .iter()
            .filter(|r| r.key_size == *size && r.key_layout.to_string() == *key_layout)
        {
            let s = format!("{} / {}", r.io_mode, r.io_engine);
            let series_no = series.iter().position(|x| *x == s).unwrap_or(0);
            bars.push(Bar {
                slot,
                series: series_no,
                row: r,
            });
            slot += 1;
        }
        groups.push((
            format!("{size} B values, {key_layout}"),
            (first + slot - 1) / 2,
        ));
        slot += 1; // gap
    }
    Layout {
        series,
        groups,
        bars,
        // no gap after the last group
        slots: (slot - 1).max(1),
    }
}

/// The colour of series `i`.
fn colour(i: usize) -> RGBColor {
    const COLOURS: [RGBColor; 6] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xae, 0xc7, 0xe8),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0xff, 0xbb, 0x78),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x98, 0xdf, 0x8a),
    ];
    COLOURS[i % COLOURS.len()]
}

/// Draws `rows` into the SVG file `path`; `caption` is the picture's title (what was run, and when).
pub fn draw_svg(rows: &[Row], path: &Path, caption: &str) -> Result<(), PlotError> {
    if rows.is_empty() {
        return Err(PlotError::NoRows {
            path: path.to_owned(),
        });
    }
    draw(rows, path, caption).map_err(|message| PlotError::Draw {
        path: path.to_owned(),
        message,
    })
}

fn draw(rows: &[Row], path: &Path, caption: &str) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let l = layout(rows);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(caption, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(SIZE.1 * 3 / 5);

    let max_rate = rows
        .iter()
        .map(|r| r.mib_per_s.max(r.reference_mib_per_s))
        .fold(1.0, f64::max);
    panel(
        &top,
        &l,
        "MiB/s of payload (x: reference, plain pwrite + fsync of the same bytes)",
        // headroom above the tallest bar or cross for the legend
        max_rate * 1.6,
        |r| Some(r.mib_per_s),
        Some(|r: &Row| r.reference_mib_per_s),
    )?;
    let max_mem = rows.iter().filter_map(|r| r.memory_mib).fold(1.0, f64::max);
    panel(
        &bottom,
        &l,
        "memory: page-cache growth + RSS growth during the case, MiB",
        max_mem * 1.45,
        |r| r.memory_mib,
        None::<fn(&Row) -> f64>,
    )?;
    root.present().map_err(|e| err(&e))
}

/// One panel: a bar per row of `value(row)` (rows without a value are left out), optionally a cross at
/// `marker(row)`, the group labels under the x axis, and a legend.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    l: &Layout<'_>,
    title: &str,
    y_max: f64,
    value: impl Fn(&Row) -> Option<f64>,
    marker: Option<impl Fn(&Row) -> f64>,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((0..l.slots).into_segmented(), 0.0..y_max)
        .map_err(|e| err(&e))?;
    let groups = &l.groups;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(l.slots as usize + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(x) => groups
                .iter()
                .find(|(_, centre)| centre == x)
                .map(|(label, _)| label.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;

    for (i, name) in l.series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(
                l.bars
                    .iter()
                    .filter(|b| b.series == i)
                    .filter_map(|b| value(b.row).map(|v| (b.slot, v)))
                    .map(|(x, v)| {
                        let mut bar = Rectangle::new(
                            [
                                (SegmentValue::Exact(x), 0.0),
                                (SegmentValue::Exact(x + 1), v),
                            ],
                            c.filled(),
                        );
                        bar.set_margin(0, 0, 3, 3);
                        bar
                    }),
            )
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
    }
    if let Some(marker) = marker {
        chart
            .draw_series(l.bars.iter().map(|b| {
                Cross::new(
                    (SegmentValue::CenterOf(b.slot), marker(b.row)),
                    6,
                    BLACK.stroke_width(2),
                )
            }))
            .map_err(|e| err(&e))?
            .label("reference (same run)")
            .legend(|(x, y)| Cross::new((x + 7, y), 5, BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))
}

#[cfg(test)]
mod tests;
