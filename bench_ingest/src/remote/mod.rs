//! `--remote local|s3`: after a case writes its delta layer, the layer is uploaded, evicted, downloaded
//! again and the case's sample is read back from the downloaded copy. The reference is `object_store`'s
//! own plain `put` and `get` of the same bytes to the same store in the same run; a second reference
//! for the upload is `object_store`'s own multipart upload of the same bytes from memory.
//!
//! `s3` uses the endpoint in `REMOTE_STORAGE_S3_*` if set, else starts the embedded S3 server
//! (`s3_test_server`: s3s-fs, signed requests) on a loopback address with its data under the bench's
//! directory; that server is built in only with the cargo feature `embedded-s3` (without it, asking for the embedded server is an error naming the feature).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layer_writers::{DeltaLayerReader, Key, Lsn};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use remote_storage::{
    RemoteError, RemoteOptions, RemoteStorage, ResidentLayer, S3Config, StoreConfig, TieredLayers,
};
use virtual_file::IoContext;

use crate::args::RemoteArg;
use crate::measure::PageCacheSampler;

mod embedded_s3;

use embedded_s3::EmbeddedS3;

/// The store a run uploads to, and what keeps it alive.
pub struct RemoteBench {
    /// The prefix of the store the cases upload to and download from.
    pub remote: Arc<RemoteStorage>,
    /// `local <dir>`, `s3 <endpoint> bucket <b>` (embedded or from the environment).
    pub label: String,
    _server: Option<EmbeddedS3>,
}

impl RemoteBench {
    /// Sets up the store for `kind` with its data under `base`; `None` for `--remote none`.
    pub async fn start(kind: RemoteArg, base: &Path) -> Result<Option<RemoteBench>, String> {
        let options = RemoteOptions {
            prefix: "bench-ingest".to_owned(),
            ..RemoteOptions::default()
        };
        let (config, server, label) = match kind {
            RemoteArg::None => return Ok(None),
            RemoteArg::Local => {
                let root = base.join("remote-local");
                std::fs::create_dir_all(&root)
                    .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
                let label = format!("object_store local file system in {}", root.display());
                (StoreConfig::Local { root }, None, label)
            }
            RemoteArg::S3 => match S3Config::from_env().map_err(|e| e.to_string())? {
                Some(s3) => {
                    let label = format!(
                        "S3 endpoint {} bucket {} (from the environment)",
                        s3.endpoint, s3.bucket
                    );
                    (StoreConfig::S3(s3), None, label)
                }
                None => {
                    let (s3, server, label) = embedded_s3::start(&base.join("remote-s3")).await?;
                    (StoreConfig::S3(s3), Some(server), label)
                }
            },
        };
        let remote = RemoteStorage::connect(&config, options)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(RemoteBench {
            remote: Arc::new(remote),
            label,
            _server: server,
        }))
    }
}

/// What the remote part of one case measured.
#[derive(Debug, Clone)]
pub struct RemoteRun {
    /// Bytes of the layer.
    pub bytes: u64,
    /// Upload of the layer (checksum pass + parts + index update).
    pub upload: Duration,
    /// Download of the evicted layer (temp file, writes, fsync, checksum, rename, directory fsync).
    pub download: Duration,
    /// Evict + download + open + the first lookup.
    pub evict_download_first_read: Duration,
    /// Peak page-cache growth during the download, bytes.
    pub download_page_cache_growth: Option<u64>,
    /// `object_store`'s plain `put` of the same bytes.
    pub reference_put: Duration,
    /// `object_store`'s plain `get` of the same bytes.
    pub reference_get: Duration,
    /// `object_store`'s own multipart upload (`WriteMultipart`) of the same bytes from memory, with the
    /// part size and concurrency of our upload.
    pub reference_multipart: Duration,
}

/// The downloaded layer, open, for the case to read its sample from; [`finish`](Self::finish) removes
/// the layer from the store.
pub struct RoundTrip {
    /// The round trip's figures: upload, download and first-read times, page-cache growth, and the
    /// plain `object_store` put/get of the same bytes.
    pub run: RemoteRun,
    /// A reader of the downloaded copy.
    pub reader: DeltaLayerReader,
    _layer: ResidentLayer,
    tier: TieredLayers,
    name: String,
}

impl RoundTrip {
    /// Closes the layer and deletes it from the store.
    pub async fn finish(self) -> Result<(), RemoteError> {
        let RoundTrip {
            reader,
            _layer,
            tier,
            name,
            ..
        } = self;
        drop(reader);
        drop(_layer);
        tier.remote().delete_layer(&name).await
    }
}

/// Uploads the delta layer `dir/name` (the only file in `dir`), evicts it, downloads it and looks up
/// `first_key` in the downloaded copy; then times the reference put and get of the same bytes.
pub async fn round_trip(
    ctx: &IoContext,
    bench: &RemoteBench,
    dir: &Path,
    name: &str,
    first_key: Key,
) -> Result<RoundTrip, String> {
    let err = |what: &str, e: RemoteError| format!("remote {what} of {name}: {e}");
    let path = dir.join(name);
    let bytes = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    // Room for exactly this layer: the download needs the eviction to have happened.
    let tier = TieredLayers::open(ctx, dir, bench.remote.clone(), bytes)
        .await
        .map_err(|e| err("open", e))?;

    let start = Instant::now();
    tier.upload(name).await.map_err(|e| err("upload", e))?;
    let upload = start.elapsed();

    let start = Instant::now();
    tier.evict(name).await.map_err(|e| err("eviction", e))?;
    let sampler = PageCacheSampler::start();
    let download_start = Instant::now();
    let layer = tier.get(name).await.map_err(|e| err("download", e))?;
    let download = download_start.elapsed();
    let download_page_cache_growth = sampler.finish();
    let reader = layer.open_delta().await.map_err(|e| err("open", e))?;
    reader
        .get(first_key, Lsn(0)..Lsn::MAX)
        .await
        .map_err(|e| format!("first read of the downloaded {name}: {e}"))?;
    let evict_download_first_read = start.elapsed();
    // A second lookup of the resident layer must not download again.
    drop(tier.get(name).await.map_err(|e| err("second open", e))?);
    if tier.stats().downloads != 1 {
        return Err(format!(
            "{name} was downloaded {} times, expected once",
            tier.stats().downloads
        ));
    }

    // The reference: the same bytes, from memory, by object_store's plain put and get.
    let data =
        bytes::Bytes::from(std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?);
    let store = bench.remote.object_store();
    let key = ObjectPath::from(format!("bench-ingest-reference/{name}"));
    let start = Instant::now();
    store
        .put(&key, data.clone().into())
        .await
        .map_err(|e| format!("reference put: {e}"))?;
    let reference_put = start.elapsed();
    let start = Instant::now();
    let got = store
        .get(&key)
        .await
        .map_err(|e| format!("reference get: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("reference get: {e}"))?;
    let reference_get = start.elapsed();
    if got != data {
        return Err("reference get returned other bytes than were put".into());
    }
    let options = bench.remote.options();
    let start = Instant::now();
    let multipart = store
        .put_multipart(&key)
        .await
        .map_err(|e| format!("reference multipart upload: {e}"))?;
    let mut writer = WriteMultipart::new_with_chunk_size(multipart, options.part_size);
    let mut at = 0;
    while at < data.len() {
        writer
            .wait_for_capacity(options.part_concurrency)
            .await
            .map_err(|e| format!("reference multipart upload: {e}"))?;
        let end = (at + options.part_size).min(data.len());
        writer.put(data.slice(at..end));
        at = end;
    }
    writer
        .finish()
        .await
        .map_err(|e| format!("reference multipart upload: {e}"))?;
    let reference_multipart = start.elapsed();
    store
        .delete(&key)
        .await
        .map_err(|e| format!("reference delete: {e}"))?;

    Ok(RoundTrip {
        run: RemoteRun {
            bytes,
            upload,
            download,
            evict_download_first_read,
            download_page_cache_growth,
            reference_put,
            reference_get,
            reference_multipart,
        },
        reader,
        _layer: layer,
        tier,
        name: name.to_owned(),
    })
}
