//! The remote tier: layer files in S3-compatible object storage (through the `object_store` crate: its
//! `aws` backend, or its local file system backend for single-machine use and tests), uploaded when
//! finished, evicted from a local directory with a byte budget, and downloaded again on demand.
//!
//! - [`RemoteStorage`]: one prefix of a store; [`upload_layer`](RemoteStorage::upload_layer) (streamed
//!   from the local file through `VirtualFile`, multipart above a threshold, CRC32C in the object's
//!   metadata), [`download_layer`](RemoteStorage::download_layer) (unique temp file,
//!   `BufferedWriter`, fsync, checksum, no-replace rename, directory fsync), the index object
//!   ([`RemoteIndex`]) written after the layers it names (conditionally), and the cleanup of what
//!   failed uploads leave ([`remove_orphans`](RemoteStorage::remove_orphans)).
//! - [`TieredLayers`]: a local directory with a byte budget; least recently used uploaded layers are
//!   evicted, a layer not resident is downloaded (once) when opened.
//! - [`RetryPolicy`]: backoff for requests (`object_store`'s own) and whole operations (ours).
//! - [`StoreConfig`], [`S3Config`] (the `REMOTE_STORAGE_S3_*` variables) and [`RemoteOptions`]: where
//!   the store is, and transfer settings.
//!
//! # Layout
//!
//! Every module is private; this file only re-exports. Floors, lowest first (a module uses only its
//! own floor and those below it):
//!
//! 1. `error`: [`RemoteError`] and the classification of `object_store` errors.
//! 2. `index` (the index object's format, layer names), `retry` (backoff), `chunks` (a local file read
//!    in aligned chunks).
//! 3. `config` (store and transfer settings), `abort` (aborting unfinished multipart uploads, the list
//!    of those that could not be).
//! 4. `remote`: [`RemoteStorage`] itself: connecting, the error classification of a request, reading
//!    the index.
//! 5. What it does, one file each: `index_write` (conditional index updates, `delete_layer`),
//!    `download`, `orphans` (`remove_orphans` and its rule).
//! 6. `upload` (the layer's object, then its index entry).
//! 7. `tiered`: [`TieredLayers`] over a [`RemoteStorage`] (inside: `state`, `resident`, `scan`, then
//!    `tiered` itself).
//!
//! # Weaknesses
//!
//! - A multipart upload to S3 reads the local file twice (checksum first, since S3 takes metadata only
//!   when the upload starts).
//! - The index is one object: every upload reads and rewrites it (fine for thousands of layers, not for
//!   millions).
//! - Index updates are conditional writes (`If-Match` / `If-None-Match: *`): writers on
//!   one prefix lose nothing, but under heavy contention from many instances each update may need
//!   several rounds (read, apply, conditional put); updates are not batched.
//! - On the local file system backend the index is kept safe by a `flock` on a lock file, which
//!   serializes writers on one machine only (not over NFS).
//! - `remove_orphans` keeps objects younger than [`RemoteOptions::orphan_grace`] (default 1 hour), so
//!   an orphan lingers that long; the rule is in `orphans.rs`.
//! - A multipart upload whose abort failed for the whole retry window is aborted later by this
//!   instance's `remove_orphans`; one left by another process or before a restart is left to the
//!   bucket's lifecycle rules: `object_store` cannot list unfinished uploads.
//! - Opening a [`TieredLayers`] reads every resident uploaded layer once to check its CRC32C.
//! - Eviction unlinks files under a short in-process lock with a plain `unlink(2)`.
//!
//! # Example
//!
//! Upload a layer to a store (here `object_store`'s local file system backend; [`StoreConfig::S3`] for
//! S3), download it into another directory and read it:
//!
//! ```
//! use layer_writers::{DeltaLayerReader, DeltaLayerWriter, Key, Lsn};
//! use remote_storage::{RemoteOptions, RemoteStorage, StoreConfig};
//! use virtual_file::IoContext;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let ctx = IoContext::from_env()?;
//!     let (local, bucket, elsewhere) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
//!
//!     let mut writer = DeltaLayerWriter::new(&ctx, local.path(), "layer-1").await?;
//!     writer.put_value(Key::from_u128(1), Lsn(5), true, b"one").await?;
//!     let info = writer.finish().await?;
//!
//!     let store = StoreConfig::Local { root: bucket.path().to_owned() };
//!     let remote = RemoteStorage::connect(&store, RemoteOptions::default()).await?;
//!     // the entry (size, CRC32C) is also recorded in the prefix's index object
//!     let entry = remote.upload_layer(&ctx, &info.path, "layer-1").await?;
//!
//!     // checksummed, fsynced, renamed into place
//!     let copy = remote.download_layer(&ctx, "layer-1", &entry, elsewhere.path()).await?;
//!     let reader = DeltaLayerReader::open(&ctx, &copy).await?;
//!     let found = reader.get(Key::from_u128(1), Lsn(0)..Lsn(6)).await?;
//!     assert_eq!(found, vec![(Lsn(5), true, b"one".to_vec())]);
//!     println!("{} bytes, crc32c {:08x}", entry.size, entry.crc32c);
//!     Ok(())
//! })
//! # }
//! ```

#![warn(missing_docs)]

mod abort;
mod chunks;
mod config;
mod download;
mod error;
mod index;
mod index_write;
mod orphans;
mod remote;
mod retry;
mod tiered;
mod upload;

pub use config::{
    RemoteOptions, S3Config, StoreConfig, S3_ACCESS_KEY_ENV, S3_BUCKET_ENV, S3_ENDPOINT_ENV,
    S3_REGION_ENV, S3_SECRET_KEY_ENV,
};
pub use download::{is_download_temp, DOWNLOAD_TEMP_MARKER};
pub use error::RemoteError;
pub use index::{
    validate_layer_name, IndexEntry, RemoteIndex, INDEX_FORMAT, MAX_INDEX_BYTES, MAX_LAYER_NAME,
};
pub use orphans::{OrphanReport, ORPHAN_SCAN_PROBE};
pub use remote::{RemoteStorage, CRC_METADATA_KEY};
pub use retry::RetryPolicy;
pub use tiered::{ResidentLayer, TierStats, TieredLayers};
pub use upload::Uploaded;
