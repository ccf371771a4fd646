//! Layer files on top of `virtual_file`: blob IO, the on-disk B-tree index, delta and image layer writers
//! and readers, and the in-memory (ephemeral) layer.
//!
//! The pure on-disk formats, with no file IO:
//!
//! - [`key`]: [`Key`] (16 bytes, big-endian order) and [`Lsn`], and the index keys built from them.
//! - [`blob`]: the blob header (1 or 4 bytes, with compression bits), zstd blob encoding, and the CRC32C
//!   trailer of every blob.
//! - [`btree`]: the 8 KiB-page B-tree index: streaming bottom-up builder, verifying reader.
//! - [`summary`]: the 8 KiB summary block at offset 0 of a layer file.
//! - [`FormatError`]: what decoding any of them reports.
//!
//! Layer files, through `virtual_file` (every IO mode and engine):
//!
//! - [`layer_file`]: the file layout and the write protocol (temp name, fsync, rename, directory fsync),
//!   [`LayerInfo`], [`remove_temp_files`].
//! - [`blob_io`]: [`BlobWriter`] (blobs through a `BufferedWriter`) and blob decoding from bytes read back.
//! - [`page_source`]: the index pages of a layer file as a B-tree [`btree::PageSource`].
//! - [`delta`]: [`DeltaLayerWriter`] / [`DeltaLayerReader`]; [`image`]: [`ImageLayerWriter`] /
//!   [`ImageLayerReader`]. Readers do point lookups, vectored lookups (blobs merged into aligned reads of at
//!   most 128 KiB) and ordered scans.
//! - [`read_budget`]: [`ReadBudget`], the shared budget of read-buffer bytes in flight.
//! - [`LayerError`]: what writing and reading layers reports.
//!
//! A layer file is laid out as:
//!
//! ```text
//! offset 0        summary block (8 KiB)              summary::Summary
//! offset 8192     values: blobs back to back         blob::encode_blob (header, payload, CRC32C)
//! values_end      zero padding to a multiple of 8 KiB
//! index_start     B-tree pages, root last            btree::BtreeBuilder
//! ```
//!
//! # Example
//!
//! Write a delta layer (keys in order; the file is fsynced and renamed into place by `finish`), then look
//! keys up in it. The README's quick start does the same through an [`InMemoryLayer`]:
//!
//! ```
//! use layer_writers::{DeltaLayerReader, DeltaLayerWriter, Key, Lsn};
//! use virtual_file::IoContext;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let ctx = IoContext::from_env()?;
//!     let dir = tempfile::tempdir()?;
//!
//!     let mut writer = DeltaLayerWriter::new(&ctx, dir.path(), "layer-1").await?;
//!     for k in 0..100u128 {
//!         // (key, lsn) pairs strictly increasing; `true`: the value initializes the key
//!         let value = format!("value {k}");
//!         writer.put_value(Key::from_u128(k), Lsn(10), true, value.as_bytes()).await?;
//!     }
//!     let info = writer.finish().await?;
//!
//!     let reader = DeltaLayerReader::open(&ctx, &info.path).await?;
//!     // every value of the key with an LSN in the range
//!     let found = reader.get(Key::from_u128(7), Lsn(0)..Lsn(11)).await?;
//!     assert_eq!(found, vec![(Lsn(10), true, b"value 7".to_vec())]);
//!     assert!(reader.get(Key::from_u128(7), Lsn(0)..Lsn(10)).await?.is_empty());
//!     println!("{} entries, {} bytes in {}", info.num_entries, info.file_len, info.path.display());
//!     Ok(())
//! })
//! # }
//! ```

#![warn(missing_docs)]

pub mod blob;
pub mod blob_io;
pub mod btree;
pub mod delta;
mod error;
pub mod image;
pub mod in_memory;
pub mod key;
mod layer_error;
pub mod layer_file;
mod layer_reader;
pub mod page_source;
mod raw;
pub mod read_budget;
pub mod summary;
mod vectored;

pub use blob_io::BlobWriter;
pub use delta::{DeltaLayerReader, DeltaLayerWriter, DeltaValue, WILL_INIT_FLAG};
pub use error::FormatError;
pub use image::{ImageLayerReader, ImageLayerWriter};
pub use in_memory::{InMemoryLayer, InMemoryLayerError, InMemoryLayerOptions, PutValue};
pub use key::{Key, Lsn};
pub use layer_error::{BufferedWriteError, LayerError};
pub use layer_file::{is_temp_file_name, remove_temp_files, LayerInfo, TEMP_SUFFIX};
pub use layer_reader::VerifyReport;
pub use read_budget::{BudgetPermit, ReadBudget};
pub use vectored::{MAX_MERGE_GAP, MAX_VECTORED_READ, SCAN_READ};

/// README.md's code blocks run as doc tests of this crate, so the quick start cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
