//! The kind-independent part of the layer readers: opening and validating a layer file, walking its index,
//! and fetching blobs with merged, aligned, budgeted reads.
//!
//! Opening checks, before anything else is trusted: the file is at least one summary block long, the
//! summary decodes (magic, version, CRC, consistent fields), it is of the expected kind, and the file is
//! exactly as long as the summary says. Every offset taken from the index is then checked against the
//! values region (`[8192, values_end)`) before it sizes a read, so no length read off disk is used
//! unchecked: reads are bounded by the file's extent and blobs by the extent between index offsets.

use std::ops::{Bound, ControlFlow, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use io_engine::{DefaultAlign, IoBufferMut, Slice};
use virtual_file::{IoContext, VirtualFile};

use crate::blob_io::decode_blob_in;
use crate::btree::BtreeReader;
use crate::key::Key;
use crate::layer_error::LayerError;
use crate::page_source::FilePageSource;
use crate::read_budget::ReadBudget;
use crate::summary::{LayerKind, Summary, SUMMARY_SIZE};
use crate::vectored::{plan_reads, BlobRead};
use crate::FormatError;

/// An open layer file of a known kind.
#[derive(Debug)]
pub(crate) struct LayerFileReader {
    path: PathBuf,
    file: Arc<VirtualFile>,
    summary: Summary,
    index: BtreeReader<FilePageSource>,
    budget: Option<ReadBudget>,
    align: u64,
}

/// A blob found in the index: its extent, and the key for error context.
#[derive(Debug, Clone)]
pub(crate) struct FoundBlob {
    pub extent: Range<u64>,
    pub key: Key,
}

impl LayerFileReader {
    pub async fn open(
        ctx: &IoContext,
        path: &Path,
        kind: LayerKind,
        budget: Option<ReadBudget>,
    ) -> Result<LayerFileReader, LayerError> {
        let file = VirtualFile::open(ctx, path)
            .await
            .map_err(|e| LayerError::io(path, e))?;
        let file_len = file
            .metadata()
            .await
            .map_err(|e| LayerError::io(path, e))?
            .size;
        if file_len < SUMMARY_SIZE as u64 {
            return Err(LayerError::format(
                path,
                0,
                None,
                FormatError::Truncated {
                    what: "layer file",
                    needed: SUMMARY_SIZE,
                    available: file_len as usize,
                },
            ));
        }
        let buf = IoBufferMut::<DefaultAlign>::with_capacity(SUMMARY_SIZE);
        let (buf, res) = file
            .read_exact_at(Slice::new(buf, 0..SUMMARY_SIZE), 0)
            .await;
        res.map_err(|e| LayerError::io(path, e))?;
        let summary = Summary::decode(buf.get_ref().as_slice())
            .map_err(|source| LayerError::format(path, 0, None, source))?;
        drop(buf);
        if summary.kind != kind {
            return Err(LayerError::WrongKind {
                path: path.to_owned(),
                expected: kind,
                found: summary.kind,
            });
        }
        let expected_len = summary.file_len();
        if file_len < expected_len {
            return Err(LayerError::format(
                path,
                file_len,
                None,
                FormatError::Truncated {
                    what: "layer file",
                    needed: usize::try_from(expected_len).unwrap_or(usize::MAX),
                    available: file_len as usize,
                },
            ));
        }
        if file_len > expected_len {
            return Err(LayerError::corrupt(
                path,
                expected_len,
                None,
                format!("file is {file_len} bytes, its summary describes {expected_len}"),
            ));
        }
        let file = Arc::new(file);
        let source = FilePageSource::new(
            Arc::clone(&file),
            summary.index_start_offset(),
            summary.index_page_count,
        );
        let index = BtreeReader::new(
            source,
            kind.index_key_len(),
            summary.index_root,
            summary.index_page_count,
        )
        .map_err(|source| LayerError::format(path, summary.index_start_offset(), None, source))?;
        Ok(LayerFileReader {
            path: path.to_owned(),
            file,
            summary,
            index,
            budget,
            align: ctx.alignment() as u64,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Visits index entries from `start` on, in order, until `f` breaks. `key` is error context.
    pub async fn visit<F>(
        &self,
        start: Bound<&[u8]>,
        key: Option<Key>,
        f: F,
    ) -> Result<(), LayerError>
    where
        F: FnMut(&[u8], u64) -> ControlFlow<()>,
    {
        self.index
            .visit(start, Bound::Unbounded, f)
            .await
            .map_err(|e| {
                LayerError::index_read(&self.path, self.summary.index_start_offset(), key, e)
            })
    }

    /// Checks a blob extent taken from the index: inside the values, non-empty, in order.
    pub fn check_extent(&self, extent: &Range<u64>, key: Key) -> Result<(), LayerError> {
        let values = SUMMARY_SIZE as u64..self.summary.values_end;
        if extent.start < values.start || extent.start >= extent.end || extent.end > values.end {
            return Err(LayerError::corrupt(
                &self.path,
                extent.start,
                Some(key),
                format!(
                    "index gives blob extent {extent:?}, outside the values {values:?} or empty"
                ),
            ));
        }
        Ok(())
    }

    /// Reads and decodes `blobs` with reads of at most `max_read` bytes (a larger single blob is read
    /// alone), calling `sink(i, value)` with `i` the blob's index in `blobs`, in file order, until it
    /// breaks. Every read holds its size from the budget from before its buffer is allocated until its
    /// blobs are decoded; only one read is in flight at a time per call.
    pub async fn read_blobs<F>(
        &self,
        blobs: &[FoundBlob],
        max_read: u64,
        mut sink: F,
    ) -> Result<(), LayerError>
    where
        F: FnMut(usize, Vec<u8>) -> ControlFlow<()>,
    {
        let mut reads: Vec<BlobRead> = Vec::with_capacity(blobs.len());
        for (tag, blob) in blobs.iter().enumerate() {
            self.check_extent(&blob.extent, blob.key)?;
            reads.push(BlobRead {
                extent: blob.extent.clone(),
                tag,
            });
        }
        let file_len = self.summary.file_len();
        let chunks = plan_reads(&mut reads, max_read, self.align, file_len);
        for chunk in chunks {
            let len = usize::try_from(chunk.len()).map_err(|_| {
                LayerError::corrupt(&self.path, chunk.range.start, None, "read too large")
            })?;
            let _permit = match &self.budget {
                Some(budget) => Some(budget.acquire(len).await),
                None => None,
            };
            let buf = IoBufferMut::<DefaultAlign>::with_capacity(len);
            let (buf, res) = self
                .file
                .read_exact_at(Slice::new(buf, 0..len), chunk.range.start)
                .await;
            res.map_err(|e| LayerError::io(&self.path, e))?;
            let bytes = buf.get_ref().as_slice();
            for read in &reads[chunk.blobs] {
                let key = blobs[read.tag].key;
                let value = decode_blob_in(
                    &self.path,
                    bytes,
                    chunk.range.start,
                    read.extent.clone(),
                    Some(key),
                )?;
                if sink(read.tag, value).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
