//! Upload of a finished layer file: read through `VirtualFile` (`O_DIRECT` in the direct modes, into
//! aligned `IoBufferMut`s handed to `object_store` without a copy), one `put` up to the multipart
//! threshold, a multipart upload above it with parts in flight in parallel.
//!
//! The whole-file CRC32C goes into the object's metadata, which S3 takes only when the upload starts; so
//! a multipart upload to S3 reads the file twice: once for the checksum, once for the parts (whose
//! checksum is computed again and must match, or the file changed underneath and the upload is
//! aborted). A store without metadata (the local file system) gets one pass. Each part is sent by a task
//! of its own, so the next part is read from disk while the previous ones are on the wire.
//!
//! **Sizes.** The file must not change while it is uploaded. It is opened once per pass and its size
//! taken at open is the size uploaded; at the end of each pass it is checked again, so a file that grew
//! (only a prefix of it would be sent) or shrank (the read ends early) is
//! [`RemoteError::UploadSizeMismatch`] naming the path and both sizes, and nothing is put or completed.
//! A size (and CRC32C) recorded by the caller (the tier records the size when a layer is admitted) must
//! match too. The CRC32C is computed over exactly the bytes sent.
//!
//! Cancellation: a multipart upload is held by an `AbortOnDrop` guard until it completes; a failed or
//! dropped upload is aborted (in the background when dropped), with retries for
//! [`RetryPolicy::abort_window`](crate::RetryPolicy::abort_window), so it leaves no parts behind where
//! the store comes back within that window (else see `orphans.rs`). Nothing here touches the
//! index.

use std::path::Path;
use std::time::Instant;

use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload,
};
use tokio::task::JoinSet;
use virtual_file::IoContext;

use crate::abort::AbortOnDrop;
use crate::chunks::ChunkReader;
use crate::error::{is_missing_object, RemoteError};
use crate::index::{validate_layer_name, IndexEntry};
use crate::remote::{RemoteStorage, CRC_METADATA_KEY};
use crate::retry::with_retries;

/// Size and checksum of an uploaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes uploaded.
    pub size: u64,
    /// CRC32C of the bytes.
    pub crc32c: u32,
}

/// What the caller knows the file must be (nothing, by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Expect {
    /// The size recorded for the layer.
    pub(crate) size: Option<u64>,
    /// The CRC32C recorded for the layer.
    pub(crate) crc32c: Option<u32>,
}

/// Size and CRC32C of the file at `path` (layer `layer`), read front to back in `chunk`-byte reads
/// through `VirtualFile` (`O_DIRECT` in the direct modes). A file that changes size meanwhile is
/// [`RemoteError::UploadSizeMismatch`].
pub(crate) async fn file_crc32c(
    ctx: &IoContext,
    path: &Path,
    layer: &str,
    chunk: usize,
) -> Result<Uploaded, RemoteError> {
    let mut reader = ChunkReader::open(ctx, path, layer, chunk).await?;
    let mut crc = 0;
    while let Some(bytes) = reader.next().await? {
        crc = crc32c::crc32c_append(crc, &bytes);
    }
    reader.finish().await?;
    Ok(Uploaded {
        size: reader.size(),
        crc32c: crc,
    })
}

fn crc_attributes(remote: &RemoteStorage, crc: u32) -> Attributes {
    let mut attributes = Attributes::new();
    if remote.supports_metadata {
        attributes.insert(
            Attribute::Metadata(CRC_METADATA_KEY.into()),
            AttributeValue::from(format!("{crc:08x}")),
        );
    }
    attributes
}

/// Uploads the file at `path` as layer `name`'s object, with retries. Returns its size and checksum.
/// Runs in an `upload` span (layer name, mode, engine; `bytes` recorded when uploaded).
#[tracing::instrument(
    level = "info",
    name = "upload",
    skip_all,
    fields(
        layer = name,
        mode = %ctx.io_mode(),
        engine = %ctx.engine_kind(),
        bytes = tracing::field::Empty,
    )
)]
pub(crate) async fn upload_file(
    remote: &RemoteStorage,
    ctx: &IoContext,
    path: &Path,
    name: &str,
    expect: Expect,
) -> Result<Uploaded, RemoteError> {
    let key = remote.layer_key(name);
    let opts = &remote.options;
    let probe = ChunkReader::open(ctx, path, name, opts.part_size).await?;
    probe.check_size(expect.size, "recorded vs at open")?;
    let size = probe.size();
    drop(probe);
    tracing::Span::current().record("bytes", size);
    let check_crc = |crc: u32| match expect.crc32c {
        Some(expected) if expected != crc => Err(RemoteError::ChangedDuringUpload {
            layer: name.to_owned(),
            path: path.to_owned(),
            what: format!("CRC32C {crc:#010x}, {expected:#010x} recorded"),
        }),
        _ => Ok(()),
    };
    if size <= opts.multipart_threshold {
        // Small: the whole file in memory, one request. One open: the size read is the size at that
        // open, checked again after the read.
        let mut reader = ChunkReader::open(ctx, path, name, size.max(1) as usize).await?;
        reader.check_size(Some(size), "at the first open vs this open")?;
        let bytes = reader.next().await?.unwrap_or_default();
        reader.finish().await?;
        let crc = crc32c::crc32c(&bytes);
        check_crc(crc)?;
        with_retries(&opts.retry, "upload layer", |_| {
            let put = PutOptions {
                attributes: crc_attributes(remote, crc),
                ..PutOptions::default()
            };
            let payload = PutPayload::from(bytes.clone());
            let key = &key;
            async move {
                let _permit = remote.transfers.acquire().await.expect("never closed");
                remote
                    .store
                    .put_opts(key, payload, put)
                    .await
                    .map_err(|e| remote.store_error("put", key.as_ref(), e))
            }
        })
        .await?;
        return Ok(Uploaded {
            size: bytes.len() as u64,
            crc32c: crc,
        });
    }

    // The checksum goes into the metadata at the start of the upload: a pass of its own where the
    // store keeps metadata; else it is computed from the parts as they are sent.
    let first_pass = if remote.supports_metadata {
        let mut reader = ChunkReader::open(ctx, path, name, opts.part_size).await?;
        reader.check_size(Some(size), "at the first open vs this open")?;
        let mut crc = 0;
        while let Some(chunk) = reader.next().await? {
            crc = crc32c::crc32c_append(crc, &chunk);
        }
        reader.finish().await?;
        check_crc(crc)?;
        Some(crc)
    } else {
        expect.crc32c
    };
    let crc = with_retries(&opts.retry, "upload layer", |_| {
        upload_parts(remote, ctx, path, name, &key, size, first_pass)
    })
    .await?;
    Ok(Uploaded { size, crc32c: crc })
}

/// One attempt of a multipart upload: start it, send the parts (each a task, up to `part_concurrency`
/// in flight while the next part is read), complete it. Aborted on failure. Returns the CRC32C of the
/// parts sent, which must equal `first_pass` if given.
async fn upload_parts(
    remote: &RemoteStorage,
    ctx: &IoContext,
    path: &Path,
    name: &str,
    key: &ObjectPath,
    size: u64,
    first_pass: Option<u32>,
) -> Result<u32, RemoteError> {
    let opts = &remote.options;
    let start = PutMultipartOptions {
        attributes: first_pass.map_or_else(Attributes::new, |crc| crc_attributes(remote, crc)),
        ..PutMultipartOptions::default()
    };
    let upload = remote
        .store
        .put_multipart_opts(key, start)
        .await
        .map_err(|e| remote.store_error("start multipart upload", key.as_ref(), e))?;
    let mut guard = AbortOnDrop::new(upload, key.clone(), opts.retry, remote.unaborted.clone());
    let result = async {
        let mut reader = ChunkReader::open(ctx, path, name, opts.part_size).await?;
        reader.check_size(Some(size), "at the first open vs this open")?;
        let part_done = |joined: Result<object_store::Result<_>, tokio::task::JoinError>| {
            joined
                .map_err(object_store::Error::from)
                .and_then(|r| r)
                .map(drop)
                .map_err(|e| remote.store_error("upload part", key.as_ref(), e))
        };
        let mut crc = 0;
        // Dropping the set (a failure, or this future dropped) aborts the parts still in flight.
        let mut in_flight = JoinSet::new();
        loop {
            if in_flight.len() >= opts.part_concurrency {
                part_done(in_flight.join_next().await.expect("in_flight is not empty"))?;
                continue;
            }
            let permit = remote
                .transfers
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let Some(chunk) = reader.next().await? else {
                break;
            };
            crc = crc32c::crc32c_append(crc, &chunk);
            let part = guard.upload().put_part(PutPayload::from(chunk));
            in_flight.spawn(async move {
                let res = part.await;
                drop(permit);
                res
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            part_done(joined)?;
        }
        reader.finish().await?;
        if let Some(first) = first_pass.filter(|&first| first != crc) {
            return Err(RemoteError::ChangedDuringUpload {
                layer: name.to_owned(),
                path: path.to_owned(),
                what: format!("CRC32C {crc:#010x}, {first:#010x} in the first pass"),
            });
        }
        guard
            .upload()
            .complete()
            .await
            .map_err(|e| remote.store_error("complete multipart upload", key.as_ref(), e))?;
        Ok(crc)
    }
    .await;
    match result {
        Ok(crc) => {
            guard.disarm();
            Ok(crc)
        }
        Err(e) => {
            guard.abort().await;
            Err(e)
        }
    }
}

impl RemoteStorage {
    /// Uploads the layer file at `path` as layer `name` (see the module docs), then records it in the
    /// index. If the future is dropped before the index is written, the layer has no index entry (an
    /// object already complete is an orphan for [`remove_orphans`](Self::remove_orphans); an unfinished
    /// multipart upload is aborted in the background).
    ///
    /// The file must keep its size while it is uploaded: a file that grows or shrinks is
    /// [`RemoteError::UploadSizeMismatch`] and nothing is recorded.
    pub async fn upload_layer(
        &self,
        ctx: &IoContext,
        path: &Path,
        name: &str,
    ) -> Result<IndexEntry, RemoteError> {
        self.upload_layer_expecting(ctx, path, name, Expect::default())
            .await
    }

    /// [`upload_layer`](Self::upload_layer) of a file whose size (and CRC32C, where known) is
    /// recorded elsewhere (the tier's record): a file of another size is
    /// [`RemoteError::UploadSizeMismatch`] before anything is sent.
    pub(crate) async fn upload_layer_expecting(
        &self,
        ctx: &IoContext,
        path: &Path,
        name: &str,
        expect: Expect,
    ) -> Result<IndexEntry, RemoteError> {
        validate_layer_name(name)?;
        let started = Instant::now();
        let uploaded = upload_file(self, ctx, path, name, expect).await?;
        let index = self
            .update_index(|index, generation| {
                index.layers.insert(
                    name.to_owned(),
                    IndexEntry {
                        size: uploaded.size,
                        crc32c: uploaded.crc32c,
                        generation,
                    },
                );
                true
            })
            .await?;
        let entry = index.layers[name];
        let elapsed = started.elapsed();
        if elapsed >= self.options.orphan_grace {
            // Past the grace period a concurrent remove_orphans may have taken the object for an
            // orphan before the entry was written: check it, and upload it again if it is gone.
            tracing::warn!(
                layer = name,
                elapsed_ms = elapsed.as_millis() as u64,
                grace_ms = self.options.orphan_grace.as_millis() as u64,
                "upload took longer than the orphan grace period; checking its object"
            );
            let key = self.layer_key(name);
            match self.store.head(&key).await {
                Ok(_) => {}
                Err(e) if is_missing_object(&e) => {
                    tracing::warn!(layer = name, %key, "the object was removed as an orphan; uploading it again");
                    let expect = Expect {
                        size: Some(entry.size),
                        crc32c: Some(entry.crc32c),
                    };
                    upload_file(self, ctx, path, name, expect).await?;
                }
                Err(e) => return Err(self.store_error("head", key.as_ref(), e)),
            }
        }
        Ok(entry)
    }
}
