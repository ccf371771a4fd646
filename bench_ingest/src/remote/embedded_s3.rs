//! The embedded S3 server of `--remote s3` when the environment names no endpoint: `s3_test_server`
//! (s3s-fs, signed requests) on a loopback address of its own. It is a test server, so the binary
//! links it only with the cargo feature `embedded-s3`; without it, `--remote s3` needs an endpoint in
//! `REMOTE_STORAGE_S3_*`, and asking for the embedded server is an error that names the feature.

use std::path::Path;

use remote_storage::S3Config;

/// A running embedded server; dropping it kills the server.
#[cfg(feature = "embedded-s3")]
pub struct EmbeddedS3 {
    _server: s3_test_server::S3TestServer,
}

/// Cannot exist in a build without the embedded server.
#[cfg(not(feature = "embedded-s3"))]
pub enum EmbeddedS3 {}

/// Starts the server with its data under `data`; returns the endpoint's configuration, the server and
/// a label for the output.
#[cfg(feature = "embedded-s3")]
pub async fn start(data: &Path) -> Result<(S3Config, EmbeddedS3, String), String> {
    let server = s3_test_server::S3TestServer::start(data, "bench")
        .await
        .map_err(|e| e.to_string())?;
    let s3 = S3Config {
        endpoint: server.endpoint(),
        bucket: server.bucket().to_owned(),
        region: s3_test_server::REGION.to_owned(),
        access_key_id: s3_test_server::ACCESS_KEY.to_owned(),
        secret_access_key: s3_test_server::SECRET_KEY.to_owned(),
    };
    let label = format!(
        "embedded S3 server (s3s-fs) at {} with data in {}",
        server.endpoint(),
        data.display()
    );
    Ok((s3, EmbeddedS3 { _server: server }, label))
}

/// This build has no embedded server: the error says how to get one, or how to do without.
#[cfg(not(feature = "embedded-s3"))]
pub async fn start(data: &Path) -> Result<(S3Config, EmbeddedS3, String), String> {
    let _ = data;
    Err(format!(
        "--remote s3 without {endpoint} set needs the embedded S3 server, which this build leaves out: \
         build with the cargo feature embedded-s3 (cargo run --release -p bench_ingest --features embedded-s3 \
         -- --remote s3), or set {endpoint} and the other REMOTE_STORAGE_S3_* variables to an S3 endpoint",
        endpoint = remote_storage::S3_ENDPOINT_ENV,
    ))
}

#[cfg(all(test, not(feature = "embedded-s3")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_the_feature_the_embedded_server_is_an_error_naming_the_feature() {
        let dir = tempfile::tempdir().unwrap();
        // irrefutable: `EmbeddedS3` has no values in this build
        let Err(message) = start(dir.path()).await;
        assert!(message.contains("--features embedded-s3"), "{message}");
        assert!(message.contains("REMOTE_STORAGE_S3_ENDPOINT"), "{message}");
    }
}
