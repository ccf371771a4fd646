//! A layer's trip through the remote tier: write a delta layer, upload it to an object store
//! (`object_store`'s local file system backend here; `StoreConfig::S3` for S3), download it into another
//! directory (checksummed, fsynced, renamed into place) and read a key from the copy. Mode and engine
//! come from VIRTUAL_FILE_IO_MODE and VIRTUAL_FILE_IO_ENGINE.
use layer_writers::{DeltaLayerReader, DeltaLayerWriter, Key, Lsn};
use remote_storage::{RemoteOptions, RemoteStorage, StoreConfig};
use virtual_file::IoContext;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = IoContext::from_env()?;
    let local = tempfile::tempdir()?;
    let bucket = tempfile::tempdir()?;
    let elsewhere = tempfile::tempdir()?;

    let mut writer = DeltaLayerWriter::new(&ctx, local.path(), "layer-1").await?;
    for k in 0..1000u128 {
        writer
            .put_value(
                Key::from_u128(k),
                Lsn(5),
                true,
                format!("value {k}").as_bytes(),
            )
            .await?;
    }
    let info = writer.finish().await?;

    let store = StoreConfig::Local {
        root: bucket.path().to_owned(),
    };
    let remote = RemoteStorage::connect(&store, RemoteOptions::default()).await?;
    let entry = remote.upload_layer(&ctx, &info.path, "layer-1").await?;

    // the index names the layer with its size and checksum
    let index = remote.load_index().await?;
    assert_eq!(index.layers.get("layer-1"), Some(&entry));

    let copy = remote
        .download_layer(&ctx, "layer-1", &entry, elsewhere.path())
        .await?;
    assert_eq!(std::fs::read(&copy)?, std::fs::read(&info.path)?);
    let reader = DeltaLayerReader::open(&ctx, &copy).await?;
    let found = reader.get(Key::from_u128(7), Lsn(0)..Lsn(6)).await?;
    assert_eq!(found, vec![(Lsn(5), true, b"value 7".to_vec())]);

    println!(
        "uploaded and downloaded {} bytes (crc32c {:08x}) via {}; mode {}, engine {}",
        entry.size,
        entry.crc32c,
        remote.description(),
        ctx.io_mode(),
        ctx.engine_kind()
    );
    Ok(())
}
