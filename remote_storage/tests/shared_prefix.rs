//! Several `RemoteStorage` instances (in one process and in several) uploading to one prefix at once:
//! no index entry is lost, and `remove_orphans` run meanwhile from any of them deletes no layer that an
//! index holds.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Setup, TestStore};
use object_store::ObjectStoreExt;
use remote_storage::{RemoteOptions, RemoteStorage, StoreConfig};

const UPLOADS: usize = 200;

/// Names uploaded that the index lacks, and indexed names whose object is gone.
async fn lost_and_deleted(
    remote: &RemoteStorage,
    names: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    let index = remote.load_index().await.unwrap();
    let lost = names
        .iter()
        .filter(|n| !index.layers.contains_key(*n))
        .cloned()
        .collect();
    let mut deleted = Vec::new();
    for name in index.layers.keys() {
        if let Err(e) = remote.object_store().head(&remote.layer_key(name)).await {
            assert!(matches!(e, object_store::Error::NotFound { .. }), "{e}");
            deleted.push(name.clone());
        }
    }
    (lost, deleted)
}

/// Two instances on one prefix, 200 concurrent uploads alternating between them, while both run
/// `remove_orphans` in a loop: every upload is in the index afterwards and every indexed object exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_200_uploads_lose_nothing() {
    common::timed(async {
        let ctx = common::default_context();
        let store = TestStore::embedded(common::unique_prefix("shared")).await;
        let remotes = [store.connect().await, store.connect().await];
        let dir = tempfile::tempdir().unwrap();
        let mut names = BTreeSet::new();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..UPLOADS {
            let name = format!("layer-{i:04}");
            let path = common::write_blob(dir.path(), &name, 2048 + i * 16, i as u64);
            names.insert(name.clone());
            let (remote, ctx) = (Arc::clone(&remotes[i % 2]), ctx.clone());
            tasks.spawn(async move { remote.upload_layer(&ctx, &path, &name).await.map(drop) });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut cleaners = Vec::new();
        for remote in &remotes {
            let (remote, stop) = (Arc::clone(remote), Arc::clone(&stop));
            cleaners.push(tokio::spawn(async move {
                let mut runs = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // the result type is beside the point: what it deletes is checked below
                    let _ = remote.remove_orphans().await;
                    runs += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                runs
            }));
        }
        let mut failed = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done.unwrap() {
                failed.push(e.to_string());
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut runs = 0;
        for c in cleaners {
            runs += c.await.unwrap();
        }
        let (lost, deleted) = lost_and_deleted(&remotes[0], &names).await;
        eprintln!(
            "2 instances x {UPLOADS} uploads, {runs} concurrent remove_orphans runs: {} failed, \
             {} index entries lost, {} indexed layers deleted",
            failed.len(),
            lost.len(),
            deleted.len()
        );
        assert!(failed.is_empty(), "uploads failed: {failed:?}");
        assert!(lost.is_empty(), "index entries lost: {lost:?}");
        assert!(deleted.is_empty(), "indexed layers deleted: {deleted:?}");
        for remote in &remotes {
            let _ = remote.remove_orphans().await;
            let (lost, deleted) = lost_and_deleted(remote, &names).await;
            assert!(
                lost.is_empty() && deleted.is_empty(),
                "{lost:?} {deleted:?}"
            );
        }
        assert_eq!(remotes[1].load_index().await.unwrap().layers.len(), UPLOADS);
    })
    .await;
}

/// An object no index names is deleted once it is older than the grace period, and kept before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_deleted_only_past_the_grace_period() {
    common::each_backend(
        Setup::with_files,
        "grace",
        async |backend, (ctx, store, remote, dir)| {
            let path = common::write_blob(dir.path(), "layer-kept", 5000, 1);
            remote
                .upload_layer(&ctx, &path, "layer-kept")
                .await
                .unwrap();
            let (old, young) = (
                remote.layer_key("layer-old"),
                remote.layer_key("layer-young"),
            );
            for key in [&old, &young] {
                remote
                    .object_store()
                    .put(key, vec![7u8; 100].into())
                    .await
                    .unwrap();
            }
            let kept_file = store
                .object_file(remote.layer_key("layer-kept").as_ref())
                .unwrap();
            common::backdate(&kept_file, Duration::from_secs(7200));
            common::backdate(
                &store.object_file(old.as_ref()).unwrap(),
                Duration::from_secs(7200),
            );

            let report = remote.remove_orphans().await.unwrap();
            assert_eq!(report.deleted, vec![old.to_string()], "{backend:?}");
            assert_eq!(report.kept_young, vec![young.to_string()], "{backend:?}");
            assert!(remote.object_store().head(&young).await.is_ok());
            assert!(remote
                .object_store()
                .head(&remote.layer_key("layer-kept"))
                .await
                .is_ok());
        },
    )
    .await;
}

/// Environment of the child process of [`two_processes_on_one_prefix_lose_nothing`].
const CHILD_ROLE_ENV: &str = "SHARED_PREFIX_CHILD_ROLE";
const CHILD_PREFIX_ENV: &str = "SHARED_PREFIX_CHILD_PREFIX";
const CHILD_LOCAL_ROOT_ENV: &str = "SHARED_PREFIX_CHILD_LOCAL_ROOT";
const CHILD_DIR_ENV: &str = "SHARED_PREFIX_CHILD_DIR";
const PER_PROCESS: usize = 60;

/// Not a test of its own: the body of a child process that the test below starts (twice, at once)
/// with `--ignored --exact`; it uploads [`PER_PROCESS`] files named after its role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by two_processes_on_one_prefix_lose_nothing in child processes"]
async fn child_uploader() {
    let role = std::env::var(CHILD_ROLE_ENV).expect("started by the parent test");
    let prefix = std::env::var(CHILD_PREFIX_ENV).unwrap();
    let dir = PathBuf::from(std::env::var(CHILD_DIR_ENV).unwrap());
    let config = match std::env::var_os(CHILD_LOCAL_ROOT_ENV) {
        Some(root) => StoreConfig::Local { root: root.into() },
        None => StoreConfig::S3(
            remote_storage::S3Config::from_env()
                .unwrap()
                .expect("endpoint"),
        ),
    };
    let ctx = common::default_context();
    let options = RemoteOptions {
        prefix,
        ..common::test_options()
    };
    let remote = Arc::new(RemoteStorage::connect(&config, options).await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..PER_PROCESS {
        let name = format!("layer-{role}-{i:03}");
        let path = common::write_blob(&dir, &name, 1024 + i, i as u64);
        let (remote, ctx) = (Arc::clone(&remote), ctx.clone());
        tasks.spawn(async move { remote.upload_layer(&ctx, &path, &name).await.unwrap() });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Two processes upload to one prefix at once (S3: conditional writes; local backend: the file lock):
/// the index names every upload of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_prefix_lose_nothing() {
    for backend in [Backend::S3, Backend::Local] {
        common::timed(async {
            let store = TestStore::with_files(backend, "procs").await;
            let exe = std::env::current_exe().unwrap();
            let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
            let mut children = Vec::new();
            for (role, dir) in ["a", "b"].iter().zip(&dirs) {
                let mut cmd = Command::new(&exe);
                cmd.args(["child_uploader", "--exact", "--ignored", "--test-threads=1"])
                    .env(CHILD_ROLE_ENV, role)
                    .env(CHILD_PREFIX_ENV, &store.prefix)
                    .env(CHILD_DIR_ENV, dir.path())
                    .env_remove(CHILD_LOCAL_ROOT_ENV);
                match &store.config {
                    StoreConfig::Local { root } => {
                        cmd.env(CHILD_LOCAL_ROOT_ENV, root);
                    }
                    StoreConfig::S3(s3) => {
                        use remote_storage::{
                            S3_ACCESS_KEY_ENV, S3_BUCKET_ENV, S3_ENDPOINT_ENV, S3_REGION_ENV,
                            S3_SECRET_KEY_ENV,
                        };
                        cmd.env(S3_ENDPOINT_ENV, &s3.endpoint)
                            .env(S3_BUCKET_ENV, &s3.bucket)
                            .env(S3_ACCESS_KEY_ENV, &s3.access_key_id)
                            .env(S3_SECRET_KEY_ENV, &s3.secret_access_key)
                            .env(S3_REGION_ENV, &s3.region);
                    }
                }
                cmd.stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                let child = cmd.spawn().expect("start the child process");
                children.push(tokio::task::spawn_blocking(move || {
                    child.wait_with_output()
                }));
            }
            for child in children {
                let out = child.await.unwrap().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && stdout.contains("1 passed"),
                    "{backend:?} child: {}\n{stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let remote = store.connect().await;
            let index = remote.load_index().await.unwrap();
            let lost: Vec<String> = ["a", "b"]
                .iter()
                .flat_map(|role| (0..PER_PROCESS).map(move |i| format!("layer-{role}-{i:03}")))
                .filter(|name| !index.layers.contains_key(name))
                .collect();
            eprintln!(
                "{backend:?}: 2 processes x {PER_PROCESS} uploads: {} index entries lost",
                lost.len()
            );
            assert!(lost.is_empty(), "{backend:?}: lost {lost:?}");
        })
        .await;
    }
}
