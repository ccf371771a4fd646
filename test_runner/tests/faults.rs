//! A fault-injecting engine under `VirtualFile`, `BufferedWriter` and the layer writers, in every mode x
//! engine: `EINTR` and short transfers are absorbed; `EIO` / `ENOSPC` surface as typed errors that carry
//! the errno; layers finished before the fault still read back right; no descriptor leaks; no panic.

mod common;

use std::sync::Arc;

use common::temp_files;
use io_engine::test_support::open_descriptors_under;
use io_engine::{Fault, FaultOp, FaultPlan, FaultRule, IoEngine, IoEngineKind};
use rstest::rstest;
use test_runner::layer_set::{verify_dir, write_layer};
use virtual_file::{IoContext, IoMode};

/// Enough entries (about 4.5 MiB of values) for several 1 MiB buffer writes per layer.
const ENTRIES: u64 = 3000;

fn faulty_context(mode: IoMode, engine: IoEngineKind) -> (IoContext, Arc<FaultPlan>) {
    let plan = FaultPlan::new([]);
    let inner = IoEngine::launch(engine).expect("engine");
    let ctx = IoContext::builder()
        .engine(IoEngine::hooked(inner, plan.clone()))
        .mode(mode)
        .build()
        .unwrap();
    (ctx, plan)
}

/// True if `err` or one of its sources is an `io::Error` with `errno`.
fn has_errno(err: &(dyn std::error::Error + 'static), errno: i32) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(errno) {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

fn next(plan: &FaultPlan, op: FaultOp, after: u64, fault: Fault, repeat: bool) {
    plan.add(FaultRule {
        op,
        nth: plan.count(op) + after,
        fault,
        repeat,
    });
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_through_the_layer_writers(
    #[values(
        IoMode::Buffered,
        IoMode::Direct,
        IoMode::DirectRw,
        IoMode::BufferedDontcache
    )]
    mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] engine: IoEngineKind,
) {
    let what = format!("{mode}, {engine}");
    let dir = tempfile::tempdir().unwrap();
    let (ctx, plan) = faulty_context(mode, engine);

    // 1. EINTR on every few writes and reads, and short transfers: absorbed
    plan.add(FaultRule {
        op: FaultOp::Write,
        nth: 2,
        fault: Fault::Errno(libc::EINTR),
        repeat: false,
    });
    plan.add(FaultRule {
        op: FaultOp::Write,
        nth: 4,
        fault: Fault::Short,
        repeat: false,
    });
    plan.add(FaultRule {
        op: FaultOp::Sync,
        nth: 1,
        fault: Fault::Errno(libc::EINTR),
        repeat: false,
    });
    write_layer(&ctx, dir.path(), 1, 0, ENTRIES)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    plan.clear();
    next(&plan, FaultOp::Read, 1, Fault::Errno(libc::EINTR), false);
    next(&plan, FaultOp::Read, 3, Fault::Short, false);
    let report = verify_dir(&ctx, dir.path(), ENTRIES)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(report.layers, 1);
    assert!(
        plan.injected() >= 5,
        "{what}: the faults were injected ({})",
        plan.injected()
    );
    plan.clear();

    // 2. EIO and ENOSPC in the middle of a layer's writes, 3. a failed fsync (fails finish()), 4. a
    // failed open: each a typed error that carries the errno
    for (layer, entries, op, after, errno, repeat) in [
        (1, ENTRIES * 2, FaultOp::Write, 3, libc::EIO, true),
        (2, ENTRIES * 2, FaultOp::Write, 3, libc::ENOSPC, true),
        (3, ENTRIES, FaultOp::Sync, 1, libc::EIO, true),
        (4, ENTRIES, FaultOp::Open, 1, libc::EMFILE, false),
    ] {
        next(&plan, op, after, Fault::Errno(errno), repeat);
        let Err(err) = write_layer(&ctx, dir.path(), 1, layer, entries).await else {
            panic!("{what}: layer {layer} must fail with errno {errno} ({op:?})");
        };
        assert!(
            has_errno(&err, errno),
            "{what}: {err:?} does not carry errno {errno} ({op:?})"
        );
        plan.clear();
    }
    // the layer finished before the faults still reads back right, and nothing of the failed ones is
    // visible under a final name
    let report = verify_dir(&ctx, dir.path(), ENTRIES)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        report.layers, 1,
        "{what}: only the layer finished before the faults"
    );
    assert!(temp_files(dir.path()).is_empty());
    // a read fault surfaces typed too
    next(&plan, FaultOp::Read, 1, Fault::Errno(libc::EIO), true);
    let err = verify_dir(&ctx, dir.path(), ENTRIES)
        .await
        .expect_err("read must fail");
    assert!(has_errno(&err, libc::EIO), "{what}: {err:?}");
    plan.clear();

    drop(ctx);
    assert_eq!(
        open_descriptors_under(dir.path()).unwrap(),
        0,
        "{what}: descriptors leaked"
    );
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_through_the_buffered_writer(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] engine: IoEngineKind,
) {
    use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
    use virtual_file::VirtualFile;
    let dir = tempfile::tempdir().unwrap();
    let (ctx, plan) = faulty_context(mode, engine);
    let file = VirtualFile::create(&ctx, dir.path().join("f"))
        .await
        .unwrap();
    let mut w = BufferedWriter::<_>::new(
        file,
        BufferedWriterOptions::default().with_capacity(64 * 1024),
    )
    .unwrap();
    let data = vec![7u8; 64 * 1024];
    for _ in 0..4 {
        w.write_buffered(&data).await.unwrap();
    }
    w.flush().await.unwrap();
    next(&plan, FaultOp::Write, 1, Fault::Errno(libc::ENOSPC), true);
    let mut first_err = None;
    for _ in 0..8 {
        if let Err(e) = w.write_buffered(&data).await {
            first_err = Some(e);
            break;
        }
    }
    let err = match first_err {
        Some(e) => e,
        None => w.flush().await.expect_err("the ENOSPC must surface"),
    };
    assert!(has_errno(&err, libc::ENOSPC), "{err:?}");
    assert_eq!(
        err.durable_len(),
        Some(4 * 64 * 1024),
        "what was acknowledged stays acknowledged"
    );
    let again = w.write_buffered(b"x").await.expect_err("poisoned");
    assert_eq!(again.durable_len(), Some(4 * 64 * 1024));
    assert!(w.shutdown(ShutdownMode::PadThenTruncate).await.is_err());
    plan.clear();
    let on_disk = std::fs::read(dir.path().join("f")).unwrap();
    assert!(on_disk.len() >= 4 * 64 * 1024);
    assert!(
        on_disk[..4 * 64 * 1024].iter().all(|&b| b == 7),
        "acknowledged bytes intact"
    );
    drop(ctx);
    assert_eq!(open_descriptors_under(dir.path()).unwrap(), 0);
}
