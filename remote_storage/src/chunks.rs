//! [`ChunkReader`]: a local file read front to back in chunks of a fixed size through `VirtualFile`
//! (`O_DIRECT` in the direct modes, into aligned buffers handed on without a copy), with the size
//! taken at open checked at the end, so a file that grew or shrank meanwhile is
//! [`RemoteError::UploadSizeMismatch`].

use std::path::Path;

use bytes::Bytes;
use io_engine::{DefaultAlign, IoBufferMut, Slice};
use virtual_file::{IoContext, VirtualFile};

use crate::error::RemoteError;

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

    fn assert_size_mismatch(err: &RemoteError, at_open: u64, now: u64) {
        assert!(
            matches!(err, RemoteError::UploadSizeMismatch { expected, actual, .. }
                if *expected == at_open && *actual == now),
            "{err}"
        );
    }

    /// The single-request path reads the file in one chunk of the size it had at open: a file that
    /// grows meanwhile would upload only its prefix, one that shrinks would end early. Both are refused.
    #[tokio::test]
    async fn a_file_that_grows_or_shrinks_after_open_is_a_size_mismatch() {
        let ctx = ctx();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer-g");
        std::fs::write(&path, vec![1u8; 10_000]).unwrap();
        let (ctx, path) = (&ctx, &path);
        let open = move || async move {
            ChunkReader::open(ctx, path, "layer-g", 1 << 20)
                .await
                .unwrap()
        };

        let mut reader = open().await;
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &[2u8; 5000]))
            .unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().len(), 10_000);
        assert!(reader.next().await.unwrap().is_none());
        let err = reader.finish().await.unwrap_err();
        assert_size_mismatch(&err, 10_000, 15_000);

        let mut reader = open().await;
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(4000)
            .unwrap();
        let err = reader.next().await.unwrap_err();
        assert_size_mismatch(&err, 15_000, 4000);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
