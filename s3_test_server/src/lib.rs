//! A real S3 server on a loopback address (`127.a.b.c`, one per server) for tests and benchmarks: the
//! `s3s-fs` implementation (objects are files under a data directory) behind the `s3s` protocol layer,
//! served over HTTP/1.1 by hyper, with AWS signature checking on (one access key / secret key pair).
//!
//! Not a mock: requests are parsed, signatures verified, multipart uploads stored and assembled by the
//! same code that serves real clients. What this crate adds is the life cycle a fault test needs:
//!
//! - [`S3TestServer::start`] binds a random loopback port, creates the bucket directory and serves.
//! - [`S3TestServer::kill`] drops the listener and every open connection at once (requests in flight
//!   get no response), as a killed process would; the data directory stays.
//! - [`S3TestServer::restart`] serves again on the same port and data directory.
//! - [`S3TestServer::kill_at_upload_part`] arms a fault: the `n`th `UploadPart` request kills the server
//!   before it is served, and the returned [`KillSignal`] fires so the test can restart it.
//! - [`S3TestServer::hold_next_object_get`] holds the next object read until the test releases it.
//! - [`S3TestServer::set_secret_key`] changes the secret key the server accepts from the next
//!   (re)start on, as a rotated key would.
//!
//! # Missing buckets
//!
//! A request on an object of a bucket that does not exist is answered `404 NoSuchBucket`, as S3 does
//! (`s3s-fs` alone answers `NoSuchKey` for a read, and a write would create the bucket's directory).
//!
//! # Conditional writes
//!
//! Real S3 applies a `PutObject` with `If-None-Match: *` or `If-Match: <etag>` atomically: of two
//! writers that read one ETag, exactly one wins and the other gets `412 Precondition Failed`, and a
//! `GetObject` returns the ETag of the bytes it returns. `s3s-fs` checks both headers, but as separate
//! steps from the write (check, write a temporary file, rename, then store the ETag), so two concurrent
//! updates can both pass the check, and a read between the rename and the ETag update pairs new bytes
//! with the old ETag. This server makes each key's requests atomic the way S3 does: object writes
//! (`PutObject`, `CompleteMultipartUpload`, `DeleteObject`, `CopyObject`) hold the key's lock
//! exclusively, object reads (`GetObject`, `HeadObject`) hold it shared until their response headers are
//! made (the body then streams from the file opened under the lock, which a later rename does not
//! change).
//!
//! # Example
//!
//! Start a server, point a client at [`S3TestServer::endpoint`] with [`ACCESS_KEY`] / [`SECRET_KEY`]
//! (`remote_storage`'s tests use `object_store`'s S3 client), and kill and restart it under the client:
//!
//! ```
//! use s3_test_server::S3TestServer;
//! use tokio::net::TcpStream;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let data = tempfile::tempdir()?;
//!     let server = S3TestServer::start(data.path(), "bucket").await?;
//!     println!("S3 at {} (bucket {})", server.endpoint(), server.bucket());
//!     assert!(TcpStream::connect(server.addr()).await.is_ok());
//!
//!     server.kill().await; // as if the process died: connections dropped, port closed
//!     assert!(TcpStream::connect(server.addr()).await.is_err());
//!
//!     server.restart().await?; // same port, same objects
//!     assert!(TcpStream::connect(server.addr()).await.is_ok());
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Layout
//!
//! Floors, lowest first (a module uses only its own floor and those below it):
//!
//! 1. `credentials` (the key pair), `error` ([`ServerError`]), `loopback` ([`loopback_ip`]),
//!    `request` (what a request is, from its method, path and query), `response` (the answers the
//!    server makes itself, such as `NoSuchBucket`).
//! 2. `state`: what the connections share: counters, armed faults ([`KillSignal`], [`HeldGet`]),
//!    the per-object locks.
//! 3. `service`: the `s3s` service behind the fault hook, the bucket check and the object locks.
//! 4. `server`: [`S3TestServer`] and its accept loop.
//!
//! This file only re-exports.

#![warn(missing_docs)]

mod credentials;
mod error;
mod loopback;
mod request;
mod response;
mod server;
mod service;
mod state;

pub use credentials::{ACCESS_KEY, REGION, SECRET_KEY};
pub use error::ServerError;
pub use loopback::loopback_ip;
pub use server::S3TestServer;
pub use state::{HeldGet, KillSignal};
