//! The open-file cache under concurrency: 200 files through 10 slots, many tasks, every byte right, and
//! never more than 10 descriptors open.

mod common;

use common::write_matrix;
use rstest_reuse::apply;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{engine, pattern};
use io_engine::test_support::open_descriptors_under;
use io_engine::{FullSlice, IoBufferMut, IoEngineKind, Slice};
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::{IoContext, IoMode, VirtualFile};

const FILES: usize = 200;
const SLOTS: usize = 10;
const FILE_LEN: usize = 8192;

/// The cases of this binary run one at a time: descriptor counts from `/proc/self/fd` are only exact when
/// no other test in the process opens and closes descriptors meanwhile.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[apply(write_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_files_few_slots(mode: IoMode, kind: IoEngineKind) {
    let _serial = SERIAL.lock().await;
    let ctx = IoContext::builder()
        .engine(engine(kind))
        .mode(mode)
        .open_files(SLOTS)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let max_seen = Arc::new(AtomicUsize::new(0));
    let mut files = Vec::new();
    for i in 0..FILES {
        let f = VirtualFile::create(&ctx, dir.path().join(format!("f{i}")))
            .await
            .unwrap();
        f.set_len(FILE_LEN as u64).await.unwrap();
        files.push(Arc::new(f));
    }
    let files = Arc::new(files);
    // one lock per file: a reader and a writer of the same file never overlap, so the content read must
    // equal the model exactly (concurrent IO to one range may legitimately tear)
    let contents: Arc<Vec<tokio::sync::RwLock<Vec<u8>>>> = Arc::new(
        (0..FILES)
            .map(|_| tokio::sync::RwLock::new(vec![0u8; FILE_LEN]))
            .collect(),
    );

    // one sampler of the descriptor count, on its own thread
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, max_seen, dir) = (stop.clone(), max_seen.clone(), dir.path().to_owned());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                max_seen.fetch_max(open_descriptors_under(&dir).unwrap(), Ordering::Relaxed);
                samples += 1;
            }
            samples
        })
    };

    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let (files, contents) = (files.clone(), contents.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(t);
            for step in 0..60 {
                let i = rng.random_range(0..FILES);
                let file = &files[i];
                if step % 3 == 0 {
                    // write a whole file (one writer per file at a time: hold its model lock)
                    let data = pattern(FILE_LEN, t * 1000 + step);
                    let mut model = contents[i].write().await;
                    let buf = IoBufferMut::<io_engine::DefaultAlign>::from_slice(&data);
                    let (_, res) = file.write_all_at(FullSlice::new(buf), 0).await;
                    res.unwrap();
                    model.copy_from_slice(&data);
                } else {
                    let model = contents[i].read().await;
                    let buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(FILE_LEN);
                    let (s, res) = file.read_exact_at(Slice::new(buf, ..), 0).await;
                    res.unwrap();
                    assert!(s.into_inner()[..] == model[..], "file {i} content wrong");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    assert!(samples > 0);
    // final check of every byte of every file
    for (i, file) in files.iter().enumerate() {
        let buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(FILE_LEN);
        let (s, res) = file.read_exact_at(Slice::new(buf, ..), 0).await;
        res.unwrap();
        assert_eq!(
            &s.into_inner()[..],
            &contents[i].read().await[..],
            "file {i}"
        );
    }
    let max = max_seen.load(Ordering::Relaxed);
    assert!(
        max <= SLOTS,
        "saw {max} descriptors open with {SLOTS} slots"
    );
    assert!(ctx.open_files() <= SLOTS);
    let m = ctx.metrics();
    assert!(
        m.cache_evictions > 0 && m.cache_misses > 0 && m.cache_hits > 0,
        "{m:?}"
    );
    drop(files);
    assert_eq!(
        open_descriptors_under(dir.path()).unwrap(),
        0,
        "dropping the files closes their descriptors"
    );
}
