//! Power cuts during puts and multipart puts, through the power-loss engine, in every IO mode over both
//! engines: the store writes a script of object versions (new objects, overwrites, multipart uploads
//! with unaligned parts, a no-replace create); then, for every sync point and for random cut points, the
//! crash image is materialized and checked: an object visible under its name holds exactly one version
//! written to that name, never a mix or a prefix, and a version acknowledged before the cut (or a later
//! one) is there. A store opened on the image lists only the visible objects (temp files stay hidden).
//!
//! Replay: the base seed is printed; `POWER_LOSS_SEED=<n>` reruns with it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use io_engine::power_loss::{OpLog, Recorder};
use io_engine::{IoEngine, IoEngineKind};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use virtual_file::IoMode;
use virtual_file_store::VirtualFileStore;

const MODES: [IoMode; 3] = [IoMode::Buffered, IoMode::Direct, IoMode::DirectRw];
const ENGINES: [IoEngineKind; 2] = [IoEngineKind::StdFs, IoEngineKind::TokioEpollUring];
const RANDOM_CUTS_PER_RUN: usize = 150;
const SEEDS_PER_SYNC_POINT: u64 = 2;
const TIMEOUT: Duration = Duration::from_secs(300);

fn base_seed() -> u64 {
    match std::env::var("POWER_LOSS_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("POWER_LOSS_SEED={v:?} is not a whole number")),
        Err(_) => 0x5EED_0022,
    }
}

/// One version written to a name, and where the log stood when the store acknowledged it.
struct Version {
    bytes: Bytes,
    acked_at: usize,
}

struct Run {
    label: String,
    log: OpLog,
    /// Versions per object name, in the order written.
    versions: BTreeMap<String, Vec<Version>>,
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v.into()
}

/// Parts of random sizes, most not multiples of a sector.
fn random_parts(rng: &mut StdRng) -> Vec<Bytes> {
    let n = rng.random_range(1..5);
    (0..n)
        .map(|_| {
            let len = match rng.random_range(0..3) {
                0 => rng.random_range(1..5000),
                1 => rng.random_range(60_000..300_000),
                _ => 128 * 1024,
            };
            random_bytes(rng, len)
        })
        .collect()
}

async fn record_run(mode: IoMode, inner: IoEngine, seed: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let label = format!("{mode}/{}", inner.kind());
    let rec = Arc::new(Recorder::new(dir.path()));
    let engine = IoEngine::hooked(inner, rec.clone());
    let store = VirtualFileStore::new(common::context_with(mode, engine), dir.path()).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut versions: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    let names = ["a", "d/b", "d/e/c"];
    for step in 0..9 {
        let name = names[step % names.len()];
        let path = Path::from(name);
        let bytes = if rng.random_bool(0.5) {
            let len = rng.random_range(0..200_000);
            let bytes = random_bytes(&mut rng, len);
            store.put(&path, bytes.clone().into()).await.unwrap();
            bytes
        } else {
            let parts = random_parts(&mut rng);
            let mut upload = store.put_multipart(&path).await.unwrap();
            let puts: Vec<_> = parts
                .iter()
                .map(|p| upload.put_part(p.clone().into()))
                .collect();
            futures::future::try_join_all(puts).await.unwrap();
            upload.complete().await.unwrap();
            parts.concat().into()
        };
        versions.entry(name.to_owned()).or_default().push(Version {
            bytes,
            acked_at: rec.len(),
        });
    }
    // a no-replace create of a new name
    let bytes = random_bytes(&mut rng, 12_345);
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&Path::from("d/created"), bytes.clone().into(), opts)
        .await
        .unwrap();
    versions
        .entry("d/created".into())
        .or_default()
        .push(Version {
            bytes,
            acked_at: rec.len(),
        });
    assert_eq!(
        rec.untracked_opens(),
        0,
        "every file was created through the engine"
    );
    Run {
        label,
        log: rec.log(),
        versions,
    }
}

#[derive(Default)]
struct Tally {
    cuts: usize,
    visible: usize,
    findings: Vec<String>,
}

async fn check(run: &Run, cut: usize, seed: u64, tally: &mut Tally) {
    tally.cuts += 1;
    let image = run.log.crash_image(cut, seed);
    let dest = tempfile::tempdir().unwrap();
    image.materialize(dest.path()).unwrap();
    let at = |what: String| format!("{} cut {cut} seed {seed}: {what}", run.label);
    let mut visible = Vec::new();
    for (name, versions) in &run.versions {
        let file = dest.path().join(name);
        let acked = versions.iter().rposition(|v| v.acked_at <= cut);
        match std::fs::read(&file) {
            Ok(bytes) => {
                visible.push(name.clone());
                tally.visible += 1;
                match versions.iter().position(|v| v.bytes[..] == bytes[..]) {
                    None => tally.findings.push(at(format!(
                        "{name} holds {} bytes that are no version written to it",
                        bytes.len()
                    ))),
                    Some(i) if acked.is_some_and(|a| i < a) => tally.findings.push(at(format!(
                        "{name} holds version {i}, but version {} was acknowledged",
                        acked.unwrap()
                    ))),
                    Some(_) => {}
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(a) = acked {
                    tally
                        .findings
                        .push(at(format!("{name} is gone, version {a} was acknowledged")));
                }
            }
            Err(e) => panic!("{}: {e}", file.display()),
        }
    }
    // the store over the image lists exactly the visible objects: leftover temp files stay hidden
    let ctx = common::context_with(IoMode::Buffered, IoEngine::std_fs());
    let store = VirtualFileStore::new(ctx, dest.path()).unwrap();
    let mut listed: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    visible.sort();
    if listed != visible {
        tally
            .findings
            .push(at(format!("listed {listed:?}, visible {visible:?}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_power_cuts_whole_in_every_mode() {
    tokio::time::timeout(TIMEOUT, async {
        let base = base_seed();
        eprintln!("power-loss base seed {base} (replay with POWER_LOSS_SEED={base})");
        let mut tally = Tally::default();
        let mut runs = 0;
        for (m, mode) in MODES.into_iter().enumerate() {
            for (e, kind) in ENGINES.into_iter().enumerate() {
                let run = record_run(mode, common::engine(kind), base ^ 0x22).await;
                runs += 1;
                let mut rng = StdRng::seed_from_u64(base ^ ((m as u64) << 32) ^ ((e as u64) << 40));
                let points = run.log.sync_points();
                eprintln!(
                    "{}: {} ops, {} sync points",
                    run.label,
                    run.log.len(),
                    points.len()
                );
                for cut in points {
                    for seed in 0..SEEDS_PER_SYNC_POINT {
                        check(&run, cut, rng.random::<u64>() ^ seed, &mut tally).await;
                    }
                }
                for _ in 0..RANDOM_CUTS_PER_RUN {
                    let cut = rng.random_range(0..=run.log.len());
                    check(&run, cut, rng.random(), &mut tally).await;
                }
                // at the end every object holds its last version
                check(&run, run.log.len(), 0, &mut tally).await;
            }
        }
        eprintln!(
            "{runs} runs, {} cuts, {} objects seen, {} findings",
            tally.cuts,
            tally.visible,
            tally.findings.len()
        );
        assert!(tally.visible > 0);
        assert!(
            tally.findings.is_empty(),
            "{:#?}",
            &tally.findings[..tally.findings.len().min(10)]
        );
    })
    .await
    .expect("timed out");
}
