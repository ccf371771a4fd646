//! Shared by `cache_coherence.rs` and `cache_coherence_model.rs`: contexts, aligned writes, cached and
//! uncached reads that report a panic or a hang instead of aborting the binary, a future polled once and
//! dropped, [`quiesce`], and the check of a cached read against the file's real bytes; [`scan`]: scans
//! driven and checked for the model test.

#![allow(dead_code)]

pub mod scan;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use io_engine::{DefaultAlign, FullSlice, IoBufferMut, IoEngine, IoEngineKind, Slice};
use virtual_file::{Error, IoContext, IoMode, ReadIntent, VirtualFile, CACHE_PAGE_SIZE};

pub const PAGE: usize = CACHE_PAGE_SIZE;
/// Longest any single operation may take before it counts as a hang.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest [`quiesce`] waits for a dropped operation to finish in the kernel.
pub const QUIESCE_LIMIT: Duration = Duration::from_secs(5);
/// `ctx.alignment()` of every context made here.
pub const ALIGN: usize = 512;

/// Whether an io_uring op whose future is dropped gets a cancel request (the engine's default) or is
/// left to complete by itself, as an op the kernel cannot cancel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrop {
    Cancel,
    Complete,
}

/// A context of `mode` on a new engine of `kind`, aligned to [`ALIGN`], with `budget` bytes of memory
/// (the default when `None`) and `open_files` descriptor slots (the default when `None`).
pub fn context(
    mode: IoMode,
    kind: IoEngineKind,
    budget: Option<usize>,
    open_files: Option<usize>,
    on_drop: OnDrop,
) -> IoContext {
    let engine = crate::common::engine(kind);
    if let (OnDrop::Complete, IoEngine::TokioEpollUring(e)) = (on_drop, &engine) {
        e.keep_dropped_ops_uncancelled();
    }
    let mut b = IoContext::builder()
        .engine(engine)
        .mode(mode)
        .alignment(ALIGN);
    if let Some(bytes) = budget {
        b = b.memory_budget_bytes(bytes);
    }
    if let Some(n) = open_files {
        b = b.open_files(n);
    }
    b.build().expect("context")
}

/// Waits until no mutation of `file` (through any handle of this process) is still being performed,
/// also one whose future was dropped while the kernel had it; an error after [`QUIESCE_LIMIT`].
pub async fn try_quiesce(file: &VirtualFile) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + QUIESCE_LIMIT;
    loop {
        let n = file.mutations_in_flight();
        if n == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{n} mutation(s) of {} still in flight after {QUIESCE_LIMIT:?}",
                file.path().display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// [`try_quiesce`], failing the test on a timeout.
pub async fn quiesce(file: &VirtualFile) {
    if let Err(e) = try_quiesce(file).await {
        panic!("quiesce: {e}");
    }
}

/// How a guarded operation failed to return a value.
#[derive(Debug)]
pub enum Failure {
    Panic(String),
    Hang,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panic(msg) => write!(f, "panicked: {msg}"),
            Failure::Hang => write!(f, "did not return within {OP_TIMEOUT:?}"),
        }
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(not a string)".to_owned()
    }
}

/// Polls the inner future inside `catch_unwind`: a panic becomes an output.
struct CatchUnwind<'a, T>(Pin<Box<dyn Future<Output = T> + 'a>>);

impl<T> Future for CatchUnwind<'_, T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(panic_message(p.as_ref()))),
        }
    }
}

/// `fut` under [`OP_TIMEOUT`], with a panic caught: a panic or a hang is a [`Failure`], not an abort.
pub async fn guarded<'a, T>(fut: impl Future<Output = T> + 'a) -> Result<T, Failure> {
    match tokio::time::timeout(OP_TIMEOUT, CatchUnwind(Box::pin(fut))).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(Failure::Panic(msg)),
        Err(_) => Err(Failure::Hang),
    }
}

/// [`guarded`], failing the test with `what` on a panic or a hang.
pub async fn must_return<'a, T>(
    what: impl std::fmt::Display,
    fut: impl Future<Output = T> + 'a,
) -> T {
    match guarded(fut).await {
        Ok(v) => v,
        Err(f) => panic!("{what} {f}"),
    }
}

/// Polls `fut` exactly once and drops it: `Some` with its output if that one poll completed it.
pub async fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// `write_all_at` of `data` at `offset` from a page-aligned buffer; with `skew`, the bytes start `skew`
/// bytes into the buffer (a misaligned address for `O_DIRECT`).
pub async fn write_at(f: &VirtualFile, offset: u64, data: &[u8], skew: usize) -> Result<(), Error> {
    let mut buf = IoBufferMut::<DefaultAlign>::with_capacity((skew + data.len()).max(1));
    buf.resize(skew);
    buf.extend_from_slice(data);
    f.write_all_at(FullSlice::with_range(buf, skew..), offset)
        .await
        .1
}

/// `read_exact_at` of `len` bytes at `offset` into a page-aligned buffer.
pub async fn read_uncached(f: &VirtualFile, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    let buf = IoBufferMut::<DefaultAlign>::with_capacity(len.max(1));
    let (s, res) = f.read_exact_at(Slice::new(buf, 0..len), offset).await;
    res.map(|()| s.into_inner().as_slice()[..len].to_vec())
}

/// `read_cached_at` of `len` bytes at `offset`.
pub async fn read_cached(f: &VirtualFile, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    read_cached_with(f, offset, len, ReadIntent::Point).await
}

/// `read_cached_at_with` of `len` bytes at `offset` with `intent`.
pub async fn read_cached_with(
    f: &VirtualFile,
    offset: u64,
    len: usize,
    intent: ReadIntent,
) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; len];
    f.read_cached_at_with(offset, &mut out, intent)
        .await
        .map(|()| out)
}

/// What a read returned, compared with the file's real bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadCheck {
    Good,
    /// Bytes that are not the file's: the first differing position (file offset), ours and the file's.
    Stale {
        at: u64,
        got: u8,
        real: u8,
    },
    /// `UnexpectedEof` for a range that the file holds whole.
    SpuriousEof,
    /// Bytes returned for a range that ends past the end of the file.
    MissedEof,
    /// Any other error.
    OtherError(String),
}

impl ReadCheck {
    pub fn is_good(&self) -> bool {
        *self == ReadCheck::Good
    }
}

/// Checks `res`, a read of `len` bytes at `offset`, against `real` (the whole file): the bytes when the
/// range lies within the file, an `UnexpectedEof` error exactly when it ends past its end.
pub fn check_read(res: &Result<Vec<u8>, Error>, real: &[u8], offset: u64, len: usize) -> ReadCheck {
    let past_end = offset.saturating_add(len as u64) > real.len() as u64;
    match res {
        Ok(_) if past_end => ReadCheck::MissedEof,
        Ok(got) => {
            let want = &real[offset as usize..offset as usize + len];
            if got[..] == *want {
                return ReadCheck::Good;
            }
            match got.iter().zip(want).position(|(a, b)| a != b) {
                None => ReadCheck::Good,
                Some(i) => ReadCheck::Stale {
                    at: offset + i as u64,
                    got: got[i],
                    real: want[i],
                },
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            if past_end {
                ReadCheck::Good
            } else {
                ReadCheck::SpuriousEof
            }
        }
        Err(e) => ReadCheck::OtherError(e.to_string()),
    }
}

/// The file's bytes as `std::fs` reads them (the kernel's view, through no cache of ours).
pub fn real(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("std::fs::read {}: {e}", path.display()))
}

/// `len` bytes from `seed`: a different pattern for every seed (block-wise: byte-wise generation is
/// slow in debug builds).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut out = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}
