//! [`RemoteError`]: what the remote tier reports, with what a person needs to act on it: the store and
//! bucket, the layer, the object key, the local path, the sizes and checksums.

use std::path::PathBuf;

/// Errors of [`RemoteStorage`](crate::RemoteStorage) and [`TieredLayers`](crate::TieredLayers).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The store refused the credentials: HTTP 401, or 403 with an S3 code other than `AccessDenied`
    /// (`InvalidAccessKeyId`, `SignatureDoesNotMatch`: an unknown key or a wrong secret). Found at the
    /// first request, or at any later one (a rotated key).
    #[error("{store}: the credentials were refused (access key {access_key:?}): {source}")]
    Credentials {
        /// The store, as [`RemoteStorage::description`](crate::RemoteStorage::description) names it
        /// (`s3 ENDPOINT bucket BUCKET` or `local ROOT`).
        store: String,
        /// The access key id that was sent (never the secret).
        access_key: String,
        /// What `object_store` reported.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The bucket does not exist (the S3 error code `NoSuchBucket`), found at the first request or at
    /// any later one (a bucket deleted under a running client). Never reported as a missing object.
    #[error("{store}: bucket {bucket:?} does not exist: {source}")]
    BucketNotFound {
        /// The store, as [`RemoteStorage::description`](crate::RemoteStorage::description) names it
        /// (`s3 ENDPOINT bucket BUCKET` or `local ROOT`).
        store: String,
        /// The bucket name from the configuration.
        bucket: String,
        /// What `object_store` reported.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The store knows the credentials but does not allow this request (HTTP 403 with the S3 code
    /// `AccessDenied`: a bucket policy or IAM rule).
    #[error("{store}: access denied to {op} {key} (access key {access_key:?}): {source}")]
    AccessDenied {
        /// The store, as [`RemoteStorage::description`](crate::RemoteStorage::description) names it
        /// (`s3 ENDPOINT bucket BUCKET` or `local ROOT`).
        store: String,
        /// The request, as in [`RemoteError::Store`].
        op: &'static str,
        /// The object key (or the prefix, for `list`) the request was for.
        key: String,
        /// The access key id that was sent (never the secret); empty for the local backend.
        access_key: String,
        /// What `object_store` reported.
        #[source]
        source: Box<object_store::Error>,
    },
    /// A conditional write of the index lost to other writers `attempts` times in a row (each time the
    /// index was read again and the change applied again); nothing of this change was written.
    #[error(
        "{store}: index object {key} was changed by other writers during each of {attempts} attempts \
         to update it; this change was not written"
    )]
    IndexConflict {
        /// The store, as [`RemoteStorage::description`](crate::RemoteStorage::description) names it
        /// (`s3 ENDPOINT bucket BUCKET` or `local ROOT`).
        store: String,
        /// The index object's key.
        key: String,
        /// Conditional writes tried ([`RetryPolicy::conflict_attempts`](crate::RetryPolicy::conflict_attempts)).
        attempts: u32,
    },
    /// The local file is not the size it should have: the size recorded for it (when it was admitted to
    /// the tier) or the size it had when the upload opened it differs from the size read or found at the
    /// end of the upload (the file grew or shrank). Nothing was recorded in the index.
    #[error(
        "layer {layer}: {path} is {actual} bytes, expected {expected} ({when}); it changed or is not \
         the layer file recorded, so it was not uploaded"
    )]
    UploadSizeMismatch {
        /// The layer's name.
        layer: String,
        /// The local layer file.
        path: PathBuf,
        /// The size expected: recorded for the layer, or found when the upload opened the file.
        expected: u64,
        /// The size found: at open, or at the end of the upload.
        actual: u64,
        /// Which two sizes were compared: `recorded vs at open`, `at open vs at the end`.
        when: &'static str,
    },
    /// A setting is missing or invalid (for example an environment variable).
    #[error("remote storage configuration: {0}")]
    Config(String),
    /// A request failed after its retries (`attempts` whole-operation attempts).
    #[error("{store}: {op} {key} failed after {attempts} attempt(s): {source}")]
    Store {
        /// The store, as [`RemoteStorage::description`](crate::RemoteStorage::description) names it
        /// (`s3 ENDPOINT bucket BUCKET` or `local ROOT`).
        store: String,
        /// The request: `get`, `put`, `list`, `delete`, `start multipart upload`, `upload part` or
        /// `complete multipart upload`.
        op: &'static str,
        /// The object key (or the prefix, for `list`) the request was for.
        key: String,
        /// Whole-operation attempts made, the failed last one included (requests are also retried inside
        /// `object_store`, not counted here).
        attempts: u32,
        /// What `object_store` reported for the last attempt.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Local file IO failed.
    #[error("layer {layer}: {source}")]
    Local {
        /// The layer's name.
        layer: String,
        /// The file error, with path, offset and IO mode.
        #[source]
        source: virtual_file::Error,
    },
    /// Writing a downloaded layer through the buffered writer failed.
    #[error("layer {layer}: writing the download to {path}: {message}")]
    LocalWrite {
        /// The layer's name.
        layer: String,
        /// The temporary file the download was written to.
        path: PathBuf,
        /// The buffered writer's error, as text.
        message: String,
    },
    /// A file system call on the local directory failed (rename into place, unlink at eviction, listing).
    #[error("layer {layer}: {op} {path}: {source}")]
    LocalFs {
        /// The layer's name (empty for the scan of the directory when the tier is opened).
        layer: String,
        /// The call: for example `rename (no replace) into place`, `unlink`, `list directory`, `stat`.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The system error.
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
        /// The layer's name.
        layer: String,
        /// The object's key in the store (prefix included).
        key: String,
        /// CRC32C of the whole file recorded in the index at upload.
        expected: u32,
        /// CRC32C of the bytes received.
        actual: u32,
        /// Bytes received.
        size: u64,
    },
    /// The object's size is not the one recorded at upload (checked before any byte is written).
    #[error("layer {layer}: object {key} is {actual} bytes, the index records {expected}")]
    SizeMismatch {
        /// The layer's name.
        layer: String,
        /// The object's key in the store (prefix included).
        key: String,
        /// Size recorded in the index at upload, bytes.
        expected: u64,
        /// Size the store reports for the object, or the bytes the body actually carried.
        actual: u64,
    },
    /// The object's checksum metadata disagrees with the index.
    #[error(
        "layer {layer}: object {key} carries checksum metadata {metadata:?}, the index records \
         {expected:#010x}"
    )]
    MetadataMismatch {
        /// The layer's name.
        layer: String,
        /// The object's key in the store (prefix included).
        key: String,
        /// CRC32C recorded in the index.
        expected: u32,
        /// The checksum attribute stored with the object, as found.
        metadata: String,
    },
    /// The local file changed while it was uploaded (its size or checksum differ between passes).
    #[error("layer {layer}: {path} changed while it was uploaded ({what})")]
    ChangedDuringUpload {
        /// The layer's name.
        layer: String,
        /// The local layer file.
        path: PathBuf,
        /// What differed: the sizes or the checksums of the two passes.
        what: String,
    },
    /// The index object is not valid.
    #[error("{store}: index object {key} is invalid: {reason}")]
    BadIndex {
        /// The store, as [`RemoteStorage::description`](crate::RemoteStorage::description) names it
        /// (`s3 ENDPOINT bucket BUCKET` or `local ROOT`).
        store: String,
        /// The index object's key.
        key: String,
        /// Why it was refused (bad JSON, unknown version, an invalid entry).
        reason: String,
    },
    /// A layer name that cannot be an object key and a file name.
    #[error(
        "invalid layer name {name:?}: {reason} (allowed: 1 to 200 of A-Z a-z 0-9 . _ -, not starting \
         with '.')"
    )]
    BadLayerName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No layer of this name is resident or uploaded.
    #[error("layer {layer}: neither resident in {dir} nor in the remote index")]
    UnknownLayer {
        /// The layer's name.
        layer: String,
        /// The local directory of the tier.
        dir: PathBuf,
    },
    /// A layer of this name is already known.
    #[error("layer {layer}: already present")]
    AlreadyPresent {
        /// The layer's name.
        layer: String,
    },
    /// The layer alone is larger than the byte budget of the local directory.
    #[error(
        "layer {layer} is {size} bytes, larger than the whole local budget of {budget} bytes in {dir}"
    )]
    BudgetTooSmall {
        /// The layer's name.
        layer: String,
        /// The layer's size, bytes.
        size: u64,
        /// The local directory's byte budget.
        budget: u64,
        /// The local directory of the tier.
        dir: PathBuf,
    },
    /// Room for the layer cannot be made: the other resident layers are not uploaded yet or are open.
    #[error(
        "layer {layer} ({size} bytes) does not fit the local budget of {budget} bytes in {dir}: \
         {pinned} bytes are held by layers not yet uploaded or in use"
    )]
    BudgetExhausted {
        /// The layer's name.
        layer: String,
        /// The layer's size, bytes.
        size: u64,
        /// The local directory's byte budget.
        budget: u64,
        /// Bytes of resident layers that cannot be evicted (not uploaded yet, or open).
        pinned: u64,
        /// The local directory of the tier.
        dir: PathBuf,
    },
    /// The layer is not uploaded, so its local copy is the only one and cannot be evicted.
    #[error("layer {layer}: not uploaded, so it cannot be evicted")]
    NotUploaded {
        /// The layer's name.
        layer: String,
    },
    /// The layer is open through a [`ResidentLayer`](crate::ResidentLayer) handle.
    #[error("layer {layer}: in use, so it cannot be evicted")]
    InUse {
        /// The layer's name.
        layer: String,
    },
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

/// A 404 that means the object is missing (not the bucket).
pub(crate) fn is_missing_object(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. }) && !is_no_such_bucket(e)
}

/// The S3 error code `NoSuchBucket` in the response (`object_store` keeps the body in the source
/// chain; it reports the 404 as `NotFound`, like a missing object).
pub(crate) fn is_no_such_bucket(e: &object_store::Error) -> bool {
    source_chain_mentions(e, "NoSuchBucket")
}

/// True if `needle` appears in the message of `e` or of any error in its source chain (the S3 error code
/// is in the response body that `object_store` keeps there).
pub(crate) fn source_chain_mentions(e: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.to_string().contains(needle) {
            return true;
        }
        next = err.source();
    }
    false
}
