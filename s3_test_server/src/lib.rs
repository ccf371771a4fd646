//! A real S3 server on `127.0.0.1` for tests and benchmarks: the `s3s-fs` implementation (objects are
//! files under a data directory) behind the `s3s` protocol layer, served over HTTP/1.1 by hyper, with
//! AWS signature checking on (one access key / secret key pair).
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
use tokio::sync::{oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "s3-test-server-access-key";
/// The secret key the server accepts.
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
        /// The address asked for: `127.0.0.1:0` (any free port) at the first start, the same port at a
        /// restart.
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
        if is_object_get(&req) {
            let held = self
                .faults
                .hold_get
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some((arrived, release)) = held {
                let _ = arrived.send(());
                let inner = self.inner.clone();
                return Box::pin(async move {
                    release.notified().await;
                    hyper::service::Service::call(&inner, req).await
                });
            }
        }
        hyper::service::Service::call(&self.inner, req)
    }
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
    /// Starts a server on a random port of 127.0.0.1 storing objects under `data_dir`, with one bucket
    /// named `bucket` (created if missing). Must be called within a tokio runtime.
    pub async fn start(data_dir: &Path, bucket: &str) -> Result<Self, ServerError> {
        let bucket_dir = data_dir.join(bucket);
        std::fs::create_dir_all(&bucket_dir).map_err(|source| ServerError::DataDir {
            path: bucket_dir,
            source,
        })?;
        let mut server = S3TestServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            bucket: bucket.to_owned(),
            faults: Arc::new(Faults::default()),
            running: Mutex::new(None),
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

    /// `http://127.0.0.1:<port>`.
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
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
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
