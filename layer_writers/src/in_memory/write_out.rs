//! Writing a frozen in-memory layer out as a delta layer.
//!
//! Values are in the ephemeral file in put order, the delta layer wants (key, LSN) order. The index is
//! walked in key order in batches of at most `readout_batch_bytes`; a batch's blobs are sorted by file
//! offset and read in merged runs (gaps up to 64 KiB, runs up to 4 MiB, at least half of each run wanted
//! bytes, so a batch holds at most twice its values' bytes), each run on its own task, so the
//! reads of batch N + 1 run while batch N is decoded and handed to the delta layer writer (whose own
//! flush task writes behind it). A layer put in key order is thus read sequentially, once, in large
//! reads overlapped with the writing; one put in random order costs about one pass over the file per
//! batch. At most two batches of bytes are in memory.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;
use virtual_file::buffered_writer::ReadError;
use virtual_file::{BufferedWriter, IoContext, VirtualFile};

use super::index::Entry;
use super::{InMemoryLayer, InMemoryLayerError};
use crate::blob::{decode_payload, Compression, MAX_VALUE_LEN};
use crate::blob_io::check_blob_exact;
use crate::delta::DeltaLayerWriter;
use crate::key::{Key, Lsn};
use crate::layer_file::LayerInfo;

/// Gap between two blobs up to which they are read in one run.
const MERGE_GAP: u64 = 64 * 1024;
/// Largest single read.
const MAX_RUN: u64 = 4 << 20;

type RunRead = JoinHandle<Result<Vec<u8>, ReadError<virtual_file::Error>>>;

/// A batch whose reads are under way: the entries in key order, where each one's blob is in which run,
/// and the runs' read tasks.
struct PendingBatch {
    entries: Vec<(Key, Lsn, Entry)>,
    /// For each entry (same order): run index and offset of its blob within the run.
    places: Vec<(usize, usize)>,
    runs: Vec<RunRead>,
}

/// Plans the runs of `entries` and starts their reads.
fn start_batch(
    layer: &InMemoryLayer,
    writer: &BufferedWriter<VirtualFile>,
    entries: Vec<(Key, Lsn, Entry)>,
) -> Result<PendingBatch, InMemoryLayerError> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].2.offset);
    let mut places = vec![(0, 0); entries.len()];
    let mut runs = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let first = entries[order[i]].2;
        let run_start = first.offset;
        let mut run_end = first.offset + first.len as u64;
        let mut useful = first.len as u64;
        let mut j = i + 1;
        while j < order.len() {
            let e = entries[order[j]].2;
            let end = e.offset + e.len as u64;
            let span = end.max(run_end) - run_start;
            // merge a neighbour only while at least half of what the run reads is wanted, so a batch
            // never reads (and holds) more than twice its values' bytes, however scattered they are
            if e.offset > run_end + MERGE_GAP
                || span > MAX_RUN
                || span > 2 * (useful + e.len as u64)
            {
                break;
            }
            run_end = run_end.max(end);
            useful += e.len as u64;
            j += 1;
        }
        for &idx in &order[i..j] {
            places[idx] = (runs.len(), (entries[idx].2.offset - run_start) as usize);
        }
        let plan = writer
            .read_plan(run_start, (run_end - run_start) as usize)
            .map_err(|source| InMemoryLayerError::ReadPlan {
                path: layer.path.clone(),
                source,
            })?;
        let reader: Arc<VirtualFile> = Arc::clone(&layer.reader);
        runs.push(tokio::spawn(async move { plan.execute(&*reader).await }));
        i = j;
    }
    Ok(PendingBatch {
        entries,
        places,
        runs,
    })
}

/// The value of the blob that must span exactly `bytes`, CRC checked; borrowed when stored uncompressed.
fn payload(bytes: &[u8]) -> Result<Cow<'_, [u8]>, crate::error::FormatError> {
    let blob = check_blob_exact(bytes)?;
    if blob.header.compression == Compression::None {
        Ok(Cow::Borrowed(blob.payload))
    } else {
        decode_payload(blob, MAX_VALUE_LEN).map(Cow::Owned)
    }
}

impl InMemoryLayer {
    /// Writes every value, in (key, LSN) order, to a new delta layer `dir/file_name` (durable and renamed
    /// into place when this returns). The layer must be frozen. Reads keep working meanwhile.
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
        let mut next_batch = || {
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            while let Some(&(_, _, e)) = sorted.peek() {
                if !batch.is_empty() && bytes + e.len as usize > self.options.readout_batch_bytes {
                    break;
                }
                bytes += e.len as usize;
                batch.extend(sorted.next());
            }
            batch
        };
        let first = next_batch();
        let mut pending = (!first.is_empty())
            .then(|| start_batch(self, &inner.writer, first))
            .transpose()?;
        while let Some(batch) = pending.take() {
            let mut runs = Vec::with_capacity(batch.runs.len());
            for handle in batch.runs {
                let bytes = handle
                    .await
                    .map_err(|e| InMemoryLayerError::Io {
                        path: self.path.clone(),
                        source: virtual_file::Error::Config(format!("read task failed: {e}")),
                    })?
                    .map_err(|source| InMemoryLayerError::Read {
                        path: self.path.clone(),
                        source,
                    })?;
                runs.push(bytes);
            }
            // the next batch's reads run while this one is written out
            let following = next_batch();
            if !following.is_empty() {
                pending = Some(start_batch(self, &inner.writer, following)?);
            }
            for (&(key, lsn, e), &(run, at)) in batch.entries.iter().zip(&batch.places) {
                let value = payload(&runs[run][at..at + e.len as usize]).map_err(|source| {
                    InMemoryLayerError::Corrupt {
                        path: self.path.clone(),
                        key,
                        lsn,
                        source,
                    }
                })?;
                out.put_value(key, lsn, e.will_init, &value).await?;
            }
        }
        Ok(out.finish().await?)
    }
}
