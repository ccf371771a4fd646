//! [`RemoteStorage`]: one prefix of an object store holding layers and their index.
//!
//! ```text
//! <prefix>/index.json        the index (see crate::index), written after the layers it names
//! <prefix>/layers/<name>     one object per layer: the layer file's bytes, with metadata crc32c=<hex>
//! ```

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::{Mutex, Semaphore};
use virtual_file::IoContext;

use crate::config::{RemoteOptions, StoreConfig};
use crate::error::RemoteError;
use crate::index::{validate_layer_name, IndexEntry, RemoteIndex, MAX_INDEX_BYTES};
use crate::retry::with_retries;

/// True if `needle` appears in the message of `e` or of any error in its source chain (the S3 error code
/// is in the response body that `object_store` keeps there).
fn source_chain_mentions(e: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.to_string().contains(needle) {
            return true;
        }
        next = err.source();
    }
    false
}

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
    prefix: ObjectPath,
    /// Serializes the read-modify-write of the index within this process.
    index_lock: Mutex<()>,
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
        let prefix = ObjectPath::parse(&options.prefix)
            .map_err(|e| RemoteError::Config(format!("prefix {:?}: {e}", options.prefix)))?;
        let remote = RemoteStorage {
            store,
            description,
            supports_metadata,
            prefix,
            index_lock: Mutex::new(()),
            transfers: Arc::new(Semaphore::new(options.max_concurrent_transfers)),
            options,
        };
        remote.first_request(config).await?;
        Ok(remote)
    }

    /// Reads the first byte of the index object and names the cause of a refusal: 401/403 are refused
    /// credentials; without an index, a listing of the prefix whose S3 error code is `NoSuchBucket` is a
    /// missing bucket (an empty listing is a new prefix, fine).
    async fn first_request(&self, config: &StoreConfig) -> Result<(), RemoteError> {
        let key = self.index_key();
        let res = self.store.get_range(&key, 0..1).await;
        let Err(source) = res else { return Ok(()) };
        let store = self.description.clone();
        let StoreConfig::S3(s3) = config else {
            return match source {
                object_store::Error::NotFound { .. } => Ok(()),
                source => Err(self.store_error("get", key.as_ref(), source)),
            };
        };
        match source {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Err(RemoteError::Credentials {
                store,
                access_key: s3.access_key_id.clone(),
                source: Box::new(source),
            }),
            object_store::Error::NotFound { .. } => {
                // No index: a new prefix, or no bucket (some servers answer NoSuchKey for both). A
                // listing tells them apart.
                let listed = self.store.list_with_delimiter(Some(&self.prefix)).await;
                match listed {
                    Ok(_) => Ok(()),
                    Err(e) if source_chain_mentions(&e, "NoSuchBucket") => {
                        Err(RemoteError::BucketNotFound {
                            store,
                            bucket: s3.bucket.clone(),
                            source: Box::new(e),
                        })
                    }
                    Err(e) => Err(self.store_error("list", self.prefix.as_ref(), e)),
                }
            }
            source => Err(self.store_error("get", key.as_ref(), source)),
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

    pub(crate) fn store_error(
        &self,
        op: &'static str,
        key: &str,
        source: object_store::Error,
    ) -> RemoteError {
        RemoteError::Store {
            store: self.description.clone(),
            op,
            key: key.to_owned(),
            attempts: 1,
            source: Box::new(source),
        }
    }

    /// Reads the index; a prefix without one has an empty index.
    pub async fn load_index(&self) -> Result<RemoteIndex, RemoteError> {
        let key = self.index_key();
        with_retries(&self.options.retry, "load index", |_| async {
            let res = match self.store.get(&key).await {
                Ok(res) => res,
                Err(object_store::Error::NotFound { .. }) => return Ok(RemoteIndex::empty()),
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
            let bytes = res
                .bytes()
                .await
                .map_err(|e| self.store_error("get", key.as_ref(), e))?;
            RemoteIndex::decode(&bytes, &self.description, key.as_ref())
        })
        .await
    }

    /// Read-modify-write of the index under the in-process lock. `change` gets the index and the
    /// generation this write will have, and returns false for no change (nothing is written then).
    /// Returns the index as stored afterwards.
    pub(crate) async fn update_index(
        &self,
        change: impl FnOnce(&mut RemoteIndex, u64) -> bool,
    ) -> Result<RemoteIndex, RemoteError> {
        let _guard = self.index_lock.lock().await;
        let mut index = self.load_index().await?;
        let generation = index.generation + 1;
        if !change(&mut index, generation) {
            return Ok(index);
        }
        index.generation = generation;
        let key = self.index_key();
        let bytes = bytes::Bytes::from(index.encode());
        with_retries(&self.options.retry, "store index", |_| {
            let payload = PutPayload::from(bytes.clone());
            let key = &key;
            async move {
                self.store
                    .put(key, payload)
                    .await
                    .map_err(|e| self.store_error("put", key.as_ref(), e))
            }
        })
        .await?;
        Ok(index)
    }

    /// Uploads the layer file at `path` as layer `name` (see [`crate::upload`]), then records it in the
    /// index. If the future is dropped before the index is written, the layer has no index entry (an
    /// object already complete is an orphan for [`remove_orphans`](Self::remove_orphans); an unfinished
    /// multipart upload is aborted in the background).
    pub async fn upload_layer(
        &self,
        ctx: &IoContext,
        path: &Path,
        name: &str,
    ) -> Result<IndexEntry, RemoteError> {
        validate_layer_name(name)?;
        let uploaded = crate::upload::upload_file(self, ctx, path, name).await?;
        let index = self
            .update_index(|index, generation| {
                index.layers.insert(
                    name.to_owned(),
                    IndexEntry {
                        size: uploaded.size,
                        crc32c: uploaded.crc32c,
                        generation,
                    },
                );
                true
            })
            .await?;
        Ok(index.layers[name])
    }

    /// Downloads layer `name` (recorded in the index as `entry`) into `dir/name` (see
    /// [`crate::download`]). Fails if `dir/name` exists.
    pub async fn download_layer(
        &self,
        ctx: &IoContext,
        name: &str,
        entry: &IndexEntry,
        dir: &Path,
    ) -> Result<std::path::PathBuf, RemoteError> {
        validate_layer_name(name)?;
        crate::download::download_file(self, ctx, name, entry, dir).await
    }

    /// Removes layer `name` from the index, then deletes its object.
    pub async fn delete_layer(&self, name: &str) -> Result<(), RemoteError> {
        validate_layer_name(name)?;
        self.update_index(|index, _| index.layers.remove(name).is_some())
            .await?;
        let key = self.layer_key(name);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error("delete", key.as_ref(), e)),
        }
    }

    /// Deletes every object under `<prefix>/layers/` that the index does not name (what an upload that
    /// failed or was cancelled after its object completed leaves behind). Returns the keys deleted. Run it
    /// while no upload to this prefix is in progress, or a layer being uploaded is deleted too.
    ///
    /// Unfinished multipart uploads are aborted by the uploader when it fails or is dropped; one that
    /// could not be aborted (the store was unreachable then) is left to the bucket's lifecycle rule
    /// (`AbortIncompleteMultipartUpload`), as `object_store` cannot list them.
    pub async fn remove_orphans(&self) -> Result<Vec<String>, RemoteError> {
        let _guard = self.index_lock.lock().await;
        let index = self.load_index().await?;
        let layers = self.prefix.clone().join("layers");
        let objects: Vec<_> = self
            .store
            .list(Some(&layers))
            .try_collect()
            .await
            .map_err(|e| self.store_error("list", layers.as_ref(), e))?;
        let mut removed = Vec::new();
        for meta in objects {
            let name = meta.location.filename().unwrap_or_default();
            if index.layers.contains_key(name) {
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::info!(key = %meta.location, "removed an orphan layer object");
                    removed.push(meta.location.to_string());
                }
                Err(e) => return Err(self.store_error("delete", meta.location.as_ref(), e)),
            }
        }
        Ok(removed)
    }
}
