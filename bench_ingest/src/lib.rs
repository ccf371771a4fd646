//! The ingest harness, the project's main job: puts values into an in-memory layer, freezes it, writes it
//! out as a delta layer, and reports MiB/s for every IO mode x IO engine against a plain `pwrite` + `fsync`
//! of the same bytes measured in the same run.
//!
//! With `--remote local|s3` each case also uploads its delta layer to object storage, evicts it,
//! downloads it and reads the sample back from the download, against `object_store`'s plain put/get.
//! `--remote s3` starts an embedded S3 server (`s3_test_server`) when no endpoint is set in
//! `REMOTE_STORAGE_S3_*`; that test server is linked only with the cargo feature `embedded-s3`
//! (`cargo run --release -p bench_ingest --features embedded-s3 -- --remote s3`).
//!
//! The binary is `bench_ingest` (`cargo run --release -p bench_ingest -- --help`).
//!
//! # Modules
//!
//! Floors, lowest first (a module uses only its own floor and those below it):
//! 1. [`args`] (the command line), [`error`] ([`error::CaseError`]), [`measure`] (CPU, page cache,
//!    RSS), [`reference`](mod@reference) (the plain `pwrite` + `fsync` loop).
//! 2. [`remote`] (the object-storage round trip) and [`report`] (a result row, as text or JSON).
//! 3. [`read_phase`] (point lookups after the write-out) and [`scan_phase`] (a cold full scan against
//!    the raw `O_DIRECT` limit, and a hot set's hit rate across a scan).
//! 4. [`workload`] (one case: put, freeze, write out, read back).
//! 5. [`metrics_file`] and [`plot`] (the `--metrics` and `--plot` outputs of the rows).
//! 6. [`cli`] (the command: the case matrix and its output) and [`objstore`] (the subcommand
//!    `objstore`: large objects through the `object_store` API against `LocalFileSystem` and a raw
//!    `O_DIRECT` loop).
//!
//! # Example
//!
//! The library entry is [`cli::run`], which takes the parsed command line; this runs one small case
//! (1 MiB of 8 KiB values, buffered mode, `std-fs` engine, no read phase) and prints its row with the
//! reference next to it:
//!
//! ```
//! use bench_ingest::args::Args;
//! use clap::Parser as _;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let dir = tmp.path().to_str().expect("a UTF-8 temp path");
//! let args = Args::parse_from([
//!     "bench_ingest", "--dir", dir, "--volume-mib", "1", "--key-size", "8192",
//!     "--io-mode", "buffered", "--io-engine", "std-fs", "--read-secs", "0",
//! ]);
//! bench_ingest::cli::run(args)?; // errors are messages for a person
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod args;
pub mod cli;
pub mod error;
pub mod measure;
pub mod metrics_file;
pub mod objstore;
pub mod plot;
pub mod read_phase;
pub mod reference;
pub mod remote;
pub mod report;
pub mod scan_phase;
pub mod workload;
