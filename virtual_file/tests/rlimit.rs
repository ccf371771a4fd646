//! With `RLIMIT_NOFILE` below the number of files, everything still works through the open-file cache.
//! Its own test binary, because the limit is process-wide.

mod common;

use common::{context, pattern};
use io_engine::{FullSlice, IoEngineKind, Slice};
use rstest::rstest;
use virtual_file::{IoContext, IoMode, VirtualFile};

/// The limit is process-wide: the cases of this binary run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[rstest]
#[tokio::test]
async fn works_with_nofile_below_file_count(
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
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
    let already = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = already + 16 + 8;
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: old.rlim_max,
    };
    // SAFETY: valid in-pointer; lowering the soft limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) }, 0);

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
    // SAFETY: valid in-pointer; restores the previous limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
}
