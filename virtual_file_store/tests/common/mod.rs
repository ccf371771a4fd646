//! Shared by the integration tests: a store for every mode x engine.

#![allow(dead_code, unused_macros)] // each test file uses a different subset (the template is a macro)

use io_engine::{IoEngine, IoEngineKind};
use rstest_reuse::template;
use virtual_file::{IoContext, IoMode};
use virtual_file_store::VirtualFileStore;

/// A test case for every IO mode x engine: `#[apply(io_matrix)]` on a test that takes `mode: IoMode`
/// and `kind: IoEngineKind`.
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

/// The engine of `kind` (inside a tokio runtime); one that cannot start fails the test.
pub fn engine(kind: IoEngineKind) -> IoEngine {
    IoEngine::launch(kind).unwrap_or_else(|e| panic!("engine {kind} cannot start: {e}"))
}

pub fn context_with(mode: IoMode, engine: IoEngine) -> IoContext {
    IoContext::builder()
        .engine(engine)
        .mode(mode)
        .build()
        .expect("context")
}

/// A store over a new temp directory (kept alive by the returned guard).
pub fn store(mode: IoMode, kind: IoEngineKind) -> (VirtualFileStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = VirtualFileStore::new(context_with(mode, engine(kind)), dir.path()).expect("store");
    (store, dir)
}
