//! The floor of the IO on the format: layer file bytes through `virtual_file`, and the errors that
//! carry a layer's path. Its modules, lowest first (each uses only those before it, and the format):
//!
//! 1. `error`: [`LayerError`](crate::io::error::LayerError) (what writing and reading a layer file fails with, with
//!    the path, offset and record), the [`BufferedWriteError`](crate::io::error::BufferedWriteError) alias, and the
//!    index page source's `PageReadError`.
//! 2. `read_budget`: [`ReadBudget`](crate::io::read_budget::ReadBudget), the shared budget of read-buffer bytes in flight;
//!    `vectored`: the plan that merges blob extents into aligned reads of at most
//!    [`MAX_VECTORED_READ`](crate::io::vectored::MAX_VECTORED_READ) bytes; `page_source`: the index pages of a layer
//!    file, read through the page cache, as a B-tree [`PageSource`](crate::format::btree::PageSource).
//! 3. `blob_io`: [`BlobWriter`](crate::io::blob_io::BlobWriter) (blobs through a `BufferedWriter`) and the decoding of
//!    one blob out of a read of the file.

pub(crate) mod error;

pub(crate) mod page_source;
pub(crate) mod read_budget;
pub(crate) mod vectored;

pub(crate) mod blob_io;
