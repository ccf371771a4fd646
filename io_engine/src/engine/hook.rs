//! [`EngineHook`]: what a test engine does around the ops of the engine it wraps (feature `testing`).
//!
//! A hook is called twice per op by a [`HookedEngine`](crate::HookedEngine): [`before`](EngineHook::before)
//! the op reaches the inner engine (it may fail the op, delay it, cut a transfer short, and hand a
//! ticket to the second call), and [`after`](EngineHook::after) the inner engine returned (it sees the
//! op as it ran and its result, e.g. to record it). The fault-injecting plan
//! ([`FaultPlan`](crate::FaultPlan)) and the power-loss recorder
//! ([`power_loss::Recorder`](crate::power_loss::Recorder)) are two hooks; a test can write its own (see
//! the example on [`HookedEngine`](crate::HookedEngine)).

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::fd::IoFd;
use super::rename::RenameMode;
use super::stat::FileStat;

/// One op as a hook sees it: the call's arguments, and for writes the bytes to write. Before the op it
/// is the op as asked; after it, the op as it ran (cut short if [`Proceed::transfer_at_most`] said so).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum EngineOp<'a> {
    /// `read_at` into a window of `len` bytes.
    ReadAt {
        /// The descriptor.
        fd: &'a IoFd,
        /// File offset.
        offset: u64,
        /// Length of the window.
        len: usize,
    },
    /// `readv_at` into windows of these lengths, in order.
    ReadvAt {
        /// The descriptor.
        fd: &'a IoFd,
        /// File offset.
        offset: u64,
        /// Length of each window.
        lens: &'a [usize],
    },
    /// `write_at` of `data`.
    WriteAt {
        /// The descriptor.
        fd: &'a IoFd,
        /// File offset.
        offset: u64,
        /// The bytes to write.
        data: &'a [u8],
    },
    /// `writev_at` of these slices, in order.
    WritevAt {
        /// The descriptor.
        fd: &'a IoFd,
        /// File offset.
        offset: u64,
        /// The bytes of each slice.
        data: &'a [&'a [u8]],
    },
    /// `fsync`.
    Fsync {
        /// The descriptor.
        fd: &'a IoFd,
    },
    /// `fdatasync`.
    Fdatasync {
        /// The descriptor.
        fd: &'a IoFd,
    },
    /// `open` of `path`.
    Open {
        /// The path.
        path: &'a Path,
        /// `O_*` flags as passed (the engine adds `O_CLOEXEC`).
        flags: libc::c_int,
        /// Permissions for `O_CREAT`.
        mode: libc::mode_t,
    },
    /// `statx`.
    Statx {
        /// The descriptor.
        fd: &'a IoFd,
    },
    /// `ftruncate` to `len`.
    Ftruncate {
        /// The descriptor.
        fd: &'a IoFd,
        /// The new length.
        len: u64,
    },
    /// `fallocate(mode, offset, len)`.
    Fallocate {
        /// The descriptor.
        fd: &'a IoFd,
        /// `0` or `FALLOC_FL_*` flags.
        mode: libc::c_int,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// `rename(from, to)`.
    Rename {
        /// The old name.
        from: &'a Path,
        /// The new name.
        to: &'a Path,
        /// Whether an existing `to` may be replaced.
        mode: RenameMode,
    },
    /// `unlink(path)`.
    Unlink {
        /// The name removed.
        path: &'a Path,
    },
}

impl EngineOp<'_> {
    /// The engine method's name: `"read_at"`, `"fsync"`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Self::ReadAt { .. } => "read_at",
            Self::ReadvAt { .. } => "readv_at",
            Self::WriteAt { .. } => "write_at",
            Self::WritevAt { .. } => "writev_at",
            Self::Fsync { .. } => "fsync",
            Self::Fdatasync { .. } => "fdatasync",
            Self::Open { .. } => "open",
            Self::Statx { .. } => "statx",
            Self::Ftruncate { .. } => "ftruncate",
            Self::Fallocate { .. } => "fallocate",
            Self::Rename { .. } => "rename",
            Self::Unlink { .. } => "unlink",
        }
    }

    /// For the four transfer ops, the bytes asked for (a vectored op's windows or slices, added up).
    pub fn transfer_len(&self) -> Option<usize> {
        match self {
            Self::ReadAt { len, .. } => Some(*len),
            Self::ReadvAt { lens, .. } => Some(lens.iter().sum()),
            Self::WriteAt { data, .. } => Some(data.len()),
            Self::WritevAt { data, .. } => Some(data.iter().map(|d| d.len()).sum()),
            _ => None,
        }
    }
}

/// How an op goes on after [`EngineHook::before`]: with a ticket for [`EngineHook::after`], and maybe
/// a delay and a shorter transfer.
#[derive(Debug)]
#[must_use]
pub struct Proceed<T> {
    pub(super) ticket: T,
    pub(super) delay: Option<Duration>,
    pub(super) at_most: Option<usize>,
}

impl<T> Proceed<T> {
    /// The op runs as asked; `ticket` is handed to [`EngineHook::after`].
    pub fn new(ticket: T) -> Self {
        Self {
            ticket,
            delay: None,
            at_most: None,
        }
    }

    /// Waits `delay` (a tokio timer: the runtime needs its time driver) before the op reaches the inner
    /// engine.
    pub fn after_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// A read or write transfers at most `n` bytes: the inner engine gets the op cut to its first `n`
    /// bytes, and the caller gets its buffers back whole, as after a short transfer of the kernel. A
    /// vectored op keeps the buffers that hold those bytes (always the first one; the last one kept is
    /// narrowed) and gets the others back untouched. No effect on other ops, or if `n` is not shorter
    /// than the transfer.
    pub fn transfer_at_most(mut self, n: usize) -> Self {
        self.at_most = Some(n);
        self
    }

    /// The same decision with another ticket.
    pub(super) fn map_ticket<U>(self, f: impl FnOnce(T) -> U) -> Proceed<U> {
        Proceed {
            ticket: f(self.ticket),
            delay: self.delay,
            at_most: self.at_most,
        }
    }
}

/// What the inner engine returned for an op that succeeded, as [`EngineHook::after`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Completed<'a> {
    /// A read or write moved this many bytes (from the start of what [`EngineOp`] shows).
    Transferred(usize),
    /// `open` returned this descriptor.
    Opened(&'a IoFd),
    /// `statx` returned this.
    Stat(&'a FileStat),
    /// A sync, `ftruncate`, `fallocate`, `rename` or `unlink` succeeded.
    Done,
}

/// Code that runs around every op of a [`HookedEngine`](crate::HookedEngine).
///
/// Both calls run on the task that awaits the op, with no lock of the engine held. An op whose
/// `before` fails it never reaches the inner engine, and gets no `after`; neither does an op whose
/// future is dropped before the inner engine returned.
pub trait EngineHook: fmt::Debug + Send + Sync + 'static {
    /// What `before` hands to `after` for one op (for example where a recorder's log stood when the op
    /// was issued); `()` for a hook that needs nothing.
    type Ticket: Send + 'static;

    /// Called before `op` reaches the inner engine. `Err(e)` fails the op with `e` (its buffers are
    /// handed back untouched); `Ok` lets it go on as the [`Proceed`] says.
    fn before(&self, op: &EngineOp<'_>) -> io::Result<Proceed<Self::Ticket>>;

    /// Called when the inner engine returned `result` for `op` (the op as it ran). Does nothing by
    /// default.
    fn after(
        &self,
        op: &EngineOp<'_>,
        ticket: Self::Ticket,
        result: Result<Completed<'_>, &io::Error>,
    ) {
        let _ = (op, ticket, result);
    }
}
