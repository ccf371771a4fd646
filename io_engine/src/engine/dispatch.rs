//! [`IoEngine`]: the handle the layers above hold, and where each op is dispatched to the engine it
//! holds.

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::error::{EngineSelectError, EngineStartError};
use super::fd::IoFd;
#[cfg(feature = "testing")]
use super::hook::EngineHook;
#[cfg(feature = "testing")]
use super::hooked::HookedEngine;
use super::kind::IoEngineKind;
use super::rename::RenameMode;
use super::stat::FileStat;
use super::std_fs::StdFsEngine;
use super::uring::{UringConfig, UringEngine};
use crate::buf::{FullSlice, IoBuf, IoBufMut, Slice};

/// An IO engine: a cheap-to-clone handle.
///
/// # Contract (every engine, every op)
/// - Buffers are taken **by value** and handed back with the result, on success, on error, and (for the
///   ring engine) after a cancelled op's completion arrives: `(buf, io::Result<_>)`.
/// - Descriptors are passed as `&Arc<IoFd>`; an engine that needs the descriptor to outlive the call
///   (the ring engine, for an op whose future is dropped) keeps a clone until the kernel is done.
/// - Short transfers are returned as they come: `read_at` may return fewer bytes than asked (0 at end of
///   file), `write_at` may write fewer. The loops that complete them, and the retry of `EINTR`, live in
///   `virtual_file`.
/// - Errors are the kernel's `io::Error`, unchanged; the layers above add path, offset, length and mode.
///
/// | op | success | error |
/// |---|---|---|
/// | `read_at` | bytes read into the window's start (marked initialized); 0 = EOF | buffer unchanged |
/// | `write_at` | bytes written from the slice's start | nothing is known to be written |
/// | `readv_at` / `writev_at` | total bytes, filling/draining the slices in order | as above |
/// | `fsync` / `fdatasync` | data (and metadata for `fsync`) durable | durability unknown |
/// | `fadvise` | advice given (the kernel may ignore it) | none given |
/// | `open` | a new descriptor, `O_CLOEXEC` always added, `O_DIRECT` recorded in the [`IoFd`] | no descriptor |
/// | `statx` | size, block size, `O_DIRECT` alignment | |
/// | `ftruncate` / `fallocate` | length / allocation changed | unchanged or unknown |
/// | `rename` / `unlink` | the directory entry moved / removed (durable only after the directory is fsynced) | unchanged |
#[derive(Debug, Clone)]
pub enum IoEngine {
    /// Positional syscalls on the calling thread.
    StdFs(StdFsEngine),
    /// Our io_uring engine, completions driven by tokio's reactor.
    TokioEpollUring(UringEngine),
    /// Another engine with an [`EngineHook`] around its ops: fault injection, power-loss recording, or a
    /// test's own hook (tests only, feature `testing`).
    #[cfg(feature = "testing")]
    Hooked(HookedEngine),
}

/// The io_uring engine with the default configuration (the start function of the `launch*` methods).
fn start_default_uring() -> Result<UringEngine, EngineStartError> {
    UringEngine::launch(UringConfig::default())
}

/// `err` and its sources, joined with ": ".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Runs the op `method(args)` on the engine `self` holds: `std-fs` on the calling thread, the others
/// awaited.
macro_rules! dispatch {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            Self::StdFs(e) => e.$method($($arg),*),
            Self::TokioEpollUring(e) => e.$method($($arg),*).await,
            #[cfg(feature = "testing")]
            Self::Hooked(e) => e.$method($($arg),*).await,
        }
    };
}

impl IoEngine {
    /// The `std-fs` engine; always available.
    pub fn std_fs() -> Self {
        Self::StdFs(StdFsEngine)
    }

    /// `inner` with `hook` called around each of its ops (see [`HookedEngine`]); the caller keeps a
    /// clone of `hook` to look at what it saw (tests only, feature `testing`).
    #[cfg(feature = "testing")]
    pub fn hooked<H: EngineHook>(inner: IoEngine, hook: Arc<H>) -> Self {
        Self::Hooked(HookedEngine::new(inner, hook))
    }

    /// Which engine this is.
    pub fn kind(&self) -> IoEngineKind {
        match self {
            Self::StdFs(_) => IoEngineKind::StdFs,
            Self::TokioEpollUring(_) => IoEngineKind::TokioEpollUring,
            #[cfg(feature = "testing")]
            Self::Hooked(e) => e.inner().kind(),
        }
    }

    /// True if this is the io_uring engine and it downgraded itself to `std-fs` after a ring broke
    /// (see [`UringEngine::is_downgraded`]); for metrics of the layers above.
    pub fn is_downgraded(&self) -> bool {
        match self {
            Self::StdFs(_) => false,
            Self::TokioEpollUring(e) => e.is_downgraded(),
            #[cfg(feature = "testing")]
            Self::Hooked(e) => e.inner().is_downgraded(),
        }
    }

    /// Starts the engine `kind`, explicitly: an io_uring engine that cannot start is an error naming the
    /// cause, never a fallback. The io_uring engine must be launched inside a tokio runtime.
    pub fn launch(kind: IoEngineKind) -> Result<Self, EngineStartError> {
        Self::launch_with(kind, start_default_uring)
    }

    /// As [`IoEngine::launch`], with `start_uring` starting the io_uring engine (a configuration, or an
    /// injected failure in tests).
    pub fn launch_with(
        kind: IoEngineKind,
        start_uring: impl FnOnce() -> Result<UringEngine, EngineStartError>,
    ) -> Result<Self, EngineStartError> {
        match kind {
            IoEngineKind::StdFs => Ok(Self::std_fs()),
            IoEngineKind::TokioEpollUring => start_uring().map(Self::TokioEpollUring),
        }
    }

    /// The default engine: io_uring if it starts, else `std-fs` with one warning that names the cause.
    pub fn launch_default() -> Self {
        Self::launch_default_with(start_default_uring)
    }

    /// As [`IoEngine::launch_default`], with `start_uring` starting the io_uring engine.
    pub fn launch_default_with(
        start_uring: impl FnOnce() -> Result<UringEngine, EngineStartError>,
    ) -> Self {
        match start_uring() {
            Ok(e) => Self::TokioEpollUring(e),
            Err(err) => {
                tracing::warn!(
                    error = %error_chain(&err),
                    "the io_uring engine cannot start; falling back to std-fs"
                );
                Self::std_fs()
            }
        }
    }

    /// The engine named by `VIRTUAL_FILE_IO_ENGINE`: set means explicit ([`IoEngine::launch`]), unset or
    /// empty means the default with fallback ([`IoEngine::launch_default`]).
    pub fn from_env() -> Result<Self, EngineSelectError> {
        Self::select(IoEngineKind::from_env()?, start_default_uring)
    }

    /// What [`IoEngine::from_env`] does with the parsed setting `kind`, with `start_uring` starting
    /// the io_uring engine.
    pub fn select(
        kind: Option<IoEngineKind>,
        start_uring: impl FnOnce() -> Result<UringEngine, EngineStartError>,
    ) -> Result<Self, EngineSelectError> {
        match kind {
            Some(kind) => Self::launch_with(kind, start_uring)
                .map_err(|source| EngineSelectError::Start { kind, source }),
            None => Ok(Self::launch_default_with(start_uring)),
        }
    }

    /// Reads into `buf`'s window at `offset`. May return fewer bytes than the window; 0 at end of file.
    pub async fn read_at<B: IoBufMut>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        buf: Slice<B>,
    ) -> (Slice<B>, io::Result<usize>) {
        dispatch!(self.read_at(fd, offset, buf))
    }

    /// Writes `buf` at `offset`. May write fewer bytes than given.
    pub async fn write_at<B: IoBuf>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        buf: FullSlice<B>,
    ) -> (FullSlice<B>, io::Result<usize>) {
        dispatch!(self.write_at(fd, offset, buf))
    }

    /// Reads into several windows in order, starting at `offset`. Returns the total read.
    pub async fn readv_at<B: IoBufMut>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        bufs: Vec<Slice<B>>,
    ) -> (Vec<Slice<B>>, io::Result<usize>) {
        dispatch!(self.readv_at(fd, offset, bufs))
    }

    /// Writes several slices in order, starting at `offset`. Returns the total written.
    pub async fn writev_at<B: IoBuf>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        bufs: Vec<FullSlice<B>>,
    ) -> (Vec<FullSlice<B>>, io::Result<usize>) {
        dispatch!(self.writev_at(fd, offset, bufs))
    }

    /// `posix_fadvise(2)` of `len` bytes at `offset` (`len` 0: to the end of the file) with `advice`
    /// (`POSIX_FADV_*`). Advisory and cheap, so every engine makes it inline on the calling thread;
    /// hooks do not see it.
    pub fn fadvise(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        len: u64,
        advice: libc::c_int,
    ) -> io::Result<()> {
        StdFsEngine.fadvise(fd, offset, len, advice)
    }

    /// Makes data and metadata durable.
    pub async fn fsync(&self, fd: &Arc<IoFd>) -> io::Result<()> {
        dispatch!(self.fsync(fd))
    }

    /// Makes data (and the metadata needed to read it) durable.
    pub async fn fdatasync(&self, fd: &Arc<IoFd>) -> io::Result<()> {
        dispatch!(self.fdatasync(fd))
    }

    /// Opens `path` with `flags` (`O_CLOEXEC` is always added) and `mode` (for `O_CREAT`).
    pub async fn open(
        &self,
        path: &Path,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> io::Result<IoFd> {
        dispatch!(self.open(path, flags, mode))
    }

    /// Size, block size and `O_DIRECT` alignment of the open file.
    pub async fn statx(&self, fd: &Arc<IoFd>) -> io::Result<FileStat> {
        dispatch!(self.statx(fd))
    }

    /// Sets the file's length.
    pub async fn ftruncate(&self, fd: &Arc<IoFd>, len: u64) -> io::Result<()> {
        dispatch!(self.ftruncate(fd, len))
    }

    /// `fallocate(2)` with `mode` (0 or `FALLOC_FL_*`).
    pub async fn fallocate(
        &self,
        fd: &Arc<IoFd>,
        mode: libc::c_int,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        dispatch!(self.fallocate(fd, mode, offset, len))
    }

    /// Renames `from` to `to` (see [`RenameMode`]). Durable only once the directories are fsynced.
    pub async fn rename(&self, from: &Path, to: &Path, mode: RenameMode) -> io::Result<()> {
        match self {
            Self::StdFs(e) => e.rename(from, to, mode),
            // Metadata ops are rare and cheap: the ring engine makes them inline, like std-fs.
            Self::TokioEpollUring(_) => StdFsEngine.rename(from, to, mode),
            #[cfg(feature = "testing")]
            Self::Hooked(e) => e.rename(from, to, mode).await,
        }
    }

    /// Removes the directory entry `path`. Durable only once the directory is fsynced.
    pub async fn unlink(&self, path: &Path) -> io::Result<()> {
        match self {
            Self::StdFs(e) => e.unlink(path),
            Self::TokioEpollUring(_) => StdFsEngine.unlink(path),
            #[cfg(feature = "testing")]
            Self::Hooked(e) => e.unlink(path).await,
        }
    }
}
