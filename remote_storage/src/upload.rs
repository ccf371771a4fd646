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
//! the store comes back within that window (else see [`crate::orphans`]). Nothing here touches the
//! index.

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
use crate::orphans::{abort_upload, UnabortedList};
use crate::remote::{RemoteStorage, CRC_METADATA_KEY};
use crate::retry::{with_retries, RetryPolicy};

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

    /// The size at open, checked against `expected` (what the caller recorded).
    pub(crate) fn check_size(
        &self,
        expected: Option<u64>,
        when: &'static str,
    ) -> Result<(), RemoteError> {
        match expected {
            Some(expected) if expected != self.size => {
                Err(self.size_mismatch(expected, self.size, when))
            }
            _ => Ok(()),
        }
    }

    fn size_mismatch(&self, expected: u64, actual: u64, when: &'static str) -> RemoteError {
        RemoteError::UploadSizeMismatch {
            layer: self.layer.clone(),
            path: self.file.path().to_owned(),
            expected,
            actual,
            when,
        }
    }

    /// After the last chunk: the file must still be the size it had at open (else it grew, and only a
    /// prefix of it was read, or it shrank).
    pub(crate) async fn finish(&self) -> Result<(), RemoteError> {
        debug_assert_eq!(self.offset, self.size, "finish after the last chunk");
        let now = self
            .file
            .metadata()
            .await
            .map_err(|source| RemoteError::Local {
                layer: self.layer.clone(),
                source,
            })?
            .size;
        if now != self.size {
            return Err(self.size_mismatch(self.size, now, "at open vs at the end"));
        }
        Ok(())
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
                // shrank under the reader
                return Err(self.size_mismatch(
                    self.size,
                    self.offset + done as u64,
                    "at open vs at the end",
                ));
            }
            done += n;
        }
        buf.truncate(want);
        self.offset += want as u64;
        Ok(Some(Bytes::from_owner(buf.freeze())))
    }
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

/// Aborts a multipart upload that was not completed, also when the future driving it is dropped (in
/// the background then), with retries for the abort window; one that cannot be aborted is remembered
/// for [`RemoteStorage::remove_orphans`].
struct AbortOnDrop {
    upload: Option<Box<dyn MultipartUpload>>,
    key: ObjectPath,
    policy: RetryPolicy,
    unaborted: UnabortedList,
}

impl AbortOnDrop {
    fn upload(&mut self) -> &mut Box<dyn MultipartUpload> {
        self.upload
            .as_mut()
            .expect("the upload is held until completed or aborted")
    }

    /// Completion succeeded: nothing to abort.
    fn disarm(mut self) {
        self.upload = None;
    }

    /// Aborts now (the upload already failed for another reason, which is what is reported).
    async fn abort(mut self) {
        if let Some(upload) = self.upload.take() {
            abort_upload(&self.policy, &self.unaborted, self.key.clone(), upload).await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            let (policy, unaborted, key) = (self.policy, self.unaborted.clone(), self.key.clone());
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move { abort_upload(&policy, &unaborted, key, upload).await });
                }
                Err(_) => unaborted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(crate::orphans::Unaborted { key, upload }),
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
    let mut guard = AbortOnDrop {
        upload: Some(upload),
        key: key.clone(),
        policy: opts.retry,
        unaborted: remote.unaborted.clone(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> IoContext {
        IoContext::builder()
            .engine(io_engine::IoEngine::launch(io_engine::IoEngineKind::StdFs).unwrap())
            .mode(virtual_file::IoMode::Buffered)
            .build()
            .unwrap()
    }

    /// The single-request path reads the file in one chunk of the size it had at open: a file that
    /// grows meanwhile would upload only its prefix, one that shrinks would end early. Both are refused.
    #[tokio::test]
    async fn a_file_that_grows_or_shrinks_after_open_is_a_size_mismatch() {
        let ctx = ctx();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer-g");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();

        let mut reader = ChunkReader::open(&ctx, &path, "layer-g", 1 << 20)
            .await
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &[2u8; 5000]))
            .unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().len(), 10_000);
        assert!(reader.next().await.unwrap().is_none());
        let err = reader.finish().await.unwrap_err();
        assert!(
            matches!(
                err,
                RemoteError::UploadSizeMismatch {
                    expected: 10_000,
                    actual: 15_000,
                    ..
                }
            ),
            "{err}"
        );

        let mut reader = ChunkReader::open(&ctx, &path, "layer-g", 1 << 20)
            .await
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4000)
            .unwrap();
        let err = reader.next().await.unwrap_err();
        assert!(
            matches!(
                err,
                RemoteError::UploadSizeMismatch {
                    expected: 15_000,
                    actual: 4000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
