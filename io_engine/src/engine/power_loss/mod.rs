//! A power-loss simulation engine for tests (feature `testing`): wraps a real engine, so files on disk are
//! real and the code under test runs normally, and records in order every op that changes durable state.
//! From the log, [`OpLog::crash_image`] builds the directory tree as a power cut at any point could have
//! left it, and [`CrashImage::materialize`] writes it into a fresh directory. A killed process cannot
//! show a missing `fsync` (the page cache survives it); a power cut can, and this models one.
//!
//! # What is recorded
//!
//! Only files under the `root` given at construction; other paths and descriptors pass through
//! unrecorded. A file is identified by its inode (`fstat` of the descriptor on each op), so a rename
//! moves a name, never contents; an inode number reused by a new file gets a new [`FileId`].
//!
//! | op | logged as |
//! |---|---|
//! | `open` with `O_CREAT` of a name that did not exist just before | [`DurableOp::Create`] |
//! | `open` with `O_TRUNC` of a known file, `ftruncate` | [`DurableOp::SetLen`] |
//! | `write_at`, `writev_at` (the bytes the kernel reported written) | [`DurableOp::Write`] |
//! | `fallocate` (not `COLLAPSE_RANGE` / `INSERT_RANGE`: those fail with `EOPNOTSUPP`) | [`DurableOp::Fallocate`] |
//! | completed `fsync` / `fdatasync` of a file | [`DurableOp::SyncFile`] |
//! | completed `fsync` of a directory (opened through the engine) | [`DurableOp::SyncDir`] |
//! | `rename`, `unlink` | [`DurableOp::Rename`], [`DurableOp::Unlink`] |
//!
//! An op is logged when it completes, with the log's length when it was issued ([`LoggedOp::issued`]),
//! so ops that overlapped are known. Failed ops are not logged. Removals made around the engine (plain
//! `std::fs::remove_file`) are invisible: such a file stays in the images under its last name (until a
//! create through the engine reuses the name, which logs the removal first). A create is recognised by
//! the name not existing just before the `O_CREAT` open, so two tasks creating one name at once are not
//! told apart.
//!
//! # The crash model
//!
//! A cut at `c` means: the first `c` logged ops completed, and the ops issued by then but completed later
//! were in flight. Then:
//!
//! - **File data.** A data op (write, set-length, fallocate) is *guaranteed* if it completed before a
//!   `fsync`/`fdatasync` of the same file was issued, and that sync completed before the cut. Every other
//!   data op of the file up to the cut (and those in flight) is, by seed, present, absent, or — for a
//!   write — torn at 512-byte sector granularity (each sector of it present or not). They are applied in
//!   completion order, so a later write to the same bytes wins where both land.
//! - **Directory entries** (create, rename, unlink). An op is guaranteed if it completed before an
//!   `fsync` of its directory (for a rename: of both directories) was issued, and that fsync completed
//!   before the cut; also guaranteed is every earlier op on the same file or the same name as a
//!   guaranteed op (it must have happened first). The rest happen, by seed, either as a prefix in order
//!   ([`DirOrder::Prefix`], as a journaling file system commits metadata) or each on its own
//!   ([`DirOrder::Independent`]). Every op happens as a unit (a rename moves the name or does not) and
//!   only where it still applies: a rename or unlink needs its file under the old name, a create a free
//!   name. So no file has data without having been created, and a name only ever holds a file that was
//!   at some point written under it.
//! - A file's `fsync` does **not** make its directory entry durable here (ext4 often does in practice;
//!   POSIX does not promise it). Directories themselves are assumed to exist durably.
//! - A file visible in the image holds its guaranteed data plus the chosen unguaranteed data; bytes never
//!   written read as zeros.
//!
//! Not modelled: errors reported by a later `fsync` after a lost write-back (the fsyncgate case), and
//! metadata other than names and lengths (modes, times, extended attributes).

mod image;
mod log;
mod recorder;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use image::{CrashImage, DirOrder, SECTOR};
pub use log::{DurableOp, Entry, FileId, LoggedOp, OpLog};
pub use recorder::Recorder;

use super::fd::IoFd;
use super::stat::FileStat;
use super::{IoEngine, RenameMode};
use crate::buf::{FullSlice, IoBuf, IoBufMut, Slice};

/// An engine that records durable-state ops of another engine for crash images.
#[derive(Debug, Clone)]
pub struct PowerLossEngine {
    inner: Box<IoEngine>,
    recorder: Arc<Recorder>,
}

impl PowerLossEngine {
    /// Wraps `inner`, recording the files under `root`.
    pub fn new(inner: IoEngine, root: impl Into<PathBuf>) -> Self {
        Self {
            inner: Box::new(inner),
            recorder: Arc::new(Recorder::new(root.into())),
        }
    }

    /// The recorder (shared): its log, cut points and crash images.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// The wrapped engine.
    pub fn inner(&self) -> &IoEngine {
        &self.inner
    }

    pub(crate) async fn read_at<B: IoBufMut>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        buf: Slice<B>,
    ) -> (Slice<B>, io::Result<usize>) {
        Box::pin(self.inner.read_at(fd, offset, buf)).await
    }

    pub(crate) async fn readv_at<B: IoBufMut>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        bufs: Vec<Slice<B>>,
    ) -> (Vec<Slice<B>>, io::Result<usize>) {
        Box::pin(self.inner.readv_at(fd, offset, bufs)).await
    }

    pub(crate) async fn write_at<B: IoBuf>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        buf: FullSlice<B>,
    ) -> (FullSlice<B>, io::Result<usize>) {
        let issued = self.recorder.mark();
        let (buf, res) = Box::pin(self.inner.write_at(fd, offset, buf)).await;
        if let Ok(n) = res {
            let data = &buf.as_slice()[..n.min(buf.len())];
            self.recorder.write(fd, issued, offset, data.into());
        }
        (buf, res)
    }

    pub(crate) async fn writev_at<B: IoBuf>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        bufs: Vec<FullSlice<B>>,
    ) -> (Vec<FullSlice<B>>, io::Result<usize>) {
        let issued = self.recorder.mark();
        let (bufs, res) = Box::pin(self.inner.writev_at(fd, offset, bufs)).await;
        if let Ok(n) = res {
            let mut data = Vec::with_capacity(n);
            for b in &bufs {
                let take = (n - data.len()).min(b.len());
                data.extend_from_slice(&b.as_slice()[..take]);
            }
            self.recorder.write(fd, issued, offset, data.into());
        }
        (bufs, res)
    }

    pub(crate) async fn fsync(&self, fd: &Arc<IoFd>) -> io::Result<()> {
        let issued = self.recorder.mark();
        Box::pin(self.inner.fsync(fd)).await?;
        self.recorder.sync(fd, issued);
        Ok(())
    }

    pub(crate) async fn fdatasync(&self, fd: &Arc<IoFd>) -> io::Result<()> {
        let issued = self.recorder.mark();
        Box::pin(self.inner.fdatasync(fd)).await?;
        self.recorder.sync(fd, issued);
        Ok(())
    }

    pub(crate) async fn open(
        &self,
        path: &Path,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> io::Result<IoFd> {
        let issued = self.recorder.mark();
        // a create is told apart by the name not existing just before (an inode number is reused
        // at once by some file systems, so the inode alone cannot tell a new file from an old one)
        let creates = flags & libc::O_CREAT != 0 && std::fs::symlink_metadata(path).is_err();
        let fd = Box::pin(self.inner.open(path, flags, mode)).await?;
        self.recorder.open(&fd, path, flags, creates, issued);
        Ok(fd)
    }

    pub(crate) async fn rename(&self, from: &Path, to: &Path, mode: RenameMode) -> io::Result<()> {
        let issued = self.recorder.mark();
        Box::pin(self.inner.rename(from, to, mode)).await?;
        self.recorder.rename(from, to, mode, issued);
        Ok(())
    }

    pub(crate) async fn unlink(&self, path: &Path) -> io::Result<()> {
        let issued = self.recorder.mark();
        Box::pin(self.inner.unlink(path)).await?;
        self.recorder.unlink(path, issued);
        Ok(())
    }

    pub(crate) async fn statx(&self, fd: &Arc<IoFd>) -> io::Result<FileStat> {
        Box::pin(self.inner.statx(fd)).await
    }

    pub(crate) async fn ftruncate(&self, fd: &Arc<IoFd>, len: u64) -> io::Result<()> {
        let issued = self.recorder.mark();
        Box::pin(self.inner.ftruncate(fd, len)).await?;
        self.recorder.set_len(fd, len, issued);
        Ok(())
    }

    pub(crate) async fn fallocate(
        &self,
        fd: &Arc<IoFd>,
        mode: libc::c_int,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        if mode & (libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE) != 0 {
            // the crash model does not shift file contents
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let issued = self.recorder.mark();
        Box::pin(self.inner.fallocate(fd, mode, offset, len)).await?;
        self.recorder.fallocate(fd, mode, offset, len, issued);
        Ok(())
    }
}
