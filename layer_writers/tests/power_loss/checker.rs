//! The crash checker: materializes a crash image of a recorded run, runs the start-up cleanup on it, and
//! checks every layer the run wrote: a layer visible under its final name must verify completely (full
//! scan and every key's point read equal the model), and a layer whose `finish` was acknowledged before
//! the cut must be there.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use io_engine::power_loss::OpLog;
use io_engine::IoEngine;
use layer_writers::{remove_temp_files, DeltaLayerReader, ImageLayerReader, Key, Lsn};
use virtual_file::{IoContext, IoMode};

pub type DeltaModel = BTreeMap<(Key, Lsn), (bool, Vec<u8>)>;
pub type ImageModel = BTreeMap<Key, Vec<u8>>;

/// What a layer must hold.
#[derive(Debug)]
pub enum Contents {
    Delta(DeltaModel),
    Image(ImageModel),
}

/// A layer a run wrote: its final name, what it must hold, and the cut point from which it was
/// acknowledged durable (`finish` returned Ok once that many ops had completed).
#[derive(Debug)]
pub struct ExpectedLayer {
    pub name: String,
    pub contents: Arc<Contents>,
    pub acked_at: Option<usize>,
}

/// A recorded run: its op log and its layers.
#[derive(Debug)]
pub struct Run {
    pub label: String,
    pub log: OpLog,
    pub layers: Vec<ExpectedLayer>,
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Tally {
    pub cuts: u64,
    /// Visible layers checked (including those whose identical bytes were verified before).
    pub layers_checked: u64,
    /// Distinct layer contents opened and verified.
    pub verifications: u64,
    pub temp_files_removed: u64,
    pub incomplete_visible: Vec<String>,
    pub acked_lost: Vec<String>,
}

impl Tally {
    pub fn summary(&self) -> String {
        format!(
            "cut points tried: {}, layers checked: {} ({} distinct contents verified), temp files \
             removed at start-up: {}, incomplete layers visible: {}, acknowledged layers lost: {}",
            self.cuts,
            self.layers_checked,
            self.verifications,
            self.temp_files_removed,
            self.incomplete_visible.len(),
            self.acked_lost.len()
        )
    }
}

pub struct Checker {
    ctx: IoContext,
    scratch: tempfile::TempDir,
    /// (run label, layer index, content hash) -> verdict. The readers are deterministic, so identical
    /// bytes get identical verdicts.
    verdicts: HashMap<(String, usize, u64), Result<(), String>>,
}

/// Where crash images go: tmpfs when there is one (the checker reads them buffered).
fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl Checker {
    pub fn new() -> Self {
        let ctx = IoContext::builder()
            .engine(IoEngine::std_fs())
            .mode(IoMode::Buffered)
            .build()
            .expect("checker context");
        let scratch = tempfile::Builder::new()
            .prefix("power-loss-")
            .tempdir_in(scratch_base())
            .expect("scratch dir");
        Self {
            ctx,
            scratch,
            verdicts: HashMap::new(),
        }
    }

    /// Checks the image of `run` cut at `cut` with outcomes chosen by `seed`.
    pub async fn check(&mut self, run: &Run, cut: usize, seed: u64, tally: &mut Tally) {
        let image = run.log.crash_image(cut, seed);
        let out = tempfile::Builder::new()
            .prefix("image-")
            .tempdir_in(self.scratch.path())
            .expect("image dir");
        image.materialize(out.path()).expect("materialize");
        tally.temp_files_removed += remove_temp_files(out.path()).expect("start-up cleanup") as u64;
        tally.cuts += 1;
        let at = || {
            format!(
                "{} cut {cut}/{} seed {seed:#x} ({:?}, {} unguaranteed ops)",
                run.label,
                run.log.len(),
                image.dir_order,
                image.optional_ops
            )
        };
        for (i, layer) in run.layers.iter().enumerate() {
            let path = out.path().join(&layer.name);
            let verdict = match std::fs::read(&path) {
                Ok(bytes) => {
                    tally.layers_checked += 1;
                    let key = (run.label.clone(), i, content_hash(&bytes));
                    if !self.verdicts.contains_key(&key) {
                        tally.verifications += 1;
                        let v = verify(&self.ctx, &path, &layer.contents).await;
                        self.verdicts.insert(key.clone(), v);
                    }
                    Some(self.verdicts[&key].clone())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => panic!("{}: read {}: {e}", at(), path.display()),
            };
            let acked = layer.acked_at.is_some_and(|a| a <= cut);
            if let Some(Err(reason)) = &verdict {
                tally.incomplete_visible.push(format!(
                    "{}: {} visible but {reason}",
                    at(),
                    layer.name
                ));
            }
            if acked && !matches!(verdict, Some(Ok(()))) {
                tally.acked_lost.push(format!(
                    "{}: {} acknowledged at op {} but {}",
                    at(),
                    layer.name,
                    layer.acked_at.unwrap_or_default(),
                    if verdict.is_some() {
                        "broken"
                    } else {
                        "missing"
                    }
                ));
            }
        }
    }
}

/// Opens the layer and compares a full scan and a point read of every key with the model.
async fn verify(ctx: &IoContext, path: &Path, contents: &Contents) -> Result<(), String> {
    match contents {
        Contents::Delta(model) => {
            let reader = DeltaLayerReader::open(ctx, path)
                .await
                .map_err(|e| format!("does not open: {e}"))?;
            let scanned = reader.scan().await.map_err(|e| format!("scan: {e}"))?;
            let want: Vec<_> = model
                .iter()
                .map(|((k, l), (w, v))| (*k, *l, *w, v.clone()))
                .collect();
            if scanned != want {
                return Err(format!(
                    "scan differs ({} entries, {} expected)",
                    scanned.len(),
                    want.len()
                ));
            }
            let mut keys: Vec<Key> = model.keys().map(|(k, _)| *k).collect();
            keys.dedup();
            let requests: Vec<_> = keys.iter().map(|k| (*k, Lsn(0)..Lsn(u64::MAX))).collect();
            let got = reader
                .get_many(&requests)
                .await
                .map_err(|e| format!("get: {e}"))?;
            for (key, versions) in keys.iter().zip(got) {
                let want: Vec<_> = model
                    .range((*key, Lsn(0))..=(*key, Lsn(u64::MAX)))
                    .map(|((_, l), (w, v))| (*l, *w, v.clone()))
                    .collect();
                if versions != want {
                    return Err(format!("get of {key} differs"));
                }
            }
            Ok(())
        }
        Contents::Image(model) => {
            let reader = ImageLayerReader::open(ctx, path)
                .await
                .map_err(|e| format!("does not open: {e}"))?;
            let scanned = reader.scan().await.map_err(|e| format!("scan: {e}"))?;
            let want: Vec<_> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
            if scanned != want {
                return Err(format!(
                    "scan differs ({} entries, {} expected)",
                    scanned.len(),
                    want.len()
                ));
            }
            let keys: Vec<Key> = model.keys().copied().collect();
            let got = reader
                .get_many(&keys)
                .await
                .map_err(|e| format!("get: {e}"))?;
            for (key, value) in keys.iter().zip(got) {
                if value.as_ref() != model.get(key) {
                    return Err(format!("get of {key} differs"));
                }
            }
            Ok(())
        }
    }
}
