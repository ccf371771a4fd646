//! `bench_ingest objstore`: large objects written and read the way a table writer does, through the
//! `object_store` API ([`ObjectStore`]), store after store in one run, each on fresh files in its own
//! subdirectory, its objects deleted after its phases:
//!
//! - `local_fs`: `object_store`'s `LocalFileSystem` with fsync (durable like ours);
//! - `device_limit`: the same bytes by a raw `O_DIRECT` loop of `pwrite` / `pread` on
//!   `--parts-in-flight` threads ([`device`]), the ceiling of this device.
//!
//! Phases, each one row per store: `put` (every object as a multipart upload, `--parts-in-flight`
//! parts in flight, then `complete`), `get` (every object read whole, its body streamed), `get_range`
//! (`--range-reads` random ranges of `--range-kib`, the same seeded offsets for every store,
//! `--parts-in-flight` in flight). Before each read phase the caches are made cold the same way for
//! every store: `posix_fadvise(DONTNEED)` on every object file and a fresh store instance (for a store
//! with a context of its own, a fresh context: its own cache is empty).
//!
//! Our store over `VirtualFile` runs as [`context_cases`] (a fresh `IoContext` per mode x engine x phase)
//! once its crate is a dependency.

pub mod device;
pub mod row;
pub mod spec;
pub mod store_phases;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use io_engine::{IoBufferMut, IoEngine, IoEngineKind};
use object_store::ObjectStore;
use virtual_file::{IoContext, IoMode};

use crate::args::ObjstoreArgs;
use crate::cli::{note, print_line};
use crate::error::ObjstoreError;
use crate::measure::{try_evict_from_page_cache, Meter};
use crate::report::to_json_line;
use row::{ObjRow, DEVICE_LIMIT, LOCAL_FS, VIRTUAL_FILE};
use spec::ObjSpec;
use store_phases::Moved;

/// Opens a fresh instance of a store over a directory.
pub type OpenStore = Box<dyn Fn(&Path) -> Result<Arc<dyn ObjectStore>, ObjstoreError>>;

/// Makes a context-based store over a directory from a fresh context.
pub type OpenWithContext = fn(IoContext, &Path) -> Result<Arc<dyn ObjectStore>, ObjstoreError>;

/// How a store is driven.
pub enum Driver {
    /// Through the [`ObjectStore`] API; a fresh instance for each phase.
    Store(OpenStore),
    /// The raw `O_DIRECT` loop.
    Device,
}

/// One store of the run: the labels of its rows and how it is driven.
pub struct StoreCase {
    /// `store` of its rows.
    pub store: &'static str,
    /// `io_mode` of its rows.
    pub io_mode: String,
    /// `io_engine` of its rows.
    pub io_engine: String,
    /// How it is driven.
    pub driver: Driver,
}

impl StoreCase {
    /// `object_store`'s `LocalFileSystem` over the directory, with fsync.
    pub fn local_fs() -> Self {
        let open: OpenStore = Box::new(|dir| {
            let fs =
                object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|source| {
                    ObjstoreError::Store {
                        store: LOCAL_FS.into(),
                        phase: "open",
                        what: "new_with_prefix",
                        object: dir.display().to_string(),
                        source: Box::new(source),
                    }
                })?;
            Ok(Arc::new(fs.with_fsync(true)) as Arc<dyn ObjectStore>)
        });
        Self {
            store: LOCAL_FS,
            io_mode: IoMode::Buffered.to_string(),
            io_engine: io_engine::IoEngineKind::StdFs.to_string(),
            driver: Driver::Store(open),
        }
    }

    /// The raw `O_DIRECT` loop.
    pub fn device_limit() -> Self {
        Self {
            store: DEVICE_LIMIT,
            io_mode: IoMode::DirectRw.to_string(),
            io_engine: io_engine::IoEngineKind::StdFs.to_string(),
            driver: Driver::Device,
        }
    }

    /// A short label for progress notes and directory names.
    pub fn label(&self) -> String {
        format!("{}-{}-{}", self.store, self.io_mode, self.io_engine)
    }
}

/// The stores of a context-based store (labelled `store`): one per engine x mode, each phase on a
/// fresh `IoContext` of that mode and engine with a budget of `memory_bytes`, which `open` turns into a
/// store over the directory.
pub fn context_cases(
    store: &'static str,
    engines: &[IoEngine],
    modes: &[IoMode],
    memory_bytes: u64,
    open: OpenWithContext,
) -> Vec<StoreCase> {
    let mut cases = Vec::new();
    for engine in engines {
        for &mode in modes {
            let engine_for_ctx = engine.clone();
            let make: OpenStore = Box::new(move |dir| {
                let ctx = IoContext::builder()
                    .engine(engine_for_ctx.clone())
                    .mode(mode)
                    .memory_budget_bytes(usize::try_from(memory_bytes).unwrap_or(usize::MAX))
                    .build()?;
                open(ctx, dir)
            });
            cases.push(StoreCase {
                store,
                io_mode: mode.to_string(),
                io_engine: engine.kind().to_string(),
                driver: Driver::Store(make),
            });
        }
    }
    cases
}

/// The payloads of the parts, made once before any clock starts.
pub struct Payloads {
    /// For the stores.
    pub bytes: Vec<Bytes>,
    /// The same bytes in aligned memory, for the raw loop.
    pub aligned: Vec<IoBufferMut>,
}

impl Payloads {
    /// The payloads of `spec`.
    pub fn new(spec: &ObjSpec) -> Self {
        let bytes = spec.payloads();
        let aligned = device::aligned_payloads(&bytes);
        Self { bytes, aligned }
    }
}

/// Drops the object files' pages from the kernel's page cache.
fn make_cold(dir: &Path, spec: &ObjSpec) -> Result<(), ObjstoreError> {
    for o in 0..spec.objects {
        let path = dir.join(spec.object_name(o));
        try_evict_from_page_cache(&path).map_err(|source| ObjstoreError::Io {
            what: "cannot drop the page cache of",
            path,
            source,
        })?;
    }
    Ok(())
}

/// Runs the phases of one store in `dir` (created here, removed at the end): one row per phase.
pub fn run_case(
    rt: &tokio::runtime::Runtime,
    case: &StoreCase,
    dir: &Path,
    spec: &ObjSpec,
    payloads: &Payloads,
) -> Result<Vec<ObjRow>, ObjstoreError> {
    let io = |what: &'static str| {
        let path = dir.to_owned();
        move |source| ObjstoreError::Io { what, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("cannot create"))?;
    let mut rows = Vec::new();
    let mut record = |phase: &str, measured: (Moved, crate::measure::Span)| {
        let (moved, span) = measured;
        rows.push(ObjRow::new(
            case.store,
            &case.io_mode,
            &case.io_engine,
            phase,
            moved,
            span,
        ));
    };
    let timed = |f: &mut dyn FnMut() -> Result<Moved, ObjstoreError>| {
        let meter = Meter::start();
        f().map(|moved| (moved, meter.finish()))
    };
    let name = case.store;
    match &case.driver {
        Driver::Store(open) => {
            let fresh = || {
                let _in_runtime = rt.enter();
                open(dir)
            };
            let store = fresh()?;
            record(
                "put",
                timed(&mut || rt.block_on(store_phases::put(&store, name, spec, &payloads.bytes)))?,
            );
            drop(store);
            make_cold(dir, spec)?;
            let store = fresh()?;
            record(
                "get",
                timed(&mut || rt.block_on(store_phases::get(&store, name, spec)))?,
            );
            drop(store);
            if spec.range_reads > 0 {
                make_cold(dir, spec)?;
                let store = fresh()?;
                record(
                    "get_range",
                    timed(&mut || {
                        rt.block_on(store_phases::get_range(&store, name, spec, &payloads.bytes))
                    })?,
                );
            }
            let store = fresh()?;
            rt.block_on(store_phases::delete_all(&store, name, spec))?;
        }
        Driver::Device => {
            record(
                "put",
                timed(&mut || device::put(dir, spec, &payloads.aligned))?,
            );
            make_cold(dir, spec)?;
            record("get", timed(&mut || device::get(dir, spec))?);
            if spec.range_reads > 0 {
                make_cold(dir, spec)?;
                record(
                    "get_range",
                    timed(&mut || device::get_range(dir, spec, &payloads.bytes))?,
                );
            }
            device::delete_all(dir, spec)?;
        }
    }
    std::fs::remove_dir_all(dir).map_err(io("cannot remove"))?;
    Ok(rows)
}

/// The settings of a run, printed first and written first to `--json FILE`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// Objects per store.
    pub objects: u64,
    /// MiB per object.
    pub object_mib: u64,
    /// MiB per part.
    pub part_mib: u64,
    /// Parts (and reads) in flight.
    pub parts_in_flight: u64,
    /// Ranged reads.
    pub range_reads: u64,
    /// KiB per ranged read.
    pub range_kib: u64,
    /// Where the stores' subdirectories are.
    pub dir: PathBuf,
    /// The stores, in the order they run in the first round (`store-io_mode-io_engine`).
    pub stores: Vec<String>,
    /// Rounds over the stores (every other one in reverse order).
    pub rounds: u64,
}

/// `bench_ingest objstore`: runs every store, prints the settings, one JSON line per row and a table;
/// returns the rows. Errors are messages for a person.
pub fn run(args: ObjstoreArgs) -> Result<Vec<ObjRow>, String> {
    let spec = ObjSpec::from_args(&args).map_err(|e| e.to_string())?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("bench_ingest-objstore-")
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

    let env_mode = IoMode::from_env().map_err(|e| e.to_string())?;
    let env_engine = IoEngineKind::from_env().map_err(|e| e.to_string())?;
    let modes = args.modes(env_mode);
    let kinds = args.engines(env_engine);
    let explicit_engine = !args.io_engine.is_empty() || env_engine.is_some();
    let engines = crate::cli::launch_engines(&rt, &kinds, explicit_engine)?;
    let memory_bytes =
        crate::workload::memory_budget_bytes(args.memory_mib).map_err(|e| e.to_string())?;

    let mut cases = vec![StoreCase::local_fs()];
    cases.extend(context_cases(
        VIRTUAL_FILE,
        &engines,
        &modes,
        memory_bytes,
        |ctx, root| {
            let store = virtual_file_store::VirtualFileStore::new(ctx, root)?;
            Ok(Arc::new(store) as Arc<dyn ObjectStore>)
        },
    ));
    cases.push(StoreCase::device_limit());

    let settings = Settings {
        objects: args.objects,
        object_mib: args.object_mib,
        part_mib: args.part_mib,
        parts_in_flight: args.parts_in_flight,
        range_reads: args.range_reads,
        range_kib: args.range_kib,
        dir: tmp.path().to_owned(),
        stores: cases.iter().map(StoreCase::label).collect(),
        rounds: args.rounds,
    };
    let settings_line = format!(r#"{{"settings":{}}}"#, to_json_line(&settings));
    print_line(&settings_line)?;
    let mut json_lines = vec![settings_line];

    let payloads = Payloads::new(&spec);
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let mut order: Vec<&StoreCase> = cases.iter().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut rows = Vec::new();
        for (i, case) in order.into_iter().enumerate() {
            note(&format!(
                "objstore: round {}/{}, store {}/{}: {}",
                round + 1,
                args.rounds,
                i + 1,
                cases.len(),
                case.label()
            ));
            let dir = tmp.path().join(case.label());
            rows.extend(run_case(&rt, case, &dir, &spec, &payloads).map_err(|e| e.to_string())?);
        }
        row::set_ratios(&mut rows);
        rounds.push(rows);
    }
    let rows = row::medians(&rounds);
    for r in &rows {
        let l = to_json_line(r);
        print_line(&l)?;
        json_lines.push(l);
    }
    print_line("")?;
    print_line(&row::header())?;
    for r in &rows {
        print_line(&row::line(r))?;
    }
    if let Some(path) = &args.json {
        let mut text = json_lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
