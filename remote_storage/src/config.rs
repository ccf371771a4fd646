//! Where layers are stored remotely ([`StoreConfig`]) and how transfers are done ([`RemoteOptions`]).
//!
//! An S3 endpoint can be given by the environment ([`S3Config::from_env`]):
//!
//! | variable | meaning |
//! |---|---|
//! | `REMOTE_STORAGE_S3_ENDPOINT` | endpoint URL, for example `http://127.0.0.1:9000` (set: use it) |
//! | `REMOTE_STORAGE_S3_BUCKET` | bucket name (required with the endpoint) |
//! | `REMOTE_STORAGE_S3_ACCESS_KEY_ID` | access key (required with the endpoint) |
//! | `REMOTE_STORAGE_S3_SECRET_ACCESS_KEY` | secret key (required with the endpoint) |
//! | `REMOTE_STORAGE_S3_REGION` | region to sign for (default `us-east-1`) |

use std::path::PathBuf;
use std::time::Duration;

use crate::error::RemoteError;
use crate::retry::RetryPolicy;

/// Environment variable: the S3 endpoint URL.
pub const S3_ENDPOINT_ENV: &str = io_engine::env::S3_ENDPOINT;
/// Environment variable: the bucket.
pub const S3_BUCKET_ENV: &str = io_engine::env::S3_BUCKET;
/// Environment variable: the access key id.
pub const S3_ACCESS_KEY_ENV: &str = io_engine::env::S3_ACCESS_KEY_ID;
/// Environment variable: the secret access key.
pub const S3_SECRET_KEY_ENV: &str = io_engine::env::S3_SECRET_ACCESS_KEY;
/// Environment variable: the region (default `us-east-1`).
pub const S3_REGION_ENV: &str = io_engine::env::S3_REGION;

/// An S3-compatible endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL (`http://` is allowed).
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Region to sign requests for.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// The endpoint named by the environment, `None` if `REMOTE_STORAGE_S3_ENDPOINT` is unset or empty.
    /// With the endpoint set, a missing bucket or credential variable is an error naming it.
    pub fn from_env() -> Result<Option<S3Config>, RemoteError> {
        Self::from_lookup(io_engine::env::var)
    }

    /// As [`from_env`](Self::from_env), with the variables looked up by `get`.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<S3Config>, RemoteError> {
        let value = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(endpoint) = value(S3_ENDPOINT_ENV) else {
            return Ok(None);
        };
        let required = |name: &str| {
            value(name).ok_or_else(|| {
                RemoteError::Config(format!(
                    "{S3_ENDPOINT_ENV} is set, so {name} must be set too"
                ))
            })
        };
        Ok(Some(S3Config {
            endpoint,
            bucket: required(S3_BUCKET_ENV)?,
            access_key_id: required(S3_ACCESS_KEY_ENV)?,
            secret_access_key: required(S3_SECRET_KEY_ENV)?,
            region: value(S3_REGION_ENV).unwrap_or_else(|| "us-east-1".to_owned()),
        }))
    }
}

/// The object store layers go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `object_store`'s local file system backend rooted at an existing directory (single-machine use
    /// and tests).
    Local {
        /// The root directory; must exist.
        root: PathBuf,
    },
    /// An S3-compatible endpoint (`object_store`'s `aws` backend, path-style requests).
    S3(S3Config),
}

/// How transfers are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Key prefix of this store's objects (`<prefix>/index.json`, `<prefix>/layers/<name>`).
    pub prefix: String,
    /// Files larger than this are uploaded in parts; smaller ones with one request.
    pub multipart_threshold: u64,
    /// Bytes per part of a multipart upload (at least 5 MiB on S3, a multiple of 4096 here) and per read
    /// of the local file.
    pub part_size: usize,
    /// Parts of one upload in flight at once.
    pub part_concurrency: usize,
    /// Requests carrying layer bytes in flight at once, over every upload and download of this store.
    pub max_concurrent_transfers: usize,
    /// Buffer size of the writer a download writes through (a multiple of 4096).
    pub download_buffer: usize,
    /// Retries of requests and whole operations.
    pub retry: RetryPolicy,
    /// Time limit of one HTTP request (S3).
    pub request_timeout: Duration,
    /// An object under `<prefix>/layers/` that no index names is deleted by
    /// [`RemoteStorage::remove_orphans`](crate::RemoteStorage::remove_orphans) only once it is at least
    /// this old (by the store's clock): younger ones may belong to an upload, in this or another
    /// process, that has not written its index entry yet. Must be longer than any upload takes from its
    /// start to its index entry; an upload that takes longer checks its object afterwards (see
    /// [`RemoteStorage::upload_layer`](crate::RemoteStorage::upload_layer)).
    pub orphan_grace: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            prefix: "layers".to_owned(),
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            part_concurrency: 4,
            max_concurrent_transfers: 16,
            download_buffer: 1024 * 1024,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(120),
            orphan_grace: Duration::from_secs(3600),
        }
    }
}

impl RemoteOptions {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RemoteError> {
        let bad = |msg: String| Err(RemoteError::Config(msg));
        if self.part_size == 0 || self.part_size % 4096 != 0 {
            return bad(format!(
                "part_size {} must be a non-zero multiple of 4096",
                self.part_size
            ));
        }
        if self.download_buffer == 0 || self.download_buffer % 4096 != 0 {
            return bad(format!(
                "download_buffer {} must be a non-zero multiple of 4096",
                self.download_buffer
            ));
        }
        if self.part_concurrency == 0 || self.max_concurrent_transfers == 0 {
            return bad("part_concurrency and max_concurrent_transfers must be at least 1".into());
        }
        if self.retry.max_attempts == 0 || self.retry.conflict_attempts == 0 {
            return bad("retry.max_attempts and retry.conflict_attempts must be at least 1".into());
        }
        if self
            .prefix
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return bad(format!(
                "prefix {:?} must be non-empty parts separated by '/', without '.' or '..'",
                self.prefix
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_lookup() {
        let vars: HashMap<&str, &str> = HashMap::new();
        assert_eq!(
            S3Config::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap(),
            None
        );
        let mut vars = HashMap::new();
        vars.insert(S3_ENDPOINT_ENV, "http://127.0.0.1:9000");
        let msg = S3Config::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(S3_BUCKET_ENV), "{msg}");
        vars.insert(S3_BUCKET_ENV, "b");
        vars.insert(S3_ACCESS_KEY_ENV, "a");
        vars.insert(S3_SECRET_KEY_ENV, "s");
        let c = S3Config::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
            .unwrap()
            .unwrap();
        assert_eq!(c.region, "us-east-1");
        assert!(
            !format!("{c:?}").contains("\"s\""),
            "the secret is not printed"
        );
    }

    #[test]
    fn options_validate() {
        assert!(RemoteOptions::default().validate().is_ok());
        for bad in [
            RemoteOptions {
                part_size: 1000,
                ..Default::default()
            },
            RemoteOptions {
                prefix: "a//b".into(),
                ..Default::default()
            },
            RemoteOptions {
                prefix: "../x".into(),
                ..Default::default()
            },
            RemoteOptions {
                part_concurrency: 0,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
