//! Foreign code the io_uring engine runs (wakers, the `Drop` of users' buffers, `IoBuf` methods) may
//! panic or re-enter the engine: no deadlock, no abort, no permit lost, no buffer freed early.
//!
//! Most tests poll op futures by hand, outside `block_on`, so that the reaper task does not run and the
//! test decides which call drains the completion queue.

use std::future::Future;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use io_engine::{FullSlice, IoBuf, IoBufMut, Slice, UringConfig, UringEngine};

mod common;
use common::{eventually, launch, launch_on, pipe, runtime, serial, skip_without_uring, temp_file};

const ENTRIES: u32 = 4;

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

fn config(nowait_fast_path: bool) -> UringConfig {
    UringConfig {
        entries: ENTRIES,
        nowait_fast_path,
        // these tests need buffered writes to go through the ring
        inline_buffered_writes: false,
        ..Default::default()
    }
}

fn poll_with(fut: &mut BoxFut, waker: &Waker) -> Poll<()> {
    fut.as_mut().poll(&mut Context::from_waker(waker))
}

/// A read of 5 bytes from a new pipe, as a boxed future, and the pipe's write end.
fn pipe_read(engine: &UringEngine) -> (BoxFut, std::fs::File) {
    let (r, w) = pipe();
    let engine = engine.clone();
    let fut = Box::pin(async move {
        let (buf, res) = engine.read_at(&r, 0, Slice::new(vec![0u8; 8], ..)).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(&buf.into_inner()[..5], b"hello");
    });
    (fut, w)
}

/// An op that completes inside its submit (a pipe with data), so its submit drains the queue.
fn completing_op(engine: &UringEngine) -> BoxFut {
    let (fut, mut w) = pipe_read(engine);
    w.write_all(b"hello").unwrap();
    fut
}

/// Every slot can still be taken: `ENTRIES` reads stay in flight at once (a lost permit would leave
/// the last one waiting for a slot, unsubmitted). Leaves them parked, for shutdown to cancel.
fn assert_all_slots_free(engine: &UringEngine) {
    let before = engine.stats().submitted;
    let mut held = Vec::new();
    for _ in 0..ENTRIES {
        let (mut fut, w) = pipe_read(engine);
        assert!(poll_with(&mut fut, Waker::noop()).is_pending());
        held.push((fut, w));
    }
    assert_eq!(
        engine.stats().submitted - before,
        u64::from(ENTRIES),
        "a slot permit was lost"
    );
}

struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("test waker panics in wake()");
    }
}

#[test]
fn a_waker_that_panics_reaches_the_op_that_woke_it_and_breaks_nothing() {
    let _serial = serial();
    let rt = runtime(false);
    let Some(engine) = launch_on(&rt, config(false)) else {
        return;
    };
    let (mut a, mut wa) = pipe_read(&engine);
    assert!(poll_with(&mut a, &Waker::from(Arc::new(PanickingWaker))).is_pending());
    wa.write_all(b"hello").unwrap();
    // The next op's submit drains A's completion and runs A's waker after its own bookkeeping.
    let mut b = completing_op(&engine);
    let res = catch_unwind(AssertUnwindSafe(|| poll_with(&mut b, Waker::noop())));
    assert!(
        res.is_err(),
        "the waker's panic should reach the op that ran it"
    );
    drop(b);
    // A's result is there for its next poll.
    assert!(poll_with(&mut a, Waker::noop()).is_ready());
    assert_all_slots_free(&engine);
    drop(engine);
    drop(rt);
}

/// What a waker does to its task inside `wake()`.
#[derive(Clone, Copy, Debug)]
enum OnWake {
    Drop,
    Poll,
}

struct ReentrantWaker {
    task: Mutex<Option<BoxFut>>,
    on_wake: OnWake,
    woken: AtomicBool,
}

impl Wake for ReentrantWaker {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        let mut task = self.task.lock().unwrap();
        match self.on_wake {
            OnWake::Drop => drop(task.take()),
            OnWake::Poll => {
                if let Some(fut) = task.as_mut() {
                    if poll_with(fut, Waker::noop()).is_ready() {
                        *task = None;
                    }
                }
            }
        }
    }
}

fn reentrant_task(engine: &UringEngine, on_wake: OnWake) -> (Arc<ReentrantWaker>, std::fs::File) {
    let (mut fut, w) = pipe_read(engine);
    let waker = Arc::new(ReentrantWaker {
        task: Mutex::new(None),
        on_wake,
        woken: AtomicBool::new(false),
    });
    assert!(poll_with(&mut fut, &Waker::from(waker.clone())).is_pending());
    *waker.task.lock().unwrap() = Some(fut);
    (waker, w)
}

#[test]
fn a_waker_may_drop_or_poll_its_task_inside_wake() {
    let _serial = serial();
    for on_wake in [OnWake::Drop, OnWake::Poll] {
        let rt = runtime(false);
        let Some(engine) = launch_on(&rt, config(false)) else {
            return;
        };
        // Woken by another op's submit.
        let (waker, mut w) = reentrant_task(&engine, on_wake);
        w.write_all(b"hello").unwrap();
        let mut b = completing_op(&engine);
        assert!(poll_with(&mut b, Waker::noop()).is_ready());
        assert!(waker.woken.load(Ordering::SeqCst), "{on_wake:?}");
        assert!(waker.task.lock().unwrap().is_none(), "{on_wake:?}");
        // Woken by the reaper (it used to deadlock the runtime thread).
        rt.block_on(async {
            let (waker, mut w) = reentrant_task(&engine, on_wake);
            w.write_all(b"hello").unwrap();
            eventually("the reaper wakes the task", || {
                waker.task.lock().unwrap().is_none()
            })
            .await;
        });
        assert_all_slots_free(&engine);
        drop(engine);
        drop(rt);
    }
}

/// A buffer whose `Drop` panics, and whose `stable_ptr` panics if `ptr_panics`.
/// Its `IoBuf` is hand-written (not `io_engine::forward_io_buf!`) for that panic.
struct NastyBuf {
    inner: Vec<u8>,
    ptr_panics: bool,
    drops: Arc<AtomicUsize>,
}

impl Drop for NastyBuf {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if !std::thread::panicking() {
            panic!("test buffer panics in Drop");
        }
    }
}

// SAFETY: delegates to `Vec<u8>`, which upholds the stable-pointer invariant; the wrapper neither moves
// nor reallocates the memory.
unsafe impl IoBuf for NastyBuf {
    fn stable_ptr(&self) -> *const u8 {
        assert!(!self.ptr_panics, "test buffer panics in stable_ptr");
        self.inner.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.inner.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.inner.bytes_total()
    }
}

// SAFETY: as above.
unsafe impl IoBufMut for NastyBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.inner.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller's guarantee is passed on unchanged.
        unsafe { self.inner.set_init(pos) }
    }
}

/// A read into a `NastyBuf` from a new pipe, polled once (in flight), then dropped (parked).
fn park_nasty_read(engine: &UringEngine, drops: &Arc<AtomicUsize>) -> std::fs::File {
    let dropped_before = drops.load(Ordering::SeqCst);
    let (r, w) = pipe();
    let buf = NastyBuf {
        inner: vec![0u8; 8],
        ptr_panics: false,
        drops: drops.clone(),
    };
    let engine = engine.clone();
    let mut fut: BoxFut = Box::pin(async move {
        let _ = engine.read_at(&r, 0, Slice::new(buf, ..)).await;
    });
    assert!(poll_with(&mut fut, Waker::noop()).is_pending());
    drop(fut);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        dropped_before,
        "parked buffer freed early"
    );
    w
}

#[test]
fn a_parked_buffer_whose_drop_panics_is_freed_only_after_its_completion() {
    let _serial = serial();
    let rt = runtime(false);
    let Some(engine) = launch_on(&rt, config(false)) else {
        return;
    };
    // The parked reads must wait for their data, not be cancelled right away.
    engine.keep_dropped_ops_uncancelled();
    let drops = Arc::new(AtomicUsize::new(0));

    // Finished by another op's submit: that op (already complete) gets the panic.
    let mut w = park_nasty_read(&engine, &drops);
    w.write_all(b"hello").unwrap();
    let mut b = completing_op(&engine);
    assert!(catch_unwind(AssertUnwindSafe(|| poll_with(&mut b, Waker::noop()))).is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(b);

    // Finished by the poll that also completes an in-flight op: its slot is already free when the
    // panic comes, and the op must not be parked into it (that used to abort).
    let mut w = park_nasty_read(&engine, &drops);
    let (mut c, mut wc) = pipe_read(&engine);
    assert!(poll_with(&mut c, Waker::noop()).is_pending());
    w.write_all(b"hello").unwrap();
    wc.write_all(b"hello").unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| poll_with(&mut c, Waker::noop()))).is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    drop(c);

    // Finished by the reaper: logged, and the reaper keeps going.
    let mut w = park_nasty_read(&engine, &drops);
    rt.block_on(async {
        w.write_all(b"hello").unwrap();
        eventually("the reaper finishes the parked op", || {
            drops.load(Ordering::SeqCst) == 3
        })
        .await;
        let (fut, mut w) = pipe_read(&engine);
        w.write_all(b"hello").unwrap();
        fut.await;
    });
    assert_all_slots_free(&engine);
    drop(engine);
    drop(rt);
}

#[test]
fn a_panic_while_preparing_the_sqe_gives_the_slot_back() {
    let _serial = serial();
    let rt = runtime(false);
    let Some(engine) = launch_on(&rt, config(false)) else {
        return;
    };
    let drops = Arc::new(AtomicUsize::new(0));
    let (_r, w) = pipe();
    let fd = Arc::new(io_engine::IoFd::new(w.into(), false));
    for _ in 0..ENTRIES + 1 {
        let buf = NastyBuf {
            inner: vec![1u8; 8],
            ptr_panics: true,
            drops: drops.clone(),
        };
        let engine = engine.clone();
        let fd = fd.clone();
        let mut fut: BoxFut = Box::pin(async move {
            let _ = engine.write_at(&fd, 0, FullSlice::new(buf)).await;
        });
        assert!(catch_unwind(AssertUnwindSafe(|| poll_with(&mut fut, Waker::noop()))).is_err());
    }
    assert_eq!(engine.stats().submitted, 0);
    assert_all_slots_free(&engine);
    drop(engine);
    drop(rt);
}

#[test]
fn a_page_cache_hit_through_the_ring_is_ready_on_the_first_poll() {
    let _serial = serial();
    let (_dir, path) = temp_file("cached", b"hello");
    let rt = runtime(false);
    let Some(engine) = launch_on(&rt, config(false)) else {
        return;
    };
    let fd = Arc::new(rt.block_on(engine.open(&path, libc::O_RDONLY, 0)).unwrap());
    let _ = std::fs::read(&path).unwrap(); // in the page cache
    let submitted = engine.stats().submitted;
    let engine2 = engine.clone();
    let mut fut: BoxFut = Box::pin(async move {
        let (buf, res) = engine2.read_at(&fd, 0, Slice::new(vec![0u8; 8], ..)).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(&buf.into_inner()[..5], b"hello");
    });
    // The reaper does not run here: only the submit itself can have completed the read.
    assert!(poll_with(&mut fut, Waker::noop()).is_ready());
    assert_eq!(engine.stats().submitted, submitted + 1);
    drop(engine);
    drop(rt);
}

#[test]
fn after_eopnotsupp_the_nowait_fast_path_is_skipped() {
    let _serial = serial();
    let (_dir, path) = temp_file("cached", b"hello");
    let rt = runtime(false);
    rt.block_on(async {
        let Some(engine) = launch(config(true)) else {
            return;
        };
        let proc_fd = std::fs::File::open("/proc/self/status").unwrap();
        let mut iov_buf = [0u8; 16];
        let iov = libc::iovec {
            iov_base: iov_buf.as_mut_ptr().cast(),
            iov_len: iov_buf.len(),
        };
        use std::os::fd::AsRawFd;
        // SAFETY: one iovec over a local array, valid for the call.
        let n = unsafe { libc::preadv2(proc_fd.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
        let err = std::io::Error::last_os_error();
        if n >= 0 || err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            eprintln!("skipped: RWF_NOWAIT on procfs does not give EOPNOTSUPP here ({n}, {err})");
            return;
        }
        let file = Arc::new(engine.open(&path, libc::O_RDONLY, 0).await.unwrap());
        let _ = std::fs::read(&path).unwrap();
        let read = |fd: Arc<io_engine::IoFd>| {
            let engine = engine.clone();
            async move {
                let (_, res) = engine.read_at(&fd, 0, Slice::new(vec![0u8; 8], ..)).await;
                res.unwrap()
            }
        };
        let submitted = || engine.stats().submitted;
        let s0 = submitted();
        assert_eq!(read(file.clone()).await, 5);
        assert_eq!(submitted(), s0, "a cached read takes the fast path");
        let proc_io = Arc::new(io_engine::IoFd::new(proc_fd.into(), false));
        assert!(read(proc_io).await > 0);
        assert_eq!(submitted(), s0 + 1, "EOPNOTSUPP sends the read to the ring");
        assert_eq!(read(file).await, 5);
        assert_eq!(submitted(), s0 + 2, "the fast path is no longer tried");
    });
}

#[test]
fn a_runtime_without_timers_is_a_start_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let res = rt.block_on(async { UringEngine::launch(UringConfig::default()) });
    match res {
        Err(io_engine::EngineStartError::NoRuntime(e)) => {
            assert!(e.to_string().contains("timers"), "{e}")
        }
        Err(e) => skip_without_uring(e),
        Ok(_) => panic!("launched without timers"),
    }
}
