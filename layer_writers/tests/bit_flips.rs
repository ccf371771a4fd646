//! Seeded single-bit flips over whole delta and image layer files (summary fields, summary tail, values,
//! padding, index), read back in every IO mode (engines alternating). For each flip: open, a point `get`
//! of every key, one vectored `get_many` of all keys, a scan, and the full `verify`.
//!
//! Every read must give either a typed corruption error or exactly the right bytes; `verify` (or `open`)
//! must report every flip. Counted and printed: flips, detected by reads, detected only by verify, silent
//! wrong reads (must be 0), verify misses (must be 0), panics (must be 0; each flip runs in its own task,
//! so a panic is counted, not fatal), errors that are not corruption errors (must be 0).
//!
//! Replay with `CORRUPT_SEED=<seed>`; `BIT_FLIPS=<n>` changes the number of flips (default 10,000).

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::all_contexts;
use layer_writers::format::blob::{decode_header, Compression};
use layer_writers::format::summary::{Summary, SUMMARY_SIZE};
use layer_writers::{
    DeltaLayerReader, DeltaLayerWriter, ImageLayerReader, ImageLayerWriter, Key, LayerError, Lsn,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use virtual_file::IoContext;

const DEFAULT_FLIPS: usize = 10_000;
const DEFAULT_SEED: u64 = 0x0B17_F11B;
/// Bytes of summary fields (the rest of block 0 must be zero).
const SUMMARY_FIELDS: u64 = 80;
/// Generous: one flip takes milliseconds.
const FLIP_TIMEOUT: Duration = Duration::from_secs(60);

type DeltaModel = BTreeMap<Key, Vec<(Lsn, bool, Vec<u8>)>>;
type ImageModel = BTreeMap<Key, Vec<u8>>;

#[derive(Clone)]
enum Layer {
    Delta(DeltaModel),
    Image(ImageModel),
}

/// A layer file, what it holds, and its regions.
struct Original {
    name: &'static str,
    bytes: Vec<u8>,
    layer: Layer,
    regions: Vec<(&'static str, Range<u64>)>,
}

fn regions(bytes: &[u8]) -> Vec<(&'static str, Range<u64>)> {
    let s = Summary::decode(bytes).unwrap();
    let index_start = s.index_start_offset();
    let regions = vec![
        ("summary fields", 0..SUMMARY_FIELDS),
        ("summary tail", SUMMARY_FIELDS..SUMMARY_SIZE as u64),
        ("values", SUMMARY_SIZE as u64..s.values_end),
        ("padding", s.values_end..index_start),
        ("index", index_start..s.file_len()),
    ];
    assert!(regions.iter().all(|(_, r)| !r.is_empty()), "{regions:?}");
    regions
}

fn value(rng: &mut StdRng, len: usize, compressible: bool) -> Vec<u8> {
    if compressible {
        let base: u8 = rng.random();
        (0..len).map(|i| base.wrapping_add((i % 7) as u8)).collect()
    } else {
        (0..len).map(|_| rng.random()).collect()
    }
}

async fn write_delta(ctx: &IoContext, dir: &Path, rng: &mut StdRng) -> Original {
    let mut model = DeltaModel::new();
    let mut w = DeltaLayerWriter::new(ctx, dir, "delta").await.unwrap();
    for k in 0..6u128 {
        let key = Key::from_u128(0x1000 + k * 3);
        for l in 0..rng.random_range(1..4u64) {
            let lsn = Lsn(10 + l * 5 + k as u64);
            let len = rng.random_range(0..400);
            let compressible = rng.random_bool(0.5);
            let v = value(rng, len, compressible);
            let will_init = l == 0;
            w.put_value(key, lsn, will_init, &v).await.unwrap();
            model.entry(key).or_default().push((lsn, will_init, v));
        }
    }
    let path = w.finish().await.unwrap().path;
    let bytes = std::fs::read(path).unwrap();
    Original {
        name: "delta",
        regions: regions(&bytes),
        bytes,
        layer: Layer::Delta(model),
    }
}

async fn write_image(ctx: &IoContext, dir: &Path, rng: &mut StdRng) -> Original {
    let mut model = ImageModel::new();
    let mut w = ImageLayerWriter::new(ctx, dir, "image", Lsn(0x50))
        .await
        .unwrap();
    for k in 0..8u128 {
        let key = Key::from_u128(0x2000 + k * 11);
        // Half compressible (stored zstd-compressed), half noise (stored raw); one spans pages.
        let len = if k == 3 {
            9000
        } else {
            rng.random_range(0..700)
        };
        let v = value(rng, len, k % 2 == 1);
        w.put_image(key, &v).await.unwrap();
        model.insert(key, v);
    }
    let path = w.finish().await.unwrap().path;
    let bytes = std::fs::read(path).unwrap();
    assert!(
        compressed_blobs(&bytes) >= 3,
        "the image layer holds zstd-compressed images"
    );
    Original {
        name: "image",
        regions: regions(&bytes),
        bytes,
        layer: Layer::Image(model),
    }
}

/// How many blobs of the layer file `bytes` are stored zstd-compressed (walking the blob headers).
fn compressed_blobs(bytes: &[u8]) -> usize {
    let values_end = Summary::decode(bytes).unwrap().values_end as usize;
    let (mut at, mut compressed) = (SUMMARY_SIZE, 0);
    while at < values_end {
        let h = decode_header(&bytes[at..]).unwrap();
        compressed += usize::from(h.compression == Compression::Zstd);
        at += h.total_len();
    }
    assert_eq!(at, values_end);
    compressed
}

/// What reading one flipped file gave.
#[derive(Debug, Default)]
struct Outcome {
    read_errors: u32,
    wrong_reads: Vec<String>,
    verify_detected: bool,
    /// Errors that are not corruption errors (IO, misuse): a flip must never cause one.
    untyped: Vec<String>,
}

impl Outcome {
    fn read<T: PartialEq + std::fmt::Debug>(
        &mut self,
        what: &str,
        got: Result<T, LayerError>,
        want: &T,
    ) {
        match got {
            Ok(v) if &v == want => {}
            Ok(v) => self
                .wrong_reads
                .push(format!("{what}: got {v:?}, want {want:?}")),
            Err(e) => {
                self.read_errors += 1;
                if !e.is_corruption() {
                    self.untyped.push(format!("{what}: {e}"));
                }
            }
        }
    }

    fn verify<T>(&mut self, res: Result<T, LayerError>) {
        if let Err(e) = res {
            self.verify_detected = true;
            if !e.is_corruption() {
                self.untyped.push(format!("verify: {e}"));
            }
        }
    }

    /// The reader `open` gave, or `None` if it failed: then reads and verify both saw the corruption.
    fn opened<R>(&mut self, open: Result<R, LayerError>) -> Option<R> {
        match open {
            Ok(reader) => Some(reader),
            Err(e) => {
                self.read_errors += 1;
                self.verify(Err::<(), _>(e));
                None
            }
        }
    }
}

async fn check(ctx: IoContext, path: PathBuf, layer: Layer) -> Outcome {
    let mut out = Outcome::default();
    let all = Lsn(0)..Lsn(u64::MAX - 1);
    match layer {
        Layer::Delta(model) => {
            let Some(r) = out.opened(DeltaLayerReader::open(&ctx, &path).await) else {
                return out;
            };
            for (key, want) in &model {
                out.read(&format!("get {key}"), r.get(*key, all.clone()).await, want);
            }
            let requests: Vec<(Key, Range<Lsn>)> =
                model.keys().map(|k| (*k, all.clone())).collect();
            let want: Vec<_> = model.values().cloned().collect();
            out.read("get_many", r.get_many(&requests).await, &want);
            let want: Vec<_> = model
                .iter()
                .flat_map(|(k, vs)| vs.iter().map(|(l, wi, v)| (*k, *l, *wi, v.clone())))
                .collect();
            out.read("scan", r.scan().await, &want);
            out.verify(r.verify().await);
        }
        Layer::Image(model) => {
            let Some(r) = out.opened(ImageLayerReader::open(&ctx, &path).await) else {
                return out;
            };
            for (key, want) in &model {
                out.read(
                    &format!("get {key}"),
                    r.get(*key).await,
                    &Some(want.clone()),
                );
            }
            let keys: Vec<Key> = model.keys().copied().collect();
            let want: Vec<_> = model.values().cloned().map(Some).collect();
            out.read("get_many", r.get_many(&keys).await, &want);
            let want: Vec<_> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
            out.read("scan", r.scan().await, &want);
            out.verify(r.verify().await);
        }
    }
    out
}

#[derive(Debug, Default)]
struct Counts {
    flips: u64,
    detected_by_reads: u64,
    detected_only_by_verify: u64,
    silent_wrong_reads: u64,
    verify_missed: u64,
    panics: u64,
    untyped_errors: u64,
    per_region: BTreeMap<String, u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_single_bit_flips_are_detected() {
    let seed = std::env::var("CORRUPT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let flips: usize = std::env::var("BIT_FLIPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_FLIPS);
    let contexts = all_contexts();
    assert!(!contexts.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let originals = [
        write_delta(&contexts[0].1, dir.path(), &mut rng).await,
        write_image(&contexts[0].1, dir.path(), &mut rng).await,
    ];
    let mut counts = Counts::default();
    let mut failures: Vec<String> = Vec::new();
    for i in 0..flips {
        let original = &originals[i % originals.len()];
        // Region first (so the small ones get flips too), then a bit in it.
        let (region, range) = &original.regions[rng.random_range(0..original.regions.len())];
        let byte = rng.random_range(range.clone());
        let bit = rng.random_range(0..8u8);
        let (label, ctx) = &contexts[(i / originals.len()) % contexts.len()];
        let what = format!(
            "flip {i} (CORRUPT_SEED={seed}): {} byte {byte} bit {bit} ({region}), {label}",
            original.name
        );
        let mut data = original.bytes.clone();
        data[byte as usize] ^= 1 << bit;
        let path = dir.path().join(format!("flip-{i}"));
        std::fs::write(&path, &data).unwrap();
        counts.flips += 1;
        *counts
            .per_region
            .entry(format!("{} {region}", original.name))
            .or_default() += 1;
        let task = tokio::spawn(check(ctx.clone(), path.clone(), original.layer.clone()));
        let outcome = match tokio::time::timeout(FLIP_TIMEOUT, task).await {
            Err(_) => panic!("{what}: no result within {FLIP_TIMEOUT:?}"),
            Ok(Err(join)) => {
                counts.panics += 1;
                failures.push(format!("{what}: panicked: {join}"));
                std::fs::remove_file(&path).unwrap();
                continue;
            }
            Ok(Ok(outcome)) => outcome,
        };
        std::fs::remove_file(&path).unwrap();
        if outcome.read_errors > 0 {
            counts.detected_by_reads += 1;
        } else if outcome.verify_detected {
            counts.detected_only_by_verify += 1;
        }
        if !outcome.wrong_reads.is_empty() {
            counts.silent_wrong_reads += 1;
            failures.push(format!("{what}: wrong data: {:?}", outcome.wrong_reads));
        }
        if !outcome.verify_detected {
            counts.verify_missed += 1;
            failures.push(format!("{what}: verify passed"));
        }
        if !outcome.untyped.is_empty() {
            counts.untyped_errors += 1;
            failures.push(format!(
                "{what}: not corruption errors: {:?}",
                outcome.untyped
            ));
        }
    }
    eprintln!("bit flips (CORRUPT_SEED={seed}): {counts:#?}");
    assert!(
        failures.is_empty(),
        "{} failing flips, first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert_eq!(counts.silent_wrong_reads, 0);
    assert_eq!(counts.panics, 0);
    assert_eq!(counts.verify_missed, 0);
    assert_eq!(
        counts.detected_by_reads + counts.detected_only_by_verify,
        counts.flips
    );
}
