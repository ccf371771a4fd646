//! [`S3TestServer`]: the server's life cycle (start, kill, restart, drop) and the accept loop that owns
//! every connection, so that a kill drops them all at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};

use crate::credentials::{ACCESS_KEY, SECRET_KEY};
use crate::error::ServerError;
use crate::loopback::loopback_ip;
use crate::service::FaultService;
use crate::state::{lock, take, HeldGet, KillSignal, State};

/// One serving instance: the accept loop task (which owns every connection task).
struct Running {
    task: JoinHandle<()>,
}

/// A real S3 server on a loopback port. Dropping it kills it.
pub struct S3TestServer {
    addr: SocketAddr,
    data_dir: PathBuf,
    bucket: String,
    state: Arc<State>,
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
            state: Arc::new(State::new(data_dir)),
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
        self.state.requests()
    }

    /// `UploadPart` requests received since start (over restarts).
    pub fn upload_parts(&self) -> u64 {
        self.state.upload_parts()
    }

    /// Arms a fault: the `n`th `UploadPart` request from now (`n >= 1`) kills the server before it is
    /// served. The signal fires once the server is down.
    pub fn kill_at_upload_part(&self, n: u64) -> KillSignal {
        self.state.kill_at_upload_part(n)
    }

    /// Holds the next object `GET` (not a listing) until [`HeldGet::release`].
    pub fn hold_next_object_get(&self) -> HeldGet {
        self.state.hold_next_object_get()
    }

    /// Sets the secret key that [`ACCESS_KEY`] must sign with, from the next [`restart`](Self::restart)
    /// on (the running server keeps the old one): what a client sees after its key was rotated.
    pub fn set_secret_key(&self, secret_key: &str) {
        *lock(&self.secret_key) = secret_key.to_owned();
    }

    /// Kills the server: the listener and every connection are dropped at once. Waits until the port
    /// is closed. The data directory is kept.
    pub async fn kill(&self) {
        if let Some(running) = take(&self.running) {
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
        let secret_key = lock(&self.secret_key).clone();
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, secret_key.as_str()));
        let service = FaultService::new(builder.build(), Arc::clone(&self.state));
        let task = tokio::spawn(accept_loop(listener, service, Arc::clone(&self.state)));
        *lock(&self.running) = Some(Running { task });
        Ok(())
    }
}

/// Accepts connections until killed; each connection is a task in a set that is dropped (aborting every
/// connection) when the loop ends.
async fn accept_loop(listener: TcpListener, service: FaultService, state: Arc<State>) {
    let mut connections = JoinSet::new();
    let http = ConnBuilder::new(TokioExecutor::new());
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
            () = state.kill_requested() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
    state.report_fired();
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
