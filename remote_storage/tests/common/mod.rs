//! Shared by the remote tier's tests: a real S3 server (the embedded one on loopback, or the endpoint in
//! `REMOTE_STORAGE_S3_*`), IO contexts for every mode x engine, and deterministic delta layers.

#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use io_engine::{IoEngine, IoEngineKind};
use layer_writers::{DeltaLayerWriter, Key, Lsn};
use remote_storage::{
    RemoteOptions, RemoteStorage, RetryPolicy, S3Config, StoreConfig, TieredLayers,
};
use s3_test_server::S3TestServer;
use tempfile::TempDir;
use virtual_file::{IoContext, IoMode};

/// Upper bound of any one test; none comes near it unless something hangs.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `object_store`'s local file system backend.
    Local,
    /// S3: the embedded server, or the endpoint from the environment.
    S3,
}

/// A store for one test: its config, and what keeps it alive.
pub struct TestStore {
    pub config: StoreConfig,
    /// The embedded server (`None` with an endpoint from the environment or the local backend).
    pub server: Option<S3TestServer>,
    /// The local backend's root or the embedded server's data directory.
    pub data: Option<TempDir>,
    /// A prefix unique to this test, so tests can share one bucket.
    pub prefix: String,
}

/// A prefix no other test uses.
pub fn unique_prefix(label: &str) -> String {
    let nonce: u64 = rand::random();
    format!("test-{label}-{nonce:016x}")
}

impl TestStore {
    pub async fn new(backend: Backend, label: &str) -> TestStore {
        let prefix = unique_prefix(label);
        match backend {
            Backend::Local => {
                let data = tempfile::tempdir().expect("tempdir");
                TestStore {
                    config: StoreConfig::Local {
                        root: data.path().to_owned(),
                    },
                    server: None,
                    data: Some(data),
                    prefix,
                }
            }
            Backend::S3 => match S3Config::from_env().expect("REMOTE_STORAGE_S3_* variables") {
                Some(s3) => TestStore {
                    config: StoreConfig::S3(s3),
                    server: None,
                    data: None,
                    prefix,
                },
                None => Self::embedded(prefix).await,
            },
        }
    }

    /// For tests that change the stored files: the embedded server for [`Backend::S3`] (never an
    /// endpoint from the environment), the local backend otherwise.
    pub async fn with_files(backend: Backend, label: &str) -> TestStore {
        match backend {
            Backend::S3 => Self::embedded(unique_prefix(label)).await,
            Backend::Local => Self::new(Backend::Local, label).await,
        }
    }

    /// Always the embedded server (for tests that kill it or change its files).
    pub async fn embedded(prefix: String) -> TestStore {
        let data = tempfile::tempdir().expect("tempdir");
        let server = S3TestServer::start(data.path(), "layers-bucket")
            .await
            .expect("start the S3 test server");
        TestStore {
            config: StoreConfig::S3(embedded_config(&server)),
            server: Some(server),
            data: Some(data),
            prefix,
        }
    }

    /// [`test_options`] for this test's prefix.
    pub fn options(&self) -> RemoteOptions {
        RemoteOptions {
            prefix: self.prefix.clone(),
            ..test_options()
        }
    }

    pub async fn connect(&self) -> Arc<RemoteStorage> {
        Arc::new(
            RemoteStorage::connect(&self.config, self.options())
                .await
                .expect("connect to the test store"),
        )
    }

    /// Where the object of `key` lives on disk (local backend or embedded server).
    pub fn object_file(&self, key: &str) -> Option<PathBuf> {
        let data = self.data.as_ref()?.path();
        match (&self.config, &self.server) {
            (StoreConfig::Local { .. }, _) => Some(data.join(key)),
            (StoreConfig::S3(_), Some(server)) => Some(data.join(server.bucket()).join(key)),
            _ => None,
        }
    }
}

/// Runs a test's body, failing the test if it takes longer than [`TEST_TIMEOUT`].
pub async fn timed<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out")
}

/// Runs a test's body once for each backend, S3 first, each run under [`timed`] with the [`Setup`]
/// that `setup` (such as [`Setup::new`]) makes for that backend and `label`, taken apart.
pub async fn each_backend<S: Future<Output = Setup>>(
    setup: impl Fn(Backend, &'static str) -> S,
    label: &'static str,
    mut body: impl AsyncFnMut(Backend, Parts),
) {
    for backend in [Backend::S3, Backend::Local] {
        timed(async { body(backend, setup(backend, label).await.parts()).await }).await;
    }
}

/// A [`Setup`] taken apart: `(ctx, store, remote, dir)`.
pub type Parts = (IoContext, TestStore, Arc<RemoteStorage>, TempDir);

/// What most tests start with: the default context, a store, a client of it, an empty local directory.
pub struct Setup {
    pub ctx: IoContext,
    pub store: TestStore,
    pub remote: Arc<RemoteStorage>,
    pub dir: TempDir,
}

impl Setup {
    /// `(ctx, store, remote, dir)`, for a `let` at the start of a test.
    pub fn parts(self) -> Parts {
        (self.ctx, self.store, self.remote, self.dir)
    }

    /// Connects to `store`.
    pub async fn with(store: TestStore) -> Setup {
        let remote = store.connect().await;
        Setup {
            ctx: default_context(),
            store,
            remote,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// [`TestStore::new`].
    pub async fn new(backend: Backend, label: &str) -> Setup {
        Self::with(TestStore::new(backend, label).await).await
    }

    /// [`TestStore::embedded`] with a prefix made from `label`.
    pub async fn embedded(label: &str) -> Setup {
        Self::with(TestStore::embedded(unique_prefix(label)).await).await
    }

    /// [`TestStore::with_files`].
    pub async fn with_files(backend: Backend, label: &str) -> Setup {
        Self::with(TestStore::with_files(backend, label).await).await
    }
}

/// A tier over `dir` with `budget` bytes, on `remote`.
pub async fn open_tier(
    ctx: &IoContext,
    dir: &Path,
    remote: &Arc<RemoteStorage>,
    budget: u64,
) -> TieredLayers {
    TieredLayers::open(ctx, dir, Arc::clone(remote), budget)
        .await
        .expect("open the tier")
}

/// Options for tests: small parts, so that a few MiB make a multipart upload, and quick retries.
pub fn test_options() -> RemoteOptions {
    RemoteOptions {
        multipart_threshold: 5 * 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        part_concurrency: 2,
        retry: RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            request_retries: 6,
            request_retry_timeout: Duration::from_secs(20),
            conflict_attempts: 64,
            abort_window: Duration::from_secs(30),
        },
        request_timeout: Duration::from_secs(30),
        ..RemoteOptions::default()
    }
}

/// The client config for the embedded server.
pub fn embedded_config(server: &S3TestServer) -> S3Config {
    S3Config {
        endpoint: server.endpoint(),
        bucket: server.bucket().to_owned(),
        region: s3_test_server::REGION.to_owned(),
        access_key_id: s3_test_server::ACCESS_KEY.to_owned(),
        secret_access_key: s3_test_server::SECRET_KEY.to_owned(),
    }
}

/// Set to `1` (CI does) to make a test whose engine cannot start here fail instead of skip.
pub const REQUIRE_URING_ENV: &str = io_engine::env::REQUIRE_URING;

/// A context with `mode` and engine `kind`; `None` where the engine cannot start here, after
/// [`engine_unavailable`] (which fails the test under `VIRTUAL_FILE_REQUIRE_URING=1`).
pub fn context(mode: IoMode, kind: IoEngineKind) -> Option<IoContext> {
    let engine = match IoEngine::launch(kind) {
        Ok(engine) => engine,
        Err(e) => {
            engine_unavailable(kind, &e);
            return None;
        }
    };
    Some(
        IoContext::builder()
            .engine(engine)
            .mode(mode)
            .build()
            .expect("context"),
    )
}

/// An engine that cannot start here: with `VIRTUAL_FILE_REQUIRE_URING=1` (set by CI, where io_uring
/// works) that fails the test; otherwise the test is skipped with the reason printed (libtest shows it
/// only with `--nocapture`, which is why CI asks for the failure instead). The same rule as
/// `layer_writers/tests/common` and `io_engine/tests/common`.
pub fn engine_unavailable(kind: IoEngineKind, err: &dyn std::fmt::Display) {
    if io_engine::env::require_uring() {
        panic!("{REQUIRE_URING_ENV}=1, but engine {kind} cannot start here: {err}");
    }
    eprintln!("skipped: engine {kind} cannot start here: {err}");
}

/// The default test context (`direct-rw`, std-fs).
pub fn default_context() -> IoContext {
    context(IoMode::DirectRw, IoEngineKind::StdFs).expect("std-fs always starts")
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The value of entry `j` of layer `seed`: 0..4000 bytes.
pub fn value_of(seed: u64, j: u64) -> Vec<u8> {
    let h = mix(seed ^ mix(j));
    mixed_bytes(h, (h % 4000) as usize)
}

/// `len` pseudo-random bytes: the words of the sequence `mix(seed)`, `mix(mix(seed))`, ...
fn mixed_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed;
    while out.len() < len {
        state = mix(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn key_of(j: u64) -> Key {
    Key::from_u128(((j as u128) << 8) | 0x5A)
}

pub fn lsn_of(j: u64) -> Lsn {
    Lsn(0x1000 + j)
}

/// Writes delta layer `dir/name` with `entries` entries of seed `seed`; returns its path.
pub async fn write_layer(
    ctx: &IoContext,
    dir: &Path,
    name: &str,
    seed: u64,
    entries: u64,
) -> PathBuf {
    let mut w = DeltaLayerWriter::new(ctx, dir, name).await.expect("writer");
    for j in 0..entries {
        w.put_value(key_of(j), lsn_of(j), j % 5 == 0, &value_of(seed, j))
            .await
            .expect("put");
    }
    w.finish().await.expect("finish").path
}

/// Reads every entry of the delta layer and compares it with what [`write_layer`] wrote.
pub async fn verify_layer(reader: &layer_writers::DeltaLayerReader, seed: u64, entries: u64) {
    let all = reader.scan().await.expect("scan");
    assert_eq!(all.len() as u64, entries, "entry count");
    for (j, (key, lsn, will_init, value)) in all.into_iter().enumerate() {
        let j = j as u64;
        assert_eq!(key, key_of(j));
        assert_eq!(lsn, lsn_of(j));
        assert_eq!(will_init, j % 5 == 0);
        assert_eq!(value, value_of(seed, j), "value of entry {j}");
    }
}

/// Entries that make a layer of about `mib` MiB (2000 bytes a value on average).
pub fn entries_for_mib(mib: u64) -> u64 {
    mib * 1024 * 1024 / 2000
}

/// Names of the files in `dir`.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Writes `len` pseudo-random bytes of seed `seed` to `dir/name` (an upload does not need a layer);
/// returns its path.
pub fn write_blob(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, mixed_bytes(seed, len)).expect("write blob");
    path
}

/// Sets the modification time of `path` to `age` ago (what the store reports as last-modified for the
/// embedded server and the local backend).
pub fn backdate(path: &Path, age: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open to backdate");
    file.set_modified(std::time::SystemTime::now() - age)
        .expect("set mtime");
}
