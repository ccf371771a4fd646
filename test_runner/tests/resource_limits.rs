//! With `RLIMIT_NOFILE` at 32 and 500 layer files read concurrently, everything succeeds through the
//! open-file cache. Its own test binary, because the limit is process-wide.

mod common;

use std::sync::Arc;

use io_engine::{IoEngine, IoEngineKind};
use layer_writers::{DeltaLayerReader, Lsn};
use rstest::rstest;
use test_runner::layer_set::{key_of, lsn_of, value_of, write_layer};
use virtual_file::{IoContext, IoMode};

const LAYERS: u64 = 500;
const ENTRIES: u64 = 4;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_layers_with_32_descriptors(
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] engine: IoEngineKind,
) {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = IoContext::builder()
        .engine(IoEngine::launch(engine).unwrap())
        .mode(IoMode::DirectRw)
        .open_files(12)
        .build()
        .unwrap();
    let mut paths = Vec::new();
    for layer in 0..LAYERS {
        paths.push(
            write_layer(&ctx, dir.path(), 9, layer, ENTRIES)
                .await
                .unwrap(),
        );
    }

    let open_now = io_engine::test_support::open_descriptor_count().unwrap();
    assert!(
        open_now + 12 < 32,
        "{open_now} descriptors already open: no room for the test"
    );
    // restored by Drop, also if an assertion below fails
    let limit = io_engine::test_support::NofileLimit::set(32).unwrap();

    // all 500 readers open at once (each holds a file), then read concurrently
    let mut readers = Vec::new();
    for path in &paths {
        readers.push(Arc::new(DeltaLayerReader::open(&ctx, path).await.unwrap()));
    }
    let tasks: Vec<_> = readers
        .iter()
        .cloned()
        .enumerate()
        .map(|(layer, r)| {
            tokio::spawn(async move {
                for j in 0..ENTRIES {
                    let got = r.get(key_of(j), Lsn(0)..Lsn(u64::MAX - 1)).await?;
                    assert_eq!(got.len(), 1);
                    assert_eq!(got[0].0, lsn_of(layer as u64, j));
                    assert_eq!(
                        got[0].2,
                        value_of(9, layer as u64, j),
                        "layer {layer} entry {j}"
                    );
                }
                Ok::<_, layer_writers::LayerError>(())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    drop(limit);
    assert!(
        failures.is_empty(),
        "{} of {LAYERS} readers failed, first: {}",
        failures.len(),
        failures[0]
    );
    let m = ctx.metrics();
    assert!(
        m.cache_evictions >= LAYERS - 12,
        "500 open files through 12 slots: {m:?}"
    );
    drop(readers);
}
