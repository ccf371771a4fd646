//! File identity and temp files in every IO mode x engine: a reopen by path after eviction reads the same
//! file or fails typed (`FileReplaced`), never another file; temp files get unique names, are created
//! exclusively, removed on drop, and persisted without replacing an existing file unless asked.

mod common;

use common::{io_matrix, write_matrix};
use rstest_reuse::apply;

use std::path::Path;
use std::time::Duration;

use common::{engine, pattern};
use io_engine::{DefaultAlign, FullSlice, IoBufferMut, IoEngineKind, RenameMode, Slice};
use rstest::rstest;
use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions};
use virtual_file::{Error, IoContext, IoMode, VirtualFile};

const TIMEOUT: Duration = Duration::from_secs(60);

fn one_slot_context(mode: IoMode, kind: IoEngineKind) -> IoContext {
    IoContext::builder()
        .engine(engine(kind))
        .mode(mode)
        .open_files(1)
        .build()
        .unwrap()
}

async fn read_4k(file: &VirtualFile) -> Result<Vec<u8>, Error> {
    let buf = IoBufferMut::<DefaultAlign>::with_capacity(4096);
    let (s, res) = file.read_exact_at(Slice::new(buf, ..), 0).await;
    res.map(|()| s.into_inner().to_vec())
}

async fn write_4k(file: &VirtualFile, seed: u64) {
    let buf = IoBufferMut::<DefaultAlign>::from_slice(&pattern(4096, seed));
    let (_, res) = file.write_all_at(FullSlice::new(buf), 0).await;
    res.unwrap();
}

#[apply(io_matrix)]
#[tokio::test]
async fn reopen_after_eviction_checks_identity(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(TIMEOUT, async {
        let ctx = one_slot_context(mode, kind);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(4096, 1)).unwrap();
        let reader = VirtualFile::open(&ctx, &path).await.unwrap();
        let other = VirtualFile::create(&ctx, dir.path().join("other"))
            .await
            .unwrap(); // evicts `reader`
                       // happy path: evicted, reopened, the same file
        assert_eq!(read_4k(&reader).await.unwrap(), pattern(4096, 1));
        other.metadata().await.unwrap(); // evicts `reader` again
        assert_eq!(read_4k(&reader).await.unwrap(), pattern(4096, 1));
        let id = reader.id();
        assert_ne!(id, other.id());

        // another file renamed over the path while `reader`'s descriptor is evicted
        other.metadata().await.unwrap();
        let replacement = dir.path().join("replacement");
        std::fs::write(&replacement, pattern(4096, 2)).unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        let err = read_4k(&reader).await.unwrap_err();
        match &err {
            Error::FileReplaced {
                path: p,
                expected,
                found,
                ..
            } => {
                assert_eq!(p, &path);
                assert_eq!(*expected, id);
                assert_ne!(found, expected);
            }
            other => panic!("{mode}/{kind}: expected FileReplaced, got {other:?}"),
        }
        assert!(err.to_string().contains("replaced"), "{err}");
        // still refused on every later IO, also for writes through a writable handle
        assert!(matches!(
            reader.metadata().await,
            Err(Error::FileReplaced { .. })
        ));
        assert_eq!(
            ctx.open_files(),
            0,
            "the wrong file's descriptor was closed unused"
        );

        // a writer whose file is replaced: its write is refused, the replacement keeps its bytes
        let wpath = dir.path().join("w");
        let writer = VirtualFile::create(&ctx, &wpath).await.unwrap();
        other.metadata().await.unwrap(); // evicts `writer`
        std::fs::write(&replacement, pattern(4096, 3)).unwrap();
        std::fs::rename(&replacement, &wpath).unwrap();
        let buf = IoBufferMut::<DefaultAlign>::from_slice(&pattern(4096, 4));
        let (_, res) = writer.write_all_at(FullSlice::new(buf), 0).await;
        assert!(matches!(res, Err(Error::FileReplaced { .. })), "{res:?}");
        assert_eq!(std::fs::read(&wpath).unwrap(), pattern(4096, 3));

        // a rename of the file itself keeps its identity
        let mut moved = VirtualFile::create(&ctx, dir.path().join("m"))
            .await
            .unwrap();
        write_4k(&moved, 5).await;
        moved
            .rename(dir.path().join("m2"), RenameMode::NoReplace)
            .await
            .unwrap();
        other.metadata().await.unwrap(); // evicts `moved`
        assert_eq!(read_4k(&moved).await.unwrap(), pattern(4096, 5));
    })
    .await
    .expect("test timed out");
}

#[apply(write_matrix)]
#[tokio::test]
async fn open_again_read_only_checks_identity(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(TIMEOUT, async {
        let ctx = common::context(mode, kind);
        let dir = tempfile::tempdir().unwrap();
        let file = VirtualFile::create_temp(&ctx, dir.path(), "x.", ".tmp")
            .await
            .unwrap();
        write_4k(&file, 6).await;
        let again = file.open_again_read_only().await.unwrap();
        assert_eq!(again.id(), file.id());
        assert_eq!(read_4k(&again).await.unwrap(), pattern(4096, 6));
        std::fs::write(dir.path().join("y"), b"y").unwrap();
        std::fs::rename(dir.path().join("y"), file.path()).unwrap();
        assert!(matches!(
            file.open_again_read_only().await,
            Err(Error::FileReplaced { .. })
        ));
    })
    .await
    .expect("test timed out");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[apply(io_matrix)]
#[tokio::test]
async fn temp_files_are_unique_exclusive_and_persist_without_replacing(
    mode: IoMode,
    kind: IoEngineKind,
) {
    tokio::time::timeout(TIMEOUT, async {
        let ctx = common::context(mode, kind);
        let dir = tempfile::tempdir().unwrap();
        let mut a = VirtualFile::create_temp(&ctx, dir.path(), "layer.", ".___temp")
            .await
            .unwrap();
        let mut b = VirtualFile::create_temp(&ctx, dir.path(), "layer.", ".___temp")
            .await
            .unwrap();
        assert_ne!(a.path(), b.path());
        assert!(a.is_temp() && b.is_temp());
        for f in [&a, &b] {
            let name = f.path().file_name().unwrap().to_str().unwrap();
            let hex = name
                .strip_prefix("layer.")
                .and_then(|n| n.strip_suffix(".___temp"))
                .unwrap();
            assert!(
                hex.len() == 16 && hex.bytes().all(|c| c.is_ascii_hexdigit()),
                "{name}"
            );
        }
        write_4k(&a, 7).await;
        write_4k(&b, 8).await;
        let fin = dir.path().join("layer");
        a.persist(&fin, RenameMode::NoReplace).await.unwrap();
        assert!(!a.is_temp());
        let err = b.persist(&fin, RenameMode::NoReplace).await.unwrap_err();
        assert!(
            matches!(&err, Error::AlreadyExists { to, .. } if to == &fin),
            "{err:?}"
        );
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(
            b.is_temp() && b.path().exists(),
            "a refused persist changes nothing"
        );
        assert_eq!(std::fs::read(&fin).unwrap(), pattern(4096, 7));
        let b_temp = b.path().to_owned();
        b.persist(&fin, RenameMode::Replace).await.unwrap();
        assert!(!b_temp.exists());
        assert_eq!(std::fs::read(&fin).unwrap(), pattern(4096, 8));
        drop(a);
        drop(b);
        assert_eq!(
            names(dir.path()),
            ["layer"],
            "persisted files are kept on drop"
        );

        // dropped temp files are removed; kept ones stay; `remove` removes
        let t = VirtualFile::create_temp(&ctx, dir.path(), "t.", ".tmp")
            .await
            .unwrap();
        let mut k = VirtualFile::create_temp(&ctx, dir.path(), "k.", ".tmp")
            .await
            .unwrap();
        let r = VirtualFile::create_temp(&ctx, dir.path(), "r.", ".tmp")
            .await
            .unwrap();
        k.keep();
        let kept = k.path().to_owned();
        let removed = r.path().to_owned();
        drop(t);
        drop(k);
        r.remove().await.unwrap();
        assert!(!removed.exists());
        assert_eq!(
            names(dir.path()),
            [kept.file_name().unwrap().to_str().unwrap(), "layer"]
        );

        // a temp file whose path was taken by another file leaves that file alone when dropped
        let t = VirtualFile::create_temp(&ctx, dir.path(), "t.", ".tmp")
            .await
            .unwrap();
        std::fs::write(dir.path().join("z"), b"not yours").unwrap();
        std::fs::rename(dir.path().join("z"), t.path()).unwrap();
        let tpath = t.path().to_owned();
        drop(t);
        assert_eq!(std::fs::read(&tpath).unwrap(), b"not yours");
    })
    .await
    .expect("test timed out");
}

#[apply(write_matrix)]
#[tokio::test]
async fn a_dropped_writer_s_temp_file_is_removed_by_its_flush_task(
    mode: IoMode,
    kind: IoEngineKind,
) {
    tokio::time::timeout(TIMEOUT, async {
        // one slot: the writer's descriptor is evicted by the reader, so its writes reopen by path
        let ctx = one_slot_context(mode, kind);
        let dir = tempfile::tempdir().unwrap();
        let file = VirtualFile::create_temp(&ctx, dir.path(), "w.", ".tmp")
            .await
            .unwrap();
        let path = file.path().to_owned();
        let opts = BufferedWriterOptions::default().with_capacity(4096);
        let mut w = BufferedWriter::<VirtualFile>::new(file, opts).unwrap();
        let other = VirtualFile::create(&ctx, dir.path().join("other"))
            .await
            .unwrap();
        for i in 0..8 {
            w.write_buffered(&pattern(3000, i)).await.unwrap();
            other.metadata().await.unwrap();
        }
        drop(w);
        // the flush task ends after the write under way and drops (removes) the file itself
        while path.exists() {
            tokio::task::yield_now().await;
        }
        assert_eq!(names(dir.path()), ["other"]);
    })
    .await
    .expect("the abandoned flush task did not remove its temp file");
}

/// An exclusive create whose open fails after the file was made (here the `statx` that records its
/// identity) removes the file again: a failed create leaves nothing behind, and a plain open that
/// fails the same way removes nothing.
#[apply(write_matrix)]
#[tokio::test]
async fn a_create_that_fails_after_the_open_leaves_no_file(mode: IoMode, kind: IoEngineKind) {
    use io_engine::{Fault, FaultOp, FaultPlan, FaultRule, IoEngine};
    tokio::time::timeout(TIMEOUT, async {
        let plan = FaultPlan::new([]);
        let ctx = IoContext::builder()
            .engine(IoEngine::hooked(engine(kind), plan.clone()))
            .mode(mode)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        plan.add(FaultRule {
            op: FaultOp::Stat,
            nth: plan.count(FaultOp::Stat) + 1,
            fault: Fault::Errno(libc::EIO),
            repeat: true,
        });
        let err = VirtualFile::create_temp(&ctx, dir.path(), "layer.", ".___temp")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EIO)),
            "{err:?}"
        );
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

        // an existing file opened without create_new is not ours to remove
        let existing = dir.path().join("existing");
        std::fs::write(&existing, b"keep").unwrap();
        let opts = virtual_file::OpenOptions::new().read(true);
        assert!(VirtualFile::open_with_options(&ctx, &existing, opts)
            .await
            .is_err());
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
        assert!(plan.injected() >= 2);
    })
    .await
    .expect("timed out");
}

/// A file deleted while a handle of it is alive (its descriptor evicted) and a new file at the same path
/// that gets the same inode number: the old handle's reopen is refused (the birth time differs), the
/// new file's handles never see the old file's cached pages, and dropping the old handle while the new
/// file is opened does not wedge the process-wide registry of files.
#[apply(write_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_inode_is_another_file(mode: IoMode, kind: IoEngineKind) {
    use std::os::unix::fs::MetadataExt;
    tokio::time::timeout(TIMEOUT, async {
        let ctx = one_slot_context(mode, kind);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let other = VirtualFile::create(&ctx, dir.path().join("other"))
            .await
            .unwrap();
        // ext4 hands a just-freed inode number to the next file created in the directory; try a few
        // times, since nothing guarantees it
        let mut reused = None;
        for attempt in 0..50u64 {
            std::fs::write(&path, pattern(8192, attempt)).unwrap();
            let old = VirtualFile::open(&ctx, &path).await.unwrap();
            let mut page = vec![0u8; 8192];
            old.read_cached_at(0, &mut page).await.unwrap();
            assert_eq!(page, pattern(8192, attempt));
            other.metadata().await.unwrap(); // evicts `old`'s descriptor
            let ino = std::fs::metadata(&path).unwrap().ino();
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, pattern(8192, 1000 + attempt)).unwrap();
            if std::fs::metadata(&path).unwrap().ino() == ino {
                reused = Some((old, attempt));
                break;
            }
            drop(old);
            std::fs::remove_file(&path).unwrap();
        }
        let (old, attempt) = reused.expect("no inode number was reused in 50 attempts");
        let birth_reported = std::fs::metadata(&path).unwrap().created().is_ok();
        assert!(
            birth_reported,
            "this test needs a file system with birth times"
        );

        // the new file through a new handle: its own bytes, not the old file's cached page
        let new = VirtualFile::open(&ctx, &path).await.unwrap();
        let mut page = vec![0u8; 8192];
        new.read_cached_at(0, &mut page).await.unwrap();
        assert_eq!(page, pattern(8192, 1000 + attempt), "the old file's page");
        // the old handle: its reopen finds the new file and refuses it
        assert!(
            matches!(read_4k(&old).await, Err(Error::FileReplaced { .. })),
            "the old handle used the new file"
        );
        // dropping the old handle's last reference while the new file is opened again, from two tasks
        let opener = tokio::spawn({
            let (ctx, path) = (ctx.clone(), path.clone());
            async move {
                for _ in 0..100 {
                    VirtualFile::open(&ctx, &path).await.unwrap();
                }
            }
        });
        drop(old);
        opener.await.unwrap();
        VirtualFile::open(&ctx, &path).await.unwrap();
    })
    .await
    .expect("test timed out (a wedged registry?)");
}
