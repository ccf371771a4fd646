//! Shared by the end-to-end tests: running the project's binaries as child processes under a given IO
//! mode and engine, and contexts for in-process checks.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use io_engine::{IoEngine, IoEngineKind};
use virtual_file::{IoContext, IoMode, IO_MODE_ENV};

pub const MODES: [IoMode; 4] = [
    IoMode::Buffered,
    IoMode::Direct,
    IoMode::DirectRw,
    IoMode::BufferedDontcache,
];
pub const ENGINES: [IoEngineKind; 2] = [IoEngineKind::StdFs, IoEngineKind::TokioEpollUring];

/// A command for one of this package's binaries with the IO mode and engine set in its environment (and
/// no other setting inherited from the test's own environment).
pub fn binary(name: &str, mode: Option<&str>, engine: Option<&str>) -> Command {
    let path = match name {
        "layer_tool" => env!("CARGO_BIN_EXE_layer_tool"),
        "bench_ingest" => env!("CARGO_BIN_EXE_bench_ingest_cli"),
        other => panic!("no binary {other}"),
    };
    let mut cmd = Command::new(path);
    cmd.env_remove(IO_MODE_ENV)
        .env_remove(io_engine::IO_ENGINE_ENV);
    if let Some(m) = mode {
        cmd.env(IO_MODE_ENV, m);
    }
    if let Some(e) = engine {
        cmd.env(io_engine::IO_ENGINE_ENV, e);
    }
    cmd
}

/// Runs `layer_tool` with `args` under `mode` x `engine` and returns its output.
pub fn layer_tool(mode: IoMode, engine: IoEngineKind, args: &[&str]) -> Output {
    binary(
        "layer_tool",
        Some(&mode.to_string()),
        Some(&engine.to_string()),
    )
    .args(args)
    .output()
    .expect("spawn layer_tool")
}

/// Panics with the child's output if it failed, naming what was run.
pub fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A context for in-process checks.
pub fn context(mode: IoMode, engine: IoEngineKind) -> IoContext {
    IoContext::builder()
        .engine(IoEngine::launch(engine).expect("engine"))
        .mode(mode)
        .build()
        .expect("context")
}

/// Files in `dir` whose name ends with the temp suffix.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(layer_writers::TEMP_SUFFIX))
        .collect()
}

/// The seed in the environment variable `var` (to replay a failure), else `default`.
pub fn seed_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
