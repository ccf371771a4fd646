//! Two promises checked from outside: in `direct-rw` the store's data files really are `O_DIRECT`
//! (their `open(2)` flags in `/proc/self/fdinfo`), and in buffered mode they are not; and the bytes a
//! store holds in flight never exceed the memory budget, with writers waiting when it is full.

mod common;

use std::path::Path as FsPath;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use io_engine::IoEngineKind;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use rstest::rstest;
use virtual_file::{Consumer, IoContext, IoMode};
use virtual_file_store::{VirtualFileStore, TRANSFER_CHUNK};

/// `open(2)` flags of this process's descriptors whose target lies under `dir`.
fn flags_under(dir: &FsPath) -> Vec<(std::path::PathBuf, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.starts_with(dir) {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        out.push((target, flags));
    }
    out
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_o_direct_in_direct_rw(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let (store, _dir) = common::store(mode, kind);
    let root = store.root().to_owned();
    let path = Path::from("d/object");
    let mut upload = store.put_multipart(&path).await.unwrap();
    // more than one read, so that the body streams after `get` returns
    upload
        .put_part(vec![1u8; TRANSFER_CHUNK + 4096].into())
        .await
        .unwrap();
    // the upload's temp file is open now
    let open = flags_under(&root);
    let temp: Vec<_> = open
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("#vfs."))
        .collect();
    assert_eq!(temp.len(), 1, "one temp file open: {open:?}");
    let direct = temp[0].1 & libc::O_DIRECT as u32 != 0;
    assert_eq!(
        direct,
        mode == IoMode::DirectRw,
        "temp file flags {:o}",
        temp[0].1
    );
    upload.complete().await.unwrap();

    // and a read holds the object open the same way while its body streams
    let result = store.get(&path).await.unwrap();
    let open = flags_under(&root);
    let object = root.join("d/object");
    let reader: Vec<_> = open.iter().filter(|(p, _)| *p == object).collect();
    assert!(
        !reader.is_empty(),
        "object open while its body streams: {open:?}"
    );
    for (_, flags) in reader {
        assert_eq!(flags & libc::O_DIRECT as u32 != 0, mode == IoMode::DirectRw);
    }
    assert_eq!(result.bytes().await.unwrap().len(), TRANSFER_CHUNK + 4096);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_flight_stay_within_the_budget(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let budget = 3 * TRANSFER_CHUNK;
    let ctx = IoContext::builder()
        .engine(common::engine(kind))
        .mode(mode)
        .memory_budget_bytes(budget)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = VirtualFileStore::new(ctx.clone(), dir.path()).unwrap();
    let part = Bytes::from(vec![5u8; TRANSFER_CHUNK + 12345]);
    let path = Path::from("b/big");
    let mut upload = store.put_multipart(&path).await.unwrap();
    // 12 parts of more than one chunk each, all in flight: 12 x 8 MiB would need 4 times the budget
    let mut in_flight: FuturesUnordered<_> = (0..12)
        .map(|_| upload.put_part(part.clone().into()))
        .collect();
    while let Some(r) = in_flight.next().await {
        r.unwrap();
    }
    upload.complete().await.unwrap();
    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), 12 * part.len());
    assert!(got.iter().all(|&b| b == 5));
    drop(got);

    let m = ctx.memory_metrics();
    assert!(
        m.total_peak <= budget as u64,
        "peak {} over budget {budget}",
        m.total_peak
    );
    assert!(
        m.peak[Consumer::StoreTransfers] > 0,
        "transfers were paid from the budget"
    );
}

/// Backpressure, deterministically: with the whole budget held elsewhere a put cannot start its writes;
/// it waits, and finishes once the memory is free.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_budget_makes_writers_wait(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let budget = 2 * TRANSFER_CHUNK;
    let ctx = IoContext::builder()
        .engine(common::engine(kind))
        .mode(mode)
        .memory_budget_bytes(budget)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = VirtualFileStore::new(ctx.clone(), dir.path()).unwrap();
    let held = ctx
        .memory_budget()
        .try_reserve(Consumer::ReadBuffers, budget)
        .expect("the whole budget is free");
    let path = Path::from("w/obj");
    let put = {
        let (store, path) = (store.clone(), path.clone());
        tokio::spawn(async move { store.put(&path, vec![3u8; 1 << 20].into()).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !put.is_finished(),
        "a put finished while the budget was fully held"
    );
    assert!(store.head(&path).await.is_err());
    drop(held);
    put.await.unwrap().unwrap();
    assert_eq!(store.head(&path).await.unwrap().size, 1 << 20);
    assert!(ctx.memory_metrics().waits > 0);
}
