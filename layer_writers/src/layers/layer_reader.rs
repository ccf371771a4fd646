//! The kind-independent part of the layer readers: opening and validating a layer file, walking its index,
//! and fetching blobs with merged, aligned, budgeted reads.
//!
//! Opening checks, before anything else is trusted: the file is at least one summary block long, the
//! summary decodes (magic, version, CRC, consistent fields), it is of the expected kind, and the file is
//! exactly as long as the summary says. Every offset taken from the index is then checked against the
//! values region (`[8192, values_end)`) and against [`MAX_BLOB_EXTENT`] before it sizes a read, so no
//! length read off disk is used unchecked: a read buffer is at most [`MAX_VECTORED_READ`] /
//! [`SCAN_READ`](crate::io::vectored::SCAN_READ) for merged reads, or one blob's extent (at most [`MAX_BLOB_EXTENT`])
//! plus alignment for a blob read alone, whatever size a crafted or sparse file claims. Index pages are
//! read one 8 KiB page at a time through the context's page cache, and so is the summary block.
//!
//! Every blob returned has had its CRC checked (see [`crate::io::blob_io::check_blob_exact`]).
//! [`LayerFileReader::verify`] checks every byte of the file: the summary block (at open), every index
//! page, every blob (the index must cover the values exactly, back to back), and the zero padding between
//! the values and the index.
//!
//! Full passes over the values (scans and verification) stream the index and the values together
//! (`value_stream`: [`LayerFileReader::stream_values`]); lookups read their merged runs one at a time
//! ([`LayerFileReader::read_blobs`]).

use std::ops::{Bound, ControlFlow, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use io_engine::{DefaultAlign, IoBufferMut, Slice};
use virtual_file::{IoContext, VirtualFile};

use crate::format::blob::MAX_BLOB_EXTENT;
use crate::format::btree::page::{PageView, PAGE_SIZE};
use crate::format::btree::{BtreeReadError, BtreeReader, PageSource, MAX_RUN_PAGES};
use crate::format::error::FormatError;
use crate::format::key::{Key, Lsn};
use crate::format::raw::all_zero;
use crate::format::summary::{LayerKind, Summary, SUMMARY_SIZE};
use crate::io::blob_io::decode_blob_in;
use crate::io::error::{LayerError, PageReadError};
use crate::io::page_source::FilePageSource;
use crate::io::read_budget::ReadBudget;
use crate::io::vectored::{plan_reads, BlobRead};
use crate::layers::value_stream::BlobEntry;

/// Reads in flight ahead of a full pass over a layer's values (scans and verification of delta and image layers).
pub const SCAN_READS_IN_FLIGHT: usize = 8;

/// An open layer file of a known kind.
#[derive(Debug)]
pub(crate) struct LayerFileReader {
    path: PathBuf,
    file: Arc<VirtualFile>,
    summary: Summary,
    index: BtreeReader<FilePageSource>,
    /// The same index read with scan intent, for walks of all of it (`stream_values`, `verify`).
    scan_index: BtreeReader<FilePageSource>,
    budget: Option<ReadBudget>,
    align: u64,
    /// Point lookups read values through the page cache (see [`LayerFileReader::set_cache_values`]).
    cache_values: bool,
}

/// A blob found in the index: its extent, and the record (key, LSN) for error context.
#[derive(Debug, Clone)]
pub(crate) struct FoundBlob {
    pub extent: Range<u64>,
    pub key: Key,
    pub lsn: Option<Lsn>,
}

/// What a full verification of a layer file checked (see `verify` on the layer readers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Index entries, each with its blob checked and decoded.
    pub entries: u64,
    /// Bytes of the values region (`values_end - 8192`), all inside checked blobs.
    pub value_bytes: u64,
    /// Index pages checked (every page of the index, reachable or not).
    pub index_pages: u32,
    /// Zero padding bytes checked between the values and the index.
    pub padding_bytes: u64,
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
        // Through the page cache like the index pages (the summary block is one cache page).
        let mut buf = vec![0u8; SUMMARY_SIZE];
        file.read_cached_at(0, &mut buf)
            .await
            .map_err(|e| LayerError::io(path, e))?;
        let summary =
            Summary::decode(&buf).map_err(|source| LayerError::format(path, 0, None, source))?;
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
        let reader = |source| {
            BtreeReader::new(
                source,
                kind.index_key_len(),
                summary.index_root,
                summary.index_page_count,
            )
            .map_err(|source| LayerError::format(path, summary.index_start_offset(), None, source))
        };
        let scan_index = reader(source.for_scans())?;
        let index = reader(source)?;
        let cache_values = file.is_direct() || file.is_dontcache();
        Ok(LayerFileReader {
            cache_values,
            path: path.to_owned(),
            file,
            summary,
            index,
            scan_index,
            budget,
            align: ctx.alignment() as u64,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether point lookups (`get`, `get_many`) read values through the context's page cache. Default:
    /// yes for an `O_DIRECT` file (our cache is then the only one, and hot keys would otherwise go to
    /// the device on every lookup), no for a `buffered` one (the kernel's page cache holds the values
    /// already; a second copy would only take memory). Scans and `verify` never do: one pass over every
    /// value would evict the index pages and gain nothing.
    pub fn set_cache_values(&mut self, yes: bool) {
        self.cache_values = yes;
    }

    /// See [`set_cache_values`](Self::set_cache_values).
    pub fn caches_values(&self) -> bool {
        self.cache_values
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

    /// The index read with scan intent (upper pages not admitted to the page cache, leaves read in runs
    /// past it), for walks of all of it.
    pub(crate) fn scan_index_reader(&self) -> &BtreeReader<FilePageSource> {
        &self.scan_index
    }

    /// The layer's file.
    pub(crate) fn file(&self) -> &Arc<VirtualFile> {
        &self.file
    }

    /// A failed index read, as a layer error.
    pub(crate) fn index_error(&self, e: BtreeReadError<PageReadError>) -> LayerError {
        LayerError::index_read(&self.path, self.summary.index_start_offset(), None, e)
    }

    /// Checks a blob extent taken from the index: inside the values, in order, and no shorter than the
    /// smallest and no longer than the largest blob the format can hold ([`MAX_BLOB_EXTENT`]), so it can
    /// size a read buffer.
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
        let len = extent.end - extent.start;
        if len > MAX_BLOB_EXTENT as u64 {
            return Err(LayerError::format(
                &self.path,
                extent.start,
                Some(key),
                FormatError::TooLarge {
                    len,
                    max: MAX_BLOB_EXTENT as u64,
                },
            ));
        }
        Ok(())
    }

    /// Checks every byte of the file: each index page's checksum and structure (every page, reachable
    /// or not, read in runs), then every record in index order through
    /// [`stream_values`](Self::stream_values) (`parse` turns an index entry into a record or fails),
    /// which checks that the blobs cover the values exactly and back to back, each blob's CRC and
    /// decoding, and last that the padding between the values and the index is zero. The summary block
    /// was checked at open.
    pub async fn verify<T, P>(&self, parse: P) -> Result<VerifyReport, LayerError>
    where
        T: BlobEntry,
        P: FnMut(&[u8], u64) -> Result<T, LayerError>,
    {
        let index_start = self.summary.index_start_offset();
        let page_count = self.summary.index_page_count;
        for first in (0..page_count).step_by(MAX_RUN_PAGES) {
            let count = (page_count - first).min(MAX_RUN_PAGES as u32);
            let pages = self
                .scan_index
                .source()
                .read_run(first, count)
                .await
                .map_err(|e| match e {
                    PageReadError::Io(e) => LayerError::io(&self.path, e),
                    other => LayerError::corrupt(
                        &self.path,
                        index_start + u64::from(first) * PAGE_SIZE as u64,
                        None,
                        other.to_string(),
                    ),
                })?;
            for (page_no, page) in (first..).zip(&pages) {
                PageView::parse(page.as_ref(), page_no, self.summary.kind.index_key_len())
                    .map_err(|e| {
                        LayerError::format(
                            &self.path,
                            index_start + u64::from(page_no) * PAGE_SIZE as u64,
                            None,
                            e,
                        )
                    })?;
            }
        }
        let mut entries = 0u64;
        self.stream_values(parse, |_, _| {
            entries += 1;
            ControlFlow::Continue(())
        })
        .await?;
        let values_end = self.summary.values_end;
        let padding_bytes = self.verify_padding().await?;
        Ok(VerifyReport {
            entries,
            value_bytes: values_end - SUMMARY_SIZE as u64,
            index_pages: self.summary.index_page_count,
            padding_bytes,
        })
    }

    /// Checks that the bytes between the end of the values and the index are zero. They lie in the last
    /// values page (the summary validates `index_start` as `values_end` rounded up to a page), so this is
    /// one read of at most 8 KiB.
    async fn verify_padding(&self) -> Result<u64, LayerError> {
        let values_end = self.summary.values_end;
        let index_start = self.summary.index_start_offset();
        if values_end == index_start {
            return Ok(0);
        }
        let read_start = index_start - PAGE_SIZE as u64;
        let buf = IoBufferMut::<DefaultAlign>::with_capacity(PAGE_SIZE);
        let (buf, res) = self
            .file
            .read_exact_at(Slice::new(buf, 0..PAGE_SIZE), read_start)
            .await;
        res.map_err(|e| LayerError::io(&self.path, e))?;
        let page = buf.get_ref().as_slice();
        let padding = &page[(values_end - read_start) as usize..];
        if !all_zero(padding) {
            let at = padding.iter().position(|&b| b != 0).unwrap_or(0);
            return Err(LayerError::format(
                &self.path,
                values_end + at as u64,
                None,
                FormatError::NonZeroPadding {
                    what: "padding between the values and the index",
                    offset: values_end + at as u64,
                    byte: padding[at],
                },
            ));
        }
        Ok(padding.len() as u64)
    }

    /// One [`BlobRead`] per blob (tag: its index in `blobs`), each extent checked first.
    fn blob_reads(&self, blobs: &[FoundBlob]) -> Result<Vec<BlobRead>, LayerError> {
        blobs
            .iter()
            .enumerate()
            .map(|(tag, blob)| {
                self.check_extent(&blob.extent, blob.key)?;
                Ok(BlobRead {
                    extent: blob.extent.clone(),
                    tag,
                })
            })
            .collect()
    }

    /// Decodes the blobs `reads` (of `blobs`) out of `bytes`, the file's bytes from `start`, handing
    /// each to `sink` in order until it breaks.
    fn decode_run<F>(
        &self,
        blobs: &[FoundBlob],
        reads: &[BlobRead],
        bytes: &[u8],
        start: u64,
        sink: &mut F,
    ) -> Result<ControlFlow<()>, LayerError>
    where
        F: FnMut(usize, Vec<u8>) -> ControlFlow<()>,
    {
        for read in reads {
            let blob = &blobs[read.tag];
            let value = decode_blob_in(
                &self.path,
                bytes,
                start,
                read.extent.clone(),
                Some(blob.key),
                blob.lsn,
            )?;
            if sink(read.tag, value).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Reads and decodes `blobs` with reads of at most `max_read` bytes (a larger single blob is read
    /// alone, in a read of its extent rounded out to the alignment, so at most [`MAX_BLOB_EXTENT`] plus
    /// twice the alignment: extents were checked first), calling `sink(i, value)` with `i` the blob's index in `blobs`, in file order, until it
    /// breaks. Every read holds its size from the budget from before its buffer is allocated until its
    /// blobs are decoded; only one read is in flight at a time per call. `point`: a point lookup, whose
    /// reads go through the page cache if [`caches_values`](Self::caches_values).
    pub async fn read_blobs<F>(
        &self,
        blobs: &[FoundBlob],
        max_read: u64,
        point: bool,
        mut sink: F,
    ) -> Result<(), LayerError>
    where
        F: FnMut(usize, Vec<u8>) -> ControlFlow<()>,
    {
        let mut reads = self.blob_reads(blobs)?;
        let file_len = self.summary.file_len();
        let chunks = plan_reads(&mut reads, max_read, self.align, file_len);
        for chunk in chunks {
            let len = usize::try_from(chunk.len()).map_err(|_| {
                LayerError::corrupt(&self.path, chunk.range.start, None, "read too large")
            })?;
            let _permit = match &self.budget {
                Some(budget) => Some(
                    budget
                        .acquire(len)
                        .await
                        .map_err(|e| LayerError::io(&self.path, e.into()))?,
                ),
                None => None,
            };
            let (direct_buf, cached_buf);
            let bytes: &[u8] = if point && self.cache_values {
                let mut buf = vec![0u8; len];
                self.file
                    .read_cached_at(chunk.range.start, &mut buf)
                    .await
                    .map_err(|e| LayerError::io(&self.path, e))?;
                cached_buf = buf;
                &cached_buf
            } else {
                let buf = IoBufferMut::<DefaultAlign>::with_capacity(len);
                let (buf, res) = self
                    .file
                    .read_exact_at(Slice::new(buf, 0..len), chunk.range.start)
                    .await;
                res.map_err(|e| LayerError::io(&self.path, e))?;
                direct_buf = buf;
                direct_buf.get_ref().as_slice()
            };
            let reads = &reads[chunk.blobs];
            if self
                .decode_run(blobs, reads, bytes, chunk.range.start, &mut sink)?
                .is_break()
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The front every layer reader shares, written once: `open`, `open_with_budget`, the value-caching
/// switch, `path` and `summary`, on a reader struct `$reader { inner: LayerFileReader }` of layers of
/// kind `$kind` (`$what` names the kind in the docs).
macro_rules! layer_reader_front {
    ($reader:ident, $kind:expr, $what:literal) => {
        impl $reader {
            #[doc = concat!("Opens and validates the ", $what, " layer at `path`.")]
            pub async fn open(
                ctx: &::virtual_file::IoContext,
                path: &::std::path::Path,
            ) -> Result<Self, $crate::io::error::LayerError> {
                let budget = $crate::io::read_budget::ReadBudget::from_memory_budget(
                    ctx.memory_budget().clone(),
                );
                Self::open_with_budget(ctx, path, Some(budget)).await
            }

            #[doc = concat!("As [`", stringify!($reader), "::open`]; reads draw on `budget` when given.")]
            pub async fn open_with_budget(
                ctx: &::virtual_file::IoContext,
                path: &::std::path::Path,
                budget: Option<$crate::io::read_budget::ReadBudget>,
            ) -> Result<Self, $crate::io::error::LayerError> {
                let inner =
                    $crate::layers::layer_reader::LayerFileReader::open(ctx, path, $kind, budget)
                        .await?;
                Ok($reader { inner })
            }

            /// Whether point lookups read values through the page cache (default: yes for `O_DIRECT`
            /// files, no for `buffered` ones; scans never do). See `LayerFileReader::set_cache_values`
            /// for why.
            pub fn set_cache_values(&mut self, yes: bool) {
                self.inner.set_cache_values(yes);
            }

            /// Whether point lookups read values through the page cache.
            pub fn caches_values(&self) -> bool {
                self.inner.caches_values()
            }

            /// The layer's path.
            pub fn path(&self) -> &::std::path::Path {
                self.inner.path()
            }

            /// The decoded summary block.
            pub fn summary(&self) -> &$crate::format::summary::Summary {
                self.inner.summary()
            }
        }
    };
}
pub(crate) use layer_reader_front;
