//! [`HookedEngine`]: an engine that runs an [`EngineHook`] around every op of another engine (feature
//! `testing`). It forwards each op, so a hook holds only its own logic.
//!
//! This module and [`IoEngine`] sit on one floor: a hooked engine holds an [`IoEngine`], and
//! [`IoEngine::Hooked`] holds a hooked engine.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::dispatch::IoEngine;
use super::fd::IoFd;
use super::hook::{Completed, EngineHook, EngineOp, Proceed};
use super::rename::RenameMode;
use super::stat::FileStat;
use crate::buf::{FullSlice, IoBuf, IoBufMut, Slice};

/// An engine that calls a hook before and after each op of the engine it wraps; the hook may fail,
/// delay, shorten or record ops (see [`EngineHook`]). Made with [`IoEngine::hooked`]; cheap to clone.
///
/// # Example
///
/// A hook that fails every `fsync` after the first with `EIO` and counts the bytes written:
///
/// ```
/// use std::io;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use io_engine::{Completed, EngineHook, EngineOp, FullSlice, IoEngine, Proceed};
///
/// #[derive(Debug, Default)]
/// struct FlakySync {
///     syncs: AtomicU64,
///     written: AtomicU64,
/// }
///
/// impl EngineHook for FlakySync {
///     type Ticket = ();
///
///     fn before(&self, op: &EngineOp<'_>) -> io::Result<Proceed<()>> {
///         if let EngineOp::Fsync { .. } = op {
///             if self.syncs.fetch_add(1, Ordering::Relaxed) > 0 {
///                 return Err(io::Error::from_raw_os_error(libc::EIO));
///             }
///         }
///         Ok(Proceed::new(()))
///     }
///
///     fn after(&self, op: &EngineOp<'_>, _: (), result: Result<Completed<'_>, &io::Error>) {
///         if let (EngineOp::WriteAt { .. }, Ok(Completed::Transferred(n))) = (op, result) {
///             self.written.fetch_add(n as u64, Ordering::Relaxed);
///         }
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// # rt.block_on(async {
/// let hook = Arc::new(FlakySync::default());
/// let engine = IoEngine::hooked(IoEngine::std_fs(), hook.clone());
/// let dir = tempfile::tempdir()?;
/// let fd = Arc::new(engine.open(&dir.path().join("f"), libc::O_CREAT | libc::O_RDWR, 0o644).await?);
/// let (_, n) = engine.write_at(&fd, 0, FullSlice::new(b"abc".to_vec())).await;
/// assert_eq!(n?, 3);
/// engine.fsync(&fd).await?;
/// let err = engine.fsync(&fd).await.unwrap_err();
/// assert_eq!(err.raw_os_error(), Some(libc::EIO));
/// assert_eq!(hook.written.load(Ordering::Relaxed), 3);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # })
/// # }
/// ```
#[derive(Clone)]
pub struct HookedEngine {
    inner: Box<IoEngine>,
    hook: Arc<dyn ErasedHook>,
}

impl fmt::Debug for HookedEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookedEngine")
            .field("inner", &self.inner)
            .field("hook", &self.hook)
            .finish()
    }
}

/// A ticket with its type erased, so that [`IoEngine`] needs no type parameter for the hook.
type AnyTicket = Box<dyn Any + Send>;

/// [`EngineHook`] with the ticket type erased; implemented for every hook.
trait ErasedHook: fmt::Debug + Send + Sync {
    fn before(&self, op: &EngineOp<'_>) -> io::Result<Proceed<AnyTicket>>;
    fn after(
        &self,
        op: &EngineOp<'_>,
        ticket: AnyTicket,
        result: Result<Completed<'_>, &io::Error>,
    );
}

impl<H: EngineHook> ErasedHook for H {
    fn before(&self, op: &EngineOp<'_>) -> io::Result<Proceed<AnyTicket>> {
        EngineHook::before(self, op).map(|p| p.map_ticket(|t| Box::new(t) as AnyTicket))
    }

    fn after(
        &self,
        op: &EngineOp<'_>,
        ticket: AnyTicket,
        result: Result<Completed<'_>, &io::Error>,
    ) {
        let ticket = ticket
            .downcast::<H::Ticket>()
            .expect("the ticket comes from this hook's `before`");
        EngineHook::after(self, op, *ticket, result);
    }
}

/// The buffers of reads ([`Slice`]) and writes ([`FullSlice`]): a range of a buffer that a cut can
/// narrow and widen again, and how the hook sees them.
trait Window: Sized {
    fn range(&self) -> (usize, usize);
    fn with_range(self, begin: usize, end: usize) -> Self;
    /// Calls `f` with the op over `bufs` (one of them unless `vectored`).
    fn with_op<R>(
        bufs: &[Self],
        vectored: bool,
        fd: &IoFd,
        offset: u64,
        f: impl FnOnce(&EngineOp<'_>) -> R,
    ) -> R;
}

impl<B: IoBufMut> Window for Slice<B> {
    fn range(&self) -> (usize, usize) {
        (self.begin(), self.end())
    }
    fn with_range(self, begin: usize, end: usize) -> Self {
        Slice::new(self.into_inner(), begin..end)
    }
    fn with_op<R>(
        bufs: &[Self],
        vectored: bool,
        fd: &IoFd,
        offset: u64,
        f: impl FnOnce(&EngineOp<'_>) -> R,
    ) -> R {
        if vectored {
            let lens: Vec<usize> = bufs.iter().map(Slice::len).collect();
            f(&EngineOp::ReadvAt {
                fd,
                offset,
                lens: &lens,
            })
        } else {
            let len = bufs[0].len();
            f(&EngineOp::ReadAt { fd, offset, len })
        }
    }
}

impl<B: IoBuf> Window for FullSlice<B> {
    fn range(&self) -> (usize, usize) {
        (self.begin(), self.end())
    }
    fn with_range(self, begin: usize, end: usize) -> Self {
        FullSlice::with_range(self.into_inner(), begin..end)
    }
    fn with_op<R>(
        bufs: &[Self],
        vectored: bool,
        fd: &IoFd,
        offset: u64,
        f: impl FnOnce(&EngineOp<'_>) -> R,
    ) -> R {
        if vectored {
            let data: Vec<&[u8]> = bufs.iter().map(FullSlice::as_slice).collect();
            f(&EngineOp::WritevAt {
                fd,
                offset,
                data: &data,
            })
        } else {
            let data = bufs[0].as_slice();
            f(&EngineOp::WriteAt { fd, offset, data })
        }
    }
}

/// What [`cut`] took off a transfer, to put back after it.
struct Cut<S> {
    /// The end of the last buffer kept, if it was narrowed.
    narrowed_end: Option<usize>,
    /// The buffers held back.
    rest: Vec<S>,
}

/// Cuts the transfer over `bufs` to at most `n` bytes (see [`Proceed::transfer_at_most`]).
fn cut<S: Window>(bufs: &mut Vec<S>, n: usize) -> Cut<S> {
    let mut before = 0;
    let keep = bufs
        .iter()
        .enumerate()
        .take_while(|(i, b)| {
            let (begin, end) = b.range();
            let starts_before_n = *i == 0 || before < n;
            before += end - begin;
            starts_before_n
        })
        .count();
    let rest = bufs.split_off(keep);
    let mut narrowed_end = None;
    if let Some(last) = bufs.pop() {
        let (begin, end) = last.range();
        let kept_before: usize = bufs.iter().map(|b| b.range().1 - b.range().0).sum();
        let room = n.saturating_sub(kept_before);
        if end - begin > room {
            narrowed_end = Some(end);
            bufs.push(last.with_range(begin, begin + room));
        } else {
            bufs.push(last);
        }
    }
    Cut { narrowed_end, rest }
}

/// Puts back what [`cut`] took off.
fn uncut<S: Window>(bufs: &mut Vec<S>, cut: Cut<S>) {
    if let Some(end) = cut.narrowed_end {
        let last = bufs.pop().expect("the narrowed buffer comes back");
        let (begin, _) = last.range();
        bufs.push(last.with_range(begin, end));
    }
    bufs.extend(cut.rest);
}

/// The success values of the ops other than transfers, as the hook sees them.
trait OpOutput {
    fn completed(&self) -> Completed<'_>;
}

impl OpOutput for () {
    fn completed(&self) -> Completed<'_> {
        Completed::Done
    }
}

impl OpOutput for IoFd {
    fn completed(&self) -> Completed<'_> {
        Completed::Opened(self)
    }
}

impl OpOutput for FileStat {
    fn completed(&self) -> Completed<'_> {
        Completed::Stat(self)
    }
}

/// The four transfer ops of [`HookedEngine`]: `$method(fd, offset, $bufs)` runs the inner engine's
/// `$method` through the helper `$via` (one buffer or vectored), which calls the hook around it.
/// The inner future is boxed: [`IoEngine`] and [`HookedEngine`] hold each other, so its type is
/// recursive.
macro_rules! hooked_transfers {
    ($($method:ident<B: $bound:ident>($bufs:ident: $ty:ty) via $via:ident;)*) => {$(
        pub(super) async fn $method<B: $bound>(
            &self,
            fd: &Arc<IoFd>,
            offset: u64,
            $bufs: $ty,
        ) -> ($ty, io::Result<usize>) {
            self.$via(fd, offset, $bufs, |$bufs| {
                Box::pin(self.inner.$method(fd, offset, $bufs))
            })
            .await
        }
    )*};
}

/// The other ops of [`HookedEngine`]: `$method($args)` runs the inner engine's `$method` through
/// `HookedEngine::call`, the hook seeing `EngineOp::$op`, whose fields are the method's arguments.
/// Boxed as in `hooked_transfers`.
macro_rules! hooked_calls {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $out:ty as $op:ident;)*) => {$(
        pub(super) async fn $method(&self, $($arg: $ty),*) -> $out {
            let op = EngineOp::$op { $($arg),* };
            self.call(op, || Box::pin(self.inner.$method($($arg),*))).await
        }
    )*};
}

impl HookedEngine {
    /// Wraps `inner`, calling `hook` around each of its ops.
    pub fn new<H: EngineHook>(inner: IoEngine, hook: Arc<H>) -> Self {
        Self {
            inner: Box::new(inner),
            hook,
        }
    }

    /// The wrapped engine.
    pub fn inner(&self) -> &IoEngine {
        &self.inner
    }

    /// A read or write over `bufs` (one of them unless `vectored`), run by `run` on the inner engine.
    async fn transfer<S: Window, F>(
        &self,
        fd: &IoFd,
        offset: u64,
        mut bufs: Vec<S>,
        vectored: bool,
        run: impl FnOnce(Vec<S>) -> F,
    ) -> (Vec<S>, io::Result<usize>)
    where
        F: Future<Output = (Vec<S>, io::Result<usize>)>,
    {
        let proceed = match S::with_op(&bufs, vectored, fd, offset, |op| self.hook.before(op)) {
            Ok(p) => p,
            Err(e) => return (bufs, Err(e)),
        };
        if let Some(delay) = proceed.delay {
            tokio::time::sleep(delay).await;
        }
        let cut = proceed.at_most.map(|n| cut(&mut bufs, n));
        let (mut bufs, res) = run(bufs).await;
        let completed = res.as_ref().map(|&n| Completed::Transferred(n));
        S::with_op(&bufs, vectored, fd, offset, |op| {
            self.hook.after(op, proceed.ticket, completed)
        });
        if let Some(cut) = cut {
            uncut(&mut bufs, cut);
        }
        (bufs, res)
    }

    /// A read or write of one buffer (not vectored), run by `run` on the inner engine.
    async fn transfer_one<S: Window, F>(
        &self,
        fd: &IoFd,
        offset: u64,
        buf: S,
        run: impl FnOnce(S) -> F,
    ) -> (S, io::Result<usize>)
    where
        F: Future<Output = (S, io::Result<usize>)>,
    {
        let (mut bufs, res) = self
            .transfer(fd, offset, vec![buf], false, |mut bufs| async move {
                let buf = bufs.pop().expect("one buffer");
                let (buf, res) = run(buf).await;
                (vec![buf], res)
            })
            .await;
        (bufs.pop().expect("one buffer"), res)
    }

    /// A vectored read or write over `bufs`, run by `run` on the inner engine.
    async fn transfer_vectored<S: Window, F>(
        &self,
        fd: &IoFd,
        offset: u64,
        bufs: Vec<S>,
        run: impl FnOnce(Vec<S>) -> F,
    ) -> (Vec<S>, io::Result<usize>)
    where
        F: Future<Output = (Vec<S>, io::Result<usize>)>,
    {
        self.transfer(fd, offset, bufs, true, run).await
    }

    /// Any other op, run by `run` on the inner engine.
    async fn call<T: OpOutput, F>(&self, op: EngineOp<'_>, run: impl FnOnce() -> F) -> io::Result<T>
    where
        F: Future<Output = io::Result<T>>,
    {
        let proceed = self.hook.before(&op)?;
        if let Some(delay) = proceed.delay {
            tokio::time::sleep(delay).await;
        }
        let res = run().await;
        self.hook
            .after(&op, proceed.ticket, res.as_ref().map(OpOutput::completed));
        res
    }

    hooked_transfers! {
        read_at<B: IoBufMut>(buf: Slice<B>) via transfer_one;
        write_at<B: IoBuf>(buf: FullSlice<B>) via transfer_one;
        readv_at<B: IoBufMut>(bufs: Vec<Slice<B>>) via transfer_vectored;
        writev_at<B: IoBuf>(bufs: Vec<FullSlice<B>>) via transfer_vectored;
    }

    hooked_calls! {
        fsync(fd: &Arc<IoFd>) -> io::Result<()> as Fsync;
        fdatasync(fd: &Arc<IoFd>) -> io::Result<()> as Fdatasync;
        open(path: &Path, flags: libc::c_int, mode: libc::mode_t) -> io::Result<IoFd> as Open;
        statx(fd: &Arc<IoFd>) -> io::Result<FileStat> as Statx;
        ftruncate(fd: &Arc<IoFd>, len: u64) -> io::Result<()> as Ftruncate;
        fallocate(fd: &Arc<IoFd>, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()>
            as Fallocate;
        rename(from: &Path, to: &Path, mode: RenameMode) -> io::Result<()> as Rename;
        unlink(path: &Path) -> io::Result<()> as Unlink;
    }
}
