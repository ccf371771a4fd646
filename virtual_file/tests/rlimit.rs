//! With `RLIMIT_NOFILE` below the number of files, everything still works through the open-file cache.
//! Its own test binary, because the limit is process-wide.

mod common;

use common::{context, every_engine, pattern};
use io_engine::{FullSlice, IoEngineKind, Slice};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::{IoContext, IoMode, VirtualFile};

/// The limit is process-wide: the cases of this binary run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[apply(every_engine)]
#[tokio::test]
async fn works_with_nofile_below_file_count(kind: IoEngineKind) {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let base = context(IoMode::Buffered, kind);
    let ctx = IoContext::builder()
        .engine(base.engine().clone())
        .mode(IoMode::Buffered)
        .open_files(16)
        .build()
        .unwrap();
    // the process already has some descriptors open (stdio, the test harness, the ring): leave room
    // for those plus the 16 slots, far below the 300 files
    let already = io_engine::test_support::open_descriptor_count().unwrap() as u64;
    // restored by Drop, also if an assertion below fails
    let _limit = io_engine::test_support::NofileLimit::set(already + 16 + 8).unwrap();

    let mut files = Vec::new();
    for i in 0..300u64 {
        let f = VirtualFile::create(&ctx, dir.path().join(format!("f{i}")))
            .await
            .unwrap();
        let (_, res) = f.write_all_at(FullSlice::new(pattern(100, i)), 0).await;
        res.unwrap();
        files.push(f);
    }
    for (i, f) in files.iter().enumerate() {
        let (s, res) = f
            .read_exact_at(Slice::new(Vec::with_capacity(100), ..100), 0)
            .await;
        res.unwrap();
        assert_eq!(s.into_inner(), pattern(100, i as u64));
    }
}
