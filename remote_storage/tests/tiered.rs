//! Upload, eviction and on-demand download through `TieredLayers`, over every IO mode x engine and both
//! backends, against a real S3 server.

mod common;

use std::sync::Arc;

use common::{Backend, Setup, TestStore};
use io_engine::IoEngineKind;
use remote_storage::{RemoteError, TieredLayers};
use rstest::rstest;
use virtual_file::IoMode;

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_evict_download_read(
    #[values(IoMode::Buffered, IoMode::Direct, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
    #[values(Backend::Local, Backend::S3)] backend: Backend,
) {
    let Some(ctx) = common::context(mode, kind) else {
        return;
    };
    common::timed(async {
        let store = TestStore::new(backend, "matrix").await;
        let remote = store.connect().await;
        let dir = tempfile::tempdir().unwrap();
        // Above the 5 MiB multipart threshold: two parts.
        let entries = common::entries_for_mib(7);
        common::write_layer(&ctx, dir.path(), "layer-big", 1, entries).await;
        common::write_layer(&ctx, dir.path(), "layer-small", 2, 200).await;
        let tier = common::open_tier(&ctx, dir.path(), &remote, 64 << 20).await;
        assert!(tier.is_resident("layer-big") && !tier.is_uploaded("layer-big"));

        let big = tier.upload("layer-big").await.unwrap();
        let small = tier.upload("layer-small").await.unwrap();
        let size = std::fs::metadata(dir.path().join("layer-big"))
            .unwrap()
            .len();
        assert_eq!(big.size, size);
        let index = remote.load_index().await.unwrap();
        assert_eq!(index.layers["layer-big"], big);
        assert_eq!(index.layers["layer-small"], small);

        tier.evict("layer-big").await.unwrap();
        tier.evict("layer-small").await.unwrap();
        assert!(!dir.path().join("layer-big").exists());
        assert_eq!(tier.stats().resident_bytes, 0);

        let (handle, reader) = tier.open_delta("layer-big").await.unwrap();
        common::verify_layer(&reader, 1, entries).await;
        let (_h2, reader2) = tier.open_delta("layer-small").await.unwrap();
        common::verify_layer(&reader2, 2, 200).await;
        assert_eq!(tier.stats().downloads, 2);
        // In use: cannot be evicted.
        assert!(matches!(
            tier.evict("layer-big").await,
            Err(RemoteError::InUse { .. })
        ));
        drop((handle, reader));
        // Resident again: a second open does not download.
        let (_h3, _r3) = tier.open_delta("layer-big").await.unwrap();
        assert_eq!(tier.stats().downloads, 2);
        // Only final layer files in the directory: no temporary downloads left.
        assert_eq!(
            common::files_in(dir.path()),
            vec!["layer-big", "layer-small"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_recently_used_uploaded_layer_is_evicted() {
    common::timed(async {
        let ctx = common::default_context();
        let store = TestStore::new(Backend::S3, "lru").await;
        let dir = tempfile::tempdir().unwrap();
        // Three layers of about 300 KiB; a budget for two and a half.
        let mut size = 0;
        for (i, name) in ["layer-a", "layer-b", "layer-c"].iter().enumerate() {
            let path = common::write_layer(&ctx, dir.path(), name, i as u64, 150).await;
            size = size.max(std::fs::metadata(path).unwrap().len());
        }
        let budget = size * 5 / 2;
        let remote = store.connect().await;
        let tier = common::open_tier(&ctx, dir.path(), &remote, budget).await;
        // Over budget, but nothing is uploaded: nothing may be evicted.
        assert_eq!(tier.stats().resident_layers, 3);
        assert!(matches!(
            tier.evict("layer-a").await,
            Err(RemoteError::NotUploaded { .. })
        ));

        // Use b, then a: c is the least recently used. Upload all; the first upload that makes room
        // evicts the least recently used uploaded layer.
        drop(tier.get("layer-b").await.unwrap());
        drop(tier.get("layer-a").await.unwrap());
        tier.upload("layer-c").await.unwrap();
        assert!(
            !tier.is_resident("layer-c"),
            "c: uploaded and least recently used"
        );
        assert_eq!(tier.stats().resident_layers, 2);
        tier.upload("layer-b").await.unwrap();
        tier.upload("layer-a").await.unwrap();
        assert_eq!(tier.stats().resident_layers, 2);
        assert!(tier.stats().resident_bytes <= budget);

        // Opening c needs room: b (used before a) goes; a held open is never evicted.
        let a = tier.get("layer-a").await.unwrap();
        let c = tier.get("layer-c").await.unwrap();
        assert!(!tier.is_resident("layer-b"));
        assert!(tier.is_resident("layer-a"));
        // b cannot come back while a and c are held open.
        let err = tier.get("layer-b").await.unwrap_err();
        assert!(matches!(err, RemoteError::BudgetExhausted { .. }), "{err}");
        drop((a, c));
        let b = tier.get("layer-b").await.unwrap();
        let reader = b.open_delta().await.unwrap();
        common::verify_layer(&reader, 1, 150).await;
        assert!(tier.stats().resident_bytes <= budget);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_download_once() {
    common::timed(async {
        let (ctx, _store, remote, dir) = Setup::new(Backend::S3, "once").await.parts();
        common::write_layer(&ctx, dir.path(), "layer-x", 9, 2000).await;
        let tier = common::open_tier(&ctx, dir.path(), &remote, 64 << 20).await;
        tier.upload("layer-x").await.unwrap();
        tier.evict("layer-x").await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (tier, barrier) = (tier.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let (handle, reader) = tier.open_delta("layer-x").await.unwrap();
                common::verify_layer(&reader, 9, 2000).await;
                drop(handle);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(tier.stats().downloads, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_too_small_for_one_layer_is_an_error() {
    common::timed(async {
        let (ctx, _store, remote, dir) = Setup::new(Backend::Local, "budget").await.parts();
        let path = common::write_layer(&ctx, dir.path(), "layer-a", 3, 300).await;
        let size = std::fs::metadata(&path).unwrap().len();
        // Upload it through a tier with room, then open a tier whose budget is below one layer.
        let tier = common::open_tier(&ctx, dir.path(), &remote, size).await;
        tier.upload("layer-a").await.unwrap();
        tier.evict("layer-a").await.unwrap();
        drop(tier);
        let small = common::open_tier(&ctx, dir.path(), &remote, size - 1).await;
        let err = small.get("layer-a").await.unwrap_err();
        assert!(
            matches!(err, RemoteError::BudgetTooSmall { size: s, .. } if s == size),
            "{err}"
        );
        assert!(err.to_string().contains("layer-a"), "{err}");
        assert!(common::files_in(dir.path()).is_empty());
        // A new local layer that alone exceeds the budget: the same error, the file left alone.
        common::write_layer(&ctx, dir.path(), "layer-b", 3, 300).await;
        let err = small.insert_local("layer-b").await.unwrap_err();
        assert!(matches!(err, RemoteError::BudgetTooSmall { .. }), "{err}");
        assert!(dir.path().join("layer-b").exists());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_the_tier_removes_leftover_downloads_and_keeps_state() {
    common::timed(async {
        let (ctx, _store, remote, dir) = Setup::new(Backend::Local, "reopen").await.parts();
        common::write_layer(&ctx, dir.path(), "layer-up", 1, 100).await;
        common::write_layer(&ctx, dir.path(), "layer-local", 2, 100).await;
        let tier = common::open_tier(&ctx, dir.path(), &remote, 64 << 20).await;
        tier.upload("layer-up").await.unwrap();
        tier.evict("layer-up").await.unwrap();
        drop(tier);
        // What a crash in the middle of a download leaves.
        std::fs::write(
            dir.path().join(".layer-up.download-00000000deadbeef"),
            b"partial",
        )
        .unwrap();

        let tier = common::open_tier(&ctx, dir.path(), &remote, 64 << 20).await;
        assert_eq!(common::files_in(dir.path()), vec!["layer-local"]);
        assert!(tier.is_uploaded("layer-up") && !tier.is_resident("layer-up"));
        assert!(tier.is_resident("layer-local") && !tier.is_uploaded("layer-local"));
        let (_h, reader) = tier.open_delta("layer-up").await.unwrap();
        common::verify_layer(&reader, 1, 100).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_index_is_refused() {
    common::timed(async {
        let store = TestStore::new(Backend::S3, "tamper").await;
        let remote = store.connect().await;
        let evil = br#"{"format":1,"generation":1,"layers":{"../../etc/passwd":{"size":1,"crc32c":1,"generation":1}}}"#;
        object_store::ObjectStoreExt::put(
            &**remote.object_store(),
            &remote.index_key(),
            evil.to_vec().into(),
        )
        .await
        .unwrap();
        let err = remote.load_index().await.unwrap_err();
        assert!(matches!(err, RemoteError::BadIndex { .. }), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let ctx = common::default_context();
        assert!(TieredLayers::open(&ctx, dir.path(), remote, 1 << 20).await.is_err());
        assert!(common::files_in(dir.path()).is_empty());
    })
    .await;
}
