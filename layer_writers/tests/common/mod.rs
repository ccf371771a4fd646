//! Shared by the layer integration tests: contexts for every IO mode x engine, and random workloads with
//! their `BTreeMap` models.

#![allow(dead_code, unused_macros)] // each test file uses a different subset (the template is a macro)

use std::collections::BTreeMap;
use std::ops::Range;

use io_engine::{IoEngine, IoEngineKind};
use layer_writers::{Key, Lsn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest_reuse::template;
use virtual_file::{IoContext, IoMode};

pub const MODES: [IoMode; 4] = [
    IoMode::Buffered,
    IoMode::Direct,
    IoMode::DirectRw,
    IoMode::BufferedDontcache,
];
pub const ENGINES: [IoEngineKind; 2] = [IoEngineKind::StdFs, IoEngineKind::TokioEpollUring];

/// A test case for every IO mode x engine: `#[apply(io_matrix)]` on a test that takes `mode: IoMode`
/// and `kind: IoEngineKind` (more `#[values]` may follow them).
#[template]
#[rstest]
pub fn io_matrix(
    #[values(
        IoMode::Buffered,
        IoMode::Direct,
        IoMode::DirectRw,
        IoMode::BufferedDontcache
    )]
    mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
}

/// A context with `mode` and a freshly started engine `kind`; `None` (with the reason printed) where the
/// engine cannot start here, so the test is skipped visibly rather than passing silently. Must be called
/// inside a tokio runtime (the io_uring engine registers with it).
pub fn context(mode: IoMode, kind: IoEngineKind) -> Option<IoContext> {
    context_with_budget(mode, kind, virtual_file::DEFAULT_MEMORY_BYTES)
}

/// [`context`] and a fresh temporary directory for the layers of one test; `None` where the engine
/// cannot start here (see [`context`]).
pub fn context_and_dir(mode: IoMode, kind: IoEngineKind) -> Option<(IoContext, tempfile::TempDir)> {
    let ctx = context(mode, kind)?;
    Some((ctx, tempfile::tempdir().expect("temp dir")))
}

/// [`context`] with a memory budget of `budget` bytes (a small one makes the in-memory layer's
/// ephemeral file spill in the direct modes).
pub fn context_with_budget(mode: IoMode, kind: IoEngineKind, budget: usize) -> Option<IoContext> {
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
            .memory_budget_bytes(budget)
            .build()
            .expect("context"),
    )
}

/// An engine that cannot start here: with `VIRTUAL_FILE_REQUIRE_URING=1` (set by CI, where io_uring
/// works) that fails the test; otherwise the test is skipped with the reason printed (libtest shows it
/// only with `--nocapture`, which is why CI asks for the failure instead).
pub fn engine_unavailable(kind: IoEngineKind, err: &dyn std::fmt::Display) {
    if io_engine::env::require_uring() {
        panic!("VIRTUAL_FILE_REQUIRE_URING=1, but engine {kind} cannot start here: {err}");
    }
    eprintln!("skipped: engine {kind} cannot start here: {err}");
}

/// Every context of the matrix that can run here, with its label.
pub fn all_contexts() -> Vec<(String, IoContext)> {
    let mut out = Vec::new();
    for kind in ENGINES {
        for mode in MODES {
            if let Some(ctx) = context(mode, kind) {
                out.push((format!("{mode}/{kind}"), ctx));
            }
        }
    }
    out
}

/// A value of `len` bytes: either incompressible noise or a compressible repeating pattern.
pub fn value(rng: &mut StdRng, len: usize) -> Vec<u8> {
    if rng.random_bool(0.5) {
        (0..len).map(|_| rng.random()).collect()
    } else {
        let period = rng.random_range(1..64usize);
        let base: u8 = rng.random();
        (0..len)
            .map(|i| base.wrapping_add((i % period) as u8))
            .collect()
    }
}

/// A value length: mostly 0..20 KiB, often tiny (the 1-byte header), never above 20 KiB.
pub fn small_len(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10) {
        0..=2 => rng.random_range(0..128),
        _ => rng.random_range(0..20 * 1024),
    }
}

/// Sizes of the big values put into every workload: above the 128 KiB merge limit.
pub const BIG_LENS: [usize; 2] = [150 * 1024, 300 * 1024 + 17];

pub type DeltaModel = BTreeMap<(Key, Lsn), (bool, Vec<u8>)>;
pub type ImageModel = BTreeMap<Key, Vec<u8>>;

/// `n` random delta records over a few dozen keys (many LSNs per key), plus the big values.
pub fn delta_workload(seed: u64, n: usize) -> DeltaModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = DeltaModel::new();
    let key_base: u128 = rng.random::<u64>() as u128 * 1000;
    while model.len() < n {
        let key = Key::from_u128(key_base + rng.random_range(0..40u128) * 7);
        let lsn = Lsn(rng.random_range(1..2000));
        let len = small_len(&mut rng);
        model.insert((key, lsn), (rng.random_bool(0.3), value(&mut rng, len)));
    }
    for (i, len) in BIG_LENS.into_iter().enumerate() {
        let key = Key::from_u128(key_base + 3 + i as u128 * 7);
        model.insert((key, Lsn(2001 + i as u64)), (true, value(&mut rng, len)));
    }
    model
}

/// `n` random images, plus the big values.
pub fn image_workload(seed: u64, n: usize) -> ImageModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = ImageModel::new();
    while model.len() < n {
        let key = Key::from_u128(rng.random_range(0..1u128 << 100));
        let len = small_len(&mut rng);
        model.insert(key, value(&mut rng, len));
    }
    for len in BIG_LENS {
        let key = Key::from_u128(rng.random_range(0..1u128 << 100));
        model.insert(key, value(&mut rng, len));
    }
    model
}

/// What the model says `get(key, lsns)` returns.
pub fn delta_expect(model: &DeltaModel, key: Key, lsns: Range<Lsn>) -> Vec<(Lsn, bool, Vec<u8>)> {
    if lsns.start >= lsns.end {
        return Vec::new();
    }
    model
        .range((key, lsns.start)..(key, lsns.end))
        .map(|((_, lsn), (wi, v))| (*lsn, *wi, v.clone()))
        .collect()
}
