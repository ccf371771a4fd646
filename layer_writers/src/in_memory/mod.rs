//! [`InMemoryLayer`]: the layer a storage engine appends to. Values are serialized (as blobs) into an
//! ephemeral file through a [`BufferedWriter`] and indexed in memory by (key, LSN); reads are served from
//! whatever mix of disk, in-flight buffer and mutable buffer holds the bytes; a frozen layer is written
//! out as a delta layer with [`write_to_disk`](InMemoryLayer::write_to_disk).
//!
//! # The ephemeral file
//!
//! `dir/ephemeral-<id>.<16 random hex digits>.___temp`, created exclusively (`O_CREAT | O_EXCL`), so two
//! layers never share a file, even with the same id in the same directory. The buffered writer's flush
//! task owns it and removes it when the layer is dropped, after its last write; [`InMemoryLayer::remove`]
//! does the same and waits for it. The reader is a second handle opened on the same file (checked by
//! identity), and every reopen after eviction checks the identity again. Leftovers of a crash match
//! [`remove_temp_files`](crate::remove_temp_files).
//!
//! # Lock discipline
//!
//! One `tokio::sync::RwLock` guards the writer and the index. Appends take it for writing; a read takes it
//! for reading only to look the entries up and to build the buffered writer's read plans (which copy the
//! bytes still in memory), then releases it and does the disk reads of the plans with no lock held.
//! Reads therefore run concurrently with each other and wait for appends only for the in-memory part.
//! [`write_to_disk`](InMemoryLayer::write_to_disk) runs on a frozen layer and holds a read lock
//! throughout (nothing writes any more; readers are not blocked).
//!
//! # Memory
//!
//! The index costs about 50 bytes per value (a hash map from key to an LSN-sorted vector of offset,
//! length and flag; see `index.rs`), plus the writer's buffers (`depth x buffer_capacity`). Writing out
//! holds at most two batches of `readout_batch_bytes` (see `write_out.rs`).
//!
//! # Weaknesses
//!
//! - Every value is copied twice on the way in (into the write buffer, and by the kernel) and once more on
//!   the way out of a read plan.
//! - Writing out a layer put in random key order rereads the ephemeral file once per batch.
//! - Keys are sorted only at write-out, so there is no ordered scan of a layer that is still open.

mod error;
mod index;
mod write_out;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::RwLock;
use virtual_file::{BufferedWriter, BufferedWriterOptions, IoContext, ShutdownMode, VirtualFile};

pub use error::InMemoryLayerError;

use crate::blob::{blob_crc, encode_header, Compression, CRC_LEN};
use crate::blob_io::decode_blob_exact;
use crate::key::{Key, Lsn};
use crate::layer_file::{EPHEMERAL_PREFIX, TEMP_SUFFIX};
use index::{Entry, Index};

/// Settings of an [`InMemoryLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InMemoryLayerOptions {
    /// Capacity of each of the writer's buffers (a multiple of 4096). Default 1 MiB.
    pub buffer_capacity: usize,
    /// Bytes of values read back per batch when writing the layer out (two batches are in memory at
    /// once). Default 16 MiB.
    pub readout_batch_bytes: usize,
}

impl Default for InMemoryLayerOptions {
    fn default() -> Self {
        Self {
            buffer_capacity: 1 << 20,
            readout_batch_bytes: 16 << 20,
        }
    }
}

struct Inner {
    writer: BufferedWriter<VirtualFile>,
    index: Index,
}

/// An append-only layer backed by an ephemeral file. See the [module docs](self).
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
        // Written pages stay readable from the page cache while the memory budget allows.
        file.keep_written_pages(true);
        let path = file.path().to_owned();
        let io = |source| InMemoryLayerError::Io {
            path: path.clone(),
            source,
        };
        let reader = file.open_again_read_only().await.map_err(io)?;
        let wopts = BufferedWriterOptions::default().with_capacity(options.buffer_capacity);
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

    /// Puts several values under one lock acquisition. A (key, LSN) put before, or twice in the batch, is
    /// refused before anything of the batch is written.
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
        if let Some((key, lsn)) = duplicate_in(batch) {
            return Err(InMemoryLayerError::Duplicate {
                path: self.path.clone(),
                key,
                lsn,
            });
        }
        let mut guard = self.inner.write().await;
        let inner = &mut *guard;
        // a freeze may have happened while we waited for the lock
        if self.frozen.load(Ordering::Acquire) {
            return Err(InMemoryLayerError::Frozen {
                path: self.path.clone(),
            });
        }
        let mut headers = Vec::with_capacity(batch.len());
        for &(key, lsn, _, value) in batch {
            if inner.index.contains(key, lsn) {
                return Err(InMemoryLayerError::Duplicate {
                    path: self.path.clone(),
                    key,
                    lsn,
                });
            }
            let header = encode_header(value.len(), Compression::None).map_err(|source| {
                InMemoryLayerError::ValueTooLarge {
                    path: self.path.clone(),
                    key,
                    lsn,
                    source,
                }
            })?;
            headers.push(header);
        }
        for (&(key, lsn, will_init, value), header) in batch.iter().zip(&headers) {
            let write_err = |source| InMemoryLayerError::Write {
                path: self.path.clone(),
                source,
            };
            let offset = inner
                .writer
                .write_buffered(header.as_slice())
                .await
                .map_err(write_err)?;
            inner
                .writer
                .write_buffered(value)
                .await
                .map_err(write_err)?;
            let crc = blob_crc(header.as_slice(), value);
            inner
                .writer
                .write_buffered(&crc.to_be_bytes())
                .await
                .map_err(write_err)?;
            let len = (header.as_slice().len() + value.len() + CRC_LEN) as u32;
            inner.index.insert(
                key,
                lsn,
                Entry {
                    offset,
                    len,
                    will_init,
                },
            );
            self.appended.fetch_add(len as u64, Ordering::Relaxed);
            self.entries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
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
        // On a shutdown error the flush task has already ended and dropped (removed) the file.
        let (_, file) = writer
            .shutdown(ShutdownMode::DropTail)
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

/// A (key, LSN) that occurs twice in `batch`, if any: a linear scan for small batches, a hash set for
/// large ones.
fn duplicate_in(batch: &[PutValue<'_>]) -> Option<(Key, Lsn)> {
    if batch.len() <= 16 {
        for (i, &(k, l, _, _)) in batch.iter().enumerate() {
            if batch[..i].iter().any(|&(k2, l2, _, _)| (k2, l2) == (k, l)) {
                return Some((k, l));
            }
        }
        return None;
    }
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    batch
        .iter()
        .map(|&(k, l, _, _)| (k, l))
        .find(|kl| !seen.insert(*kl))
}
