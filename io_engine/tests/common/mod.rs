//! Helpers shared by the io_engine test files.
//!
//! ## Rules these tests follow
//! - **io_uring that cannot start here.** Every io_uring test gets its engine through [`launch`] (or
//!   calls [`skip_without_uring`]). When io_uring cannot start on this machine, the test prints
//!   `skipped: ...` and returns early, *unless* the environment variable
//!   `VIRTUAL_FILE_REQUIRE_URING=1` is set ([`io_engine::env::require_uring`]): then it fails. libtest hides the output of passing tests,
//!   so a skip is invisible; CI sets the variable so that a machine without io_uring fails loudly
//!   instead of passing silently.
//! - **Descriptor counts.** A test that counts `/proc/self/fd` takes [`serial`] *first*, before
//!   anything that may open a descriptor (building a `UringConfig` reads cgroup files, tempdirs,
//!   runtimes), and every test of such a binary takes it too.
//! - **No timing assumptions.** Tests wait for a condition ([`eventually`]), never for a fixed time,
//!   and every wait is bounded by [`HANG_GUARD`] so that a bug fails the test instead of hanging it.

#![allow(dead_code, unused_macros)] // each test file uses a different subset (the template is a macro)

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

use io_engine::{ConstAlign, IoBufferMut, IoEngine, IoFd, Slice, UringConfig, UringEngine};

/// A test case for each engine: `#[apply(every_engine)]` on a test that takes `kind: IoEngineKind`.
#[rstest_reuse::template]
#[rstest::rstest]
pub fn every_engine(
    #[values(
        io_engine::IoEngineKind::StdFs,
        io_engine::IoEngineKind::TokioEpollUring
    )]
    kind: io_engine::IoEngineKind,
) {
}

/// The longest any wait in these tests may take before the test fails as hung.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The tests of one file run one at a time, so that counting `/proc/self/fd` is not disturbed by the
/// other tests of the same binary. Take it first.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

pub fn runtime(multi: bool) -> tokio::runtime::Runtime {
    if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// io_uring cannot start here because of `reason`: fails the test if `VIRTUAL_FILE_REQUIRE_URING=1`,
/// else prints the skip (the caller then returns).
pub fn skip_without_uring(reason: impl std::fmt::Display) {
    assert!(
        !io_engine::env::require_uring(),
        "{}=1, but io_uring cannot start here: {reason}",
        io_engine::env::REQUIRE_URING
    );
    eprintln!("skipped: io_uring cannot start here: {reason}");
}

/// The engine, or `None` after [`skip_without_uring`].
pub fn launch(config: UringConfig) -> Option<UringEngine> {
    match UringEngine::launch(config) {
        Ok(e) => Some(e),
        Err(e) => {
            skip_without_uring(e);
            None
        }
    }
}

/// [`launch`] inside `rt` (the engine needs a runtime to start), for tests that poll its ops by hand.
pub fn launch_on(rt: &tokio::runtime::Runtime, config: UringConfig) -> Option<UringEngine> {
    rt.block_on(async { launch(config) })
}

/// Waits until `cond` holds, checking every millisecond; fails after [`HANG_GUARD`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(HANG_GUARD, wait)
        .await
        .unwrap_or_else(|_| panic!("hung waiting for: {what}"));
}

/// `fut`, failing the test if it takes longer than [`HANG_GUARD`].
pub async fn guarded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

/// A pipe: (read end as an `IoFd`, write end).
pub fn pipe() -> (Arc<IoFd>, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: `pipe2` succeeded; both descriptors are new and owned only here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (Arc::new(IoFd::new(r, false)), std::fs::File::from(w))
}

/// A buffer that counts its drops, to see when the engine frees a parked buffer.
pub struct CountedBuf {
    pub inner: IoBufferMut<ConstAlign<4096>>,
    pub drops: Arc<AtomicUsize>,
}

impl Drop for CountedBuf {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

io_engine::forward_io_buf!(IoBuf, IoBufMut for CountedBuf => inner);

/// A `tracing` subscriber that counts `WARN` events ([`TestSubscriber::counting`]), or panics at every
/// event ([`TestSubscriber::panicking`]). No extra dependency needed.
pub struct TestSubscriber {
    warnings: Arc<AtomicUsize>,
    panics: bool,
}

impl TestSubscriber {
    /// Counts warnings into the returned counter.
    pub fn counting() -> (Self, Arc<AtomicUsize>) {
        let warnings = Arc::new(AtomicUsize::new(0));
        let subscriber = Self {
            warnings: warnings.clone(),
            panics: false,
        };
        (subscriber, warnings)
    }

    /// Panics at every event.
    pub fn panicking() -> Self {
        Self {
            warnings: Arc::new(AtomicUsize::new(0)),
            panics: true,
        }
    }
}

impl tracing::Subscriber for TestSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        assert!(!self.panics, "test subscriber panics at {event:?}");
        if *event.metadata().level() == tracing::Level::WARN {
            self.warnings.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` with a counting [`TestSubscriber`] as this thread's default; its output and the number of
/// warnings it logged.
pub fn count_warnings<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (subscriber, warnings) = TestSubscriber::counting();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, warnings.load(Ordering::SeqCst))
}

/// A temporary directory with the file `name` holding `contents` (the caller keeps the directory).
pub fn temp_file(name: &str, contents: &[u8]) -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

/// Empty `Vec` windows of the lengths `lens`, to read into.
pub fn vec_windows(lens: &[usize]) -> Vec<Slice<Vec<u8>>> {
    lens.iter()
        .map(|&len| Slice::new(Vec::with_capacity(len), ..len))
        .collect()
}

/// Reads from offset 0 into an empty `len`-byte window that a hook may cut short; checks that the
/// window comes back whole and returns the bytes read.
pub async fn read_cut_window(e: &IoEngine, fd: &Arc<IoFd>, len: usize) -> Vec<u8> {
    let (s, r) = e.read_at(fd, 0, vec_windows(&[len]).remove(0)).await;
    let n = r.unwrap();
    assert_eq!((s.begin(), s.end()), (0, len), "window restored");
    let bytes = s.into_inner();
    assert_eq!(bytes.len(), n);
    bytes
}

/// A temporary directory (kept by the caller) and the file `name` in it, created and opened read-write
/// through `e`.
pub async fn create_temp_file(
    e: &IoEngine,
    name: &str,
) -> (TempDir, std::path::PathBuf, Arc<IoFd>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let fd = Arc::new(
        e.open(&path, libc::O_RDWR | libc::O_CREAT, 0o644)
            .await
            .unwrap(),
    );
    (dir, path, fd)
}

/// The opening of a test that counts descriptors: the [`serial`] lock (taken first), a temporary
/// directory, and the count of open descriptors once both exist, for
/// [`Fixture::assert_no_leaked_fds`] at the end.
pub struct Fixture {
    pub dir: TempDir,
    fds_before: usize,
    /// The last field, so dropped last: removing `dir` opens descriptors, which the next test's
    /// count must not see.
    _serial: MutexGuard<'static, ()>,
}

pub fn fixture() -> Fixture {
    let serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let fds_before = open_fds();
    Fixture {
        dir,
        fds_before,
        _serial: serial,
    }
}

impl Fixture {
    /// The path `name` in the temporary directory.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// As many descriptors are open as when the fixture was made.
    pub fn assert_no_leaked_fds(&self) {
        assert_eq!(open_fds(), self.fds_before, "descriptors leaked");
    }
}

/// One ring of `entries` slots, without the `RWF_NOWAIT` fast path (build it after [`serial`]: the
/// default configuration reads cgroup files).
pub fn one_ring(entries: u32) -> UringConfig {
    UringConfig {
        entries,
        rings: 1,
        nowait_fast_path: false,
        ..Default::default()
    }
}

/// [`launch`], and the file `path` created and opened read-write through the engine; `None` after
/// [`skip_without_uring`].
pub async fn launch_with_file(
    config: UringConfig,
    path: &std::path::Path,
) -> Option<(UringEngine, Arc<IoFd>)> {
    let engine = launch(config)?;
    let create = libc::O_RDWR | libc::O_CREAT;
    let fd = Arc::new(engine.open(path, create, 0o644).await.unwrap());
    Some((engine, fd))
}
