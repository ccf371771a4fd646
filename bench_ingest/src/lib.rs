//! The ingest harness, the project's main job: puts values into an in-memory layer, freezes it, writes it
//! out as a delta layer, and reports MiB/s for every IO mode x IO engine against a plain `pwrite` + `fsync`
//! of the same bytes measured in the same run.
//!
//! With `--remote local|s3` each case also uploads its delta layer to object storage, evicts it,
//! downloads it and reads the sample back from the download, against `object_store`'s plain put/get.
//!
//! The binary is `bench_ingest` (`cargo run --release -p bench_ingest -- --help`).

#![warn(missing_docs)]

pub mod args;
pub mod cli;
pub mod measure;
pub mod metrics_file;
pub mod plot;
pub mod read_phase;
pub mod reference;
pub mod remote;
pub mod report;
pub mod workload;
