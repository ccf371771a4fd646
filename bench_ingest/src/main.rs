//! `bench_ingest`: see the crate docs and `--help`.

fn main() -> std::process::ExitCode {
    bench_ingest::cli::main()
}
