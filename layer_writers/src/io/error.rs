//! [`LayerError`]: what writing or reading a layer file can fail with.
//!
//! Each variant carries the layer's path and, where one is known, the file offset and the key, so a log
//! line is enough to find the bytes. Format violations found while decoding keep their [`FormatError`]
//! (bad magic, checksum mismatch, truncation, ...) as the source; IO failures keep the
//! [`virtual_file::Error`], which itself names the operation, offset, IO mode and engine.

use std::path::{Path, PathBuf};

use crate::format::btree::{BtreeBuildError, BtreeReadError};
use crate::format::error::FormatError;
use crate::format::key::{Key, Lsn};
use crate::format::summary::LayerKind;

/// Why an index page could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PageReadError {
    /// The read failed.
    #[error(transparent)]
    Io(#[from] virtual_file::Error),
    /// The page number is outside the index (a corrupt child pointer the tree did not catch).
    #[error("index page {page} is outside the index of {num_pages} pages")]
    OutOfRange {
        /// The page asked for, numbered from the index's first page.
        page: u32,
        /// Pages in the index.
        num_pages: u32,
    },
    /// A run of pages ended early: the file ends inside the index (truncated).
    #[error("index pages {first}..{} read as {bytes} bytes: the file ends inside the index", first + count)]
    ShortRun {
        /// The run's first page, numbered from the index's first page.
        first: u32,
        /// Pages in the run.
        count: u32,
        /// Bytes the file had for them.
        bytes: u64,
    },
}

/// The error of a [`virtual_file::buffered_writer::BufferedWriter`] writing into a [`virtual_file::VirtualFile`].
pub type BufferedWriteError = virtual_file::buffered_writer::Error<virtual_file::Error>;

/// Errors of the layer writers and readers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A file operation failed (open, read, write, fsync, rename, directory sync).
    #[error("layer {}: {source}", .path.display())]
    Io {
        /// The layer file's path.
        path: PathBuf,
        /// The file error (operation, offset, IO mode, engine).
        #[source]
        source: virtual_file::Error,
    },

    /// A plain `std::io` operation failed (listing or removing files in a directory).
    #[error("{}: {source}", .path.display())]
    StdIo {
        /// The file or directory.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },

    /// The buffered writer of the values and index failed; see its `durable_len` for what reached the file.
    #[error("layer {}: buffered write failed", .path.display())]
    Write {
        /// The layer file's path.
        path: PathBuf,
        /// The buffered writer's error.
        #[source]
        source: BufferedWriteError,
    },

    /// The file's bytes violate the layer format: bad magic, checksum mismatch (summary, index page or
    /// value blob), truncation, non-zero padding, a corrupt index page or blob. `offset` is where the bad
    /// structure starts; `key` and `lsn` name the record whose blob it is, where known.
    #[error("layer {} at offset {offset}{}: {source}", .path.display(), record_context(.key, .lsn))]
    Format {
        /// The layer file's path.
        path: PathBuf,
        /// File offset where the bad structure starts.
        offset: u64,
        /// The key whose value or index entry it is, where known.
        key: Option<Key>,
        /// The LSN of that value, where known.
        lsn: Option<Lsn>,
        /// The format rule that was broken.
        #[source]
        source: FormatError,
    },

    /// The file passed its checksums but its parts do not fit together (an index entry pointing outside
    /// the values, offsets out of order, a file longer than its summary says, ...).
    #[error("layer {} at offset {offset}{}: corrupt: {reason}", .path.display(), key_context(.key))]
    Corrupt {
        /// The layer file's path.
        path: PathBuf,
        /// File offset of the part that does not fit.
        offset: u64,
        /// The key involved, where known.
        key: Option<Key>,
        /// What does not fit.
        reason: String,
    },

    /// A put whose `(key, lsn)` (image layers: key) is not greater than the previous one. Nothing was
    /// written; the writer stays usable.
    #[error(
        "layer {}: ({key}, {lsn}) is not after the previous entry ({prev_key}, {prev_lsn})",
        .path.display()
    )]
    KeyOrder {
        /// The layer file's path.
        path: PathBuf,
        /// Key of the refused put.
        key: Key,
        /// LSN of the refused put (image layers: the layer's LSN).
        lsn: Lsn,
        /// Key of the previous put.
        prev_key: Key,
        /// LSN of the previous put.
        prev_lsn: Lsn,
    },

    /// A key or LSN whose exclusive range end cannot be represented ([`Key::MAX`], [`Lsn::MAX`]).
    #[error("layer {}: {what} has no successor, so the layer's range cannot end after it", .path.display())]
    RangeOverflow {
        /// The layer file's path.
        path: PathBuf,
        /// The key, LSN or `(key, lsn)` without a successor.
        what: String,
    },

    /// The B-tree builder refused an entry or the index outgrew the format.
    #[error("layer {}: building the index", .path.display())]
    IndexBuild {
        /// The layer file's path.
        path: PathBuf,
        /// What the B-tree builder reported.
        #[source]
        source: BtreeBuildError,
    },

    /// The file holds a layer of another kind.
    #[error("layer {}: is a {found:?} layer, expected {expected:?}", .path.display())]
    WrongKind {
        /// The layer file's path.
        path: PathBuf,
        /// The kind the reader opens.
        expected: LayerKind,
        /// The kind in the file's summary.
        found: LayerKind,
    },

    /// The layer file name is empty, contains a path separator, or ends with the temp suffix.
    #[error("invalid layer file name {name:?}: {reason}")]
    InvalidFileName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// An earlier write failed (or was cancelled half-way); the writer refuses further work rather than
    /// write past a hole.
    #[error("layer {}: the writer failed earlier and refuses further work", .path.display())]
    Poisoned {
        /// The layer file's path.
        path: PathBuf,
    },
}

fn key_context(key: &Option<Key>) -> String {
    record_context(key, &None)
}

fn record_context(key: &Option<Key>, lsn: &Option<Lsn>) -> String {
    match (key, lsn) {
        (Some(key), Some(lsn)) => format!(" (value of key {key}, lsn {lsn})"),
        (Some(key), None) => format!(" (key {key})"),
        (None, Some(lsn)) => format!(" (lsn {lsn})"),
        (None, None) => String::new(),
    }
}

impl LayerError {
    pub(crate) fn io(path: &Path, source: virtual_file::Error) -> LayerError {
        LayerError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn format(
        path: &Path,
        offset: u64,
        key: Option<Key>,
        source: FormatError,
    ) -> LayerError {
        Self::format_record(path, offset, key, None, source)
    }

    /// A [`LayerError::Format`] in the blob of the record `(key, lsn)`.
    pub(crate) fn format_record(
        path: &Path,
        offset: u64,
        key: Option<Key>,
        lsn: Option<Lsn>,
        source: FormatError,
    ) -> LayerError {
        LayerError::Format {
            path: path.to_owned(),
            offset,
            key,
            lsn,
            source,
        }
    }

    pub(crate) fn corrupt(
        path: &Path,
        offset: u64,
        key: Option<Key>,
        reason: impl Into<String>,
    ) -> LayerError {
        LayerError::Corrupt {
            path: path.to_owned(),
            offset,
            key,
            reason: reason.into(),
        }
    }

    /// An index read failure: the page source's IO error, or a corrupt page (at `index_start` + its page).
    pub(crate) fn index_read(
        path: &Path,
        index_start: u64,
        key: Option<Key>,
        err: BtreeReadError<PageReadError>,
    ) -> LayerError {
        let page_offset = |page: u32| {
            index_start + u64::from(page) * crate::format::btree::page::PAGE_SIZE as u64
        };
        match err {
            BtreeReadError::Source {
                source: PageReadError::Io(source),
                ..
            } => LayerError::io(path, source),
            BtreeReadError::Source { page, source } => {
                LayerError::corrupt(path, page_offset(page), key, source.to_string())
            }
            BtreeReadError::Format(source) => {
                let offset = match &source {
                    FormatError::ChecksumMismatch { page, .. }
                    | FormatError::BadPage { page, .. } => page_offset(*page),
                    _ => index_start,
                };
                LayerError::format(path, offset, key, source)
            }
            other => LayerError::corrupt(path, index_start, key, other.to_string()),
        }
    }

    /// True for the errors that mean the file's bytes are bad (as opposed to IO failures or misuse).
    pub fn is_corruption(&self) -> bool {
        matches!(self, LayerError::Format { .. } | LayerError::Corrupt { .. })
    }
}
