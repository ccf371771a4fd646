//! [`RemoteError`]: what the remote tier reports, with what a person needs to act on it: the store and
//! bucket, the layer, the object key, the local path, the sizes and checksums.

use std::path::PathBuf;

/// Errors of [`RemoteStorage`](crate::RemoteStorage) and [`TieredLayers`](crate::TieredLayers).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The store refused the credentials (HTTP 401 or 403), found at the first request.
    #[error("{store}: the credentials were refused (access key {access_key:?}): {source}")]
    Credentials {
        store: String,
        access_key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// The bucket does not exist, found at the first request.
    #[error("{store}: bucket {bucket:?} does not exist: {source}")]
    BucketNotFound {
        store: String,
        bucket: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// A setting is missing or invalid (for example an environment variable).
    #[error("remote storage configuration: {0}")]
    Config(String),
    /// A request failed after its retries (`attempts` whole-operation attempts).
    #[error("{store}: {op} {key} failed after {attempts} attempt(s): {source}")]
    Store {
        store: String,
        op: &'static str,
        key: String,
        attempts: u32,
        #[source]
        source: Box<object_store::Error>,
    },
    /// Local file IO failed.
    #[error("layer {layer}: {source}")]
    Local {
        layer: String,
        #[source]
        source: virtual_file::Error,
    },
    /// Writing a downloaded layer through the buffered writer failed.
    #[error("layer {layer}: writing the download to {path}: {message}")]
    LocalWrite {
        layer: String,
        path: PathBuf,
        message: String,
    },
    /// A file system call on the local directory failed (rename into place, unlink at eviction, listing).
    #[error("layer {layer}: {op} {path}: {source}")]
    LocalFs {
        layer: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A layer file could not be opened or read as a layer.
    #[error(transparent)]
    Layer(#[from] layer_writers::LayerError),
    /// The bytes downloaded do not match the checksum recorded at upload. Nothing was renamed into place
    /// and the temporary file was removed.
    #[error(
        "layer {layer}: downloaded object {key} has CRC32C {actual:#010x}, the index records \
         {expected:#010x} ({size} bytes); the temporary file was removed"
    )]
    ChecksumMismatch {
        layer: String,
        key: String,
        expected: u32,
        actual: u32,
        size: u64,
    },
    /// The object's size is not the one recorded at upload (checked before any byte is written).
    #[error("layer {layer}: object {key} is {actual} bytes, the index records {expected}")]
    SizeMismatch {
        layer: String,
        key: String,
        expected: u64,
        actual: u64,
    },
    /// The object's checksum metadata disagrees with the index.
    #[error(
        "layer {layer}: object {key} carries checksum metadata {metadata:?}, the index records \
         {expected:#010x}"
    )]
    MetadataMismatch {
        layer: String,
        key: String,
        expected: u32,
        metadata: String,
    },
    /// The local file changed while it was uploaded (its size or checksum differ between passes).
    #[error("layer {layer}: {path} changed while it was uploaded ({what})")]
    ChangedDuringUpload {
        layer: String,
        path: PathBuf,
        what: String,
    },
    /// The index object is not valid.
    #[error("{store}: index object {key} is invalid: {reason}")]
    BadIndex {
        store: String,
        key: String,
        reason: String,
    },
    /// A layer name that cannot be an object key and a file name.
    #[error(
        "invalid layer name {name:?}: {reason} (allowed: 1 to 200 of A-Z a-z 0-9 . _ -, not starting \
         with '.')"
    )]
    BadLayerName { name: String, reason: &'static str },
    /// No layer of this name is resident or uploaded.
    #[error("layer {layer}: neither resident in {dir} nor in the remote index")]
    UnknownLayer { layer: String, dir: PathBuf },
    /// A layer of this name is already known.
    #[error("layer {layer}: already present")]
    AlreadyPresent { layer: String },
    /// The layer alone is larger than the byte budget of the local directory.
    #[error(
        "layer {layer} is {size} bytes, larger than the whole local budget of {budget} bytes in {dir}"
    )]
    BudgetTooSmall {
        layer: String,
        size: u64,
        budget: u64,
        dir: PathBuf,
    },
    /// Room for the layer cannot be made: the other resident layers are not uploaded yet or are open.
    #[error(
        "layer {layer} ({size} bytes) does not fit the local budget of {budget} bytes in {dir}: \
         {pinned} bytes are held by layers not yet uploaded or in use"
    )]
    BudgetExhausted {
        layer: String,
        size: u64,
        budget: u64,
        pinned: u64,
        dir: PathBuf,
    },
    /// The layer is not uploaded, so its local copy is the only one and cannot be evicted.
    #[error("layer {layer}: not uploaded, so it cannot be evicted")]
    NotUploaded { layer: String },
    /// The layer is open through a [`ResidentLayer`](crate::ResidentLayer) handle.
    #[error("layer {layer}: in use, so it cannot be evicted")]
    InUse { layer: String },
}

impl RemoteError {
    /// True for errors a later attempt may not repeat: a failed request whose cause is on the network or
    /// the server side (5xx, timeouts, connection resets: what `object_store` reports as `Generic` once
    /// its own retries are spent).
    pub fn is_transient(&self) -> bool {
        matches!(self, RemoteError::Store { source, .. } if store_error_is_transient(source))
    }
}

/// Whether an `object_store` error may go away on retry. Client-side errors (not found, denied,
/// precondition, unsupported) will not.
pub(crate) fn store_error_is_transient(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
    )
}
