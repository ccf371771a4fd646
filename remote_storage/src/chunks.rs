//! [`ChunkReader`]: a local file read front to back in chunks of a fixed size through a
//! [`Scan`](virtual_file::Scan) (reads in flight ahead of the consumer, `O_DIRECT` in the direct modes, into
//! aligned buffers handed on without a copy where a chunk is one read), with the size taken at open
//! checked at the end, so a file that grew or shrank meanwhile is [`RemoteError::UploadSizeMismatch`].
//!
//! The scan's reads are a chunk each (so a chunk is handed on without a copy) unless a chunk is larger
//! than a quarter of the memory budget; then reads of that quarter are joined into each chunk (one copy).
//! Up to [`READS_AHEAD`] reads are in flight: the next chunk is read while the caller sends this one.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use io_engine::{DefaultAlign, IoBuffer};
use virtual_file::{IoContext, Scan, ScanOptions, VirtualFile};

use crate::error::RemoteError;

/// Most scan reads in flight ahead of the caller.
pub(crate) const READS_AHEAD: usize = 2;

/// Reads a file front to back in chunks of a fixed size through `VirtualFile`.
pub(crate) struct ChunkReader {
    file: Arc<VirtualFile>,
    scan: Scan,
    layer: String,
    size: u64,
    offset: u64,
    chunk: usize,
    /// The part of the last scan read not handed out yet.
    leftover: Option<IoBuffer<DefaultAlign>>,
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
        let file = Arc::new(VirtualFile::open(ctx, path).await.map_err(local)?);
        let size = file.metadata().await.map_err(local)?.size;
        let chunk = chunk.max(1);
        let options = ScanOptions {
            read_size: chunk.min(ctx.memory_budget().total() / 4).max(1),
            initial_reads: 1,
            max_reads: READS_AHEAD,
        };
        let scan = file.scan(..size, options).await.map_err(local)?;
        Ok(ChunkReader {
            file,
            scan,
            layer: layer.to_owned(),
            size,
            offset: 0,
            chunk,
            leftover: None,
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

    fn local(&self, source: virtual_file::Error) -> RemoteError {
        RemoteError::Local {
            layer: self.layer.clone(),
            source,
        }
    }

    /// The file's size now.
    async fn size_now(&self) -> Result<u64, RemoteError> {
        Ok(self.file.metadata().await.map_err(|e| self.local(e))?.size)
    }

    /// After the last chunk: the file must still be the size it had at open (else it grew, and only a
    /// prefix of it was read, or it shrank).
    pub(crate) async fn finish(&self) -> Result<(), RemoteError> {
        debug_assert_eq!(self.offset, self.size, "finish after the last chunk");
        let now = self.size_now().await?;
        if now != self.size {
            return Err(self.size_mismatch(self.size, now, "at open vs at the end"));
        }
        Ok(())
    }

    /// The next bytes of the scan, at most `max`; an end of the file before the size at open is a size
    /// mismatch with the size now.
    async fn next_piece(&mut self, max: usize) -> Result<IoBuffer<DefaultAlign>, RemoteError> {
        let buf = match self.leftover.take() {
            Some(buf) => buf,
            None => match self.scan.next_chunk().await {
                Ok(Some(chunk)) => chunk.bytes,
                Ok(None) => return Err(self.shrank().await),
                Err(virtual_file::Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Err(self.shrank().await)
                }
                Err(e) => return Err(self.local(e)),
            },
        };
        if buf.len() > max {
            self.leftover = Some(buf.slice(max..));
            return Ok(buf.slice(..max));
        }
        Ok(buf)
    }

    async fn shrank(&self) -> RemoteError {
        match self.size_now().await {
            Ok(now) => self.size_mismatch(self.size, now, "at open vs at the end"),
            Err(e) => e,
        }
    }

    /// The next chunk (`chunk` bytes, the last one shorter), `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, RemoteError> {
        let want = (self.size - self.offset).min(self.chunk as u64) as usize;
        if want == 0 {
            return Ok(None);
        }
        let first = self.next_piece(want).await?;
        let bytes = if first.len() == want {
            Bytes::from_owner(first)
        } else {
            let mut joined = BytesMut::with_capacity(want);
            joined.extend_from_slice(&first);
            drop(first);
            while joined.len() < want {
                let piece = self.next_piece(want - joined.len()).await?;
                joined.extend_from_slice(&piece);
            }
            joined.freeze()
        };
        self.offset += want as u64;
        Ok(Some(bytes))
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
