//! Layer files on top of `virtual_file`: blob IO, the on-disk B-tree index, delta and image layer writers
//! and readers, and the in-memory (ephemeral) layer.
//!
//! What exists so far are the pure on-disk formats, with no file IO:
//!
//! - [`key`]: [`Key`] (16 bytes, big-endian order) and [`Lsn`], and the index keys built from them.
//! - [`blob`]: the blob header (1 or 4 bytes, with compression bits) and zstd blob encoding.
//! - [`FormatError`]: what decoding any of them reports.

pub mod blob;
mod error;
pub mod key;

pub use error::FormatError;
pub use key::{Key, Lsn};
