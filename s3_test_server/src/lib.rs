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

#![warn(missing_docs)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{HttpError, HttpResponse};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, Notify, RwLock};
use tokio::task::{JoinHandle, JoinSet};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "s3-test-server-access-key";
/// The secret key the server accepts (until [`S3TestServer::set_secret_key`]).
pub const SECRET_KEY: &str = "s3-test-server-secret-key-0123456789";
/// The region clients should sign for (the server accepts any).
pub const REGION: &str = "us-east-1";

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

/// Fires when an armed fault killed the server.
pub struct KillSignal(oneshot::Receiver<()>);

impl KillSignal {
    /// Waits until the fault fired (the server is down by then). Returns `false` if the server was
    /// dropped without the fault firing.
    pub async fn fired(self) -> bool {
        self.0.await.is_ok()
    }
}

/// Counts requests and holds the armed fault; shared by every connection.
#[derive(Default)]
struct Faults {
    upload_parts: AtomicU64,
    requests: AtomicU64,
    /// `(n, signal)`: kill at the `n`th `UploadPart` counted from arming.
    kill_at_part: Mutex<Option<(u64, oneshot::Sender<()>)>>,
    /// Wakes the accept loop to kill the server.
    kill_now: Notify,
    /// Sent by the accept loop once the server the fault killed is down.
    fired: Mutex<Option<oneshot::Sender<()>>>,
    /// Holds the next object `GET`: signals its arrival, then waits for the release.
    hold_get: Mutex<Option<(oneshot::Sender<()>, Arc<Notify>)>>,
    /// One lock per object path (`/bucket/key`), see the module docs on conditional writes.
    key_locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
    /// The server's data directory (a bucket is a directory in it).
    data_dir: PathBuf,
}

impl Faults {
    fn key_lock(&self, path: &str) -> Arc<RwLock<()>> {
        let mut locks = self.key_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(path.to_owned()).or_default())
    }
}

/// How a request takes its object's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAccess {
    /// Not a request on one object's current version (listings, bucket requests, multipart parts).
    None,
    /// Reads the object and its ETag.
    Read,
    /// Replaces or deletes the object (and may check a precondition first).
    Write,
}

/// What `req` does to the object its path names.
fn key_access<B>(req: &hyper::Request<B>) -> KeyAccess {
    if !req.uri().path().trim_matches('/').contains('/') {
        return KeyAccess::None;
    }
    let query = req.uri().query().unwrap_or("");
    let has = |name: &str| {
        query
            .split('&')
            .any(|kv| kv == name || kv.starts_with(&format!("{name}=")))
    };
    match *req.method() {
        hyper::Method::GET | hyper::Method::HEAD if !has("uploadId") => KeyAccess::Read,
        hyper::Method::PUT if !has("partNumber") => KeyAccess::Write,
        // CompleteMultipartUpload; `POST ?uploads` only starts an upload
        hyper::Method::POST if has("uploadId") => KeyAccess::Write,
        // DeleteObject; with an uploadId it is AbortMultipartUpload
        hyper::Method::DELETE if !has("uploadId") => KeyAccess::Write,
        _ => KeyAccess::None,
    }
}

/// The S3 service with request counting and the fault hook in front of it.
#[derive(Clone)]
struct FaultService {
    inner: S3Service,
    faults: Arc<Faults>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for FaultService {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = ServiceFuture;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.faults.requests.fetch_add(1, Ordering::Relaxed);
        if is_upload_part(&req) {
            let seen = self.faults.upload_parts.fetch_add(1, Ordering::Relaxed) + 1;
            let mut armed = self
                .faults
                .kill_at_part
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if armed.as_ref().is_some_and(|(n, _)| seen >= *n) {
                let (_, signal) = armed.take().expect("checked above");
                drop(armed);
                tracing::info!(part = seen, "s3 test server: killed by the armed fault");
                *self.faults.fired.lock().unwrap_or_else(|p| p.into_inner()) = Some(signal);
                self.faults.kill_now.notify_one();
                // The accept loop drops this connection with the others; this request gets no answer.
                return Box::pin(std::future::pending());
            }
        }
        if let Some(bucket) = object_bucket(&req) {
            if !self.faults.data_dir.join(bucket).is_dir() {
                // s3s-fs answers NoSuchKey for an object of a missing bucket (and a PutObject would
                // create the bucket's directory); S3 answers NoSuchBucket.
                return Box::pin(std::future::ready(Ok(no_such_bucket(bucket))));
            }
        }
        let access = key_access(&req);
        let lock = (access != KeyAccess::None).then(|| self.faults.key_lock(req.uri().path()));
        let held = if is_object_get(&req) {
            self.faults
                .hold_get
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        } else {
            None
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some((arrived, release)) = held {
                let _ = arrived.send(());
                release.notified().await;
            }
            match (access, lock) {
                (KeyAccess::Write, Some(lock)) => {
                    let _guard = lock.write_owned().await;
                    hyper::service::Service::call(&inner, req).await
                }
                (KeyAccess::Read, Some(lock)) => {
                    let _guard = lock.read_owned().await;
                    hyper::service::Service::call(&inner, req).await
                }
                _ => hyper::service::Service::call(&inner, req).await,
            }
        })
    }
}

/// The bucket of a request on an object (`/bucket/key...`), `None` for bucket and service requests.
fn object_bucket<B>(req: &hyper::Request<B>) -> Option<&str> {
    let (bucket, key) = req.uri().path().trim_start_matches('/').split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some(bucket)
}

/// The 404 S3 sends for a request on an object of a bucket that does not exist.
fn no_such_bucket(bucket: &str) -> HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>\
         <Message>The specified bucket does not exist</Message><BucketName>{bucket}</BucketName></Error>"
    );
    let mut response = HttpResponse::new(s3s::Body::from(body));
    *response.status_mut() = hyper::StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

/// A loopback address for one server, different for every server of this process (and, with the
/// process id mixed in, most likely from every other process's): `127.a.b.c` with each byte in 1..=254.
///
/// A killed server frees its port until it restarts; on a shared `127.0.0.1`, another server started
/// meanwhile could take that port, and the first server's clients would then talk to it during the
/// outage (a multipart upload created there and continued on the restarted server is unknown to it).
/// An address of its own keeps a server's clients from ever reaching another server.
pub fn loopback_ip() -> std::net::Ipv4Addr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // 254^3 addresses: the counter walks them in order from a start that depends on the process id.
    let start = std::process::id().wrapping_mul(2_654_435_761) % (254 * 254 * 254);
    let v = (start + n) % (254 * 254 * 254);
    let byte = |x: u32| (x % 254 + 1) as u8;
    std::net::Ipv4Addr::new(127, byte(v / (254 * 254)), byte(v / 254), byte(v))
}

/// `GET /bucket/key` without a query (an object read, not a listing).
fn is_object_get<B>(req: &hyper::Request<B>) -> bool {
    req.method() == hyper::Method::GET
        && req.uri().query().is_none_or(str::is_empty)
        && req.uri().path().trim_matches('/').contains('/')
}

/// A held object `GET`: [`arrived`](Self::arrived) fires when it reaches the server, which answers it
/// only after [`release`](Self::release).
pub struct HeldGet {
    arrived: oneshot::Receiver<()>,
    release: Arc<Notify>,
}

impl HeldGet {
    /// Waits until the held request arrived. Returns `false` if the server was dropped first.
    pub async fn arrived(&mut self) -> bool {
        (&mut self.arrived).await.is_ok()
    }

    /// Lets the server answer the held request.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// `PUT /bucket/key?partNumber=N&uploadId=...`.
fn is_upload_part<B>(req: &hyper::Request<B>) -> bool {
    req.method() == hyper::Method::PUT
        && req
            .uri()
            .query()
            .is_some_and(|q| q.contains("uploadId=") && q.contains("partNumber="))
}

/// One serving instance: the accept loop task (which owns every connection task).
struct Running {
    task: JoinHandle<()>,
}

/// A real S3 server on a loopback port. Dropping it kills it.
pub struct S3TestServer {
    addr: SocketAddr,
    data_dir: PathBuf,
    bucket: String,
    faults: Arc<Faults>,
    running: Mutex<Option<Running>>,
    /// The secret key of [`ACCESS_KEY`] that the next (re)start accepts.
    secret_key: Mutex<String>,
}

impl std::fmt::Debug for S3TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3TestServer")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .field("bucket", &self.bucket)
            .finish()
    }
}

impl S3TestServer {
    /// Starts a server on a random port of an address of its own in 127.0.0.0/8 (see [`loopback_ip`])
    /// storing objects under `data_dir`, with one bucket named `bucket` (created if missing). Must be
    /// called within a tokio runtime.
    pub async fn start(data_dir: &Path, bucket: &str) -> Result<Self, ServerError> {
        let bucket_dir = data_dir.join(bucket);
        std::fs::create_dir_all(&bucket_dir).map_err(|source| ServerError::DataDir {
            path: bucket_dir,
            source,
        })?;
        let mut server = S3TestServer {
            addr: SocketAddr::from((loopback_ip(), 0)),
            data_dir: data_dir.to_owned(),
            bucket: bucket.to_owned(),
            faults: Arc::new(Faults {
                data_dir: data_dir.to_owned(),
                ..Faults::default()
            }),
            running: Mutex::new(None),
            secret_key: Mutex::new(SECRET_KEY.to_owned()),
        };
        let listener = server.listen()?;
        server.addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: server.addr,
                source,
            })?;
        server.serve(listener)?;
        Ok(server)
    }

    /// `http://127.a.b.c:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The directory objects are stored under (`<data_dir>/<bucket>/<key>`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Requests received since start (over restarts).
    pub fn requests(&self) -> u64 {
        self.faults.requests.load(Ordering::Relaxed)
    }

    /// `UploadPart` requests received since start (over restarts).
    pub fn upload_parts(&self) -> u64 {
        self.faults.upload_parts.load(Ordering::Relaxed)
    }

    /// Arms a fault: the `n`th `UploadPart` request from now (`n >= 1`) kills the server before it is
    /// served. The signal fires once the server is down.
    pub fn kill_at_upload_part(&self, n: u64) -> KillSignal {
        let (tx, rx) = oneshot::channel();
        let base = self.upload_parts();
        *self
            .faults
            .kill_at_part
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((base + n.max(1), tx));
        KillSignal(rx)
    }

    /// Holds the next object `GET` (not a listing) until [`HeldGet::release`].
    pub fn hold_next_object_get(&self) -> HeldGet {
        let (tx, rx) = oneshot::channel();
        let release = Arc::new(Notify::new());
        *self
            .faults
            .hold_get
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((tx, Arc::clone(&release)));
        HeldGet {
            arrived: rx,
            release,
        }
    }

    /// Sets the secret key that [`ACCESS_KEY`] must sign with, from the next [`restart`](Self::restart)
    /// on (the running server keeps the old one): what a client sees after its key was rotated.
    pub fn set_secret_key(&self, secret_key: &str) {
        *self.secret_key.lock().unwrap_or_else(|p| p.into_inner()) = secret_key.to_owned();
    }

    /// Kills the server: the listener and every connection are dropped at once. Waits until the port
    /// is closed. The data directory is kept.
    pub async fn kill(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(running) = running {
            running.task.abort();
            let _ = running.task.await;
        }
    }

    /// Kills the server if it runs, then serves again on the same port and data directory.
    pub async fn restart(&self) -> Result<(), ServerError> {
        self.kill().await;
        let listener = self.listen()?;
        self.serve(listener)
    }

    /// A listening socket on `self.addr` (port 0 picks one), with `SO_REUSEADDR` so a restart can take
    /// the same port back at once.
    fn listen(&self) -> Result<TcpListener, ServerError> {
        let err = |source| ServerError::Listen {
            addr: self.addr,
            source,
        };
        let socket = TcpSocket::new_v4().map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        socket.bind(self.addr).map_err(err)?;
        socket.listen(1024).map_err(err)
    }

    fn serve(&self, listener: TcpListener) -> Result<(), ServerError> {
        let fs = s3s_fs::FileSystem::new(&self.data_dir).map_err(|e| ServerError::Backend {
            path: self.data_dir.clone(),
            message: format!("{e:?}"),
        })?;
        let mut builder = S3ServiceBuilder::new(fs);
        let secret_key = self
            .secret_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, secret_key.as_str()));
        let service = FaultService {
            inner: builder.build(),
            faults: Arc::clone(&self.faults),
        };
        let task = tokio::spawn(accept_loop(listener, service));
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running { task });
        Ok(())
    }
}

/// Accepts connections until killed; each connection is a task in a set that is dropped (aborting every
/// connection) when the loop ends.
async fn accept_loop(listener: TcpListener, service: FaultService) {
    let mut connections = JoinSet::new();
    let http = ConnBuilder::new(TokioExecutor::new());
    let faults = Arc::clone(&service.faults);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let _ = socket.set_nodelay(true);
                    let conn = http
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    connections.spawn(async move {
                        let _ = conn.await;
                    });
                }
                Err(e) => tracing::warn!(error = %e, "s3 test server: accept failed"),
            },
            () = faults.kill_now.notified() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
    let fired = faults
        .fired
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(fired) = fired {
        let _ = fired.send(());
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        if let Some(running) = self
            .running
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            running.task.abort();
        }
    }
}
