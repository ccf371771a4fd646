//! The fault-injecting engine: faults hit exactly the planned ops, short transfers are short, and
//! everything else passes through.

mod common;

use std::sync::Arc;

use io_engine::{Fault, FaultOp, FaultPlan, FaultRule, FullSlice, IoEngine, IoEngineKind, Slice};
use rstest::rstest;

use common::{create_temp_file, read_cut_window, vec_windows};

fn rule(op: FaultOp, nth: u64, fault: Fault, repeat: bool) -> FaultRule {
    FaultRule {
        op,
        nth,
        fault,
        repeat,
    }
}

#[rstest]
#[tokio::test]
async fn faults_hit_the_planned_ops(
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let plan = FaultPlan::new([
        rule(FaultOp::Write, 2, Fault::Errno(libc::ENOSPC), false),
        rule(FaultOp::Write, 3, Fault::Short, false),
        rule(FaultOp::Read, 2, Fault::Errno(libc::EINTR), false),
        rule(FaultOp::Sync, 1, Fault::Errno(libc::EIO), true),
        rule(FaultOp::Open, 2, Fault::Errno(libc::EMFILE), false),
    ]);
    let e = IoEngine::hooked(IoEngine::launch(kind).unwrap(), plan.clone());
    assert_eq!(e.kind(), kind);
    let (_dir, path, fd) = create_temp_file(&e, "f").await;
    let err = e.open(&path, libc::O_RDONLY, 0).await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE));

    let (_, r1) = e.write_at(&fd, 0, FullSlice::new(vec![1u8; 100])).await;
    assert_eq!(r1.unwrap(), 100);
    let (b, r2) = e.write_at(&fd, 100, FullSlice::new(vec![2u8; 100])).await;
    assert_eq!(r2.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(b.len(), 100, "buffer handed back whole");
    let (b, r3) = e.write_at(&fd, 100, FullSlice::new(vec![3u8; 100])).await;
    assert_eq!(r3.unwrap(), 50, "short write");
    assert_eq!((b.begin(), b.end()), (0, 100), "range restored");
    assert_eq!(std::fs::read(&path).unwrap().len(), 150);

    let (_, r) = e
        .read_at(&fd, 0, Slice::new(Vec::with_capacity(10), ..10))
        .await;
    assert_eq!(r.unwrap(), 10);
    let (_, r) = e
        .read_at(&fd, 0, Slice::new(Vec::with_capacity(10), ..10))
        .await;
    assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::Interrupted);

    for _ in 0..3 {
        assert_eq!(
            e.fsync(&fd).await.unwrap_err().raw_os_error(),
            Some(libc::EIO),
            "repeat"
        );
    }
    assert_eq!(plan.count(FaultOp::Write), 3);
    assert_eq!(plan.injected(), 7);
    plan.clear();
    e.fsync(&fd).await.unwrap();
}

#[tokio::test]
async fn short_reads_fill_a_prefix() {
    let plan = FaultPlan::new([FaultRule {
        op: FaultOp::Read,
        nth: 1,
        fault: Fault::Short,
        repeat: true,
    }]);
    let e = IoEngine::hooked(IoEngine::std_fs(), plan);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"abcdefgh").unwrap();
    let fd = Arc::new(e.open(&path, libc::O_RDONLY, 0).await.unwrap());
    assert_eq!(read_cut_window(&e, &fd, 8).await, b"abcd");
    let (w, r) = e.readv_at(&fd, 0, vec_windows(&[2, 6])).await;
    assert_eq!(r.unwrap(), 2, "only the first buffer");
    assert_eq!(w.len(), 2);
}
