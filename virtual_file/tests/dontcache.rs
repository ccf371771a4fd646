//! `buffered-dontcache` mode: every read and write passes `RWF_DONTCACHE` (the bytes are right and the
//! kernel's page cache does not keep them), and where the kernel or file system refuses the flag the
//! file falls back to plain buffered IO: the caller never sees the `EOPNOTSUPP`, the context counts the
//! fallback and warns once, and the pages written as plain buffered IO are dropped after a sync.
//!
//! The refusal is met twice: for real on tmpfs (`/dev/shm`, which refuses the flag on this kernel; the
//! test skips, printing why, where it does not) and injected with the fault-injecting engine on the
//! temp directory's file system.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use io_engine::{
    Fault, FaultOp, FaultPlan, FaultRule, FullSlice, IoBufferMut, IoEngine, IoEngineKind, Slice,
};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::{IoContext, IoMode, VirtualFile};

mod common;
use common::{every_engine, pattern};

const LEN: usize = 1 << 20;

/// Pages of `path`'s first `len` bytes in the kernel's page cache now.
fn resident_pages(path: &Path, len: usize) -> usize {
    use std::os::fd::AsFd as _;
    let file = std::fs::File::open(path).unwrap();
    io_engine::test_support::resident_pages(file.as_fd(), len).expect("mmap + mincore")
}

/// The warnings logged while the returned guard lives, on this thread (the tests run their IO on a
/// current-thread runtime).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let out = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ctx_with(engine: IoEngine) -> IoContext {
    IoContext::builder()
        .engine(engine)
        .mode(IoMode::BufferedDontcache)
        .build()
        .unwrap()
}

async fn write_and_check(file: &VirtualFile, data: &[u8]) {
    let buf = IoBufferMut::<io_engine::DefaultAlign>::from_slice(data);
    let (_, res) = file.write_all_at(FullSlice::new(buf), 0).await;
    res.expect("write");
    let (back, res) = file
        .read_exact_at(Slice::new(vec![0u8; data.len()], ..), 0)
        .await;
    res.expect("read");
    assert!(back.into_inner() == data, "read back other bytes");
}

#[apply(every_engine)]
fn dontcache_files_leave_no_pages(kind: IoEngineKind) {
    runtime().block_on(async {
        let ctx = common::context(IoMode::BufferedDontcache, kind);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = VirtualFile::create(&ctx, &path).await.unwrap();
        assert!(file.is_dontcache() && !file.is_direct());
        let data = pattern(LEN, 1);
        write_and_check(&file, &data).await;
        file.sync_all().await.unwrap();
        let resident = resident_pages(&path, LEN);
        assert!(
            resident <= LEN / 4096 / 20,
            "{kind}: {resident} pages cached"
        );
        // the descriptor is buffered: no O_DIRECT in its open flags
        let fds = common::fds_under(dir.path());
        assert!(!fds.is_empty());
        for (_, _, flags) in fds {
            assert_eq!(
                flags & libc::O_DIRECT as u32,
                0,
                "O_DIRECT in buffered-dontcache"
            );
        }
        assert_eq!(ctx.metrics().dontcache_fallbacks, 0);
        assert!(!file.dontcache_fell_back());
    });
}

/// tmpfs refuses `RWF_DONTCACHE`: the data is right anyway, each file counts one fallback, the warning
/// is logged once per context, and later IO (also after the open-file cache evicted and reopened the
/// descriptor) is plain buffered IO that works.
#[apply(every_engine)]
fn tmpfs_refusal_falls_back(kind: IoEngineKind) {
    let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    {
        // does this kernel refuse the flag on tmpfs?
        let mut probe = std::fs::File::create(dir.path().join("probe")).unwrap();
        probe.write_all(b"x").unwrap();
        let iov = [libc::iovec {
            iov_base: b"y".as_ptr().cast_mut().cast(),
            iov_len: 1,
        }];
        // SAFETY: the iovec points at a static byte, alive for the call; the kernel only reads it.
        let n = unsafe {
            libc::pwritev2(
                probe.as_raw_fd(),
                iov.as_ptr(),
                1,
                0,
                io_engine::RWF_DONTCACHE,
            )
        };
        if n >= 0 {
            eprintln!("skipped: this kernel accepts RWF_DONTCACHE on tmpfs");
            return;
        }
    }
    let captured = Captured::default();
    let _guard = captured.install();
    runtime().block_on(async {
        let ctx = IoContext::builder()
            .engine(common::engine(kind))
            .mode(IoMode::BufferedDontcache)
            .open_files(1)
            .build()
            .unwrap();
        let a = VirtualFile::create(&ctx, dir.path().join("a"))
            .await
            .unwrap();
        let data = pattern(LEN, 2);
        write_and_check(&a, &data).await;
        assert!(a.dontcache_fell_back());
        assert_eq!(ctx.metrics().dontcache_fallbacks, 1);
        let b = VirtualFile::create(&ctx, dir.path().join("b"))
            .await
            .unwrap();
        write_and_check(&b, &data).await;
        assert_eq!(ctx.metrics().dontcache_fallbacks, 2, "one per file");
        // `b` took the only cache slot: `a` reopens, plain buffered from the start
        write_and_check(&a, &pattern(LEN, 3)).await;
        assert_eq!(ctx.metrics().dontcache_fallbacks, 2);
        assert!(ctx.metrics().cache_evictions >= 1);
        a.sync_data().await.unwrap();
        assert_eq!(ctx.metrics().dontcache_pages_dropped, 1);
        let m = ctx.metrics();
        assert_eq!(m.ops[virtual_file::OpKind::Write].errors, 0);
        assert_eq!(m.ops[virtual_file::OpKind::Read].errors, 0);
    });
    assert_eq!(
        captured.count("RWF_DONTCACHE refused"),
        1,
        "one warning per context"
    );
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        text.contains(dir.path().join("a").to_str().unwrap()),
        "{text}"
    );
    assert!(
        text.contains(&format!("errno={}", libc::EOPNOTSUPP)),
        "{text}"
    );
}

/// The refusal injected (the first write or read fails with `errno`): the IO is retried without the
/// flag and succeeds, the fallback is counted, and after a sync the pages written as plain buffered IO
/// are gone from the page cache. An `EINVAL` that is not about the flag (a plain retry fails too) is
/// returned, and the file stays dontcache.
#[rstest]
fn injected_refusal_falls_back(
    #[values(libc::EOPNOTSUPP, libc::EINVAL)] errno: i32,
    #[values(FaultOp::Write, FaultOp::Read)] op: FaultOp,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    runtime().block_on(async {
        let plan = FaultPlan::new([FaultRule {
            op,
            nth: 1,
            fault: Fault::Errno(errno),
            repeat: false,
        }]);
        let ctx = ctx_with(IoEngine::hooked(IoEngine::std_fs(), plan.clone()));
        let file = VirtualFile::create(&ctx, &path).await.unwrap();
        let data = pattern(LEN, 4);
        write_and_check(&file, &data).await;
        assert_eq!(plan.injected(), 1);
        assert!(file.dontcache_fell_back());
        assert_eq!(ctx.metrics().dontcache_fallbacks, 1);
        // what was written plain (all of it, for a refused write) is dropped after the sync
        file.sync_all().await.unwrap();
        let dropped = ctx.metrics().dontcache_pages_dropped;
        assert_eq!(dropped, u64::from(op == FaultOp::Write));
        let resident = resident_pages(&path, LEN);
        assert!(
            resident <= LEN / 4096 / 20,
            "{resident} pages cached after the sync"
        );
        write_and_check(&file, &pattern(LEN, 5)).await;
        assert_eq!(
            ctx.metrics().dontcache_fallbacks,
            1,
            "counted once per file"
        );
    });
}

#[test]
fn einval_not_about_the_flag_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let plan = FaultPlan::new([FaultRule {
            op: FaultOp::Write,
            nth: 1,
            fault: Fault::Errno(libc::EINVAL),
            repeat: true,
        }]);
        let ctx = ctx_with(IoEngine::hooked(IoEngine::std_fs(), plan.clone()));
        let file = VirtualFile::create(&ctx, dir.path().join("f"))
            .await
            .unwrap();
        let (_, res) = file.write_all_at(FullSlice::new(vec![1u8; 4096]), 0).await;
        let err = res.unwrap_err().to_string();
        assert!(
            err.contains("Invalid argument") || err.contains("os error 22"),
            "{err}"
        );
        assert_eq!(plan.injected(), 2, "tried with the flag, then without");
        assert!(!file.dontcache_fell_back());
        assert_eq!(ctx.metrics().dontcache_fallbacks, 0);
        // other errors are returned as they are, with no retry
        plan.clear();
        plan.add(FaultRule {
            op: FaultOp::Write,
            nth: plan.count(FaultOp::Write) + 1,
            fault: Fault::Errno(libc::EIO),
            repeat: false,
        });
        let (_, res) = file.write_all_at(FullSlice::new(vec![1u8; 4096]), 0).await;
        assert!(res.is_err());
        assert_eq!(plan.injected(), 3);
        assert_eq!(ctx.metrics().dontcache_fallbacks, 0);
    });
}
