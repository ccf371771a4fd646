//! A fault-injecting engine for tests (feature `testing`): wraps another engine and, following a
//! [`FaultPlan`], fails the Nth read, write, fsync or open with an errno (`EIO`, `ENOSPC`, `EINTR`, ...),
//! or turns it into a short transfer. Everything else passes through to the inner engine.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::fd::IoFd;
use super::stat::FileStat;
use super::IoEngine;
use crate::buf::{FullSlice, IoBuf, IoBufMut, Slice};

/// The op classes a [`FaultRule`] can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `read_at`, `readv_at`.
    Read,
    /// `write_at`, `writev_at`.
    Write,
    /// `fsync`, `fdatasync`.
    Sync,
    /// `open`, `rename`, `unlink`.
    Open,
    /// `ftruncate`, `fallocate`.
    Truncate,
    /// `statx`.
    Stat,
}

const OP_CLASSES: usize = 6;

impl FaultOp {
    fn index(self) -> usize {
        self as usize
    }
}

/// What happens to a targeted op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The op fails with this errno without reaching the inner engine.
    Errno(i32),
    /// A read or write transfers only about half of what was asked: at least 1 byte, and for an
    /// `O_DIRECT` descriptor a multiple of 512 (as the kernel's own short transfers are; a request of 512
    /// bytes or less is then not shortened). Other ops are not affected.
    Short,
}

/// Inject `fault` into ops of class `op` number `nth` (1-based, counted per class since the plan was
/// made), and with `repeat` into every op of that class from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRule {
    /// Which ops.
    pub op: FaultOp,
    /// The first op hit (1-based).
    pub nth: u64,
    /// What happens.
    pub fault: Fault,
    /// Also every later op of the class.
    pub repeat: bool,
}

/// The rules and the per-class op counters. Shared, so a test can add rules while IO runs.
#[derive(Debug, Default)]
pub struct FaultPlan {
    rules: Mutex<Vec<FaultRule>>,
    counts: [AtomicU64; OP_CLASSES],
    injected: AtomicU64,
}

impl FaultPlan {
    /// A plan with these rules.
    pub fn new(rules: impl IntoIterator<Item = FaultRule>) -> Arc<Self> {
        let plan = Self::default();
        plan.rules.lock().unwrap().extend(rules);
        Arc::new(plan)
    }

    /// Adds a rule; `nth` counts from the plan's start, so use [`count`](Self::count) to aim at "the
    /// next" op.
    pub fn add(&self, rule: FaultRule) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rule);
    }

    /// Removes all rules.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Ops of this class seen so far.
    pub fn count(&self, op: FaultOp) -> u64 {
        self.counts[op.index()].load(Ordering::Relaxed)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Counts one op of `op`'s class and says which fault, if any, hits it.
    fn next(&self, op: FaultOp) -> Option<Fault> {
        let n = self.counts[op.index()].fetch_add(1, Ordering::Relaxed) + 1;
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let hit = rules
            .iter()
            .find(|r| r.op == op && (n == r.nth || (r.repeat && n > r.nth)))
            .map(|r| r.fault);
        if hit.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}

/// An engine that injects the faults of a [`FaultPlan`] in front of another engine.
#[derive(Debug, Clone)]
pub struct FaultyEngine {
    inner: Box<IoEngine>,
    plan: Arc<FaultPlan>,
}

/// The length of a short transfer of `len` bytes (see [`Fault::Short`]).
fn shorten(len: usize, direct: bool) -> usize {
    const DIRECT_UNIT: usize = 512;
    if direct {
        match len / 2 / DIRECT_UNIT * DIRECT_UNIT {
            0 => len,
            n => n,
        }
    } else {
        (len / 2).max(1)
    }
}

impl FaultyEngine {
    /// Wraps `inner`.
    pub fn new(inner: IoEngine, plan: Arc<FaultPlan>) -> Self {
        Self {
            inner: Box::new(inner),
            plan,
        }
    }

    /// The plan (shared).
    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
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
        match self.plan.next(FaultOp::Read) {
            Some(Fault::Errno(e)) => (buf, Err(io::Error::from_raw_os_error(e))),
            Some(Fault::Short) if buf.len() > 1 => {
                let (begin, end) = (buf.begin(), buf.end());
                let part = Slice::new(
                    buf.into_inner(),
                    begin..begin + shorten(end - begin, fd.is_direct()),
                );
                let (part, res) = Box::pin(self.inner.read_at(fd, offset, part)).await;
                (Slice::new(part.into_inner(), begin..end), res)
            }
            _ => Box::pin(self.inner.read_at(fd, offset, buf)).await,
        }
    }

    pub(crate) async fn write_at<B: IoBuf>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        buf: FullSlice<B>,
    ) -> (FullSlice<B>, io::Result<usize>) {
        match self.plan.next(FaultOp::Write) {
            Some(Fault::Errno(e)) => (buf, Err(io::Error::from_raw_os_error(e))),
            Some(Fault::Short) if buf.len() > 1 => {
                let (begin, end) = (buf.begin(), buf.end());
                let part = FullSlice::with_range(
                    buf.into_inner(),
                    begin..begin + shorten(end - begin, fd.is_direct()),
                );
                let (part, res) = Box::pin(self.inner.write_at(fd, offset, part)).await;
                (FullSlice::with_range(part.into_inner(), begin..end), res)
            }
            _ => Box::pin(self.inner.write_at(fd, offset, buf)).await,
        }
    }

    pub(crate) async fn readv_at<B: IoBufMut>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        mut bufs: Vec<Slice<B>>,
    ) -> (Vec<Slice<B>>, io::Result<usize>) {
        match self.plan.next(FaultOp::Read) {
            Some(Fault::Errno(e)) => (bufs, Err(io::Error::from_raw_os_error(e))),
            Some(Fault::Short) if bufs.len() > 1 => {
                // only the first buffer is filled: a short vectored read
                let rest = bufs.split_off(1);
                let (mut first, res) = Box::pin(self.inner.readv_at(fd, offset, bufs)).await;
                first.extend(rest);
                (first, res)
            }
            _ => Box::pin(self.inner.readv_at(fd, offset, bufs)).await,
        }
    }

    pub(crate) async fn writev_at<B: IoBuf>(
        &self,
        fd: &Arc<IoFd>,
        offset: u64,
        mut bufs: Vec<FullSlice<B>>,
    ) -> (Vec<FullSlice<B>>, io::Result<usize>) {
        match self.plan.next(FaultOp::Write) {
            Some(Fault::Errno(e)) => (bufs, Err(io::Error::from_raw_os_error(e))),
            Some(Fault::Short) if bufs.len() > 1 => {
                let rest = bufs.split_off(1);
                let (mut first, res) = Box::pin(self.inner.writev_at(fd, offset, bufs)).await;
                first.extend(rest);
                (first, res)
            }
            _ => Box::pin(self.inner.writev_at(fd, offset, bufs)).await,
        }
    }

    fn errno_of(&self, op: FaultOp) -> io::Result<()> {
        match self.plan.next(op) {
            Some(Fault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            _ => Ok(()),
        }
    }

    pub(crate) async fn fsync(&self, fd: &Arc<IoFd>) -> io::Result<()> {
        self.errno_of(FaultOp::Sync)?;
        Box::pin(self.inner.fsync(fd)).await
    }

    pub(crate) async fn fdatasync(&self, fd: &Arc<IoFd>) -> io::Result<()> {
        self.errno_of(FaultOp::Sync)?;
        Box::pin(self.inner.fdatasync(fd)).await
    }

    pub(crate) async fn open(
        &self,
        path: &Path,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> io::Result<IoFd> {
        self.errno_of(FaultOp::Open)?;
        Box::pin(self.inner.open(path, flags, mode)).await
    }

    pub(crate) async fn rename(
        &self,
        from: &Path,
        to: &Path,
        mode: super::RenameMode,
    ) -> io::Result<()> {
        self.errno_of(FaultOp::Open)?;
        Box::pin(self.inner.rename(from, to, mode)).await
    }

    pub(crate) async fn unlink(&self, path: &Path) -> io::Result<()> {
        self.errno_of(FaultOp::Open)?;
        Box::pin(self.inner.unlink(path)).await
    }

    pub(crate) async fn statx(&self, fd: &Arc<IoFd>) -> io::Result<FileStat> {
        self.errno_of(FaultOp::Stat)?;
        Box::pin(self.inner.statx(fd)).await
    }

    pub(crate) async fn ftruncate(&self, fd: &Arc<IoFd>, len: u64) -> io::Result<()> {
        self.errno_of(FaultOp::Truncate)?;
        Box::pin(self.inner.ftruncate(fd, len)).await
    }

    pub(crate) async fn fallocate(
        &self,
        fd: &Arc<IoFd>,
        mode: libc::c_int,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        self.errno_of(FaultOp::Truncate)?;
        Box::pin(self.inner.fallocate(fd, mode, offset, len)).await
    }
}
