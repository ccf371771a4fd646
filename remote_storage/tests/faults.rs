//! Bad input and faults: refused credentials, a missing bucket, the server killed in the middle of a
//! multipart upload, a corrupted object, a cancelled upload.

mod common;

use common::{Backend, Setup, TestStore};
use remote_storage::{RemoteError, RemoteStorage, StoreConfig};

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
    common::timed(async {
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
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_multipart_upload_then_restarted() {
    common::timed(async {
        let (ctx, store, remote, dir) = Setup::embedded("kill").await.parts();
        let server = store.server.as_ref().unwrap();
        // Three parts of 5 MiB (the last shorter).
        let entries = common::entries_for_mib(12);
        common::write_layer(&ctx, dir.path(), "layer-k", 5, entries).await;
        let tier = common::open_tier(&ctx, dir.path(), &remote, 1 << 30).await;

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
        let report = remote
            .remove_orphans_older_than(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert!(report.deleted.is_empty(), "{report:?}");
        let leftovers: Vec<String> = common::files_in(server.data_dir())
            .into_iter()
            .filter(|f| f.starts_with(".upload"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "unfinished uploads left: {leftovers:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_that_never_completes_leaves_no_index_entry_and_a_cleanup_path() {
    common::timed(async {
        let (ctx, store, remote, dir) = Setup::embedded("cancel").await.parts();
        let server = store.server.as_ref().unwrap();
        common::write_layer(&ctx, dir.path(), "layer-c", 6, common::entries_for_mib(12)).await;
        common::write_layer(&ctx, dir.path(), "layer-ok", 7, 100).await;
        let tier = common::open_tier(&ctx, dir.path(), &remote, 1 << 30).await;
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
        // Younger than the grace period: kept (it may be an upload in flight).
        let report = remote.remove_orphans().await.unwrap();
        assert!(report.deleted.is_empty(), "{report:?}");
        assert_eq!(report.kept_young, vec![orphan.to_string()]);
        let report = remote
            .remove_orphans_older_than(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.deleted, vec![orphan.to_string()]);
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
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_object_fails_the_checksum_and_nothing_is_renamed() {
    common::each_backend(
        Setup::with_files,
        "corrupt",
        async |backend, (ctx, store, remote, dir)| {
            common::write_layer(&ctx, dir.path(), "layer-z", 8, 3000).await;
            let tier = common::open_tier(&ctx, dir.path(), &remote, 1 << 30).await;
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
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_of_the_wrong_size_is_refused_before_writing() {
    common::timed(async {
        let (ctx, store, remote, dir) = Setup::new(Backend::Local, "size").await.parts();
        common::write_layer(&ctx, dir.path(), "layer-s", 4, 500).await;
        let tier = common::open_tier(&ctx, dir.path(), &remote, 1 << 30).await;
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
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_download_gives_its_budget_back() {
    common::timed(async {
        let (ctx, store, remote, dir) = Setup::embedded("cancel-dl").await.parts();
        let server = store.server.as_ref().unwrap();
        common::write_layer(&ctx, dir.path(), "layer-d", 11, 400).await;
        let size = std::fs::metadata(dir.path().join("layer-d")).unwrap().len();
        let tier = common::open_tier(&ctx, dir.path(), &remote, size).await;
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
    .await;
}

/// Files the embedded server keeps for unfinished multipart uploads.
fn unfinished_uploads(store: &TestStore) -> Vec<String> {
    let server = store.server.as_ref().unwrap();
    common::files_in(server.data_dir())
        .into_iter()
        .filter(|f| f.starts_with(".upload"))
        .collect()
}

/// The server dies at the second part and stays down for 5 s, longer than the request retries
/// inside `object_store` (about 1 s with the test settings): the abort of the failed attempt is retried
/// past the outage, so no unfinished upload is left, and the upload completes after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_is_retried_past_an_outage() {
    common::timed(async {
        let (ctx, store, remote, dir) = Setup::embedded("outage").await.parts();
        let server = store.server.as_ref().unwrap();
        let path = common::write_blob(dir.path(), "layer-o", 12 << 20, 3);

        let killed = server.kill_at_upload_part(2);
        let upload = tokio::spawn({
            let (remote, ctx, path) = (remote.clone(), ctx.clone(), path.clone());
            async move { remote.upload_layer(&ctx, &path, "layer-o").await }
        });
        assert!(killed.fired().await);
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        server.restart().await.unwrap();
        let entry = upload
            .await
            .unwrap()
            .expect("the upload completes after the restart");
        assert_eq!(entry.size, 12 << 20);
        let left = unfinished_uploads(&store);
        assert!(left.is_empty(), "unfinished uploads left: {left:?}");
    })
    .await;
}

/// An abort that fails for its whole window is remembered, and `remove_orphans` aborts it later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_could_not_be_aborted_is_aborted_by_remove_orphans() {
    common::timed(async {
        let ctx = common::default_context();
        let store = TestStore::embedded(common::unique_prefix("unaborted")).await;
        let server = store.server.as_ref().unwrap();
        let mut options = store.options();
        options.retry.max_attempts = 1;
        options.retry.abort_window = std::time::Duration::from_millis(500);
        let remote = RemoteStorage::connect(&store.config, options)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = common::write_blob(dir.path(), "layer-u", 12 << 20, 4);

        let killed = server.kill_at_upload_part(2);
        let upload = remote.upload_layer(&ctx, &path, "layer-u");
        let (res, fired) = tokio::join!(upload, killed.fired());
        assert!(fired);
        assert!(res.is_err(), "one attempt, the server is down");
        server.restart().await.unwrap();
        assert!(
            !unfinished_uploads(&store).is_empty(),
            "the abort gave up while the server was down"
        );

        let report = remote.remove_orphans().await.unwrap();
        assert_eq!(
            (report.uploads_aborted, report.uploads_unaborted),
            (1, 0),
            "{report:?}"
        );
        let left = unfinished_uploads(&store);
        assert!(left.is_empty(), "unfinished uploads left: {left:?}");
    })
    .await;
}

/// A bucket deleted after the client connected is reported as a missing bucket by every request (not
/// as a missing index, which would read as an empty prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_deleted_after_connect_is_bucket_not_found() {
    common::timed(async {
        let (ctx, store, remote, dir) = Setup::embedded("gone").await.parts();
        let server = store.server.as_ref().unwrap();
        let path = common::write_blob(dir.path(), "layer-g", 1000, 5);
        std::fs::remove_dir_all(server.data_dir().join(server.bucket())).unwrap();

        let is_bucket = |e: &RemoteError| {
            matches!(e, RemoteError::BucketNotFound { bucket, store, .. }
                if bucket == server.bucket() && store.contains(&server.endpoint()))
        };
        let err = remote.load_index().await.unwrap_err();
        assert!(is_bucket(&err), "{err}");
        let err = remote
            .upload_layer(&ctx, &path, "layer-g")
            .await
            .unwrap_err();
        assert!(is_bucket(&err), "{err}");
        assert!(err.to_string().contains(server.bucket()), "{err}");
        let err = remote.remove_orphans().await.unwrap_err();
        assert!(is_bucket(&err), "{err}");
    })
    .await;
}

/// A secret key that stops working after connect (the server's key was rotated) is reported as
/// refused credentials by later requests, naming the store and the access key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_refused_credentials() {
    common::timed(async {
        let (ctx, store, remote, dir) = Setup::embedded("rotated").await.parts();
        let server = store.server.as_ref().unwrap();
        let path = common::write_blob(dir.path(), "layer-k", 1000, 6);
        server.set_secret_key("a-rotated-secret-key-000000000000");
        server.restart().await.unwrap();

        let is_creds = |e: &RemoteError| {
            matches!(e, RemoteError::Credentials { access_key, store, .. }
                if access_key == s3_test_server::ACCESS_KEY && store.contains(&server.endpoint()))
        };
        let err = remote
            .upload_layer(&ctx, &path, "layer-k")
            .await
            .unwrap_err();
        assert!(is_creds(&err), "{err}");
        let err = remote.load_index().await.unwrap_err();
        assert!(is_creds(&err), "{err}");
        assert!(
            err.to_string().contains("credentials were refused"),
            "{err}"
        );
    })
    .await;
}
