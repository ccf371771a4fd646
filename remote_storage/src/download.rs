//! Download of a layer object into the local directory, so that nothing but a complete, verified layer
//! ever appears under its final name:
//!
//! 1. `GET` the object; its size must be the one the index records (checked before any byte is written,
//!    so no length from the store sizes anything unchecked), and its checksum metadata, where the store
//!    keeps metadata, must agree with the index.
//! 2. Create `.<name>.download-<random>` exclusively (`O_CREAT|O_EXCL`) through `VirtualFile`, so
//!    `O_DIRECT` in `direct-rw`; write the body through a `BufferedWriter` (`PadThenTruncate`: aligned
//!    writes, then the exact length), computing CRC32C on the way; refuse bytes past the recorded size.
//! 3. `fsync` the file; compare size and CRC32C with the index.
//! 4. Rename to `<name>` with `RENAME_NOREPLACE` (an existing layer is never replaced), `fsync` the
//!    directory.
//!
//! On any failure the temporary file is removed (also when the future is dropped: a guard's `Drop`)
//! and nothing is renamed. A transient store error starts the download over with a new temporary file.

use std::path::{Path, PathBuf};

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use io_engine::RenameMode;
use object_store::{Attribute, GetOptions, GetResultPayload};
use rand::Rng;
use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
use virtual_file::{IoContext, OpenOptions, VirtualFile};

use crate::error::RemoteError;
use crate::index::{validate_layer_name, IndexEntry};
use crate::remote::{RemoteStorage, CRC_METADATA_KEY};
use crate::retry::with_retries;

/// Marks a temporary download file: `.<layer>.download-<16 hex digits>`.
pub const DOWNLOAD_TEMP_MARKER: &str = ".download-";

/// The temporary path of one download attempt of `name` into `dir`.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let nonce: u64 = rand::rng().random();
    dir.join(format!(".{name}{DOWNLOAD_TEMP_MARKER}{nonce:016x}"))
}

/// True for a file name made by a download attempt (left behind only by a crash).
pub fn is_download_temp(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.contains(DOWNLOAD_TEMP_MARKER)
}

/// A temporary file removed on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a temporary download");
                }
            }
        }
    }
}

/// The bytes of `range` of a file the local file system backend handed out, in chunks of `chunk` bytes
/// read on the blocking pool (`object_store`'s own stream of such a file reads 8 KiB at a time).
fn file_chunks(
    file: File,
    path: PathBuf,
    range: Range<u64>,
    chunk: usize,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let file = std::sync::Arc::new(file);
    futures::stream::try_unfold(range.start, move |pos| {
        let (file, path) = (file.clone(), path.clone());
        let end = range.end;
        async move {
            if pos >= end {
                return Ok(None);
            }
            let n = (end - pos).min(chunk as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                file.read_exact_at(&mut buf, pos).map(|()| buf)
            })
            .await?;
            let buf = read.map_err(|e| object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!("read {} at {pos}: {e}", path.display()).into(),
            })?;
            Ok(Some((Bytes::from(buf), pos + n as u64)))
        }
    })
    .boxed()
}

impl RemoteStorage {
    /// Downloads layer `name` (recorded in the index as `entry`) into `dir/name`: through a unique
    /// temporary file, checked against `entry` (size, CRC32C), fsynced, renamed without replacing and
    /// the directory fsynced. Fails if `dir/name` exists.
    ///
    /// Retried on transient store errors; runs in a `download` span (layer name, mode, engine, bytes).
    #[tracing::instrument(
        level = "info",
        name = "download",
        skip_all,
        fields(
            layer = name,
            mode = %ctx.io_mode(),
            engine = %ctx.engine_kind(),
            bytes = entry.size,
        )
    )]
    pub async fn download_layer(
        &self,
        ctx: &IoContext,
        name: &str,
        entry: &IndexEntry,
        dir: &Path,
    ) -> Result<PathBuf, RemoteError> {
        validate_layer_name(name)?;
        with_retries(&self.options.retry, "download layer", |_| {
            download_once(self, ctx, name, entry, dir)
        })
        .await
    }
}

/// One attempt: the `GET`, the temporary file, the checks and the rename of the module docs.
async fn download_once(
    remote: &RemoteStorage,
    ctx: &IoContext,
    name: &str,
    entry: &IndexEntry,
    dir: &Path,
) -> Result<PathBuf, RemoteError> {
    let key = remote.layer_key(name);
    let _permit = remote.transfers.acquire().await.expect("never closed");
    let got = remote
        .store
        .get_opts(&key, GetOptions::default())
        .await
        .map_err(|e| remote.store_error("get", key.as_ref(), e))?;
    if got.meta.size != entry.size {
        return Err(RemoteError::SizeMismatch {
            layer: name.to_owned(),
            key: key.to_string(),
            expected: entry.size,
            actual: got.meta.size,
        });
    }
    if let Some(value) = got
        .attributes
        .get(&Attribute::Metadata(CRC_METADATA_KEY.into()))
    {
        if u32::from_str_radix(value.as_ref(), 16).ok() != Some(entry.crc32c) {
            return Err(RemoteError::MetadataMismatch {
                layer: name.to_owned(),
                key: key.to_string(),
                expected: entry.crc32c,
                metadata: value.to_string(),
            });
        }
    }

    let local = |source| RemoteError::Local {
        layer: name.to_owned(),
        source,
    };
    let final_path = dir.join(name);
    let mut temp = TempFile {
        path: temp_path(dir, name),
        armed: false,
    };
    let file = VirtualFile::open_with_options(
        ctx,
        &temp.path,
        OpenOptions::new().write(true).create_new(true),
    )
    .await
    .map_err(local)?;
    temp.armed = true;
    let write_err = |message: String| RemoteError::LocalWrite {
        layer: name.to_owned(),
        path: temp.path.clone(),
        message,
    };
    let options = BufferedWriterOptions::default().with_capacity(remote.options.download_buffer);
    let mut writer: BufferedWriter<VirtualFile> =
        BufferedWriter::new(file, options).map_err(|e| write_err(e.to_string()))?;
    let mut crc = 0u32;
    let mut received = 0u64;
    let mut body = match got.payload {
        GetResultPayload::File(file, path) => {
            file_chunks(file, path, got.range, remote.options.download_buffer)
        }
        GetResultPayload::Stream(stream) => stream,
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| remote.store_error("get", key.as_ref(), e))?;
        received += chunk.len() as u64;
        if received > entry.size {
            return Err(RemoteError::SizeMismatch {
                layer: name.to_owned(),
                key: key.to_string(),
                expected: entry.size,
                actual: received,
            });
        }
        crc = crc32c::crc32c_append(crc, &chunk);
        writer
            .write_buffered(&chunk)
            .await
            .map_err(|e| write_err(e.to_string()))?;
    }
    let (written, file) = writer
        .shutdown(ShutdownMode::PadThenTruncate)
        .await
        .map_err(|e| write_err(e.to_string()))?;
    file.sync_all().await.map_err(local)?;
    drop(file);
    if received != entry.size || written != entry.size {
        return Err(RemoteError::SizeMismatch {
            layer: name.to_owned(),
            key: key.to_string(),
            expected: entry.size,
            actual: received,
        });
    }
    if crc != entry.crc32c {
        return Err(RemoteError::ChecksumMismatch {
            layer: name.to_owned(),
            key: key.to_string(),
            expected: entry.crc32c,
            actual: crc,
            size: received,
        });
    }
    ctx.engine()
        .rename(&temp.path, &final_path, RenameMode::NoReplace)
        .await
        .map_err(|source| RemoteError::LocalFs {
            layer: name.to_owned(),
            op: "rename (no replace) into place",
            path: final_path.clone(),
            source,
        })?;
    temp.armed = false;
    ctx.sync_dir(dir).await.map_err(local)?;
    Ok(final_path)
}
