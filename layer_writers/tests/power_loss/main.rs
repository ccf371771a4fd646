//! Power-cut consistency of the layer writers. Delta, image and in-memory (written out as a delta) layers
//! are written in sequence through the power-loss engine in every IO mode, over std-fs and (where it
//! starts) the io_uring engine; then, for every sync point and
//! for at least 1,000 random cut points, the crash image is materialized and checked: a layer visible
//! under its final name verifies completely, and a layer acknowledged durable before the cut is there.
//!
//! Replay: the base seed is printed; `POWER_LOSS_SEED=<n>` reruns with it (workloads, cut points and
//! image outcomes all derive from it). Hand-written protocols with a rename before the data fsync, or
//! without the directory fsync, prove the checker reports what it must.

mod checker;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use checker::{Checker, Contents, DeltaModel, ExpectedLayer, ImageModel, Run, Tally};
use io_engine::power_loss::Recorder;
use io_engine::{FullSlice, IoEngine, IoEngineKind, RenameMode};
use layer_writers::{
    DeltaLayerWriter, ImageLayerWriter, InMemoryLayer, InMemoryLayerOptions, Key, Lsn,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use virtual_file::{IoContext, IoMode, VirtualFile};

const MODES: [IoMode; 3] = [IoMode::Buffered, IoMode::Direct, IoMode::DirectRw];
const ENGINES: [IoEngineKind; 2] = [IoEngineKind::StdFs, IoEngineKind::TokioEpollUring];
/// Random cut points per recorded run (3 std-fs runs: over 1,000 in all; 6 with the ring engine).
const RANDOM_CUTS_PER_RUN: usize = 340;
/// Images per sync point (different outcomes of the unguaranteed ops).
const SEEDS_PER_SYNC_POINT: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(300);

fn base_seed() -> u64 {
    match std::env::var("POWER_LOSS_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("POWER_LOSS_SEED={v:?} is not a whole number")),
        Err(_) => 0x5EED_0011,
    }
}

fn value(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..10) {
        0 => 0,
        1..=6 => rng.random_range(1..200),
        _ => rng.random_range(200..3000),
    };
    if rng.random_bool(0.5) {
        let mut v = vec![0u8; len];
        rng.fill(&mut v[..]);
        v
    } else {
        let base: u8 = rng.random();
        (0..len)
            .map(|i| base.wrapping_add((i % 13) as u8))
            .collect()
    }
}

fn delta_model(rng: &mut StdRng, n: usize) -> DeltaModel {
    let mut m = DeltaModel::new();
    while m.len() < n {
        let key = Key::from_u128(rng.random_range(0..12u128) * 3 + 1);
        let lsn = Lsn(rng.random_range(1..1000));
        m.insert((key, lsn), (rng.random_bool(0.3), value(rng)));
    }
    m
}

fn image_model(rng: &mut StdRng, n: usize) -> ImageModel {
    let mut m = ImageModel::new();
    while m.len() < n {
        m.insert(Key::from_u128(rng.random_range(0..1u128 << 90)), value(rng));
    }
    m
}

/// A context over the power-loss engine, wrapping `inner`, recording `dir`.
fn recording_context(dir: &Path, mode: IoMode, inner: IoEngine) -> (IoContext, Arc<Recorder>) {
    let rec = Arc::new(Recorder::new(dir));
    let ctx = IoContext::builder()
        .engine(IoEngine::hooked(inner, rec.clone()))
        .mode(mode)
        .build()
        .expect("context");
    (ctx, rec)
}

/// Writes six layers in sequence (delta, image, in-memory written out; twice) through the power-loss
/// engine, recording when each `finish` returned Ok.
async fn record_run(mode: IoMode, inner: IoEngine, seed: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let label = format!("{mode}/{}", inner.kind());
    let (ctx, rec) = recording_context(dir.path(), mode, inner);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut layers = Vec::new();
    for round in 0..2 {
        let name = format!("{round}-delta");
        let model = delta_model(&mut rng, 30);
        let mut w = DeltaLayerWriter::new(&ctx, dir.path(), &name)
            .await
            .unwrap();
        for ((k, l), (wi, v)) in &model {
            w.put_value(*k, *l, *wi, v).await.unwrap();
        }
        w.finish().await.unwrap();
        layers.push(expected(name, Contents::Delta(model), &rec));

        let name = format!("{round}-image");
        let model = image_model(&mut rng, 25);
        let mut w = ImageLayerWriter::new(&ctx, dir.path(), &name, Lsn(500))
            .await
            .unwrap();
        for (k, v) in &model {
            w.put_image(*k, v).await.unwrap();
        }
        w.finish().await.unwrap();
        layers.push(expected(name, Contents::Image(model), &rec));

        let name = format!("{round}-frozen");
        let opts = InMemoryLayerOptions {
            buffer_capacity: 8192,
            readout_batch_bytes: 32 * 1024,
            ..InMemoryLayerOptions::default()
        };
        let mem = InMemoryLayer::create_with_options(&ctx, dir.path(), round, opts)
            .await
            .unwrap();
        let model = delta_model(&mut rng, 40);
        // put in a shuffled order: the write-out sorts
        let mut puts: Vec<_> = model.iter().collect();
        for i in (1..puts.len()).rev() {
            puts.swap(i, rng.random_range(0..=i));
        }
        for ((k, l), (wi, v)) in puts {
            mem.put_value(*k, *l, *wi, v).await.unwrap();
        }
        mem.freeze().await.unwrap();
        mem.write_to_disk(&ctx, dir.path(), &name).await.unwrap();
        layers.push(expected(name, Contents::Delta(model), &rec));
    }
    assert_eq!(
        rec.untracked_opens(),
        0,
        "every file was created through the engine"
    );
    Run {
        label,
        log: rec.log(),
        layers,
    }
}

fn expected(name: String, contents: Contents, rec: &Recorder) -> ExpectedLayer {
    ExpectedLayer {
        name,
        contents: Arc::new(contents),
        acked_at: Some(rec.len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_survive_power_cuts_in_every_mode() {
    tokio::time::timeout(TIMEOUT, async {
        let base = base_seed();
        eprintln!("power-loss base seed {base} (replay with POWER_LOSS_SEED={base})");
        let mut checker = Checker::new();
        let mut tally = Tally::default();
        let mut sync_points = 0;
        let mut runs = 0;
        for (m, mode) in MODES.into_iter().enumerate() {
            for (e, kind) in ENGINES.into_iter().enumerate() {
                // std-fs always; the ring engine where it starts here (skipped with the reason printed)
                let inner = match IoEngine::launch(kind) {
                    Ok(engine) => engine,
                    Err(err) => {
                        // CI sets VIRTUAL_FILE_REQUIRE_URING=1: there a missing engine is a failure
                        if io_engine::env::require_uring() {
                            panic!("VIRTUAL_FILE_REQUIRE_URING=1, but {kind} cannot start: {err}");
                        }
                        eprintln!("skipped: engine {kind} cannot start here: {err}");
                        continue;
                    }
                };
                let run = record_run(mode, inner, base ^ 0x1000).await;
                runs += 1;
                let mut rng = StdRng::seed_from_u64(base ^ ((m as u64) << 32) ^ ((e as u64) << 40));
                let points = run.log.sync_points();
                sync_points += points.len();
                eprintln!(
                    "{}: {} ops, {} sync points, {} layers",
                    run.label,
                    run.log.len(),
                    points.len(),
                    run.layers.len()
                );
                for cut in points {
                    for _ in 0..SEEDS_PER_SYNC_POINT {
                        checker.check(&run, cut, rng.random(), &mut tally).await;
                    }
                }
                for _ in 0..RANDOM_CUTS_PER_RUN {
                    let cut = rng.random_range(0..=run.log.len());
                    checker.check(&run, cut, rng.random(), &mut tally).await;
                }
                // every layer acknowledged by the end is there
                checker.check(&run, run.log.len(), 0, &mut tally).await;
            }
        }
        assert!(runs >= MODES.len(), "std-fs runs in every mode");
        eprintln!("sync points: {sync_points}; {}", tally.summary());
        assert!(tally.cuts as usize >= runs * RANDOM_CUTS_PER_RUN + sync_points);
        assert!(
            tally.incomplete_visible.is_empty() && tally.acked_lost.is_empty(),
            "{}\nincomplete: {:#?}\nlost: {:#?}",
            tally.summary(),
            &tally.incomplete_visible[..tally.incomplete_visible.len().min(10)],
            &tally.acked_lost[..tally.acked_lost.len().min(10)],
        );
        assert!(tally.layers_checked > 0 && tally.verifications > 0);
    })
    .await
    .expect("timed out");
}

/// How a hand-written layer is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// write, fsync, rename, directory fsync: what the layer writers do.
    Correct,
    /// write, rename, fsync, directory fsync: the final name can refer to unsynced data.
    RenameBeforeFsync,
    /// write, fsync, rename, and acknowledged without the directory fsync.
    NoDirFsync,
}

/// The bytes of a correct delta layer (written without recording), and its model.
async fn good_layer_bytes() -> (Vec<u8>, DeltaModel) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = IoContext::builder().mode(IoMode::Buffered).build().unwrap();
    let model = delta_model(&mut StdRng::seed_from_u64(base_seed()), 30);
    let mut w = DeltaLayerWriter::new(&ctx, dir.path(), "good")
        .await
        .unwrap();
    for ((k, l), (wi, v)) in &model {
        w.put_value(*k, *l, *wi, v).await.unwrap();
    }
    let info = w.finish().await.unwrap();
    (std::fs::read(info.path).unwrap(), model)
}

/// Writes `bytes` as layer `layer` by hand (8 KiB writes) following `protocol`, through the recorder.
async fn hand_written(protocol: Protocol) -> Run {
    let (bytes, model) = good_layer_bytes().await;
    let dir = tempfile::tempdir().unwrap();
    let (ctx, rec) = recording_context(dir.path(), IoMode::Buffered, IoEngine::std_fs());
    let (tmp, fin) = (dir.path().join("layer.tmp"), dir.path().join("layer"));
    let file = VirtualFile::create(&ctx, &tmp).await.unwrap();
    for (i, chunk) in bytes.chunks(8192).enumerate() {
        let (_, res) = file
            .write_all_at(FullSlice::new(chunk.to_vec()), (i * 8192) as u64)
            .await;
        res.unwrap();
    }
    let rename = || ctx.engine().rename(&tmp, &fin, RenameMode::NoReplace);
    match protocol {
        Protocol::Correct => {
            file.sync_all().await.unwrap();
            rename().await.unwrap();
            ctx.sync_dir(dir.path()).await.unwrap();
        }
        Protocol::RenameBeforeFsync => {
            rename().await.unwrap();
            file.sync_all().await.unwrap();
            ctx.sync_dir(dir.path()).await.unwrap();
        }
        Protocol::NoDirFsync => {
            file.sync_all().await.unwrap();
            rename().await.unwrap();
        }
    }
    Run {
        label: format!("{protocol:?}"),
        log: rec.log(),
        layers: vec![expected("layer".into(), Contents::Delta(model), &rec)],
    }
}

/// Every cut point of `run` with 16 seeds each.
async fn check_every_cut(run: &Run) -> Tally {
    let mut checker = Checker::new();
    let mut tally = Tally::default();
    for cut in 0..=run.log.len() {
        for seed in 0..16 {
            checker.check(run, cut, seed, &mut tally).await;
        }
    }
    eprintln!("{}: {}", run.label, tally.summary());
    tally
}

#[tokio::test]
async fn the_checker_passes_the_correct_protocol_written_by_hand() {
    tokio::time::timeout(TIMEOUT, async {
        let tally = check_every_cut(&hand_written(Protocol::Correct).await).await;
        assert!(
            tally.incomplete_visible.is_empty(),
            "{:?}",
            tally.incomplete_visible
        );
        assert!(tally.acked_lost.is_empty(), "{:?}", tally.acked_lost);
        assert!(tally.layers_checked > 0);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn the_checker_finds_a_rename_before_the_data_fsync() {
    tokio::time::timeout(TIMEOUT, async {
        let tally = check_every_cut(&hand_written(Protocol::RenameBeforeFsync).await).await;
        assert!(
            !tally.incomplete_visible.is_empty(),
            "a rename before the data fsync must show an incomplete layer: {}",
            tally.summary()
        );
        eprintln!("first finding: {}", tally.incomplete_visible[0]);
        assert!(tally.acked_lost.is_empty(), "{:?}", tally.acked_lost);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn the_checker_finds_a_missing_directory_fsync() {
    tokio::time::timeout(TIMEOUT, async {
        let tally = check_every_cut(&hand_written(Protocol::NoDirFsync).await).await;
        assert!(
            !tally.acked_lost.is_empty(),
            "an acknowledged layer without a directory fsync must be lost in some image: {}",
            tally.summary()
        );
        eprintln!("first finding: {}", tally.acked_lost[0]);
        assert!(
            tally.incomplete_visible.is_empty(),
            "{:?}",
            tally.incomplete_visible
        );
    })
    .await
    .expect("timed out");
}
