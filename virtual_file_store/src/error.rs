//! [`StoreError`]: what the store reports, with the object, file, offset and length it concerns, and its
//! mapping onto `object_store`'s error kinds (`NotFound`, `AlreadyExists`, ... or `Generic`).

use std::io;
use std::path::PathBuf;

use virtual_file::MemoryBudgetError;

/// The store's name in `object_store` errors and `Display`.
pub const STORE_NAME: &str = "VirtualFileStore";

/// An error of the store. Turned into [`object_store::Error`] at the trait boundary: a missing file
/// becomes `NotFound`, an existing target of a no-replace write or copy `AlreadyExists`, everything
/// else `Generic` with this error as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// IO through a [`VirtualFile`](virtual_file::VirtualFile) (or the context's engine) failed; the
    /// inner error names the path, offset, length, mode and engine.
    #[error("{op} of object {location}: {source}")]
    File {
        /// What the store was doing.
        op: &'static str,
        /// The object.
        location: String,
        /// The IO error.
        #[source]
        source: virtual_file::Error,
    },
    /// A file-system call the engines do not cover (directories, hard links, extended attributes).
    #[error("{op} of {}: {source}", path.display())]
    Fs {
        /// What the store was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The root given to the store is not a usable directory.
    #[error("store root {}: {reason}", root.display())]
    Root {
        /// The root.
        root: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A location the store cannot hold (empty, or a name the store reserves for its temp files).
    #[error("invalid object location {location:?}: {reason}")]
    InvalidLocation {
        /// The location.
        location: String,
        /// Why.
        reason: &'static str,
    },
    /// The memory budget refused the buffers of a transfer.
    #[error("memory budget for object {location}: {source}")]
    Budget {
        /// The object.
        location: String,
        /// The refusal.
        #[source]
        source: MemoryBudgetError,
    },
    /// Writing one part of a multipart upload failed; the upload is failed and its object is never
    /// published.
    #[error("part at offset {offset} ({len} bytes) of object {location}: {source}")]
    Part {
        /// The object.
        location: String,
        /// Where the part starts in the object.
        offset: u64,
        /// The part's length.
        len: u64,
        /// What failed.
        #[source]
        source: Box<StoreError>,
    },
    /// The upload cannot complete: an earlier part failed or was dropped before it finished, or it was
    /// aborted. Nothing was published.
    #[error("upload of object {location} failed: {reason}")]
    UploadFailed {
        /// The object.
        location: String,
        /// The first failure.
        reason: String,
    },
    /// `complete` was called while part futures of the upload were still alive (not yet finished and
    /// not dropped).
    #[error(
        "upload of object {location}: complete called with {parts} part writes still in flight"
    )]
    PartsInFlight {
        /// The object.
        location: String,
        /// Part futures still holding the upload.
        parts: usize,
    },
    /// A [`MultipartStore`](object_store::multipart::MultipartStore) call named an upload this store
    /// does not have (never created, completed or aborted, or created by another store instance).
    #[error("no multipart upload {id:?} for object {location}")]
    UnknownUpload {
        /// The object.
        location: String,
        /// The upload id.
        id: String,
    },
    /// The part list given to `complete_multipart` does not match the parts put.
    #[error("multipart upload of object {location}: {reason}")]
    BadParts {
        /// The object.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored attribute value could not be decoded, or an attribute cannot be stored.
    #[error("attributes of object {location}: {reason}")]
    Attributes {
        /// The object.
        location: String,
        /// Why.
        reason: String,
    },
    /// IO of the object never ran: the runtime shut down before the blocking pool took it (see
    /// `StoreInner::run_io`).
    #[error("IO of object {location} did not run: the runtime shut down")]
    Cancelled {
        /// The object.
        location: String,
    },
    /// The requested range is outside the object.
    #[error("range {start}..{end} of object {location} (size {size}) is out of bounds")]
    Range {
        /// The object.
        location: String,
        /// Range start.
        start: u64,
        /// Range end.
        end: u64,
        /// The object's size.
        size: u64,
    },
}

impl StoreError {
    /// The OS error number under this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            StoreError::File { source, .. } => source.raw_os_error(),
            StoreError::Fs { source, .. } => source.raw_os_error(),
            StoreError::Part { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn file(op: &'static str, location: &str, source: virtual_file::Error) -> Self {
        StoreError::File {
            op,
            location: location.to_owned(),
            source,
        }
    }

    pub(crate) fn fs(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Fs {
            op,
            path: path.into(),
            source,
        }
    }

    /// Converts into `object_store`'s error for the object at `location`.
    pub(crate) fn into_object_store(self, location: &str) -> object_store::Error {
        let path = location.to_owned();
        match self.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::EISDIR) => object_store::Error::NotFound {
                path,
                source: Box::new(self),
            },
            Some(libc::EEXIST) => object_store::Error::AlreadyExists {
                path,
                source: Box::new(self),
            },
            _ => object_store::Error::Generic {
                store: STORE_NAME,
                source: Box::new(self),
            },
        }
    }
}

/// `object_store`'s `NotFound` for `location`.
pub(crate) fn not_found(location: &str, what: &str) -> object_store::Error {
    object_store::Error::NotFound {
        path: location.to_owned(),
        source: what.to_owned().into(),
    }
}

/// `object_store`'s `NotImplemented` for `operation`.
pub(crate) fn not_implemented(operation: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.to_owned(),
        implementer: STORE_NAME.to_owned(),
    }
}
