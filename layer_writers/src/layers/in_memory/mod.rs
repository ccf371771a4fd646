//! [`InMemoryLayer`]: puts into an ephemeral file with an in-memory index, reads back, and the write-out
//! as a delta layer (`write_out`). Its docs (the ephemeral file, lock discipline, where the bytes are,
//! memory, weaknesses) are on the type.

mod error;
mod index;
mod write_out;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::RwLock;
use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
use virtual_file::{IoContext, VirtualFile};

pub use error::InMemoryLayerError;

use crate::format::blob::decode_blob_exact;
use crate::format::blob::{blob_crc, encode_header, Compression, EncodedHeader, CRC_LEN};
use crate::format::key::{Key, Lsn};
use crate::layers::layer_file::{EPHEMERAL_PREFIX, TEMP_SUFFIX};
use index::{Entry, Index, Mark};

/// Most values one layer holds (index positions are `u32`).
const MAX_VALUES: usize = u32::MAX as usize;
/// A value at least this long is handed to the writer on its own rather than copied into the batch's
/// scratch buffer first (the copy costs more than the call it saves).
const DIRECT_VALUE_LEN: usize = 2048;
/// Scratch bytes after which the batch's serialized blobs are handed to the writer (bounds the scratch
/// buffer's size whatever the batch).
const SCRATCH_FLUSH_LEN: usize = 256 * 1024;

/// Settings of an [`InMemoryLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InMemoryLayerOptions {
    /// Capacity of each of the writer's buffers (a multiple of 4096). Default 1 MiB.
    pub buffer_capacity: usize,
    /// Bytes of values read back per batch when writing the layer out (two batches are in memory at
    /// once). Default 16 MiB.
    pub readout_batch_bytes: usize,
    /// Where the ephemeral file's reads bypass the kernel's page cache (`direct`, `direct-rw`), keep its
    /// bytes in memory from the context's memory budget and write them to the file only when the budget
    /// runs short (the writer's spill mode; see the module docs). False: write them through at once.
    /// Default true.
    pub spill: bool,
}

impl Default for InMemoryLayerOptions {
    fn default() -> Self {
        Self {
            buffer_capacity: 1 << 20,
            readout_batch_bytes: 16 << 20,
            spill: true,
        }
    }
}

struct Inner {
    writer: BufferedWriter<VirtualFile>,
    index: Index,
    /// Serialized blobs of the batch being put, and the blob headers of its values (kept for their
    /// capacity).
    scratch: Vec<u8>,
    headers: Vec<EncodedHeader>,
}

/// [`InMemoryLayer`]: the layer a storage engine appends to. Values are serialized (as blobs) into an
/// ephemeral file through a [`BufferedWriter`] and indexed in memory by (key, LSN); reads are served from
/// whatever mix of disk, in-flight buffer and mutable buffer holds the bytes; a frozen layer is written
/// out as a delta layer with [`write_to_disk`](InMemoryLayer::write_to_disk).
///
/// # The ephemeral file
///
/// `dir/ephemeral-<id>.<16 random hex digits>.___temp`, created exclusively (`O_CREAT | O_EXCL`), so two
/// layers never share a file, even with the same id in the same directory. The buffered writer's flush
/// task owns it and removes it when the layer is dropped, after its last write; [`InMemoryLayer::remove`]
/// does the same and waits for it. The reader is a second handle opened on the same file (checked by
/// identity), and every reopen after eviction checks the identity again. Leftovers of a crash match
/// [`remove_temp_files`](crate::layers::layer_file::remove_temp_files).
///
/// # Lock discipline
///
/// One `tokio::sync::RwLock` guards the writer and the index. Appends take it for writing; a read takes it
/// for reading only to look the entries up and to build the buffered writer's read plans (which copy the
/// bytes still in memory), then releases it and does the disk reads of the plans with no lock held.
/// Reads therefore run concurrently with each other and wait for appends only for the in-memory part.
/// [`write_to_disk`](InMemoryLayer::write_to_disk) runs on a frozen layer and holds a read lock
/// throughout (nothing writes any more; readers are not blocked).
///
/// # Where the bytes are
///
/// In `buffered` mode the ephemeral file is written through and read back from the kernel's page cache.
/// Where its reads bypass that cache (`direct`, `direct-rw`), the writer runs in spill mode (the default,
/// [`InMemoryLayerOptions::spill`]): full buffers stay in memory, reserved from the context's
/// [`MemoryBudget`](virtual_file::MemoryBudget), and are written to the file only when the budget runs
/// short, oldest first: when the layer needs a buffer and neither free budget nor cache pages are left,
/// or when any other consumer of the budget waits (a layer writer, a reader). A layer that fits in the
/// budget is thus never written to the ephemeral file at all: `get` and the write-out copy from memory,
/// and the bytes reach the device once, in the delta layer. The ephemeral file is a spill file, not a
/// durable copy (durability comes from the delta layer's fsync), so nothing is lost by that. Without
/// spill mode the bytes are written through and their pages kept in the page cache while the budget
/// allows ([`VirtualFile::keep_written_pages`]).
///
/// # Memory
///
/// The index costs about 70-90 bytes per value: 40 in the put-order entry list and one hash-table slot
/// (32 bytes, tables between half and 7/8 full) per key; a key's further versions 4 bytes each, in a
/// sorted list or, for a hot key taking LSNs out of order, a B-tree (see `index.rs`). Plus the writer's
/// buffers: `depth x buffer_capacity` when written through; in spill mode the layer's bytes (headers and
/// CRCs included) as far as the memory budget allows, all of it counted there. Plus the batch's scratch
/// buffer (at most 256 KiB beyond one value). Writing out holds one arena of `readout_batch_bytes` and at
/// most four reads of 4 MiB from the file, or one 4 MiB copy at a time of bytes still in memory (see
/// `write_out.rs`), and sorts a 32-byte copy of each value's (key, LSN) when the puts were not in order.
///
/// # Weaknesses
///
/// - A small value is copied three times on the way in (into the batch's scratch buffer, into the write
///   buffer, and by the kernel; twice in spill mode while it stays in memory); a value of 2 KiB or more
///   skips the scratch copy.
/// - Spill mode takes fresh memory for every buffer it keeps, and its ingest phase measured slower than
///   `buffered` mode's although no byte goes to the device (128 MiB of 8 KiB values: 90-125 ms against
///   45-65 ms, whose two write buffers stay hot in the CPU cache while the kernel copies on the other
///   core). First-touch page faults are the likely cause, not verified: prefaulting with
///   `MADV_POPULATE_WRITE` measured no clear gain.
/// - Writing out a layer put in random key order rereads the ephemeral file once per batch (in large
///   sequential reads); a larger `readout_batch_bytes` means fewer passes.
/// - Keys are sorted only at write-out, so there is no ordered scan of a layer that is still open.
/// - A batch refused after its index pass (a write failed) leaves its bytes in the ephemeral file as
///   garbage no index entry points at; after a failed write the writer refuses further puts anyway.
pub struct InMemoryLayer {
    path: PathBuf,
    reader: Arc<VirtualFile>,
    inner: RwLock<Inner>,
    options: InMemoryLayerOptions,
    appended: AtomicU64,
    entries: AtomicU64,
    /// Set by `freeze` and checked before taking the lock, so that a put after the freeze never queues
    /// behind (and then blocks readers for) a write-out holding the read lock.
    frozen: AtomicBool,
}

impl std::fmt::Debug for InMemoryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryLayer")
            .field("path", &self.path)
            .field("entries", &self.num_entries())
            .field("bytes", &self.len_bytes())
            .finish()
    }
}

/// One value to put: (key, LSN, will-init flag, value).
pub type PutValue<'a> = (Key, Lsn, bool, &'a [u8]);

impl InMemoryLayer {
    /// A new layer whose ephemeral file is a new, uniquely named file in `dir` (see the module docs). `id`
    /// is part of the name for people reading a directory listing; it need not be unique.
    pub async fn create(ctx: &IoContext, dir: &Path, id: u64) -> Result<Self, InMemoryLayerError> {
        Self::create_with_options(ctx, dir, id, InMemoryLayerOptions::default()).await
    }

    /// [`create`](Self::create) with settings.
    pub async fn create_with_options(
        ctx: &IoContext,
        dir: &Path,
        id: u64,
        options: InMemoryLayerOptions,
    ) -> Result<Self, InMemoryLayerError> {
        let prefix = format!("{EPHEMERAL_PREFIX}{id}.");
        // Removed when dropped: by the flush task once the writer owns it.
        let mut file = VirtualFile::create_temp(ctx, dir, &prefix, TEMP_SUFFIX)
            .await
            .map_err(|source| InMemoryLayerError::Io {
                path: dir.join(format!("{prefix}*{TEMP_SUFFIX}")),
                source,
            })?;
        // In memory while the budget allows: kept in the writer (spill mode), or, written through, as pages
        // in the page cache.
        let spill = options.spill && ctx.io_mode().reads_bypass_page_cache();
        file.keep_written_pages(!spill);
        let path = file.path().to_owned();
        let io = |source| InMemoryLayerError::Io {
            path: path.clone(),
            source,
        };
        let reader = file.open_again_read_only().await.map_err(io)?;
        let wopts = BufferedWriterOptions::default()
            .with_capacity(options.buffer_capacity)
            .with_spill(spill);
        let mut writer =
            BufferedWriter::new(file, wopts).map_err(|source| InMemoryLayerError::Write {
                path: path.clone(),
                source,
            })?;
        // the ephemeral file is deleted with the layer: its unwritten tail is never needed
        writer.set_disposable(true);
        Ok(Self {
            path,
            reader: Arc::new(reader),
            inner: RwLock::new(Inner {
                writer,
                index: Index::default(),
                scratch: Vec::new(),
                headers: Vec::new(),
            }),
            options,
            appended: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
        })
    }

    /// The ephemeral file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes appended to the ephemeral file (headers included).
    pub fn len_bytes(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Number of values put.
    pub fn num_entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Puts one value.
    pub async fn put_value(
        &self,
        key: Key,
        lsn: Lsn,
        will_init: bool,
        value: &[u8],
    ) -> Result<(), InMemoryLayerError> {
        self.put_batch(&[(key, lsn, will_init, value)]).await
    }

    /// Puts several values under one lock acquisition, all or nothing: a (key, LSN) put before, or twice
    /// in the batch, refuses the whole batch before anything of it is written, and a failed (or
    /// cancelled) write takes the whole batch back out of the index, so no value of a refused batch is
    /// ever visible and nothing of it has to be taken back by the caller.
    ///
    /// The batch is done in three passes under the lock: the index pass (one hash probe per value, the
    /// insert being the duplicate check; the blob offsets follow from the writer's end offset), the
    /// serialization pass (header, value and CRC of each small value into one scratch buffer, handed to
    /// the writer in one call; a large value goes to the writer directly, without the extra copy), and
    /// the counters, once.
    pub async fn put_batch(&self, batch: &[PutValue<'_>]) -> Result<(), InMemoryLayerError> {
        if self.frozen.load(Ordering::Acquire) {
            return Err(InMemoryLayerError::Frozen {
                path: self.path.clone(),
            });
        }
        if let Some(&(key, lsn, _, _)) = batch
            .iter()
            .find(|&&(k, l, _, _)| k == Key::MAX || l == Lsn::MAX)
        {
            // a delta layer cannot hold them (its ranges are end-exclusive): refuse them now rather
            // than accept values that could never be written out
            return Err(InMemoryLayerError::OutOfRange {
                path: self.path.clone(),
                key,
                lsn,
            });
        }
        let mut guard = self.inner.write().await;
        // a freeze may have happened while we waited for the lock
        if self.frozen.load(Ordering::Acquire) {
            return Err(InMemoryLayerError::Frozen {
                path: self.path.clone(),
            });
        }
        let Inner {
            writer,
            index,
            scratch,
            headers,
        } = &mut *guard;
        if index.len() + batch.len() > MAX_VALUES {
            return Err(InMemoryLayerError::TooManyValues {
                path: self.path.clone(),
                max: MAX_VALUES as u64,
            });
        }
        // index pass: until disarmed, the guard takes the batch back out of the index when dropped (an
        // error below, or this future dropped while it waits for a buffer)
        let undo = BatchUndo {
            mark: index.mark(),
            index,
        };
        let start = writer.end_offset();
        let mut offset = start;
        headers.clear();
        for &(key, lsn, will_init, value) in batch {
            let header = encode_header(value.len(), Compression::None).map_err(|source| {
                InMemoryLayerError::ValueTooLarge {
                    path: self.path.clone(),
                    key,
                    lsn,
                    source,
                }
            })?;
            // at most MAX_VALUE_LEN + 8 bytes: fits
            let len = (header.as_slice().len() + value.len() + CRC_LEN) as u32;
            let entry = Entry {
                offset,
                len,
                will_init,
            };
            if !undo.index.insert(key, lsn, entry) {
                return Err(InMemoryLayerError::Duplicate {
                    path: self.path.clone(),
                    key,
                    lsn,
                });
            }
            offset += u64::from(len);
            headers.push(header);
        }
        // serialization pass
        let write_err = |source| InMemoryLayerError::Write {
            path: self.path.clone(),
            source,
        };
        scratch.clear();
        for (&(_, _, _, value), header) in batch.iter().zip(headers.iter()) {
            let blob_start = scratch.len();
            scratch.extend_from_slice(header.as_slice());
            if value.len() < DIRECT_VALUE_LEN {
                scratch.extend_from_slice(value);
                let crc = crc32c::crc32c(&scratch[blob_start..]);
                scratch.extend_from_slice(&crc.to_be_bytes());
            } else {
                let crc = blob_crc(header.as_slice(), value);
                writer.write_buffered(scratch).await.map_err(write_err)?;
                writer.write_buffered(value).await.map_err(write_err)?;
                scratch.clear();
                scratch.extend_from_slice(&crc.to_be_bytes());
            }
            if scratch.len() >= SCRATCH_FLUSH_LEN {
                writer.write_buffered(scratch).await.map_err(write_err)?;
                scratch.clear();
            }
        }
        if !scratch.is_empty() {
            writer.write_buffered(scratch).await.map_err(write_err)?;
        }
        debug_assert_eq!(writer.end_offset(), offset);
        undo.disarm();
        self.appended.fetch_add(offset - start, Ordering::Relaxed);
        self.entries
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Plans room in the index for `additional` more values, so that it does not grow (rehash) on the
    /// way; for a caller that knows the layer's expected size.
    pub async fn reserve(&self, additional: usize) {
        self.inner.write().await.index.reserve(additional);
    }

    /// The values of `key` with LSN in `lsn_range`, ascending by LSN: (LSN, will-init, value).
    pub async fn get(
        &self,
        key: Key,
        lsn_range: Range<Lsn>,
    ) -> Result<Vec<(Lsn, bool, Vec<u8>)>, InMemoryLayerError> {
        if lsn_range.start >= lsn_range.end {
            return Ok(Vec::new());
        }
        // under the lock: look up and snapshot (copies what is still in memory)
        let plans = {
            let inner = self.inner.read().await;
            let mut plans = Vec::new();
            for (lsn, e) in inner.index.versions(key, lsn_range) {
                let plan = inner
                    .writer
                    .read_plan(e.offset, e.len as usize)
                    .map_err(|source| InMemoryLayerError::ReadPlan {
                        path: self.path.clone(),
                        source,
                    })?;
                plans.push((lsn, e.will_init, plan));
            }
            plans
        };
        // no lock held: the disk reads
        let mut out = Vec::with_capacity(plans.len());
        for (lsn, will_init, plan) in plans {
            let bytes =
                plan.execute(&*self.reader)
                    .await
                    .map_err(|source| InMemoryLayerError::Read {
                        path: self.path.clone(),
                        source,
                    })?;
            let value =
                decode_blob_exact(&bytes).map_err(|source| InMemoryLayerError::Corrupt {
                    path: self.path.clone(),
                    key,
                    lsn,
                    source,
                })?;
            out.push((lsn, will_init, value));
        }
        Ok(out)
    }

    /// The range of keys put so far (`None` while empty).
    pub async fn key_range(&self) -> Option<Range<Key>> {
        let (first, last) = self.inner.read().await.index.key_bounds()?;
        Some(first..last.checked_next().unwrap_or(Key::MAX))
    }

    /// Refuses further writes; reads keep working. A put already holding the lock finishes first.
    pub async fn freeze(&self) -> Result<(), InMemoryLayerError> {
        if !self.frozen.swap(true, Ordering::AcqRel) {
            // wait for a put that is under way (it checked the flag before we set it)
            drop(self.inner.write().await);
        }
        Ok(())
    }

    /// Removes the ephemeral file and waits until it is gone: the writer is shut down (its tail
    /// discarded), then the file is unlinked. Dropping the layer removes the file too, but in the
    /// background once the writer's flush task has ended.
    pub async fn remove(self) -> Result<(), InMemoryLayerError> {
        let path = self.path.clone();
        let Inner { writer, .. } = self.inner.into_inner();
        // Nothing more is written (bytes kept in memory are dropped). On a shutdown error the flush task
        // has already ended and dropped (removed) the file.
        let (_, file) = writer
            .shutdown(ShutdownMode::Discard)
            .await
            .map_err(|source| InMemoryLayerError::Write {
                path: path.clone(),
                source,
            })?;
        file.remove()
            .await
            .map_err(|source| InMemoryLayerError::Io { path, source })
    }

    /// True once [`freeze`](Self::freeze) was called.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }
}

/// Takes a batch's inserts back out of the index when dropped armed. See `put_batch`.
struct BatchUndo<'a> {
    index: &'a mut Index,
    mark: Mark,
}

impl BatchUndo<'_> {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for BatchUndo<'_> {
    fn drop(&mut self) {
        self.index.rollback(self.mark);
    }
}
