use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

static OPENS: AtomicUsize = AtomicUsize::new(0);

/// `LocalFileSystem` standing in for a context-based store: counts the fresh instances.
fn open_counted(ctx: IoContext, dir: &Path) -> Result<Arc<dyn ObjectStore>, ObjstoreError> {
    assert_eq!(ctx.engine_kind(), io_engine::IoEngineKind::StdFs);
    OPENS.fetch_add(1, Ordering::Relaxed);
    let fs =
        object_store::local::LocalFileSystem::new_with_prefix(dir).expect("the case's directory");
    Ok(Arc::new(fs))
}

fn small_spec() -> ObjSpec {
    ObjSpec {
        objects: 2,
        object_bytes: 2 << 20,
        part_bytes: 1 << 20,
        parts_in_flight: 2,
        range_reads: 10,
        range_bytes: 64 << 10,
        seed: 5,
    }
}

#[test]
fn context_cases_open_a_fresh_store_for_every_phase() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases = context_cases(
        "ctx_store",
        &[IoEngine::std_fs()],
        &[IoMode::Buffered, IoMode::DirectRw],
        64 << 20,
        open_counted,
    );
    let labels: Vec<String> = cases.iter().map(StoreCase::label).collect();
    assert_eq!(
        labels,
        ["ctx_store-buffered-std-fs", "ctx_store-direct-rw-std-fs"]
    );
    let tmp = tempfile::tempdir().unwrap();
    let spec = small_spec();
    let payloads = Payloads::new(&spec);
    let dir = tmp.path().join(cases[1].label());
    let rows = run_case(&rt, &cases[1], &dir, &spec, &payloads).unwrap();
    let phases: Vec<&str> = rows.iter().map(|r| r.phase.as_str()).collect();
    assert_eq!(phases, ["put", "get", "get_range"]);
    assert_eq!(rows[0].io_mode, "direct-rw");
    assert_eq!(
        OPENS.load(Ordering::Relaxed),
        4,
        "put, get, get_range, delete"
    );
    assert!(!dir.exists(), "the case removes its directory");
}

#[test]
fn device_and_local_fs_move_the_same_bytes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = small_spec();
    spec.range_reads = 0;
    let payloads = Payloads::new(&spec);
    for case in [StoreCase::local_fs(), StoreCase::device_limit()] {
        let rows = run_case(&rt, &case, &tmp.path().join(case.label()), &spec, &payloads).unwrap();
        let got: Vec<(&str, u64)> = rows.iter().map(|r| (r.phase.as_str(), r.bytes)).collect();
        assert_eq!(
            got,
            [("put", 4 << 20), ("get", 4 << 20)],
            "{}",
            case.label()
        );
    }
}
