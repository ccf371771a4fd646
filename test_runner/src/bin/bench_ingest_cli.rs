//! The `bench_ingest` command, built inside this package so the end-to-end tests can run it as a child
//! process (Cargo gives tests the paths of their own package's binaries only). Same code as
//! `bench_ingest`'s own binary: both are `bench_ingest::cli::main`.

fn main() -> std::process::ExitCode {
    bench_ingest::cli::main()
}
