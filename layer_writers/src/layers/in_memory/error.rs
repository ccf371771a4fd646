//! [`InMemoryLayerError`]: what the in-memory layer can fail with.

use std::path::PathBuf;

use virtual_file::buffered_writer::{ReadError, ReadPlanError};

use crate::format::error::FormatError;
use crate::format::key::{Key, Lsn};
use crate::io::error::{BufferedWriteError, LayerError};

/// Errors of [`InMemoryLayer`](super::InMemoryLayer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InMemoryLayerError {
    /// Opening, reading or removing the ephemeral file failed.
    #[error("in-memory layer {}: {source}", .path.display())]
    Io {
        /// The ephemeral file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: virtual_file::Error,
    },
    /// Appending to the ephemeral file failed; the layer refuses further writes.
    #[error("in-memory layer {}: append failed: {source}", .path.display())]
    Write {
        /// The ephemeral file.
        path: PathBuf,
        /// What failed (carries how many bytes are known to be in the file).
        #[source]
        source: BufferedWriteError,
    },
    /// A read of appended bytes could not be planned (for example after a failed flush).
    #[error("in-memory layer {}: {source}", .path.display())]
    ReadPlan {
        /// The ephemeral file.
        path: PathBuf,
        /// Why the buffered writer could not plan it.
        #[source]
        source: ReadPlanError,
    },
    /// Reading appended bytes back from the ephemeral file failed.
    #[error("in-memory layer {}: read failed: {source}", .path.display())]
    Read {
        /// The ephemeral file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: ReadError<virtual_file::Error>,
    },
    /// A value read back does not decode (the ephemeral file was changed under us).
    #[error("in-memory layer {}: value of {key} at {lsn} is corrupt: {source}", .path.display())]
    Corrupt {
        /// The ephemeral file.
        path: PathBuf,
        /// Whose value.
        key: Key,
        /// At which LSN.
        lsn: Lsn,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
    /// A value is larger than a blob can hold.
    #[error("in-memory layer {}: value of {key} at {lsn}: {source}", .path.display())]
    ValueTooLarge {
        /// The ephemeral file.
        path: PathBuf,
        /// Whose value.
        key: Key,
        /// At which LSN.
        lsn: Lsn,
        /// The limit.
        #[source]
        source: FormatError,
    },
    /// `Key::MAX` or `Lsn::MAX`: a delta layer's end-exclusive ranges cannot hold them.
    #[error("in-memory layer {}: {key} at {lsn} is out of range (the largest key and LSN are reserved)", .path.display())]
    OutOfRange {
        /// The ephemeral file.
        path: PathBuf,
        /// Key of the refused put.
        key: Key,
        /// LSN of the refused put.
        lsn: Lsn,
    },
    /// A write came after [`freeze`](super::InMemoryLayer::freeze).
    #[error("in-memory layer {}: frozen, no more writes", .path.display())]
    Frozen {
        /// The ephemeral file.
        path: PathBuf,
    },
    /// [`write_to_disk`](super::InMemoryLayer::write_to_disk) needs a frozen layer.
    #[error("in-memory layer {}: not frozen; freeze it before writing it out", .path.display())]
    NotFrozen {
        /// The ephemeral file.
        path: PathBuf,
    },
    /// The same (key, LSN) was put twice.
    #[error("in-memory layer {}: {key} at {lsn} was already put", .path.display())]
    Duplicate {
        /// The ephemeral file.
        path: PathBuf,
        /// Key of the refused put.
        key: Key,
        /// LSN of the refused put.
        lsn: Lsn,
    },
    /// The layer holds as many values as it can index.
    #[error("in-memory layer {}: full, it holds at most {max} values", .path.display())]
    TooManyValues {
        /// The ephemeral file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// Writing the delta layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}
