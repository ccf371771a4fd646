//! Layer files on top of `virtual_file`: blob IO, the on-disk B-tree index, delta and image layer writers
//! and readers, and the in-memory (ephemeral) layer.
//!
//! What exists so far are the pure on-disk formats, with no file IO:
//!
//! - [`key`]: [`Key`] (16 bytes, big-endian order) and [`Lsn`], and the index keys built from them.
//! - [`blob`]: the blob header (1 or 4 bytes, with compression bits) and zstd blob encoding.
//! - [`btree`]: the 8 KiB-page B-tree index: streaming bottom-up builder, verifying reader.
//! - [`summary`]: the 8 KiB summary block at offset 0 of a layer file.
//! - [`FormatError`]: what decoding any of them reports.
//!
//! A layer file is laid out as:
//!
//! ```text
//! offset 0        summary block (8 KiB)              summary::Summary
//! offset 8192     values: blobs back to back         blob::encode_blob
//! values_end      zero padding to a multiple of 8 KiB
//! index_start     B-tree pages, root last            btree::BtreeBuilder
//! ```

pub mod blob;
pub mod btree;
mod error;
pub mod key;
mod raw;
pub mod summary;

pub use error::FormatError;
pub use key::{Key, Lsn};
