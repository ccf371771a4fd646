//! Writing a frozen in-memory layer out as a delta layer.
//!
//! Values are in the ephemeral file in put order, the delta layer wants (key, LSN) order. The index is
//! walked in key order in batches of at most `readout_batch_bytes` of blobs. A batch's blobs are sorted by
//! file offset and grouped into runs (neighbours up to 64 KiB apart, runs up to 4 MiB), and the runs are
//! read in file order, at most [`READS_IN_FLIGHT`] at a time, each on its own task.
//!
//! The blobs of the ephemeral file are already in the delta layer's encoding (header, value, CRC), so
//! they are not decoded and re-encoded: each one's CRC is checked (the read check every read does), then
//! the blobs go to the delta writer in bulk, many per call, with no per-value allocation or future:
//! - a batch whose blobs lie in the file back to back in key order (puts in key order) hands each run's
//!   bytes to the delta writer as they are read, without a copy;
//! - any other batch copies each blob out of its run into the batch's arena at its place in key order,
//!   then hands the whole arena over in one call. A layer put in random key order thus costs about one
//!   sequential pass over the file per batch, in large reads, instead of one small read per value.
//!
//! The first runs of batch N + 1 are read while batch N is handed to the delta writer (whose own flush
//! task writes behind it). Memory: one arena of at most `readout_batch_bytes` (plus one blob larger than
//! that), and at most [`READS_IN_FLIGHT`] runs of at most 4 MiB (or one blob) each.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;
use virtual_file::buffered_writer::BufferedWriter;
use virtual_file::buffered_writer::ReadError;
use virtual_file::{IoContext, VirtualFile};

use super::index::Entry;
use super::{InMemoryLayer, InMemoryLayerError};
use crate::format::blob::check_blob_exact;
use crate::format::key::{Key, Lsn};
use crate::layers::delta::DeltaLayerWriter;
use crate::layers::layer_file::LayerInfo;

/// Gap between two blobs up to which they are read in one run.
const MERGE_GAP: u64 = 64 * 1024;
/// Largest run (unless one blob is larger).
const MAX_RUN: u64 = 4 << 20;
/// Runs being read at once.
pub(super) const READS_IN_FLIGHT: usize = 4;

type RunRead = JoinHandle<Result<Vec<u8>, ReadError<virtual_file::Error>>>;

/// One delta record of a batch: (key, LSN, will-init, blob length).
type Record = (Key, Lsn, bool, u32);

/// A batch: its records in key order, where each blob is, and the runs that read them.
struct Batch {
    records: Vec<Record>,
    /// (file offset, length, position in the arena) of each blob, sorted by file offset.
    copies: Vec<(u64, u32, usize)>,
    /// Runs in file order: (file offset, length, range of `copies` they hold).
    runs: Vec<(u64, usize, std::ops::Range<usize>)>,
    /// The blobs lie in the file back to back in key order: each run is a range of records.
    in_file_order: bool,
    /// Bytes of all blobs.
    bytes: usize,
}

impl Batch {
    fn plan(entries: &[(Key, Lsn, Entry)]) -> Batch {
        let mut records = Vec::with_capacity(entries.len());
        let mut copies = Vec::with_capacity(entries.len());
        let mut pos = 0usize;
        for &(key, lsn, e) in entries {
            records.push((key, lsn, e.will_init, e.len));
            copies.push((e.offset, e.len, pos));
            pos += e.len as usize;
        }
        let in_file_order = copies
            .windows(2)
            .all(|w| w[0].0 + u64::from(w[0].1) == w[1].0);
        if !in_file_order {
            copies.sort_unstable_by_key(|c| c.0);
        }
        let mut runs = Vec::new();
        let mut i = 0;
        while i < copies.len() {
            let run_start = copies[i].0;
            let mut run_end = run_start + u64::from(copies[i].1);
            let mut j = i + 1;
            while let Some(&(offset, len, _)) = copies.get(j) {
                let end = offset + u64::from(len);
                if offset > run_end + MERGE_GAP || end.max(run_end) - run_start > MAX_RUN {
                    break;
                }
                run_end = run_end.max(end);
                j += 1;
            }
            runs.push((run_start, (run_end - run_start) as usize, i..j));
            i = j;
        }
        Batch {
            records,
            copies,
            runs,
            in_file_order,
            bytes: pos,
        }
    }
}

/// Reads a batch's runs in order, keeping at most [`READS_IN_FLIGHT`] under way.
struct RunReader<'a> {
    layer: &'a InMemoryLayer,
    writer: &'a BufferedWriter<VirtualFile>,
    batch: Batch,
    started: usize,
    pending: VecDeque<RunRead>,
}

impl<'a> RunReader<'a> {
    fn new(
        layer: &'a InMemoryLayer,
        writer: &'a BufferedWriter<VirtualFile>,
        batch: Batch,
    ) -> Result<Self, InMemoryLayerError> {
        let mut reader = RunReader {
            layer,
            writer,
            batch,
            started: 0,
            pending: VecDeque::new(),
        };
        reader.fill()?;
        Ok(reader)
    }

    /// Starts reads until [`READS_IN_FLIGHT`] are under way or every run is started. A run that lies
    /// wholly in the writer's memory (after its durable end: spill mode keeps most of a layer there) is
    /// not started ahead: [`next`](Self::next) copies it when it is wanted, so the write-out holds one
    /// such copy at a time instead of a window of them.
    fn fill(&mut self) -> Result<(), InMemoryLayerError> {
        let durable_end = self.writer.durable_end();
        while self.pending.len() < READS_IN_FLIGHT && self.started < self.batch.runs.len() {
            let (start, len, _) = self.batch.runs[self.started];
            if start >= durable_end {
                break;
            }
            let plan = self.plan(start, len)?;
            let file: Arc<VirtualFile> = Arc::clone(&self.layer.reader);
            self.pending
                .push_back(tokio::spawn(async move { plan.execute(&*file).await }));
            self.started += 1;
        }
        Ok(())
    }

    fn plan(
        &self,
        start: u64,
        len: usize,
    ) -> Result<virtual_file::buffered_writer::ReadPlan, InMemoryLayerError> {
        self.writer
            .read_plan(start, len)
            .map_err(|source| InMemoryLayerError::ReadPlan {
                path: self.layer.path.clone(),
                source,
            })
    }

    /// Every run's read has been started.
    fn all_started(&self) -> bool {
        self.started == self.batch.runs.len()
    }

    /// The bytes of the next run (in order), and its index; `None` after the last.
    async fn next(&mut self) -> Result<Option<(usize, Vec<u8>)>, InMemoryLayerError> {
        let Some(handle) = self.pending.pop_front() else {
            if self.all_started() {
                return Ok(None);
            }
            // a run in memory (see `fill`): copied now (read here, had it been spilled since)
            let run = self.started;
            let (start, len, _) = self.batch.runs[run];
            let bytes = self
                .plan(start, len)?
                .execute(&*self.layer.reader)
                .await
                .map_err(|source| InMemoryLayerError::Read {
                    path: self.layer.path.clone(),
                    source,
                })?;
            self.started += 1;
            self.fill()?;
            return Ok(Some((run, bytes)));
        };
        let run = self.started - self.pending.len() - 1;
        let path = || self.layer.path.clone();
        let bytes = handle
            .await
            .map_err(|e| InMemoryLayerError::Io {
                path: path(),
                source: virtual_file::Error::Config(format!("read task failed: {e}")),
            })?
            .map_err(|source| InMemoryLayerError::Read {
                path: path(),
                source,
            })?;
        self.fill()?;
        Ok(Some((run, bytes)))
    }
}

impl InMemoryLayer {
    /// Writes every value, in (key, LSN) order, to a new delta layer `dir/file_name` (durable and renamed
    /// into place when this returns). The layer must be frozen. Reads keep working meanwhile. Runs in an
    /// `in_memory_write_out` span (layer name, mode, engine, entries; `bytes` of the delta layer recorded
    /// when written).
    #[tracing::instrument(
        level = "info",
        name = "in_memory_write_out",
        skip_all,
        fields(
            layer = file_name,
            ephemeral = %self.path.display(),
            mode = %ctx.io_mode(),
            engine = %ctx.engine_kind(),
            entries = self.num_entries(),
            bytes = tracing::field::Empty,
        )
    )]
    pub async fn write_to_disk(
        &self,
        ctx: &IoContext,
        dir: &Path,
        file_name: &str,
    ) -> Result<LayerInfo, InMemoryLayerError> {
        if !self.is_frozen() {
            return Err(InMemoryLayerError::NotFrozen {
                path: self.path.clone(),
            });
        }
        // frozen: a put still under way holds the write lock, so this waits for it
        let inner = self.inner.read().await;
        let mut out = DeltaLayerWriter::new(ctx, dir, file_name).await?;
        let mut sorted = inner.index.sorted().peekable();
        let mut entries = Vec::new();
        let mut next_batch = || {
            entries.clear();
            let mut bytes = 0usize;
            while let Some(&(_, _, e)) = sorted.peek() {
                if !entries.is_empty() && bytes + e.len as usize > self.options.readout_batch_bytes
                {
                    break;
                }
                bytes += e.len as usize;
                entries.extend(sorted.next());
            }
            (!entries.is_empty()).then(|| Batch::plan(&entries))
        };
        let mut arena = Vec::new();
        let mut current = next_batch()
            .map(|b| RunReader::new(self, &inner.writer, b))
            .transpose()?;
        while let Some(mut reader) = current.take() {
            if reader.batch.in_file_order {
                // each run is a range of records, its bytes their blobs in order: straight through;
                // the next batch's reads start as soon as this one's are all under way
                let mut following = None;
                while let Some((run, bytes)) = reader.next().await? {
                    if following.is_none() && reader.all_started() {
                        following = Some(
                            next_batch()
                                .map(|b| RunReader::new(self, &inner.writer, b))
                                .transpose()?,
                        );
                    }
                    let copies = reader.batch.runs[run].2.clone();
                    self.check_blobs(&reader.batch.records[copies.clone()], &bytes)?;
                    out.put_encoded_blobs(&reader.batch.records[copies], &bytes)
                        .await?;
                }
                current = match following {
                    Some(next) => next,
                    None => next_batch()
                        .map(|b| RunReader::new(self, &inner.writer, b))
                        .transpose()?,
                };
                continue;
            }
            arena.clear();
            arena.resize(reader.batch.bytes, 0);
            while let Some((run, bytes)) = reader.next().await? {
                let (run_start, _, ref copies) = reader.batch.runs[run];
                for &(offset, len, at) in &reader.batch.copies[copies.clone()] {
                    let from = (offset - run_start) as usize;
                    arena[at..at + len as usize].copy_from_slice(&bytes[from..from + len as usize]);
                }
            }
            // the next batch's first reads run while this one is checked and handed over
            current = next_batch()
                .map(|b| RunReader::new(self, &inner.writer, b))
                .transpose()?;
            self.check_blobs(&reader.batch.records, &arena)?;
            out.put_encoded_blobs(&reader.batch.records, &arena).await?;
        }
        let info = out.finish().await?;
        tracing::Span::current().record("bytes", info.file_len);
        Ok(info)
    }

    /// Checks the CRC (and extent) of each blob in `bytes`, which holds `records`' blobs back to back.
    fn check_blobs(&self, records: &[Record], bytes: &[u8]) -> Result<(), InMemoryLayerError> {
        let mut at = 0usize;
        for &(key, lsn, _, len) in records {
            let blob = bytes.get(at..at + len as usize).unwrap_or_default();
            check_blob_exact(blob).map_err(|source| InMemoryLayerError::Corrupt {
                path: self.path.clone(),
                key,
                lsn,
                source,
            })?;
            at += len as usize;
        }
        Ok(())
    }
}
