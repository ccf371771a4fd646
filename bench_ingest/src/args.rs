//! Command-line arguments of `bench_ingest`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use io_engine::IoEngineKind;
use virtual_file::IoMode;

/// How keys are chosen for the values put into the in-memory layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, strum::Display, serde::Serialize)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum KeyLayout {
    /// Keys 0, 1, 2, ... in order, each once.
    Sequential,
    /// Distinct keys in random order.
    Random,
    /// Random keys from a small set, each written many times at increasing LSNs.
    RandomReuse,
}

/// An IO mode, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Page cache for everything.
    Buffered,
    /// O_DIRECT for read-only opens.
    Direct,
    /// O_DIRECT everywhere.
    DirectRw,
    /// Page cache with RWF_DONTCACHE (Linux 6.14+): pages dropped after each IO.
    BufferedDontcache,
    /// All four.
    All,
}

/// An IO engine, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// Positional syscalls on the calling thread.
    StdFs,
    /// The io_uring engine.
    TokioEpollUring,
    /// Both.
    All,
}

/// Where `--remote` uploads each case's delta layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum RemoteArg {
    /// No remote tier.
    None,
    /// `object_store`'s local file system backend in the bench's temporary directory.
    Local,
    /// S3: the endpoint in `REMOTE_STORAGE_S3_*`, else the embedded S3 server on a loopback address
    /// (built in with the cargo feature `embedded-s3`).
    S3,
}

/// yes / no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum YesNo {
    /// Yes.
    Yes,
    /// No.
    No,
}

/// Puts values into an in-memory layer, freezes it, writes it out as a delta layer, and reports MiB/s for
/// every IO mode x IO engine, against a plain pwrite + fsync of the same bytes in the same run.
///
/// With the subcommand `objstore`, large objects through the `object_store` API instead (see
/// `bench_ingest objstore --help`).
#[derive(Debug, Clone, Parser)]
#[command(name = "bench_ingest", version, args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Another job instead of the main one.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Directory to work in (a fresh temporary directory is made inside it). Default: the system temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// MiB of values per case.
    #[arg(long, default_value_t = 128)]
    pub volume_mib: u64,
    /// Value sizes in bytes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [100usize, 8192])]
    pub key_size: Vec<usize>,
    /// Key layouts (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [KeyLayout::Sequential])]
    pub key_layout: Vec<KeyLayout>,
    /// Write the frozen layer out as a delta layer (with fsync).
    #[arg(long, value_enum, default_value_t = YesNo::Yes)]
    pub write_delta: YesNo,
    /// IO modes (comma-separated, or `all`). Default: `VIRTUAL_FILE_IO_MODE` if set, else all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub io_mode: Vec<ModeArg>,
    /// IO engines (comma-separated, or `all`). Default: `VIRTUAL_FILE_IO_ENGINE` if set, else all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub io_engine: Vec<EngineArg>,
    /// Measured runs per case (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Also upload each delta layer to object storage, evict it, download it and read the sample back
    /// from the download; adds upload / download MiB/s against object_store's plain put / get.
    #[arg(long, value_enum, default_value_t = RemoteArg::None)]
    pub remote: RemoteArg,
    /// One JSON object per row on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the matrix as an SVG picture: MiB/s per mode x engine x value size with the reference as a
    /// marker, and the case's memory (page-cache growth + RSS growth) in a second panel.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Write the metrics of every case's context at its end (the last measured run) to FILE, in the
    /// Prometheus / OpenMetrics text format (latency histograms per op kind, labelled by case).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Seconds of random point lookups over the written delta layer, cold and then warm (0: none).
    #[arg(long, default_value_t = 2.0)]
    pub read_secs: f64,
    /// The scan phase after the read phase: a cold full scan of the delta layer against raw sequential
    /// `O_DIRECT` reads of it, and a hot set's page-cache hit rate before and after a scan.
    #[arg(long, value_enum, default_value_t = YesNo::Yes)]
    pub scan: YesNo,
    /// Concurrent lookup tasks of the read phase.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub readers: u32,
    /// Memory budget of the IO context (writer buffers, read buffers, page cache), MiB. Default:
    /// `VIRTUAL_FILE_MEMORY_MIB`, else 256.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub memory_mib: Option<u64>,
    /// Keep the ephemeral file's written pages in our page cache (write-through + keep), so the write-out
    /// reads them from memory; `no` to compare.
    #[arg(long, value_enum, default_value_t = YesNo::Yes)]
    pub keep_written_pages: YesNo,
    /// In the direct modes, keep the ephemeral file's bytes in memory (from the budget) and write them
    /// only when the budget runs short (the in-memory layer's spill mode); `no` writes them through (and
    /// `--keep-written-pages` decides whether their pages are kept in the cache).
    #[arg(long, value_enum, default_value_t = YesNo::Yes)]
    pub spill: YesNo,
}

/// The subcommands; without one, `bench_ingest` runs the main job.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Writes and reads large objects through the `object_store` API the way a table writer does
    /// (multipart puts, streamed gets, random ranged gets): `object_store`'s `LocalFileSystem` with
    /// fsync, our store for every IO mode x IO engine, and a raw `O_DIRECT` loop of the same bytes.
    Objstore(ObjstoreArgs),
}

/// The flags of `bench_ingest objstore`.
#[derive(Debug, Clone, clap::Args)]
pub struct ObjstoreArgs {
    /// Directory to work in (a fresh temporary directory is made inside it). Default: the system temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Objects written (and read) per store.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub objects: u64,
    /// Size of each object, MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub object_mib: u64,
    /// Size of each multipart part, MiB (the last part of an object may be shorter).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub part_mib: u64,
    /// Parts uploaded concurrently per object; also the concurrency of the ranged gets and of the raw
    /// loop's reads.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub parts_in_flight: u64,
    /// Random ranged gets across the objects (0: no `get_range` phase).
    #[arg(long, default_value_t = 2000)]
    pub range_reads: u64,
    /// Size of each ranged get, KiB (a multiple of 4).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(4..=(1 << 20)))]
    pub range_kib: u64,
    /// IO modes of our store (comma-separated, or `all`). Default: `VIRTUAL_FILE_IO_MODE` if set, else all.
    #[arg(long, alias = "modes", value_enum, value_delimiter = ',')]
    pub io_mode: Vec<ModeArg>,
    /// IO engines of our store (comma-separated, or `all`). Default: `VIRTUAL_FILE_IO_ENGINE` if set,
    /// else all.
    #[arg(long, alias = "engines", value_enum, value_delimiter = ',')]
    pub io_engine: Vec<EngineArg>,
    /// Memory budget of our store's IO context, MiB. Default: `VIRTUAL_FILE_MEMORY_MIB`, else 256.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub memory_mib: Option<u64>,
    /// Also write the settings and the rows to FILE, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Rounds over all the stores, in reverse order every other round (so no store always runs first
    /// or last on a disk whose rate drifts). Each row is the median over the rounds (ratios: the median
    /// of the per-round ratios), with every round's MiB/s in `mib_per_s_rounds`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub rounds: u64,
}

impl ObjstoreArgs {
    /// The IO modes to run our store in; see [`Args::modes`].
    pub fn modes(&self, env_mode: Option<IoMode>) -> Vec<IoMode> {
        modes_of(&self.io_mode, env_mode)
    }

    /// The IO engines to run our store on; see [`Args::engines`].
    pub fn engines(&self, env_engine: Option<IoEngineKind>) -> Vec<IoEngineKind> {
        engines_of(&self.io_engine, env_engine)
    }
}

impl Args {
    /// The IO modes to run, in a fixed order, without duplicates: the flag, else `env_mode` (the
    /// parsed `VIRTUAL_FILE_IO_MODE`), else all.
    pub fn modes(&self, env_mode: Option<IoMode>) -> Vec<IoMode> {
        modes_of(&self.io_mode, env_mode)
    }

    /// The IO engines to run, in a fixed order, without duplicates: the flag, else `env_engine` (the
    /// parsed `VIRTUAL_FILE_IO_ENGINE`), else all.
    pub fn engines(&self, env_engine: Option<IoEngineKind>) -> Vec<IoEngineKind> {
        engines_of(&self.io_engine, env_engine)
    }
}

fn modes_of(flag: &[ModeArg], env_mode: Option<IoMode>) -> Vec<IoMode> {
    selected(
        flag,
        ModeArg::All,
        env_mode,
        &[
            (ModeArg::Buffered, IoMode::Buffered),
            (ModeArg::Direct, IoMode::Direct),
            (ModeArg::DirectRw, IoMode::DirectRw),
            (ModeArg::BufferedDontcache, IoMode::BufferedDontcache),
        ],
    )
}

fn engines_of(flag: &[EngineArg], env_engine: Option<IoEngineKind>) -> Vec<IoEngineKind> {
    selected(
        flag,
        EngineArg::All,
        env_engine,
        &[
            (EngineArg::StdFs, IoEngineKind::StdFs),
            (EngineArg::TokioEpollUring, IoEngineKind::TokioEpollUring),
        ],
    )
}

/// What a repeatable flag selects, in the order of `table`, without duplicates: the values named in
/// `flag` (all of them if it holds `all`), else `env` when the flag is not given, else all.
fn selected<A: PartialEq, T: Copy>(flag: &[A], all: A, env: Option<T>, table: &[(A, T)]) -> Vec<T> {
    if flag.is_empty() {
        if let Some(v) = env {
            return vec![v];
        }
    }
    let all = flag.is_empty() || flag.contains(&all);
    table
        .iter()
        .filter(|(arg, _)| all || flag.contains(arg))
        .map(|&(_, v)| v)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let a = Args::parse_from(["bench_ingest"]);
        assert_eq!(a.volume_mib, 128);
        assert_eq!(a.key_size, vec![100, 8192]);
        assert_eq!(a.key_layout, vec![KeyLayout::Sequential]);
        assert_eq!(a.write_delta, YesNo::Yes);
        assert_eq!(
            a.modes(None),
            vec![
                IoMode::Buffered,
                IoMode::Direct,
                IoMode::DirectRw,
                IoMode::BufferedDontcache
            ]
        );
        assert_eq!(
            a.engines(None),
            vec![IoEngineKind::StdFs, IoEngineKind::TokioEpollUring]
        );
        assert_eq!(
            a.modes(Some(IoMode::Direct)),
            vec![IoMode::Direct],
            "the environment decides"
        );
        assert_eq!(
            a.engines(Some(IoEngineKind::StdFs)),
            vec![IoEngineKind::StdFs]
        );
        assert_eq!(a.repeat, 1);
        assert_eq!(a.remote, RemoteArg::None);
        let a = Args::parse_from(["bench_ingest", "--remote", "s3"]);
        assert_eq!(a.remote, RemoteArg::S3);
        assert!(Args::try_parse_from(["bench_ingest", "--remote", "gcs"]).is_err());
        assert_eq!((a.read_secs, a.readers, a.memory_mib), (2.0, 32, None));
    }

    #[test]
    fn lists_and_errors() {
        let a = Args::parse_from([
            "bench_ingest",
            "--io-mode",
            "direct-rw,buffered",
            "--io-engine",
            "std-fs",
            "--key-layout",
            "random,random-reuse",
        ]);
        assert_eq!(
            a.modes(Some(IoMode::Direct)),
            vec![IoMode::Buffered, IoMode::DirectRw],
            "flags win"
        );
        assert_eq!(a.engines(None), vec![IoEngineKind::StdFs]);
        assert_eq!(
            a.key_layout,
            vec![KeyLayout::Random, KeyLayout::RandomReuse]
        );
        let err = Args::try_parse_from(["bench_ingest", "--io-mode", "odirect"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("possible values") && err.contains("direct-rw"),
            "{err}"
        );
        assert!(Args::try_parse_from(["bench_ingest", "--repeat", "0"]).is_err());
    }

    #[test]
    fn objstore_subcommand() {
        assert!(Args::parse_from(["bench_ingest"]).command.is_none());
        let Some(Command::Objstore(o)) = Args::parse_from(["bench_ingest", "objstore"]).command
        else {
            panic!("objstore is a subcommand");
        };
        assert_eq!(
            (o.objects, o.object_mib, o.part_mib, o.parts_in_flight),
            (4, 1024, 8, 8)
        );
        assert_eq!((o.range_reads, o.range_kib), (2000, 64));
        assert_eq!((&o.dir, &o.json, o.memory_mib), (&None, &None, None));
        assert_eq!(o.rounds, 1);
        assert_eq!(
            o.modes(None),
            vec![
                IoMode::Buffered,
                IoMode::Direct,
                IoMode::DirectRw,
                IoMode::BufferedDontcache
            ]
        );
        assert_eq!(
            o.engines(None),
            vec![IoEngineKind::StdFs, IoEngineKind::TokioEpollUring]
        );
        let Some(Command::Objstore(o)) = Args::parse_from([
            "bench_ingest",
            "objstore",
            "--modes",
            "direct-rw",
            "--io-engine",
            "std-fs",
            "--objects",
            "2",
            "--dir",
            "/x",
        ])
        .command
        else {
            panic!("objstore is a subcommand");
        };
        assert_eq!(o.modes(Some(IoMode::Buffered)), vec![IoMode::DirectRw]);
        assert_eq!(o.engines(None), vec![IoEngineKind::StdFs]);
        assert_eq!((o.objects, &o.dir), (2, &Some(PathBuf::from("/x"))));
        // the main job's flags do not mix with the subcommand, and its own are checked
        assert!(Args::try_parse_from(["bench_ingest", "--volume-mib", "1", "objstore"]).is_err());
        assert!(Args::try_parse_from(["bench_ingest", "objstore", "--volume-mib", "1"]).is_err());
        assert!(Args::try_parse_from(["bench_ingest", "objstore", "--objects", "0"]).is_err());
        assert!(Args::try_parse_from(["bench_ingest", "objstore", "--range-kib", "2"]).is_err());
    }
}
