//! [`RemoteStorage`]: one prefix of an object store holding layers and their index.
//!
//! ```text
//! <prefix>/index.json        the index (see index.rs), written after the layers it names
//! <prefix>/layers/<name>     one object per layer: the layer file's bytes, with metadata crc32c=<hex>
//! <prefix>/orphan-scan       written by remove_orphans to learn the store's clock
//! <prefix>/index.json.lock   local backend only: the file lock of index updates (not an object)
//! ```
//!
//! # Rules
//!
//! - **Index updates are conditional** (see `index.rs` and `index_write.rs` for the protocol): any number of
//!   `RemoteStorage` instances, in one process or many, may upload to one prefix; none loses another's
//!   entries.
//! - **Errors say what they are.** Every request's failure goes through one classification: the S3 code
//!   `NoSuchBucket` is [`RemoteError::BucketNotFound`] (never a missing object, so a deleted bucket
//!   never reads as an empty index), `AccessDenied` is [`RemoteError::AccessDenied`], other 401/403
//!   (an unknown access key, a wrong secret) are [`RemoteError::Credentials`]; each names the store
//!   (endpoint and bucket).
//! - **Orphans** (objects no index names) are deleted only when older than
//!   [`RemoteOptions::orphan_grace`], so an upload in flight anywhere keeps its object; see
//!   [`RemoteStorage::remove_orphans`].

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt};
use tokio::sync::{Mutex, Semaphore};

use crate::abort::Unaborted;
use crate::config::{RemoteOptions, StoreConfig};
use crate::error::{is_missing_object, is_no_such_bucket, source_chain_mentions, RemoteError};
use crate::index::{RemoteIndex, MAX_INDEX_BYTES};
use crate::retry::with_retries;

/// The file name of the local backend's index lock, next to `index.json` (see `index_write`).
pub(crate) const LOCAL_LOCK_FILE: &str = "index.json.lock";

/// Name of the object metadata field holding a layer's CRC32C (`x-amz-meta-crc32c` on S3), as eight
/// lowercase hex digits.
pub const CRC_METADATA_KEY: &str = "crc32c";

/// One prefix of an object store: uploads, downloads and the index of layers. Cheap to share (`Arc`).
pub struct RemoteStorage {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// For messages: `s3 <endpoint> bucket <bucket>` or `local <root>`.
    pub(crate) description: String,
    pub(crate) options: RemoteOptions,
    /// The backend stores user metadata with objects (the local file system backend does not).
    pub(crate) supports_metadata: bool,
    pub(crate) prefix: ObjectPath,
    /// The bucket (S3), for [`RemoteError::BucketNotFound`].
    pub(crate) bucket: Option<String>,
    /// The access key id sent (S3), for [`RemoteError::Credentials`]; never the secret.
    pub(crate) access_key: Option<String>,
    /// Serializes this instance's index updates (fewer conflicts between them; other instances and
    /// processes are kept apart by the conditional write, or on the local backend by the file lock).
    pub(crate) index_lock: Mutex<()>,
    /// Local backend only: the file `flock`ed around each index update, as `object_store`'s local
    /// backend has no conditional update (`PutMode::Update` is `NotImplemented` there).
    pub(crate) index_file_lock: Option<PathBuf>,
    /// Multipart uploads whose abort failed for the whole retry window
    /// ([`RetryPolicy::abort_window`](crate::RetryPolicy::abort_window)); retried by
    /// [`remove_orphans`](Self::remove_orphans).
    pub(crate) unaborted: Arc<std::sync::Mutex<Vec<Unaborted>>>,
    /// Limits requests carrying layer bytes ([`RemoteOptions::max_concurrent_transfers`]).
    pub(crate) transfers: Arc<Semaphore>,
}

impl std::fmt::Debug for RemoteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStorage")
            .field("store", &self.description)
            .field("prefix", &self.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

impl RemoteStorage {
    /// Builds the store and makes a first request (a read of the index), so that refused credentials
    /// ([`RemoteError::Credentials`]) or a missing bucket ([`RemoteError::BucketNotFound`]) are found
    /// here, before anything else is done. Must be called within a tokio runtime.
    pub async fn connect(
        config: &StoreConfig,
        options: RemoteOptions,
    ) -> Result<RemoteStorage, RemoteError> {
        options.validate()?;
        let prefix = ObjectPath::parse(&options.prefix)
            .map_err(|e| RemoteError::Config(format!("prefix {:?}: {e}", options.prefix)))?;
        let (store, description, supports_metadata): (Arc<dyn ObjectStore>, String, bool) =
            match config {
                StoreConfig::Local { root } => {
                    let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| {
                        RemoteError::Config(format!(
                            "local store root {}: {e} (it must be an existing directory)",
                            root.display()
                        ))
                    })?;
                    (Arc::new(fs), format!("local {}", root.display()), false)
                }
                StoreConfig::S3(s3) => {
                    let client = ClientOptions::new()
                        .with_allow_http(true)
                        .with_timeout(options.request_timeout);
                    let store = AmazonS3Builder::new()
                        .with_endpoint(&s3.endpoint)
                        .with_bucket_name(&s3.bucket)
                        .with_region(&s3.region)
                        .with_access_key_id(&s3.access_key_id)
                        .with_secret_access_key(&s3.secret_access_key)
                        .with_virtual_hosted_style_request(false)
                        .with_client_options(client)
                        .with_retry(options.retry.request_retry_config())
                        .build()
                        .map_err(|e| {
                            RemoteError::Config(format!("S3 endpoint {}: {e}", s3.endpoint))
                        })?;
                    let description = format!("s3 {} bucket {}", s3.endpoint, s3.bucket);
                    (Arc::new(store), description, true)
                }
            };
        let (bucket, access_key, index_file_lock) = match config {
            StoreConfig::Local { root } => {
                let dir = root.join(prefix.as_ref());
                std::fs::create_dir_all(&dir).map_err(|source| RemoteError::LocalFs {
                    layer: String::new(),
                    op: "create the prefix directory for the index lock",
                    path: dir.clone(),
                    source,
                })?;
                (None, None, Some(dir.join(LOCAL_LOCK_FILE)))
            }
            StoreConfig::S3(s3) => (
                Some(s3.bucket.clone()),
                Some(s3.access_key_id.clone()),
                None,
            ),
        };
        let remote = RemoteStorage {
            store,
            description,
            supports_metadata,
            prefix,
            bucket,
            access_key,
            index_lock: Mutex::new(()),
            index_file_lock,
            unaborted: Arc::default(),
            transfers: Arc::new(Semaphore::new(options.max_concurrent_transfers)),
            options,
        };
        remote.first_request().await?;
        Ok(remote)
    }

    /// Reads the first byte of the index object and names the cause of a refusal (through
    /// [`store_error`](Self::store_error)). Without an index, a listing of the prefix tells a new prefix
    /// (an empty listing, fine) from a missing bucket (some servers answer `NoSuchKey` for both).
    async fn first_request(&self) -> Result<(), RemoteError> {
        let key = self.index_key();
        match self.store.get_range(&key, 0..1).await {
            Ok(_) => Ok(()),
            Err(e) if is_missing_object(&e) => {
                match self.store.list_with_delimiter(Some(&self.prefix)).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.store_error("list", self.prefix.as_ref(), e)),
                }
            }
            Err(e) => Err(self.store_error("get", key.as_ref(), e)),
        }
    }

    /// The store, for callers that want plain `object_store` requests to the same place (the benchmark's
    /// reference).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `s3 <endpoint> bucket <bucket>` or `local <root>`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The transfer settings.
    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// The key of the index object.
    pub fn index_key(&self) -> ObjectPath {
        self.prefix.clone().join("index.json")
    }

    /// The key of layer `name`'s object.
    pub fn layer_key(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join("layers").join(name)
    }

    /// The one classification of a failed request: a missing bucket, refused credentials and a denied
    /// request are their own variants (naming the store, the bucket, the access key); anything else is
    /// [`RemoteError::Store`] with the request and key.
    pub(crate) fn store_error(
        &self,
        op: &'static str,
        key: &str,
        source: object_store::Error,
    ) -> RemoteError {
        let store = self.description.clone();
        if let Some(bucket) = self.bucket.as_ref().filter(|_| is_no_such_bucket(&source)) {
            return RemoteError::BucketNotFound {
                store,
                bucket: bucket.clone(),
                source: Box::new(source),
            };
        }
        let access_key = self.access_key.clone().unwrap_or_default();
        match source {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
                if self.access_key.is_some()
                    && !source_chain_mentions(&source, "<Code>AccessDenied</Code>") =>
            {
                RemoteError::Credentials {
                    store,
                    access_key,
                    source: Box::new(source),
                }
            }
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => RemoteError::AccessDenied {
                store,
                op,
                key: key.to_owned(),
                access_key,
                source: Box::new(source),
            },
            source => RemoteError::Store {
                store,
                op,
                key: key.to_owned(),
                attempts: 1,
                source: Box::new(source),
            },
        }
    }

    /// Reads the index; a prefix without one has an empty index (a missing bucket is
    /// [`RemoteError::BucketNotFound`], not an empty index).
    pub async fn load_index(&self) -> Result<RemoteIndex, RemoteError> {
        Ok(self.load_index_versioned().await?.0)
    }

    /// The index and the version it was read at (`None`: there is no index object), for a conditional
    /// write of a change to it.
    pub(crate) async fn load_index_versioned(
        &self,
    ) -> Result<(RemoteIndex, Option<object_store::UpdateVersion>), RemoteError> {
        let key = self.index_key();
        with_retries(&self.options.retry, "load index", |_| async {
            let res = match self.store.get(&key).await {
                Ok(res) => res,
                Err(e) if is_missing_object(&e) => return Ok((RemoteIndex::empty(), None)),
                Err(e) => return Err(self.store_error("get", key.as_ref(), e)),
            };
            if res.meta.size > MAX_INDEX_BYTES {
                return Err(RemoteError::BadIndex {
                    store: self.description.clone(),
                    key: key.to_string(),
                    reason: format!(
                        "{} bytes, more than the limit of {MAX_INDEX_BYTES}",
                        res.meta.size
                    ),
                });
            }
            let version = object_store::UpdateVersion {
                e_tag: res.meta.e_tag.clone(),
                version: res.meta.version.clone(),
            };
            let bytes = res
                .bytes()
                .await
                .map_err(|e| self.store_error("get", key.as_ref(), e))?;
            let index = RemoteIndex::decode(&bytes, &self.description, key.as_ref())?;
            Ok((index, Some(version)))
        })
        .await
    }
}
