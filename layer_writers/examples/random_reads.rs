//! Many tasks doing point lookups over one delta layer, their reads drawing on a shared `ReadBudget`
//! (bytes of read buffers in flight), so IO that outpaces the callers cannot pile up memory. Mode and
//! engine come from VIRTUAL_FILE_IO_MODE and VIRTUAL_FILE_IO_ENGINE.
use std::sync::Arc;
use std::time::Instant;

use layer_writers::{DeltaLayerReader, DeltaLayerWriter, Key, Lsn, ReadBudget};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use virtual_file::IoContext;

const KEYS: u64 = 20_000;
const VALUE_LEN: usize = 500;
const TASKS: u64 = 32;
const LOOKUPS_PER_TASK: usize = 150;
const BUDGET_BYTES: usize = 256 * 1024;

/// The value stored under key `k`.
fn value_of(k: u64) -> Vec<u8> {
    let mut v = vec![(k % 251) as u8; VALUE_LEN];
    v[..8].copy_from_slice(&k.to_le_bytes());
    v
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = IoContext::from_env()?;
    let dir = tempfile::tempdir()?;

    // a delta layer of KEYS values, one LSN each, written in key order
    let mut writer = DeltaLayerWriter::new(&ctx, dir.path(), "layer-1").await?;
    for k in 0..KEYS {
        writer
            .put_value(Key::from_u128(k.into()), Lsn(10), true, &value_of(k))
            .await?;
    }
    let info = writer.finish().await?;

    let budget = ReadBudget::new(BUDGET_BYTES);
    let reader = DeltaLayerReader::open_with_budget(&ctx, &info.path, Some(budget.clone())).await?;
    let reader = Arc::new(reader);

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let reader = Arc::clone(&reader);
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(task);
            for _ in 0..LOOKUPS_PER_TASK {
                let k = rng.random_range(0..KEYS);
                let found = reader
                    .get(Key::from_u128(k.into()), Lsn(0)..Lsn(11))
                    .await?;
                assert_eq!(found, vec![(Lsn(10), true, value_of(k))], "key {k}");
            }
            Ok::<_, layer_writers::LayerError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();

    let lookups = TASKS as f64 * LOOKUPS_PER_TASK as f64;
    println!(
        "{lookups} lookups by {TASKS} tasks in {:.3} s ({:.0}/s); read budget {} bytes, most held at once {}; mode {}, engine {}",
        elapsed.as_secs_f64(),
        lookups / elapsed.as_secs_f64(),
        budget.total(),
        budget.max_held(),
        ctx.io_mode(),
        ctx.engine_kind()
    );
    Ok(())
}
