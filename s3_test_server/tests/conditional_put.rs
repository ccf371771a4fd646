//! The server applies conditional `PutObject` (`If-None-Match: *`, `If-Match: <etag>`) as S3 does:
//! refused with 412 when the condition fails, and atomically, so that concurrent compare-and-swap
//! updates of one object lose none of each other's increments.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use s3_test_server::S3TestServer;

fn client(server: &S3TestServer) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_bucket_name(server.bucket())
        .with_region(s3_test_server::REGION)
        .with_access_key_id(s3_test_server::ACCESS_KEY)
        .with_secret_access_key(s3_test_server::SECRET_KEY)
        .with_allow_http(true)
        .build()
        .expect("client")
}

/// A server with bucket `bucket` over a fresh data directory, and a client of it.
async fn started() -> (tempfile::TempDir, S3TestServer, AmazonS3) {
    let data = tempfile::tempdir().unwrap();
    let server = S3TestServer::start(data.path(), "bucket").await.unwrap();
    let s3 = client(&server);
    (data, server, s3)
}

fn put_mode(mode: PutMode) -> PutOptions {
    PutOptions {
        mode,
        ..PutOptions::default()
    }
}

/// Puts at `key` with `mode`, which the server must refuse: a create of an existing object is
/// `AlreadyExists`, an update whose ETag does not match is `Precondition`. `what` names the put.
async fn assert_refused(s3: &AmazonS3, key: &Path, mode: PutMode, what: &str) {
    let create = matches!(mode, PutMode::Create);
    let err = s3
        .put_opts(key, b"refused".to_vec().into(), put_mode(mode))
        .await
        .expect_err(what);
    let as_expected = match err {
        object_store::Error::AlreadyExists { .. } => create,
        object_store::Error::Precondition { .. } => !create,
        _ => false,
    };
    assert!(as_expected, "{what}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_preconditions_are_refused() {
    let (_data, _server, s3) = started().await;
    let key = Path::from("cas/object");

    let first = s3
        .put_opts(&key, b"one".to_vec().into(), put_mode(PutMode::Create))
        .await
        .expect("create of a missing object");
    assert_refused(&s3, &key, PutMode::Create, "create of an existing object").await;

    // An update only while the object is still its first version.
    let if_first = PutMode::Update(UpdateVersion {
        e_tag: first.e_tag.clone(),
        version: None,
    });
    s3.put_opts(&key, b"three".to_vec().into(), put_mode(if_first.clone()))
        .await
        .expect("update with the current ETag");
    assert_refused(&s3, &key, if_first, "update with a stale ETag").await;
    let missing = PutMode::Update(UpdateVersion {
        e_tag: first.e_tag,
        version: None,
    });
    let absent = Path::from("cas/missing");
    assert_refused(&s3, &absent, missing, "update of a missing object").await;
    let got = s3.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_swap_loses_no_update() {
    const TASKS: u64 = 16;
    const EACH: u64 = 20;
    let (_data, _server, s3) = started().await;
    let s3 = Arc::new(s3);
    let key = Path::from("cas/counter");
    s3.put_opts(&key, b"0".to_vec().into(), put_mode(PutMode::Create))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (s3, key) = (Arc::clone(&s3), key.clone());
        tasks.spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let got = s3.get(&key).await.unwrap();
                    let version = UpdateVersion {
                        e_tag: got.meta.e_tag.clone(),
                        version: got.meta.version.clone(),
                    };
                    let text = got.bytes().await.unwrap();
                    let n: u64 = std::str::from_utf8(&text).unwrap().parse().unwrap();
                    let next = (n + 1).to_string().into_bytes();
                    match s3
                        .put_opts(&key, next.into(), put_mode(PutMode::Update(version)))
                        .await
                    {
                        Ok(_) => break,
                        Err(object_store::Error::Precondition { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        });
    }
    let mut conflicts = 0;
    while let Some(done) = tokio::time::timeout(Duration::from_secs(120), tasks.join_next())
        .await
        .expect("the updates finish")
    {
        conflicts += done.unwrap();
    }
    let text = s3.get(&key).await.unwrap().bytes().await.unwrap();
    let n: u64 = std::str::from_utf8(&text).unwrap().parse().unwrap();
    assert_eq!(
        n,
        TASKS * EACH,
        "every successful conditional update counts ({conflicts} conflicts retried)"
    );
    assert!(conflicts > 0, "the updates did contend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_a_missing_bucket_are_no_such_bucket() {
    let (data, _server, s3) = started().await;
    let key = Path::from("some/object");
    s3.put(&key, b"x".to_vec().into()).await.unwrap();
    std::fs::remove_dir_all(data.path().join("bucket")).unwrap();
    let err = s3.get(&key).await.unwrap_err();
    assert!(format!("{err:?}").contains("NoSuchBucket"), "{err:?}");
    let err = s3.put(&key, b"y".to_vec().into()).await.unwrap_err();
    assert!(format!("{err:?}").contains("NoSuchBucket"), "{err:?}");
    assert!(
        !data.path().join("bucket").exists(),
        "a put does not create the bucket"
    );
}
