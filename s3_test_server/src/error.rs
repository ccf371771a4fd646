//! [`ServerError`]: what can go wrong starting (or restarting) the server.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory or the bucket directory could not be created.
    #[error("s3 test server: cannot prepare the data directory {path}: {source}")]
    DataDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The S3 implementation refused the data directory.
    #[error("s3 test server: the s3s-fs backend refused {path}: {message}")]
    Backend {
        /// The data directory.
        path: PathBuf,
        /// What `s3s-fs` said.
        message: String,
    },
    /// The listening socket could not be set up.
    #[error("s3 test server: cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for: port 0 (any free port) at the first start, the same port at a restart.
        addr: SocketAddr,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}
