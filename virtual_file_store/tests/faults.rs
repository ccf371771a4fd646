//! Failure paths through the fault-injecting engine (`FaultPlan`) and a hook that fails renames: a part
//! that fails fails its upload with a typed error (`StoreError::Part` with the errno underneath), no
//! partial object is ever visible under its name, an old version survives a failed replace, short
//! transfers are completed, dropped futures fail the upload, and no temp file (`#vfs.`) is left behind.

mod common;

use std::error::Error as _;
use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::io_matrix;
use io_engine::{
    EngineHook, EngineOp, Fault, FaultOp, FaultPlan, FaultRule, IoEngine, IoEngineKind, Proceed,
};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::IoMode;
use virtual_file_store::{StoreError, VirtualFileStore, INTERNAL_MARK};

/// A store over `plan` around the engine of `kind`.
fn faulty_store(
    mode: IoMode,
    kind: IoEngineKind,
) -> (VirtualFileStore, Arc<FaultPlan>, tempfile::TempDir) {
    let plan = FaultPlan::new([]);
    let engine = IoEngine::hooked(common::engine(kind), plan.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = VirtualFileStore::new(common::context_with(mode, engine), dir.path()).unwrap();
    (store, plan, dir)
}

/// Fails (or shortens) the next op of class `op`, and with `repeat` every one after it.
fn fail_next(plan: &FaultPlan, op: FaultOp, fault: Fault, repeat: bool) {
    plan.add(FaultRule {
        op,
        nth: plan.count(op) + 1,
        fault,
        repeat,
    });
}

/// Every file under `dir` whose name carries the store's internal mark.
fn leftovers(dir: &FsPath) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else if path.to_string_lossy().contains(INTERNAL_MARK) {
                out.push(path);
            }
        }
    }
    out
}

/// Waits (up to 10 s) until no temp file is left: part tasks of a dropped upload end on their own.
async fn no_leftovers(dir: &FsPath) {
    for _ in 0..1000 {
        if leftovers(dir).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("temp files left behind: {:?}", leftovers(dir));
}

/// The store's own error inside an `object_store` error.
fn store_error(e: &object_store::Error) -> &StoreError {
    let mut next: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(err) = next {
        if let Some(s) = err.downcast_ref::<StoreError>() {
            return s;
        }
        next = err.source();
    }
    panic!("no StoreError under {e:?}");
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

async fn assert_not_found(store: &VirtualFileStore, path: &Path) {
    match store.head(path).await {
        Err(object_store::Error::NotFound { .. }) => {}
        other => panic!("{path} must not exist: {other:?}"),
    }
}

async fn read(store: &VirtualFileStore, path: &Path) -> Bytes {
    store.get(path).await.unwrap().bytes().await.unwrap()
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_write_fails_the_upload(mode: IoMode, kind: IoEngineKind) {
    let (store, plan, dir) = faulty_store(mode, kind);
    let path = Path::from("a/object");
    let first = (1 << 20) + 100; // unaligned: the second part's head shares a sector with it
    let mut upload = store.put_multipart(&path).await.unwrap();
    upload.put_part(pattern(first, 1).into()).await.unwrap();

    fail_next(&plan, FaultOp::Write, Fault::Errno(libc::EIO), false);
    let err = upload
        .put_part(pattern(1 << 20, 2).into())
        .await
        .expect_err("the part's write failed");
    match store_error(&err) {
        StoreError::Part { offset, len, .. } => {
            assert_eq!((*offset, *len), (first as u64, 1 << 20), "{err}");
        }
        other => panic!("not a part error: {other:?}"),
    }
    assert_eq!(store_error(&err).raw_os_error(), Some(libc::EIO), "{err}");
    assert!(plan.injected() >= 1);

    // the upload is failed: later parts and complete refuse, nothing is published or left behind
    let later = upload.put_part(pattern(100, 3).into()).await;
    assert!(
        matches!(
            store_error(&later.unwrap_err()),
            StoreError::UploadFailed { .. }
        ),
        "a part after a failed one is refused"
    );
    let err = upload
        .complete()
        .await
        .expect_err("a failed upload cannot complete");
    assert!(
        matches!(store_error(&err), StoreError::UploadFailed { .. }),
        "{err}"
    );
    assert_not_found(&store, &path).await;
    no_leftovers(dir.path()).await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_a_put_and_leaves_nothing(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let (store, plan, dir) = faulty_store(mode, kind);
    let path = Path::from("full");
    fail_next(&plan, FaultOp::Write, Fault::Errno(libc::ENOSPC), true);
    let err = store
        .put(&path, pattern(3 << 20, 4).into())
        .await
        .expect_err("no space");
    assert_eq!(
        store_error(&err).raw_os_error(),
        Some(libc::ENOSPC),
        "{err}"
    );
    assert!(
        err.to_string().contains("full"),
        "the error names the object: {err}"
    );
    assert_not_found(&store, &path).await;
    no_leftovers(dir.path()).await;

    // space again: the same put succeeds
    plan.clear();
    store.put(&path, pattern(3 << 20, 4).into()).await.unwrap();
    assert_eq!(read(&store, &path).await, pattern(3 << 20, 4));
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_temp_file_open_fails_the_put(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let (store, plan, dir) = faulty_store(mode, kind);
    let path = Path::from("d/object");
    fail_next(&plan, FaultOp::Open, Fault::Errno(libc::EIO), true);
    let err = store.put(&path, pattern(1000, 5).into()).await.unwrap_err();
    assert_eq!(store_error(&err).raw_os_error(), Some(libc::EIO), "{err}");
    let err = store.put_multipart(&path).await.unwrap_err();
    assert_eq!(store_error(&err).raw_os_error(), Some(libc::EIO), "{err}");
    plan.clear();
    assert_not_found(&store, &path).await;
    no_leftovers(dir.path()).await;
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_keeps_the_old_version(mode: IoMode, kind: IoEngineKind) {
    let (store, plan, dir) = faulty_store(mode, kind);
    let path = Path::from("kept");
    let old = pattern(70_000, 6);
    store.put(&path, old.clone().into()).await.unwrap();

    fail_next(&plan, FaultOp::Sync, Fault::Errno(libc::EIO), false);
    let err = store
        .put(&path, pattern(90_000, 7).into())
        .await
        .unwrap_err();
    assert_eq!(store_error(&err).raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(
        read(&store, &path).await,
        old,
        "the old version is still there"
    );

    fail_next(&plan, FaultOp::Sync, Fault::Errno(libc::EIO), false);
    let mut upload = store.put_multipart(&path).await.unwrap();
    upload.put_part(pattern(5 << 20, 8).into()).await.unwrap();
    upload.put_part(pattern(333, 9).into()).await.unwrap();
    let err = upload.complete().await.unwrap_err();
    assert_eq!(store_error(&err).raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(read(&store, &path).await, old);
    no_leftovers(dir.path()).await;
}

/// While `fail_renames` is set every `rename` fails with `EIO`; while `slow_writes` is set every write
/// waits 20 ms first. Everything else passes through.
#[derive(Debug, Default)]
struct Switches {
    fail_renames: AtomicBool,
    slow_writes: AtomicBool,
}

impl EngineHook for Switches {
    type Ticket = ();

    fn before(&self, op: &EngineOp<'_>) -> std::io::Result<Proceed<()>> {
        match op {
            EngineOp::Rename { .. } if self.fail_renames.load(Ordering::SeqCst) => {
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            }
            EngineOp::WriteAt { .. } | EngineOp::WritevAt { .. }
                if self.slow_writes.load(Ordering::SeqCst) =>
            {
                Ok(Proceed::new(()).after_delay(Duration::from_millis(20)))
            }
            _ => Ok(Proceed::new(())),
        }
    }
}

/// A store over [`Switches`] around the engine of `kind`.
fn switched_store(
    mode: IoMode,
    kind: IoEngineKind,
) -> (VirtualFileStore, Arc<Switches>, tempfile::TempDir) {
    let hook = Arc::new(Switches::default());
    let engine = IoEngine::hooked(common::engine(kind), hook.clone());
    let dir = tempfile::tempdir().unwrap();
    let store = VirtualFileStore::new(common::context_with(mode, engine), dir.path()).unwrap();
    (store, hook, dir)
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rename_keeps_the_old_version(mode: IoMode, kind: IoEngineKind) {
    let (store, hook, dir) = switched_store(mode, kind);
    let (a, b) = (Path::from("x/a"), Path::from("x/b"));
    store.put(&a, pattern(10_000, 10).into()).await.unwrap();
    store.put(&b, pattern(20_000, 11).into()).await.unwrap();

    hook.fail_renames.store(true, Ordering::SeqCst);
    let err = store.put(&a, pattern(30_000, 12).into()).await.unwrap_err();
    assert_eq!(store_error(&err).raw_os_error(), Some(libc::EIO), "{err}");
    let mut upload = store.put_multipart(&a).await.unwrap();
    upload.put_part(pattern(1 << 20, 13).into()).await.unwrap();
    assert!(upload.complete().await.is_err());
    // copy over an existing object stages a link and renames it: the failure keeps the target
    assert!(store.copy(&a, &b).await.is_err());
    assert!(store.rename(&a, &b).await.is_err());
    hook.fail_renames.store(false, Ordering::SeqCst);

    assert_eq!(read(&store, &a).await, pattern(10_000, 10));
    assert_eq!(read(&store, &b).await, pattern(20_000, 11));
    no_leftovers(dir.path()).await;
    let listed: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_transfers_are_completed(mode: IoMode, kind: IoEngineKind) {
    let (store, plan, _dir) = faulty_store(mode, kind);
    fail_next(&plan, FaultOp::Write, Fault::Short, true);
    fail_next(&plan, FaultOp::Read, Fault::Short, true);
    let path = Path::from("short");
    let sizes = [(1 << 20) + 7, 3 << 20, 4095, 1];
    let mut upload = store.put_multipart(&path).await.unwrap();
    let mut expect = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let part = pattern(n, i as u8);
        expect.extend_from_slice(&part);
        upload.put_part(part.into()).await.unwrap();
    }
    upload.complete().await.unwrap();
    assert!(plan.injected() > 0, "short transfers were injected");
    assert_eq!(read(&store, &path).await, Bytes::from(expect.clone()));
    let range = store.get_range(&path, 1000..70_000).await.unwrap();
    assert_eq!(&range[..], &expect[1000..70_000]);

    store.put(&path, pattern(100_001, 9).into()).await.unwrap();
    assert_eq!(read(&store, &path).await, pattern(100_001, 9));
}

/// Polls `fut` once, then drops it.
fn poll_once_and_drop<F: Future>(fut: F) -> bool {
    let mut fut = pin!(fut);
    let waker = futures::task::noop_waker();
    let done = matches!(
        fut.as_mut().poll(&mut Context::from_waker(&waker)),
        Poll::Ready(_)
    );
    done
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_part_future_fails_the_upload(mode: IoMode, kind: IoEngineKind) {
    let (store, hook, dir) = switched_store(mode, kind);
    let path = Path::from("dropped");
    let mut upload = store.put_multipart(&path).await.unwrap();
    upload.put_part(pattern(1 << 20, 1).into()).await.unwrap();
    // the caller gives up on this part: it cannot know whether it landed, so nothing may be published
    hook.slow_writes.store(true, Ordering::SeqCst);
    let finished = poll_once_and_drop(upload.put_part(pattern(4 << 20, 2).into()));
    assert!(
        !finished,
        "a part whose writes wait 20 ms does not finish in its first poll"
    );
    hook.slow_writes.store(false, Ordering::SeqCst);
    upload
        .put_part(pattern(1000, 3).into())
        .await
        .unwrap_or_else(|e| {
            // refused if the drop was seen first; either way the upload is failed
            assert!(
                matches!(store_error(&e), StoreError::UploadFailed { .. }),
                "{e}"
            );
        });
    let err = upload.complete().await.unwrap_err();
    assert!(
        matches!(store_error(&err), StoreError::UploadFailed { .. }),
        "{err}"
    );
    assert_not_found(&store, &path).await;
    no_leftovers(dir.path()).await;
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_complete_publishes_all_or_nothing(mode: IoMode, kind: IoEngineKind) {
    let (store, _plan, dir) = faulty_store(mode, kind);
    let data: Bytes = pattern((2 << 20) + 300, 5);
    for polls in 0..8 {
        let path = Path::from(format!("c/{polls}"));
        let mut upload = store.put_multipart(&path).await.unwrap();
        upload.put_part(data.slice(..1 << 20).into()).await.unwrap();
        upload.put_part(data.slice(1 << 20..).into()).await.unwrap();
        {
            let mut complete = pin!(upload.complete());
            let waker = futures::task::noop_waker();
            for _ in 0..polls {
                if complete
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_ready()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        drop(upload);
        no_leftovers(dir.path()).await;
        match store.get(&path).await {
            Ok(r) => assert_eq!(
                r.bytes().await.unwrap(),
                data,
                "{polls} polls: whole or absent"
            ),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => panic!("{polls} polls: {e}"),
        }
    }
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_multipart_store_part_fails_its_upload(mode: IoMode, kind: IoEngineKind) {
    let (store, plan, dir) = faulty_store(mode, kind);
    let path = Path::from("m/object");
    let id = store.create_multipart(&path).await.unwrap();
    // part 2 before part 1: it goes to a side file of its own
    let p0 = store
        .put_part(&path, &id, 0, PutPayload::from(pattern(1 << 20, 0)))
        .await
        .unwrap();
    let p2 = store
        .put_part(&path, &id, 2, PutPayload::from(pattern(5000, 2)))
        .await
        .unwrap();
    fail_next(&plan, FaultOp::Write, Fault::Errno(libc::EIO), false);
    let err = store
        .put_part(&path, &id, 1, PutPayload::from(pattern(1 << 20, 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(store_error(&err), StoreError::Part { .. }),
        "{err}"
    );
    assert_eq!(store_error(&err).raw_os_error(), Some(libc::EIO));
    let parts = vec![
        p0,
        object_store::multipart::PartId {
            content_id: format!("1:{}", 1 << 20),
        },
        p2,
    ];
    let err = store
        .complete_multipart(&path, &id, parts.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(store_error(&err), StoreError::UploadFailed { .. }),
        "{err}"
    );
    // refused, not consumed: a retry is refused the same way, and abort removes the files
    assert!(store.complete_multipart(&path, &id, parts).await.is_err());
    assert_not_found(&store, &path).await;
    assert!(!leftovers(dir.path()).is_empty(), "kept for abort");
    store.abort_multipart(&path, &id).await.unwrap();
    no_leftovers(dir.path()).await;
    let err = store.abort_multipart(&path, &id).await.unwrap_err();
    assert!(
        matches!(store_error(&err), StoreError::UnknownUpload { .. }),
        "{err}"
    );

    // an abort while a side file exists removes it too
    let id = store.create_multipart(&path).await.unwrap();
    store
        .put_part(&path, &id, 3, PutPayload::from(pattern(9000, 3)))
        .await
        .unwrap();
    assert!(!leftovers(dir.path()).is_empty());
    store.abort_multipart(&path, &id).await.unwrap();
    no_leftovers(dir.path()).await;
    assert_not_found(&store, &path).await;
}
