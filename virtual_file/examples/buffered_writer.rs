//! Streams 32 MiB (and an odd tail) through a `BufferedWriter`: 1 MiB buffers, one filling while the
//! other is written, finished with `PadThenTruncate` so the file ends exactly after the last byte.
//! With the default mode (`direct-rw`) the file is written with `O_DIRECT`. Mode and engine come from
//! VIRTUAL_FILE_IO_MODE and VIRTUAL_FILE_IO_ENGINE.
use std::time::Instant;

use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
use virtual_file::{IoContext, VirtualFile};

const CHUNK: usize = 8192;
const CHUNKS: usize = 32 * 128; // 32 MiB
const TAIL: usize = 1000; // not a multiple of the alignment

/// The bytes of chunk `i` (its number mixed with the position), so a misplaced chunk is caught.
fn chunk(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as u8) ^ (j as u8)).collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = IoContext::from_env()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("stream.bin");

    let file = VirtualFile::create(&ctx, &path).await?;
    let direct = file.is_direct();
    let options = BufferedWriterOptions::default().with_capacity(1024 * 1024);
    let mut writer: BufferedWriter<VirtualFile> = BufferedWriter::new(file, options)?;

    let started = Instant::now();
    for i in 0..CHUNKS {
        writer.write_buffered(&chunk(i, CHUNK)).await?;
    }
    writer.write_buffered(&chunk(CHUNKS, TAIL)).await?;
    // pad the tail to the alignment, write it, then cut the file back to the logical length
    let (len, file) = writer.shutdown(ShutdownMode::PadThenTruncate).await?;
    file.sync_all().await?;
    let elapsed = started.elapsed();

    let expected_len = (CHUNKS * CHUNK + TAIL) as u64;
    assert_eq!(len, expected_len);
    let on_disk = std::fs::read(&path)?;
    assert_eq!(on_disk.len() as u64, expected_len);
    for (i, got) in on_disk.chunks(CHUNK).enumerate() {
        assert_eq!(got, chunk(i, got.len()), "chunk {i}");
    }

    let mib = len as f64 / (1024.0 * 1024.0);
    println!(
        "{mib:.1} MiB in {:.3} s ({:.0} MiB/s), O_DIRECT {direct}, mode {}, engine {}",
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64(),
        ctx.io_mode(),
        ctx.engine_kind()
    );
    Ok(())
}
