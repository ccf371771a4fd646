//! A full pass over a layer's records in index order that holds neither the whole index nor the whole
//! values region: [`LayerFileReader::stream_values`], behind `scan_each` and `verify` of both layer kinds.
//!
//! - The index is walked one run of leaves at a time ([`LeafRuns`](crate::format::btree::LeafRuns):
//!   reads of up to 2 MiB past the page cache); only the entries of the current run are kept, so the
//!   memory held does not grow with the layer (before, a scan listed every record first, about 90 bytes
//!   each, which for 100-byte values was most of the scan's page faults).
//! - The values are read by one [`Scan`] over the whole values region, reads in flight ahead of the
//!   decoding (the readahead `O_DIRECT` files lack), with its buffers handed back for reuse
//!   ([`Scan::recycle`]); the reads go on while the index's next run is read.
//! - A blob that straddles two scan chunks is copied into one carry buffer, at most one blob long
//!   ([`MAX_BLOB_EXTENT`](crate::format::blob::MAX_BLOB_EXTENT), checked before it is copied).
//! - Each blob's extent runs from its entry's offset to the next entry's (the last one to `values_end`);
//!   the first must start at the values' start, so the blobs cover the values back to back: a layer
//!   whose index leaves bytes without a blob is corrupt.

use std::ops::{ControlFlow, Range};

use virtual_file::{Scan, ScanChunk, ScanOptions};

use crate::format::key::{Key, Lsn};
use crate::format::summary::SUMMARY_SIZE;
use crate::io::blob_io::decode_blob_in;
use crate::io::error::LayerError;
use crate::io::vectored::SCAN_READ;
use crate::layers::layer_reader::{LayerFileReader, SCAN_READS_IN_FLIGHT};

/// An index entry as a stream of values needs it: where its blob starts, and the record for errors.
pub(crate) trait BlobEntry {
    /// File offset of the entry's blob.
    fn offset(&self) -> u64;
    /// The record's key (error context).
    fn key(&self) -> Key;
    /// The record's LSN, if it has its own (error context).
    fn lsn(&self) -> Option<Lsn>;
}

impl LayerFileReader {
    /// Calls `sink(entry, value)` for every record in index order until it breaks (module docs).
    /// `parse(key, value)` turns an index entry into `T`, or fails the pass with its error.
    pub async fn stream_values<T, P, F>(&self, mut parse: P, mut sink: F) -> Result<(), LayerError>
    where
        T: BlobEntry,
        P: FnMut(&[u8], u64) -> Result<T, LayerError>,
        F: FnMut(T, Vec<u8>) -> ControlFlow<()>,
    {
        let values_end = self.summary().values_end;
        let mut values = ValueCursor::open(self).await?;
        let mut runs = self.scan_index_reader().leaf_runs();
        let mut batch: Vec<T> = Vec::new();
        // the last entry seen: its blob ends where the next entry's starts
        let mut open: Option<T> = None;
        let mut expected_start = SUMMARY_SIZE as u64;
        loop {
            batch.clear();
            let mut bad = None;
            let walked = runs
                .visit_next(&mut |k: &[u8], v: u64| match parse(k, v) {
                    Ok(entry) => {
                        batch.push(entry);
                        ControlFlow::Continue(())
                    }
                    Err(e) => {
                        bad = Some(e);
                        ControlFlow::Break(())
                    }
                })
                .await
                .map_err(|e| self.index_error(e))?;
            if let Some(e) = bad {
                return Err(e);
            }
            if walked.is_none() {
                break;
            }
            for entry in batch.drain(..) {
                if let Some(prev) = open.replace(entry) {
                    let end = open.as_ref().map_or(values_end, |e| e.offset());
                    if expected_start != prev.offset() {
                        return Err(self.uncovered(expected_start, prev.offset()));
                    }
                    expected_start = end;
                    let extent = prev.offset()..end;
                    let value = match values.blob_in_chunk(&extent, prev.key(), prev.lsn()) {
                        Some(value) => value?,
                        None => values.blob(extent, prev.key(), prev.lsn()).await?,
                    };
                    if sink(prev, value).is_break() {
                        return Ok(());
                    }
                }
            }
        }
        match open {
            Some(last) => {
                if expected_start != last.offset() {
                    return Err(self.uncovered(expected_start, last.offset()));
                }
                let value = values
                    .blob(last.offset()..values_end, last.key(), last.lsn())
                    .await?;
                let _ = sink(last, value);
            }
            None if values_end != SUMMARY_SIZE as u64 => {
                return Err(self.uncovered(SUMMARY_SIZE as u64, values_end));
            }
            None => {}
        }
        Ok(())
    }

    fn uncovered(&self, start: u64, end: u64) -> LayerError {
        LayerError::corrupt(
            self.path(),
            start,
            None,
            format!("the index leaves the values {start}..{end} without a blob"),
        )
    }
}

/// The values region read front to back by one [`Scan`], handed out blob by blob.
struct ValueCursor<'r> {
    reader: &'r LayerFileReader,
    scan: Scan,
    /// The chunk holding the next blob's first byte (or the last chunk taken).
    chunk: Option<ScanChunk>,
    /// A blob that straddles chunks, copied together.
    carry: Vec<u8>,
}

impl<'r> ValueCursor<'r> {
    /// A scan of the values, in reads of up to [`SCAN_READ`] (at most a quarter of the memory budget, so
    /// several fit in flight), up to [`SCAN_READS_IN_FLIGHT`] of them.
    async fn open(reader: &'r LayerFileReader) -> Result<ValueCursor<'r>, LayerError> {
        let file = reader.file();
        let align = file.context().alignment().max(1) as u64;
        let quarter = file.context().memory_budget().total() as u64 / 4;
        let read_size = SCAN_READ.min(quarter - quarter % align).max(align);
        let options = ScanOptions {
            read_size: read_size as usize,
            initial_reads: 2,
            max_reads: SCAN_READS_IN_FLIGHT,
        };
        let values = SUMMARY_SIZE as u64..reader.summary().values_end;
        let scan = file
            .scan(values, options)
            .await
            .map_err(|e| LayerError::io(reader.path(), e))?;
        Ok(ValueCursor {
            reader,
            scan,
            chunk: None,
            carry: Vec::new(),
        })
    }

    /// The next chunk of the values; the values ending before `at` is corruption (the index points past
    /// them), though the summary's check of the file's length makes it unreachable short of a file
    /// that shrank under the scan, which the scan reports as an IO error.
    async fn next_chunk(&mut self, at: u64, key: Key) -> Result<ScanChunk, LayerError> {
        if let Some(done) = self.chunk.take() {
            self.scan.recycle(done.bytes);
        }
        self.scan
            .next_chunk()
            .await
            .map_err(|e| LayerError::io(self.reader.path(), e))?
            .ok_or_else(|| {
                LayerError::corrupt(
                    self.reader.path(),
                    at,
                    Some(key),
                    "the values end before the blob the index gives",
                )
            })
    }

    /// The decoded blob at `extent` if the current chunk holds all of it: the common case, without
    /// the cost of an `async` call per record (`None`: ask [`blob`](Self::blob)).
    fn blob_in_chunk(
        &self,
        extent: &Range<u64>,
        key: Key,
        lsn: Option<Lsn>,
    ) -> Option<Result<Vec<u8>, LayerError>> {
        let chunk = self.chunk.as_ref()?;
        let chunk_end = chunk.offset + chunk.bytes.len() as u64;
        if chunk.offset > extent.start || extent.end > chunk_end || extent.start >= extent.end {
            return None;
        }
        if let Err(e) = self.reader.check_extent(extent, key) {
            return Some(Err(e));
        }
        Some(decode_blob_in(
            self.reader.path(),
            &chunk.bytes,
            chunk.offset,
            extent.clone(),
            Some(key),
            lsn,
        ))
    }

    /// The decoded blob at `extent` (checked first). Extents must come in file order.
    async fn blob(
        &mut self,
        extent: Range<u64>,
        key: Key,
        lsn: Option<Lsn>,
    ) -> Result<Vec<u8>, LayerError> {
        self.reader.check_extent(&extent, key)?;
        let path = self.reader.path();
        // the chunk holding the blob's first byte
        loop {
            match &self.chunk {
                Some(c) if c.offset + c.bytes.len() as u64 > extent.start => break,
                _ => {
                    let next = self.next_chunk(extent.start, key).await?;
                    self.chunk = Some(next);
                }
            }
        }
        let chunk = self.chunk.as_ref().expect("set by the loop above");
        if chunk.offset > extent.start {
            return Err(LayerError::corrupt(
                path,
                extent.start,
                Some(key),
                "blob extents out of file order",
            ));
        }
        let chunk_end = chunk.offset + chunk.bytes.len() as u64;
        if extent.end <= chunk_end {
            return decode_blob_in(path, &chunk.bytes, chunk.offset, extent, Some(key), lsn);
        }
        let len = (extent.end - extent.start) as usize;
        self.carry.clear();
        self.carry.reserve(len);
        self.carry
            .extend_from_slice(&chunk.bytes[(extent.start - chunk.offset) as usize..]);
        while self.carry.len() < len {
            let next = self
                .next_chunk(extent.start + self.carry.len() as u64, key)
                .await?;
            let take = (len - self.carry.len()).min(next.bytes.len());
            self.carry.extend_from_slice(&next.bytes[..take]);
            self.chunk = Some(next);
        }
        decode_blob_in(path, &self.carry, extent.start, extent, Some(key), lsn)
    }
}
