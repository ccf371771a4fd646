//! Shared by the integration tests: contexts for every mode x engine, and descriptor inspection via /proc.

#![allow(dead_code, unused_macros)] // each test file uses a different subset (the template is a macro)

use std::path::Path;

use io_engine::{IoEngine, IoEngineKind};
use rand::{Rng, SeedableRng};
use rstest_reuse::template;
use virtual_file::{IoContext, IoMode};

/// A test case for every IO mode x engine: `#[apply(io_matrix)]` on a test that takes `mode: IoMode`
/// and `kind: IoEngineKind` (more `#[values]` may follow them).
#[template]
#[rstest]
pub fn io_matrix(
    #[values(
        IoMode::Buffered,
        IoMode::Direct,
        IoMode::DirectRw,
        IoMode::BufferedDontcache
    )]
    mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
}

/// A test case for each kind of write descriptor x engine: buffered and direct-rw (`direct` mode writes
/// through buffered descriptors, as buffered mode does). `#[apply(write_matrix)]` on a test that takes
/// `mode: IoMode` and `kind: IoEngineKind`.
#[template]
#[rstest]
pub fn write_matrix(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
}

/// A test case for each engine: `#[apply(every_engine)]` on a test that takes `kind: IoEngineKind`.
#[template]
#[rstest]
pub fn every_engine(
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
}

/// The engine of `kind`; must be called inside a tokio runtime (the ring engine starts its completion
/// task there). An engine that cannot start here fails the test: both engines must work on this machine.
pub fn engine(kind: IoEngineKind) -> IoEngine {
    IoEngine::launch(kind).unwrap_or_else(|e| panic!("engine {kind} cannot start: {e}"))
}

pub fn context(mode: IoMode, kind: IoEngineKind) -> IoContext {
    IoContext::builder()
        .engine(engine(kind))
        .mode(mode)
        .build()
        .expect("context")
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

/// Descriptors of this process that point into `dir`, with their `open(2)` flags from
/// `/proc/self/fdinfo`.
pub fn fds_under(dir: &Path) -> Vec<(i32, std::path::PathBuf, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.starts_with(dir) {
            continue;
        }
        let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        out.push((fd, target, flags));
    }
    out
}
