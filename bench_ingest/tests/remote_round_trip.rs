//! `--remote`: each case's delta layer goes through object storage and back (upload, evict, download,
//! the sample read from the download). `s3` runs only in a build with the `embedded-s3` feature
//! (`cargo test -p bench_ingest --features embedded-s3`, as CI does), or against the endpoint in
//! `REMOTE_STORAGE_S3_*` if that is set.

use bench_ingest::args::Args;
use clap::Parser as _;

/// One small case (1 MiB of 8 KiB values, buffered, `std-fs`, no read phase) with `--remote <store>`.
fn run_with_remote(store: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().expect("a UTF-8 temp path");
    let args = Args::parse_from([
        "bench_ingest",
        "--dir",
        dir,
        "--volume-mib",
        "1",
        "--key-size",
        "8192",
        "--io-mode",
        "buffered",
        "--io-engine",
        "std-fs",
        "--read-secs",
        "0",
        "--remote",
        store,
    ]);
    if let Err(message) = bench_ingest::cli::run(args) {
        panic!("--remote {store}: {message}");
    }
}

#[test]
fn a_case_round_trips_through_the_local_store() {
    run_with_remote("local");
}

#[cfg(feature = "embedded-s3")]
#[test]
fn a_case_round_trips_through_the_embedded_s3_server() {
    run_with_remote("s3");
}
