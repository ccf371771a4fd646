//! The floor of the on-disk formats: pure encoding and decoding, no file IO. Its modules, lowest first
//! (each uses only those before it):
//!
//! 1. `raw` (byte-slice helpers) and `error`: [`FormatError`](crate::format::error::FormatError), and the B-tree's
//!    [`btree::BtreeBuildError`], [`btree::BtreeReadError`], [`btree::PageOutOfRange`].
//! 2. `key`: [`Key`](crate::format::key::Key) (16 bytes, big-endian order) and [`Lsn`](crate::format::key::Lsn), and the index keys
//!    built from them ([`image_index_key`], [`delta_index_key`]).
//! 3. [`blob`]: the blob header (1 or 4 bytes, with compression bits), zstd blob encoding, and the CRC32C
//!    trailer of every blob; [`btree`]: the 8 KiB-page B-tree index: streaming bottom-up builder,
//!    verifying reader over any [`btree::PageSource`].
//! 4. [`summary`]: the 8 KiB summary block at offset 0 of a layer file (it names the B-tree's pages).

pub(crate) mod error;
pub(crate) mod key;
pub(crate) mod raw;

pub mod blob;
pub mod btree;
pub mod summary;

pub use key::{
    delta_index_key, image_index_key, parse_delta_index_key, DELTA_INDEX_KEY_SIZE,
    IMAGE_INDEX_KEY_SIZE, KEY_SIZE, LSN_SIZE,
};
