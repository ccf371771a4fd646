//! Bad input and faults: refused credentials, a missing bucket, the server killed in the middle of a
//! multipart upload, a corrupted object, a cancelled upload.

mod common;

use common::{Backend, TestStore, TEST_TIMEOUT};
use remote_storage::{RemoteError, RemoteStorage, StoreConfig, TieredLayers};

/// Connects with a changed config; the local files next to it must survive the failure.
async fn connect_with(
    store: &TestStore,
    change: impl FnOnce(&mut remote_storage::S3Config),
) -> RemoteError {
    let StoreConfig::S3(mut s3) = store.config.clone() else {
        unreachable!("an S3 store")
    };
    change(&mut s3);
    RemoteStorage::connect(&StoreConfig::S3(s3), store.options())
        .await
        .expect_err("the first request must fail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_missing_bucket_are_named_at_the_first_request() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ctx = common::default_context();
        let store = TestStore::new(Backend::S3, "creds").await;
        let dir = tempfile::tempdir().unwrap();
        common::write_layer(&ctx, dir.path(), "layer-a", 1, 100).await;

        let err = connect_with(&store, |s3| s3.secret_access_key.push_str("-wrong")).await;
        assert!(matches!(err, RemoteError::Credentials { .. }), "{err}");
        assert!(err.to_string().contains("credentials"), "{err}");
        let err = connect_with(&store, |s3| s3.access_key_id = "nobody".into()).await;
        assert!(matches!(err, RemoteError::Credentials { .. }), "{err}");
        let err = connect_with(&store, |s3| s3.bucket = "no-such-bucket-here".into()).await;
        assert!(matches!(err, RemoteError::BucketNotFound { ref bucket, .. } if bucket == "no-such-bucket-here"), "{err}");
        assert!(err.to_string().contains("no-such-bucket-here"), "{err}");
        // Nothing local was touched.
        assert_eq!(common::files_in(dir.path()), vec!["layer-a"]);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_multipart_upload_then_restarted() {
    if s3_from_env() {
        eprintln!(
            "skipped: the server given by REMOTE_STORAGE_S3_ENDPOINT cannot be killed by the test"
        );
        return;
    }
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ctx = common::default_context();
        let store = TestStore::embedded(common::unique_prefix("kill")).await;
        let server = store.server.as_ref().unwrap();
        let remote = store.connect().await;
        let dir = tempfile::tempdir().unwrap();
        // Three parts of 5 MiB (the last shorter).
        let entries = common::entries_for_mib(12);
        common::write_layer(&ctx, dir.path(), "layer-k", 5, entries).await;
        let tier = TieredLayers::open(&ctx, dir.path(), remote.clone(), 1 << 30)
            .await
            .unwrap();

        let killed = server.kill_at_upload_part(2);
        let upload = tokio::spawn({
            let tier = tier.clone();
            async move { tier.upload("layer-k").await }
        });
        assert!(
            killed.fired().await,
            "the server was killed at the second part"
        );
        server.restart().await.unwrap();
        let entry = upload
            .await
            .unwrap()
            .expect("the upload is retried and completes");
        // Three parts, the second one lost with the server: at least one was sent again.
        assert!(
            server.upload_parts() >= 4,
            "{} parts",
            server.upload_parts()
        );
        let index = remote.load_index().await.unwrap();
        assert_eq!(index.layers.get("layer-k"), Some(&entry));

        // The completed object is the layer: evict, download, read it all.
        tier.evict("layer-k").await.unwrap();
        let (_h, reader) = tier.open_delta("layer-k").await.unwrap();
        common::verify_layer(&reader, 5, entries).await;
        // No orphan objects: everything under the prefix's layers is indexed; no part files of
        // unfinished multipart uploads are left in the server's data directory.
        assert!(remote.remove_orphans().await.unwrap().is_empty());
        let leftovers: Vec<String> = common::files_in(server.data_dir())
            .into_iter()
            .filter(|f| f.starts_with(".upload"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "unfinished uploads left: {leftovers:?}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_that_never_completes_leaves_no_index_entry_and_a_cleanup_path() {
    if s3_from_env() {
        eprintln!(
            "skipped: the server given by REMOTE_STORAGE_S3_ENDPOINT cannot be killed by the test"
        );
        return;
    }
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ctx = common::default_context();
        let store = TestStore::embedded(common::unique_prefix("cancel")).await;
        let server = store.server.as_ref().unwrap();
        let remote = store.connect().await;
        let dir = tempfile::tempdir().unwrap();
        common::write_layer(&ctx, dir.path(), "layer-c", 6, common::entries_for_mib(12)).await;
        common::write_layer(&ctx, dir.path(), "layer-ok", 7, 100).await;
        let tier = TieredLayers::open(&ctx, dir.path(), remote.clone(), 1 << 30)
            .await
            .unwrap();
        tier.upload("layer-ok").await.unwrap();

        // The server dies at the second part and the upload is cancelled while it is down.
        let killed = server.kill_at_upload_part(2);
        let upload = tokio::spawn({
            let tier = tier.clone();
            async move { tier.upload("layer-c").await }
        });
        assert!(killed.fired().await);
        upload.abort();
        assert!(upload.await.unwrap_err().is_cancelled());
        server.restart().await.unwrap();

        let index = remote.load_index().await.unwrap();
        assert!(
            !index.layers.contains_key("layer-c"),
            "a cancelled upload has no index entry"
        );
        assert!(index.layers.contains_key("layer-ok"));
        assert!(!tier.is_uploaded("layer-c"));
        // An object that completed without its index entry (as if cancelled between the two) is found
        // and removed by the cleanup; indexed layers stay.
        let orphan = remote.layer_key("layer-orphan");
        object_store::ObjectStoreExt::put(&**remote.object_store(), &orphan, vec![1u8; 10].into())
            .await
            .unwrap();
        let removed = remote.remove_orphans().await.unwrap();
        assert_eq!(removed, vec![orphan.to_string()]);
        // The layer file is still local and can be uploaded now.
        assert!(dir.path().join("layer-c").exists());
        tier.upload("layer-c").await.unwrap();
        assert!(remote
            .load_index()
            .await
            .unwrap()
            .layers
            .contains_key("layer-c"));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_object_fails_the_checksum_and_nothing_is_renamed() {
    for backend in [Backend::Local, Backend::S3] {
        tokio::time::timeout(TEST_TIMEOUT, async {
            let ctx = common::default_context();
            let store = match backend {
                Backend::S3 => TestStore::embedded(common::unique_prefix("corrupt")).await,
                Backend::Local => TestStore::new(Backend::Local, "corrupt").await,
            };
            let remote = store.connect().await;
            let dir = tempfile::tempdir().unwrap();
            common::write_layer(&ctx, dir.path(), "layer-z", 8, 3000).await;
            let tier = TieredLayers::open(&ctx, dir.path(), remote.clone(), 1 << 30).await.unwrap();
            let entry = tier.upload("layer-z").await.unwrap();
            tier.evict("layer-z").await.unwrap();

            // Flip one byte in the middle of the stored object, keeping its size.
            let key = remote.layer_key("layer-z");
            let object = store.object_file(key.as_ref()).expect("the object's file");
            let mut bytes = std::fs::read(&object).unwrap();
            assert_eq!(bytes.len() as u64, entry.size);
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x20;
            std::fs::write(&object, &bytes).unwrap();

            let err = tier.get("layer-z").await.unwrap_err();
            assert!(matches!(err, RemoteError::ChecksumMismatch { ref layer, .. } if layer == "layer-z"), "{backend:?}: {err}");
            assert!(err.to_string().contains("layer-z"), "{err}");
            assert!(common::files_in(dir.path()).is_empty(), "no temp file, nothing renamed: {:?}", common::files_in(dir.path()));
            assert!(!tier.is_resident("layer-z"));
            assert_eq!(tier.stats().resident_bytes, 0);
        })
        .await
        .expect("test timed out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_of_the_wrong_size_is_refused_before_writing() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ctx = common::default_context();
        let store = TestStore::new(Backend::Local, "size").await;
        let remote = store.connect().await;
        let dir = tempfile::tempdir().unwrap();
        common::write_layer(&ctx, dir.path(), "layer-s", 4, 500).await;
        let tier = TieredLayers::open(&ctx, dir.path(), remote.clone(), 1 << 30)
            .await
            .unwrap();
        tier.upload("layer-s").await.unwrap();
        tier.evict("layer-s").await.unwrap();
        let key = remote.layer_key("layer-s");
        let object = store.object_file(key.as_ref()).unwrap();
        let mut bytes = std::fs::read(&object).unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        std::fs::write(&object, &bytes).unwrap();
        let err = tier.get("layer-s").await.unwrap_err();
        assert!(matches!(err, RemoteError::SizeMismatch { .. }), "{err}");
        assert!(common::files_in(dir.path()).is_empty());
    })
    .await
    .expect("test timed out");
}

/// True when the tests run against an endpoint from the environment (which they cannot kill or edit).
fn s3_from_env() -> bool {
    std::env::var_os(remote_storage::config::S3_ENDPOINT_ENV).is_some_and(|v| !v.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_download_gives_its_budget_back() {
    if s3_from_env() {
        eprintln!("skipped: the server given by REMOTE_STORAGE_S3_ENDPOINT cannot hold requests");
        return;
    }
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ctx = common::default_context();
        let store = TestStore::embedded(common::unique_prefix("cancel-dl")).await;
        let server = store.server.as_ref().unwrap();
        let remote = store.connect().await;
        let dir = tempfile::tempdir().unwrap();
        common::write_layer(&ctx, dir.path(), "layer-d", 11, 400).await;
        let size = std::fs::metadata(dir.path().join("layer-d")).unwrap().len();
        let tier = TieredLayers::open(&ctx, dir.path(), remote, size)
            .await
            .unwrap();
        tier.upload("layer-d").await.unwrap();
        tier.evict("layer-d").await.unwrap();

        let mut held = server.hold_next_object_get();
        let download = tokio::spawn({
            let tier = tier.clone();
            async move { tier.get("layer-d").await.map(drop) }
        });
        assert!(held.arrived().await);
        assert_eq!(
            tier.stats().resident_bytes,
            size,
            "reserved while downloading"
        );
        download.abort();
        assert!(download.await.unwrap_err().is_cancelled());
        assert_eq!(
            tier.stats().resident_bytes,
            0,
            "the reservation is given back"
        );
        assert!(common::files_in(dir.path()).is_empty());
        held.release();

        let (_h, reader) = tier.open_delta("layer-d").await.unwrap();
        common::verify_layer(&reader, 11, 400).await;
        assert_eq!(tier.stats().downloads, 1);
        assert_eq!(tier.stats().resident_bytes, size);
    })
    .await
    .expect("test timed out");
}
