//! The IO engines and the one API that `virtual_file` calls.
//!
//! ## Contract (every engine, every op)
//! - Buffers are taken **by value** and handed back with the result, on success, on error, and (for the
//!   ring engine) after a cancelled op's completion arrives: `(buf, io::Result<_>)`.
//! - Descriptors are passed as `&Arc<IoFd>`; an engine that needs the descriptor to outlive the call
//!   (the ring engine, for an op whose future is dropped) keeps a clone until the kernel is done.
//! - Short transfers are returned as they come: `read_at` may return fewer bytes than asked (0 at end of
//!   file), `write_at` may write fewer. The loops that complete them, and the retry of `EINTR`, live in
//!   `virtual_file`.
//! - Errors are the kernel's `io::Error`, unchanged; the layers above add path, offset, length and mode.
//!
//! | op | success | error |
//! |---|---|---|
//! | `read_at` | bytes read into the window's start (marked initialized); 0 = EOF | buffer unchanged |
//! | `write_at` | bytes written from the slice's start | nothing is known to be written |
//! | `readv_at` / `writev_at` | total bytes, filling/draining the slices in order | as above |
//! | `fsync` / `fdatasync` | data (and metadata for `fsync`) durable | durability unknown |
//! | `open` | a new descriptor, `O_CLOEXEC` always added, `O_DIRECT` recorded in the [`IoFd`] | no descriptor |
//! | `statx` | size, block size, `O_DIRECT` alignment | |
//! | `ftruncate` / `fallocate` | length / allocation changed | unchanged or unknown |

mod fd;
mod iovec;
mod kind;
mod stat;
mod std_fs;

use std::io;
use std::path::Path;
use std::sync::Arc;

pub use fd::IoFd;
pub use kind::{IoEngineKind, IO_ENGINE_ENV};
pub use stat::{DioAlign, FileStat};
pub use std_fs::StdFsEngine;

use crate::buf::{FullSlice, IoBuf, IoBufMut, Slice};

/// An IO engine: a cheap-to-clone handle.
#[derive(Debug, Clone)]
pub enum IoEngine {
    /// Positional syscalls on the calling thread.
    StdFs(StdFsEngine),
}

impl IoEngine {
    /// The `std-fs` engine; always available.
    pub fn std_fs() -> Self {
        Self::StdFs(StdFsEngine)
    }

    /// Which engine this is.
    pub fn kind(&self) -> IoEngineKind {
        match self {
            Self::StdFs(_) => IoEngineKind::StdFs,
        }
    }

    /// Reads into `buf`'s window at `offset`. May return fewer bytes than the window; 0 at end of file.
    pub async fn read_at<B: IoBufMut>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        buf: Slice<B>,
    ) -> (Slice<B>, io::Result<usize>) {
        match self {
            Self::StdFs(e) => e.read_at(fd, offset, buf),
        }
    }

    /// Writes `buf` at `offset`. May write fewer bytes than given.
    pub async fn write_at<B: IoBuf>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        buf: FullSlice<B>,
    ) -> (FullSlice<B>, io::Result<usize>) {
        match self {
            Self::StdFs(e) => e.write_at(fd, offset, buf),
        }
    }

    /// Reads into several windows in order, starting at `offset`. Returns the total read.
    pub async fn readv_at<B: IoBufMut>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        bufs: Vec<Slice<B>>,
    ) -> (Vec<Slice<B>>, io::Result<usize>) {
        match self {
            Self::StdFs(e) => e.readv_at(fd, offset, bufs),
        }
    }

    /// Writes several slices in order, starting at `offset`. Returns the total written.
    pub async fn writev_at<B: IoBuf>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        bufs: Vec<FullSlice<B>>,
    ) -> (Vec<FullSlice<B>>, io::Result<usize>) {
        match self {
            Self::StdFs(e) => e.writev_at(fd, offset, bufs),
        }
    }

    /// Makes data and metadata durable.
    pub async fn fsync(&self, fd: &Arc<IoFd>) -> io::Result<()> {
        match self {
            Self::StdFs(e) => e.fsync(fd),
        }
    }

    /// Makes data (and the metadata needed to read it) durable.
    pub async fn fdatasync(&self, fd: &Arc<IoFd>) -> io::Result<()> {
        match self {
            Self::StdFs(e) => e.fdatasync(fd),
        }
    }

    /// Opens `path` with `flags` (`O_CLOEXEC` is always added) and `mode` (for `O_CREAT`).
    pub async fn open(
        &self,
        path: &Path,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> io::Result<IoFd> {
        match self {
            Self::StdFs(e) => e.open(path, flags, mode),
        }
    }

    /// Size, block size and `O_DIRECT` alignment of the open file.
    pub async fn statx(&self, fd: &Arc<IoFd>) -> io::Result<FileStat> {
        match self {
            Self::StdFs(e) => e.statx(fd),
        }
    }

    /// Sets the file's length.
    pub async fn ftruncate(&self, fd: &Arc<IoFd>, len: u64) -> io::Result<()> {
        match self {
            Self::StdFs(e) => e.ftruncate(fd, len),
        }
    }

    /// `fallocate(2)` with `mode` (0 or `FALLOC_FL_*`).
    pub async fn fallocate(
        &self,
        fd: &Arc<IoFd>,
        mode: libc::c_int,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        match self {
            Self::StdFs(e) => e.fallocate(fd, mode, offset, len),
        }
    }
}
