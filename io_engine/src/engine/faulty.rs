//! Fault injection for tests (feature `testing`): a [`FaultPlan`] is an [`EngineHook`] that fails the
//! Nth read, write, fsync or open with an errno (`EIO`, `ENOSPC`, `EINTR`, ...), or turns it into a
//! short transfer. Everything else passes through to the inner engine. Wrap an engine with
//! `IoEngine::hooked(inner, plan.clone())`.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::hook::{EngineHook, EngineOp, Proceed};

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

/// Which class an op counts in.
fn class_of(op: &EngineOp<'_>) -> FaultOp {
    match op {
        EngineOp::ReadAt { .. } | EngineOp::ReadvAt { .. } => FaultOp::Read,
        EngineOp::WriteAt { .. } | EngineOp::WritevAt { .. } => FaultOp::Write,
        EngineOp::Fsync { .. } | EngineOp::Fdatasync { .. } => FaultOp::Sync,
        EngineOp::Open { .. } | EngineOp::Rename { .. } | EngineOp::Unlink { .. } => FaultOp::Open,
        EngineOp::Ftruncate { .. } | EngineOp::Fallocate { .. } => FaultOp::Truncate,
        EngineOp::Statx { .. } => FaultOp::Stat,
    }
}

/// How much of a transfer a [`Fault::Short`] lets through, or `None` if the op is not shortened: a
/// single read or write of more than 1 byte gets about half (see [`shorten`]), a vectored one of more
/// than one buffer only its first buffer.
fn short_transfer(op: &EngineOp<'_>) -> Option<usize> {
    match *op {
        EngineOp::ReadAt { fd, len, .. } if len > 1 => Some(shorten(len, fd.is_direct())),
        EngineOp::WriteAt { fd, data, .. } if data.len() > 1 => {
            Some(shorten(data.len(), fd.is_direct()))
        }
        EngineOp::ReadvAt { lens, .. } if lens.len() > 1 => Some(lens[0]),
        EngineOp::WritevAt { data, .. } if data.len() > 1 => Some(data[0].len()),
        _ => None,
    }
}

impl EngineHook for FaultPlan {
    type Ticket = ();

    fn before(&self, op: &EngineOp<'_>) -> io::Result<Proceed<()>> {
        match self.next(class_of(op)) {
            Some(Fault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(Fault::Short) => match short_transfer(op) {
                Some(n) => Ok(Proceed::new(()).transfer_at_most(n)),
                None => Ok(Proceed::new(())),
            },
            None => Ok(Proceed::new(())),
        }
    }
}
