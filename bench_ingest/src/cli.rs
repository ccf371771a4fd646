//! The `bench_ingest` command: runs the case matrix and prints one row per case (or, with the subcommand
//! `objstore`, [`crate::objstore::run`]).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use io_engine::{IoEngine, IoEngineKind};
use virtual_file::IoMode;

use crate::args::{Args, Command, RemoteArg, YesNo};
use crate::measure::evict_from_page_cache;
use crate::read_phase::{ReadPhaseResult, ReadPhaseSpec};
use crate::reference::pwrite_fsync;
use crate::remote::RemoteBench;
use crate::report::{header, json, line, median, ReadColumns, RemoteFigures, Row, ScanColumns};
use crate::scan_phase::ScanPhaseResult;
use crate::workload::{run_case_with_remote, CaseRun, CaseSpec};

/// Block size of the reference pwrite loop.
pub const REFERENCE_BLOCK: usize = 64 * 1024;

/// One line of results on standard output; a closed pipe is an error, not a panic.
pub(crate) fn print_line(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the results: {e}"))
}

/// A progress or diagnostic line on standard error (best effort).
pub(crate) fn note(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Logs and spans to standard error, filtered by `RUST_LOG` (default: warnings), for this binary and
/// the end-to-end tests' `layer_tool`. Call once, at the start of `main`.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        // a line when a span closes (with its fields and time), e.g. RUST_LOG=layer_writers=info shows
        // each in-memory layer write-out
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
}

/// Starts the engines of `kinds` on `rt`. One that cannot start here is skipped with a note, unless it
/// was asked for explicitly (`explicit`: by flag or environment), which is an error.
pub(crate) fn launch_engines(
    rt: &tokio::runtime::Runtime,
    kinds: &[IoEngineKind],
    explicit: bool,
) -> Result<Vec<IoEngine>, String> {
    let mut engines: Vec<IoEngine> = Vec::new();
    for &kind in kinds {
        match rt.block_on(async { IoEngine::launch(kind) }) {
            Ok(e) => engines.push(e),
            Err(e) if !explicit => note(&format!(
                "bench_ingest: engine {kind} cannot start here ({e}); its rows are skipped"
            )),
            Err(e) => return Err(format!("engine {kind} was requested but cannot start: {e}")),
        }
    }
    Ok(engines)
}

/// Parses the command line and runs; the process's exit code.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            note(&format!("bench_ingest: {msg}"));
            ExitCode::FAILURE
        }
    }
}

/// Everything but argument parsing: the main job, or the subcommand's job ([`crate::objstore::run`]);
/// errors are messages for a person.
pub fn run(args: Args) -> Result<(), String> {
    if let Some(Command::Objstore(o)) = args.command {
        return crate::objstore::run(o).map(|_| ());
    }
    let env_mode = IoMode::from_env().map_err(|e| e.to_string())?;
    let env_engine = IoEngineKind::from_env().map_err(|e| e.to_string())?;
    let modes = args.modes(env_mode);
    let kinds = args.engines(env_engine);
    let explicit_engine = !args.io_engine.is_empty() || env_engine.is_some();
    if args
        .key_size
        .iter()
        .any(|&s| s == 0 || s > layer_writers::format::blob::MAX_VALUE_LEN)
    {
        return Err(format!(
            "--key-size must be between 1 and {} bytes",
            layer_writers::format::blob::MAX_VALUE_LEN
        ));
    }
    if !(args.read_secs >= 0.0 && args.read_secs.is_finite()) {
        return Err("--read-secs must be 0 or more".into());
    }
    if args.volume_mib == 0 {
        return Err("--volume-mib must be at least 1".into());
    }
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("bench_ingest-")
        .tempdir_in(&base)
        .map_err(|e| {
            format!(
                "cannot make a temporary directory in {}: {e}",
                base.display()
            )
        })?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let engines = launch_engines(&rt, &kinds, explicit_engine)?;

    let mut specs = Vec::new();
    for &key_size in &args.key_size {
        for &layout in &args.key_layout {
            for &mode in &modes {
                specs.push(CaseSpec {
                    mode,
                    key_size,
                    layout,
                    volume_mib: args.volume_mib,
                    write_delta: args.write_delta == YesNo::Yes,
                    memory_mib: args.memory_mib,
                    keep_written_pages: args.keep_written_pages == YesNo::Yes,
                    spill: args.spill == YesNo::Yes,
                    read_phase: ReadPhaseSpec {
                        secs: args.read_secs,
                        readers: args.readers as usize,
                    },
                    scan_phase: args.scan == YesNo::Yes,
                });
            }
        }
    }
    let cases: Vec<(CaseSpec, IoEngine)> = specs
        .iter()
        .flat_map(|s| engines.iter().map(move |e| (s.clone(), e.clone())))
        .collect();
    note(&format!(
        "bench_ingest: {} cases, {} MiB each, {} measured run(s) + 1 warm-up, in {}; reference: pwrite loop of \
         {} KiB + fsync of the same bytes",
        cases.len(),
        args.volume_mib,
        args.repeat,
        tmp.path().display(),
        REFERENCE_BLOCK / 1024
    ));
    let progress = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(cases.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    if args.remote != RemoteArg::None && args.write_delta == YesNo::No {
        return Err(
            "--remote needs --write-delta yes (the delta layer is what is uploaded)".into(),
        );
    }
    let remote = rt.block_on(RemoteBench::start(args.remote, tmp.path()))?;
    if let Some(r) = &remote {
        note(&format!(
            "bench_ingest: remote {}: {}; reference: object_store's plain put/get of the same bytes",
            args.remote, r.label
        ));
    }
    if !args.json {
        print_line(&header(remote.is_some()))?;
    }
    let dir: PathBuf = tmp.path().to_owned();
    let remote_name = args.remote.to_string();
    // for --plot and --metrics
    let mut all_rows: Vec<Row> = Vec::new();
    let mut case_metrics = Vec::new();
    rt.block_on(async {
        // warm-up: the first writes after boot fault memory in lazily
        if let Some((spec, engine)) = cases.first() {
            let mut warm = spec.clone();
            warm.volume_mib = warm.volume_mib.min(32);
            warm.read_phase.secs = 0.0;
            warm.scan_phase = false;
            run_case_with_remote(engine, &warm, &dir, remote.as_ref())
                .await
                .map_err(|e| format!("warm-up: {e}"))?;
        }
        for (i, (spec, engine)) in cases.iter().enumerate() {
            let what = format!(
                "{} {} value {} {}",
                spec.mode,
                engine.kind(),
                spec.key_size,
                spec.layout
            );
            match &progress {
                Some(pb) => pb.set_message(what.clone()),
                None => note(&format!("case {}/{}: {what}", i + 1, cases.len())),
            }
            let mut runs: Vec<CaseRun> = Vec::new();
            let mut refs: Vec<Duration> = Vec::new();
            for _ in 0..args.repeat {
                let run = run_case_with_remote(engine, spec, &dir, remote.as_ref())
                    .await
                    .map_err(|e| format!("case {what}: {e}"))?;
                let ref_path = dir.join("reference.dat");
                let r = pwrite_fsync(&ref_path, run.written_bytes, REFERENCE_BLOCK)
                    .map_err(|e| format!("reference for {what}: {e}"))?;
                evict_from_page_cache(&ref_path);
                refs.push(r);
                runs.push(run);
            }
            let row = summarize(spec, engine.kind(), &runs, &refs, &remote_name);
            if let Some(pb) = &progress {
                pb.inc(1);
            }
            let text = if args.json { json(&row) } else { line(&row) };
            match &progress {
                Some(pb) => pb.println(text),
                None => print_line(&text)?,
            }
            if let Some(last) = runs.last() {
                case_metrics.push((crate::metrics_file::case_labels(&row), last.metrics.clone()));
            }
            all_rows.push(row);
        }
        Ok::<(), String>(())
    })?;
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if let Some(path) = &args.metrics {
        crate::metrics_file::write(path, &case_metrics)?;
        note(&format!(
            "bench_ingest: metrics written to {}",
            path.display()
        ));
    }
    if let Some(path) = &args.plot {
        let caption = format!(
            "bench_ingest: {} MiB per case, median of {} run(s), write-out {}",
            args.volume_mib,
            args.repeat,
            if args.write_delta == YesNo::Yes {
                "with fsync"
            } else {
                "off"
            }
        );
        crate::plot::draw_svg(&all_rows, path, &caption).map_err(|e| e.to_string())?;
        note(&format!("bench_ingest: plot written to {}", path.display()));
    }
    Ok(())
}

fn summarize(
    spec: &CaseSpec,
    kind: IoEngineKind,
    runs: &[CaseRun],
    refs: &[Duration],
    remote_name: &str,
) -> Row {
    let mib = spec.volume_mib as f64;
    let gib = mib / 1024.0;
    let mib_per_s = median(runs.iter().map(|r| mib / r.wall.as_secs_f64()).collect());
    let reference_mib_per_s = median(refs.iter().map(|d| mib / d.as_secs_f64()).collect());
    let cpu_s_per_gib = median(runs.iter().map(|r| r.cpu.as_secs_f64() / gib).collect());
    let written = median(runs.iter().map(|r| r.written_bytes as f64).collect());
    let growth: Option<Vec<f64>> = runs
        .iter()
        .map(|r| r.page_cache_growth.map(|g| g as f64))
        .collect();
    let growth = growth.map(median);
    let rss: Option<Vec<f64>> = runs
        .iter()
        .map(|r| r.rss_growth.map(|g| g as f64))
        .collect();
    let rss = rss.map(median);
    let mib_of = |b: f64| b / (1 << 20) as f64;
    let phases: Option<Vec<ReadPhaseResult>> = runs.iter().map(|r| r.read_phase).collect();
    let read = phases.filter(|p| !p.is_empty()).map(|p| {
        let med = |f: &dyn Fn(&ReadPhaseResult) -> f64| median(p.iter().map(f).collect());
        ReadColumns {
            cold_lookups_per_s: med(&|r| r.cold.per_s),
            cold_p99_us: med(&|r| r.cold.p99_us),
            warm_lookups_per_s: med(&|r| r.warm.per_s),
            warm_p99_us: med(&|r| r.warm.p99_us),
            warm_cache_device_reads: p
                .iter()
                .map(|r| r.warm.cache_device_reads)
                .max()
                .unwrap_or(0),
            cold_cache_device_reads: p
                .iter()
                .map(|r| r.cold.cache_device_reads)
                .max()
                .unwrap_or(0),
            index_pages: p[0].index_pages,
        }
    });
    let scans: Option<Vec<ScanPhaseResult>> = runs.iter().map(|r| r.scan_phase).collect();
    let scan = scans.filter(|s| !s.is_empty()).map(|s| {
        let med = |f: &dyn Fn(&ScanPhaseResult) -> f64| median(s.iter().map(f).collect());
        ScanColumns {
            scan_cold_mib_per_s: med(&|r| r.scan_cold_mib_per_s),
            scan_limit_mib_per_s: med(&|r| r.scan_limit_mib_per_s),
            scan_ratio_to_limit: med(&|r| r.scan_cold_mib_per_s / r.scan_limit_mib_per_s),
            hot_hit_rate_before: med(&|r| r.hot_hit_rate_before),
            hot_hit_rate_after: med(&|r| r.hot_hit_rate_after),
        }
    });
    Row {
        scan,
        rss_growth_mib: rss.map(mib_of),
        memory_mib: match (growth, rss) {
            (Some(g), Some(r)) => Some(mib_of(g + r)),
            _ => None,
        },
        budget_peak_mib: mib_of(median(runs.iter().map(|r| r.budget_peak as f64).collect())),
        read,
        io_mode: spec.mode.to_string(),
        io_engine: kind.to_string(),
        key_size: spec.key_size,
        key_layout: spec.layout,
        write_delta: spec.write_delta,
        volume_mib: spec.volume_mib,
        mib_per_s,
        cpu_s_per_gib,
        page_cache_growth_mib: growth.map(|g| g / (1 << 20) as f64),
        page_cache_growth_pct: growth.map(|g| 100.0 * g / written),
        written_mib: written / (1 << 20) as f64,
        reference_mib_per_s,
        ratio_to_reference: mib_per_s / reference_mib_per_s,
        runs: runs.len() as u32,
        verified_keys: runs.iter().map(|r| r.verified_keys).min().unwrap_or(0),
        remote: summarize_remote(runs, remote_name),
    }
}

/// Medians of the remote round trips, if every run made one.
fn summarize_remote(runs: &[CaseRun], remote_name: &str) -> Option<RemoteFigures> {
    let trips: Option<Vec<_>> = runs.iter().map(|r| r.remote.clone()).collect();
    let trips = trips.filter(|t| !t.is_empty())?;
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let rate = |f: &dyn Fn(&crate::remote::RemoteRun) -> Duration| {
        median(
            trips
                .iter()
                .map(|t| mib(t.bytes) / f(t).as_secs_f64())
                .collect(),
        )
    };
    let upload = rate(&|t| t.upload);
    let put = rate(&|t| t.reference_put);
    let multipart = rate(&|t| t.reference_multipart);
    let download = rate(&|t| t.download);
    let get = rate(&|t| t.reference_get);
    let growth: Option<Vec<f64>> = trips
        .iter()
        .map(|t| {
            t.download_page_cache_growth
                .map(|g| 100.0 * g as f64 / t.bytes as f64)
        })
        .collect();
    Some(RemoteFigures {
        remote: remote_name.to_owned(),
        layer_mib: median(trips.iter().map(|t| mib(t.bytes)).collect()),
        upload_mib_per_s: upload,
        put_reference_mib_per_s: put,
        upload_ratio: upload / put,
        multipart_reference_mib_per_s: multipart,
        upload_multipart_ratio: upload / multipart,
        download_mib_per_s: download,
        get_reference_mib_per_s: get,
        download_ratio: download / get,
        download_page_cache_growth_pct: growth.map(median),
        evict_download_first_read_ms: median(
            trips
                .iter()
                .map(|t| t.evict_download_first_read.as_secs_f64() * 1000.0)
                .collect(),
        ),
    })
}
