//! Layer files on top of `virtual_file`: blob IO, the on-disk B-tree index, delta and image layer writers
//! and readers, and the in-memory (ephemeral) layer.
//!
//! The crate is three floors, lowest first; a module uses only its own floor and those below it, and
//! this root only re-exports:
//!
//! 1. [`format`](mod@format): the pure on-disk formats, no file IO: keys and index keys, the blob codec
//!    ([`format::blob`]), the B-tree index ([`format::btree`]), the summary block ([`format::summary`]),
//!    and [`FormatError`], what decoding any of them reports.
//! 2. `io`: layer file bytes through `virtual_file` (every IO mode and engine): [`BlobWriter`], the index
//!    pages of a file as a B-tree page source, merged vectored reads, [`ReadBudget`]; and [`LayerError`],
//!    what writing and reading layers reports.
//! 3. `layers`: the write protocol and the kind-independent reader ([`LayerInfo`], [`remove_temp_files`]),
//!    then [`DeltaLayerWriter`] / [`DeltaLayerReader`] and [`ImageLayerWriter`] / [`ImageLayerReader`]
//!    (point lookups, vectored lookups with blobs merged into aligned reads of at most 128 KiB, ordered
//!    scans, `verify`), then the [`InMemoryLayer`], written out as a delta layer.
//!
//! Each floor's module docs list its modules in order. Every type has one public path: the [`format`](mod@format)
//! modules for the codecs, the crate root for the rest.
//!
//! A layer file is laid out as:
//!
//! ```text
//! offset 0        summary block (8 KiB)              format::summary::Summary
//! offset 8192     values: blobs back to back         format::blob::encode_blob (header, payload, CRC32C)
//! values_end      zero padding to a multiple of 8 KiB
//! index_start     B-tree pages, root last            format::btree::BtreeBuilder
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

pub mod format;
mod io;
mod layers;

pub use format::error::FormatError;
pub use format::key::{Key, Lsn};
pub use io::blob_io::{BlobWriter, LAYER_WRITE_BUFFER_CAPACITY};
pub use io::error::{BufferedWriteError, LayerError};
pub use io::read_budget::{BudgetPermit, ReadBudget, MAX_READ_BUDGET};
pub use io::vectored::{MAX_MERGE_GAP, MAX_VECTORED_READ, SCAN_READ};
pub use layers::delta::{DeltaLayerReader, DeltaLayerWriter, DeltaValue, WILL_INIT_FLAG};
pub use layers::image::{ImageLayerReader, ImageLayerWriter};
pub use layers::in_memory::{InMemoryLayer, InMemoryLayerError, InMemoryLayerOptions, PutValue};
pub use layers::layer_file::{is_temp_file_name, remove_temp_files, LayerInfo, TEMP_SUFFIX};
pub use layers::layer_reader::{VerifyReport, SCAN_READS_IN_FLIGHT};

/// README.md's code blocks run as doc tests of this crate, so the quick start cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
