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
//! Cancellation: a multipart upload is held by an `AbortOnDrop` guard until it completes; a failed or
//! dropped upload is aborted (in the background when dropped), so it leaves no parts behind where the
//! store is reachable. Nothing here touches the index.

use std::path::Path;

use bytes::Bytes;
use io_engine::{DefaultAlign, IoBufferMut, Slice};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, MultipartUpload, PutMultipartOptions, PutOptions,
    PutPayload,
};
use tokio::task::JoinSet;
use virtual_file::{IoContext, VirtualFile};

use crate::error::RemoteError;
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

/// Reads a file front to back in chunks of a fixed size through `VirtualFile`.
pub(crate) struct ChunkReader {
    file: VirtualFile,
    layer: String,
    size: u64,
    offset: u64,
    chunk: usize,
    align: usize,
}

impl ChunkReader {
    pub(crate) async fn open(
        ctx: &IoContext,
        path: &Path,
        layer: &str,
        chunk: usize,
    ) -> Result<Self, RemoteError> {
        let local = |source| RemoteError::Local {
            layer: layer.to_owned(),
            source,
        };
        let file = VirtualFile::open(ctx, path).await.map_err(local)?;
        let size = file.metadata().await.map_err(local)?.size;
        Ok(ChunkReader {
            file,
            layer: layer.to_owned(),
            size,
            offset: 0,
            chunk,
            align: ctx.alignment(),
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The next chunk (`chunk` bytes, the last one shorter), `None` at the end. An `O_DIRECT` read asks for
    /// the aligned length and takes the short read at end of file.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, RemoteError> {
        let want = (self.size - self.offset).min(self.chunk as u64) as usize;
        if want == 0 {
            return Ok(None);
        }
        let aligned = want.div_ceil(self.align) * self.align;
        let mut buf = IoBufferMut::<DefaultAlign>::with_capacity(aligned);
        let mut done = 0;
        while done < want {
            let (slice, res) = self
                .file
                .read_at(Slice::new(buf, done..aligned), self.offset + done as u64)
                .await;
            buf = slice.into_inner();
            let n = res.map_err(|source| RemoteError::Local {
                layer: self.layer.clone(),
                source,
            })?;
            if n == 0 {
                return Err(RemoteError::ChangedDuringUpload {
                    layer: self.layer.clone(),
                    path: self.file.path().to_owned(),
                    what: format!(
                        "end of file at {} of the {} bytes it had at open",
                        self.offset + done as u64,
                        self.size
                    ),
                });
            }
            done += n;
        }
        buf.truncate(want);
        self.offset += want as u64;
        Ok(Some(Bytes::from_owner(buf.freeze())))
    }
}

/// Aborts a multipart upload that was not completed, also when the future driving it is dropped.
struct AbortOnDrop(Option<Box<dyn MultipartUpload>>);

impl AbortOnDrop {
    fn upload(&mut self) -> &mut Box<dyn MultipartUpload> {
        self.0
            .as_mut()
            .expect("the upload is held until completed or aborted")
    }

    /// Completion succeeded: nothing to abort.
    fn disarm(mut self) {
        self.0 = None;
    }

    /// Aborts now, best effort (the error is logged: the upload already failed for another reason).
    async fn abort(mut self, key: &ObjectPath) {
        if let Some(mut upload) = self.0.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(%key, error = %e, "could not abort a failed multipart upload");
            }
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(error = %e, "could not abort a cancelled multipart upload");
                    }
                });
            }
        }
    }
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
) -> Result<Uploaded, RemoteError> {
    let key = remote.layer_key(name);
    let opts = &remote.options;
    let size = ChunkReader::open(ctx, path, name, opts.part_size)
        .await?
        .size();
    tracing::Span::current().record("bytes", size);
    if size <= opts.multipart_threshold {
        // Small: the whole file in memory, one request.
        let mut reader = ChunkReader::open(ctx, path, name, size.max(1) as usize).await?;
        let bytes = reader.next().await?.unwrap_or_default();
        let crc = crc32c::crc32c(&bytes);
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
        let mut crc = 0;
        while let Some(chunk) = reader.next().await? {
            crc = crc32c::crc32c_append(crc, &chunk);
        }
        Some(crc)
    } else {
        None
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
    let mut guard = AbortOnDrop(Some(upload));
    let result = async {
        let mut reader = ChunkReader::open(ctx, path, name, opts.part_size).await?;
        if reader.size() != size {
            return Err(RemoteError::ChangedDuringUpload {
                layer: name.to_owned(),
                path: path.to_owned(),
                what: format!("{} bytes, {size} before", reader.size()),
            });
        }
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
            guard.abort(key).await;
            Err(e)
        }
    }
}
