//! `layer_tool`: writes or verifies a deterministic set of delta layers (see `test_runner::layer_set`),
//! with the IO mode and engine taken from `VIRTUAL_FILE_IO_MODE` / `VIRTUAL_FILE_IO_ENGINE`. The
//! end-to-end tests run it as a child process: under every mode and engine, and killed at random points.
//!
//! Exit codes: 0 success, 1 IO or verification failure, 2 bad arguments or settings.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use test_runner::layer_set::{verify_dir, write_layer};
use virtual_file::IoContext;

#[derive(Parser)]
#[command(name = "layer_tool")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes layers `0..layers` of `seed` into `dir`, printing each finished layer's path.
    Write {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value_t = 4)]
        layers: u64,
        #[arg(long, default_value_t = 200)]
        entries: u64,
    },
    /// Removes leftover temp files and checks every final-named layer in `dir`.
    Verify {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 200)]
        entries: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    // logs and spans to stderr, filtered by RUST_LOG (default: warnings), as bench_ingest does
    bench_ingest::cli::init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("layer_tool: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let ctx = match IoContext::from_env() {
            Ok(ctx) => ctx,
            Err(e) => {
                eprintln!("layer_tool: {e}");
                return ExitCode::from(2);
            }
        };
        match args.command {
            Command::Write { dir, seed, layers, entries } => {
                for layer in 0..layers {
                    match write_layer(&ctx, &dir, seed, layer, entries).await {
                        Ok(path) => {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "wrote {}", path.display());
                            let _ = out.flush();
                        }
                        Err(e) => {
                            eprintln!("layer_tool: layer {layer}: {e}");
                            return ExitCode::from(1);
                        }
                    }
                }
                ExitCode::SUCCESS
            }
            Command::Verify { dir, entries } => match verify_dir(&ctx, &dir, entries).await {
                Ok(r) => {
                    println!(
                        "verified {} layers, {} entries; removed {} temp files; io mode {}, engine {}",
                        r.layers,
                        r.entries,
                        r.temp_files_removed,
                        ctx.io_mode(),
                        ctx.engine_kind()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("layer_tool: {e}");
                    ExitCode::from(1)
                }
            },
        }
    })
}
