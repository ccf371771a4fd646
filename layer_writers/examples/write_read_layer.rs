//! Quick start: put values into an in-memory layer, write it out as a delta layer, read a key back.
//! Mode and engine come from VIRTUAL_FILE_IO_MODE and VIRTUAL_FILE_IO_ENGINE.
use layer_writers::{DeltaLayerReader, InMemoryLayer, Key, Lsn};
use virtual_file::IoContext;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = IoContext::from_env()?;
    let dir = tempfile::tempdir()?;

    // values go to an ephemeral file in `dir`, indexed in memory
    let layer = InMemoryLayer::create(&ctx, dir.path(), 1).await?;
    for i in 0..10_000u128 {
        let value = format!("value {i}");
        layer
            .put_value(Key::from_u128(i), Lsn(1), true, value.as_bytes())
            .await?;
    }

    // freeze, then write a delta layer (fsynced and renamed into place)
    layer.freeze().await?;
    let info = layer.write_to_disk(&ctx, dir.path(), "layer-1").await?;
    layer.remove().await?;

    let reader = DeltaLayerReader::open(&ctx, &info.path).await?;
    let found = reader.get(Key::from_u128(42), Lsn(0)..Lsn(2)).await?;
    assert_eq!(found, vec![(Lsn(1), true, b"value 42".to_vec())]);

    println!(
        "{} values, {} bytes, mode {}, engine {}",
        info.num_entries,
        info.file_len,
        ctx.io_mode(),
        ctx.engine_kind()
    );
    Ok(())
}
