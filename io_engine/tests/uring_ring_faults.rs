//! Injected `io_uring_enter` failures (feature `testing`): transient errnos are retried until the op
//! succeeds; a permanent one breaks the ring and the engine downgrades itself to `std-fs` live, with
//! in-flight ops completing, one warning, no hang and no leaked descriptor. Also: foreign code that
//! panics (a `tracing` subscriber, a waker's `clone`) while an op is being submitted or polled frees
//! no buffer the kernel may still use.

use std::future::{poll_fn, Future};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use io_engine::{
    ConstAlign, FullSlice, IoBufferMut, IoFd, RingFault, Slice, UringConfig, UringEngine,
};
use rstest::rstest;

mod common;
use common::{
    fixture, guarded, launch, launch_on, launch_with_file, one_ring, pipe, runtime, serial,
    CountedBuf, TestSubscriber,
};

const BLOCK: usize = 4096;

/// Everything through the ring: one ring of 4 slots, no inline fast paths.
fn config() -> UringConfig {
    UringConfig {
        inline_buffered_writes: false,
        ..one_ring(4)
    }
}

fn block(i: usize) -> IoBufferMut<ConstAlign<4096>> {
    let mut b = IoBufferMut::with_capacity(BLOCK);
    let byte = (i % 251) as u8;
    b.extend_from_slice(&[byte; BLOCK]);
    b
}

async fn write_and_check(engine: &UringEngine, fd: &Arc<IoFd>, i: usize) {
    let off = (i * BLOCK) as u64;
    let (_, res) = engine.write_at(fd, off, FullSlice::new(block(i))).await;
    assert_eq!(res.expect("write"), BLOCK, "block {i}");
    let buf = IoBufferMut::<ConstAlign<4096>>::with_capacity(BLOCK);
    let (buf, res) = engine.read_at(fd, off, Slice::new(buf, ..)).await;
    assert_eq!(res.expect("read"), BLOCK, "block {i}");
    assert_eq!(&buf.into_inner()[..], &block(i)[..], "block {i}");
}

#[rstest]
fn transient_enter_errors_are_retried_until_the_op_succeeds(
    #[values(libc::EAGAIN, libc::EBUSY, libc::EINTR, libc::ENOMEM)] errno: i32,
) {
    let fx = fixture();
    let rt = runtime(false);
    rt.block_on(guarded("transient faults", async {
        let Some((engine, fd)) = launch_with_file(config(), &fx.path("f")).await else {
            return;
        };
        for i in 0..4 {
            engine.inject_ring_fault(RingFault::Transient { errno, times: 3 });
            write_and_check(&engine, &fd, i).await;
        }
        let stats = engine.stats();
        assert!(!stats.downgraded, "{stats:?}");
        assert_eq!(stats.broken_rings, 0);
        assert_eq!(stats.in_flight, 0);
    }));
    drop(rt);
    fx.assert_no_leaked_fds();
}

#[test]
fn a_broken_ring_downgrades_live_with_one_warning_and_in_flight_ops_complete() {
    let fx = fixture();
    let (subscriber, warnings) = TestSubscriber::counting();
    // A current-thread runtime: every event of the engine happens on this thread.
    let rt = runtime(false);
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(guarded("broken ring", async {
            let Some((engine, fd)) = launch_with_file(config(), &fx.path("f")).await else {
                return;
            };
            // A read the kernel has consumed, waiting for data.
            let (r, mut w) = pipe();
            let mut in_flight = pin!(engine.read_at(&r, 0, Slice::new(vec![0u8; 8], ..)));
            let first = poll_fn(|cx| Poll::Ready(in_flight.as_mut().poll(cx))).await;
            assert!(first.is_pending());
            assert_eq!(engine.stats().in_flight, 1);

            engine.inject_ring_fault(RingFault::Broken { errno: libc::EBADF });
            for i in 0..16 {
                write_and_check(&engine, &fd, i).await;
            }
            let stats = engine.stats();
            assert!(stats.downgraded, "{stats:?}");
            assert!(engine.is_downgraded());
            assert!(io_engine::IoEngine::TokioEpollUring(engine.clone()).is_downgraded());
            assert_eq!(stats.broken_rings, 1, "{stats:?}");
            // The consumed read still completes through the ring.
            w.write_all(b"hello").unwrap();
            let (buf, res) = in_flight.await;
            assert_eq!(res.unwrap(), 5);
            assert_eq!(&buf.into_inner()[..5], b"hello");
            assert_eq!(engine.stats().in_flight, 0);
            // More ops, all on std-fs now.
            let submitted = engine.stats().submitted;
            engine.fsync(&fd).await.unwrap();
            assert_eq!(engine.stats().submitted, submitted);
        }));
    });
    drop(rt);
    assert_eq!(warnings.load(Ordering::SeqCst), 1, "one warning");
    fx.assert_no_leaked_fds();
}

#[test]
fn an_ingest_stream_keeps_going_across_a_broken_ring() {
    let fx = fixture();
    let path = fx.path("ingest");
    let rt = runtime(true);
    rt.block_on(guarded("ingest across a broken ring", async {
        let config = UringConfig {
            entries: 8,
            ..config()
        };
        let Some((engine, fd)) = launch_with_file(config, &path).await else {
            return;
        };
        let (tasks, per_task) = (8, 1250); // 10,000 writes, each read back
        let done = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (engine, fd, done) = (engine.clone(), fd.clone(), done.clone());
                tokio::spawn(async move {
                    for k in 0..per_task {
                        let i = k * tasks + t;
                        if t == 0 && k == per_task / 3 {
                            // mid-stream, while the other tasks have ops in the ring
                            engine.inject_ring_fault(RingFault::Broken {
                                errno: libc::EFAULT,
                            });
                        }
                        write_and_check(&engine, &fd, i).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), tasks * per_task);
        let stats = engine.stats();
        eprintln!("{stats:?}");
        assert!(stats.downgraded, "{stats:?}");
        assert!(stats.submitted > 0);
        assert_eq!(stats.in_flight, 0);
        let len = engine.statx(&fd).await.unwrap().size;
        assert_eq!(len, (tasks * per_task * BLOCK) as u64);
    }));
    drop(rt);
    let content = std::fs::read(&path).unwrap();
    for (i, chunk) in content.chunks(BLOCK).enumerate() {
        assert!(chunk.iter().all(|&b| b == (i % 251) as u8), "block {i}");
    }
    fx.assert_no_leaked_fds();
}

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A read of an empty pipe into a counted buffer, as a boxed future, and the pipe's write end.
fn counted_pipe_read(engine: &UringEngine, drops: &Arc<AtomicUsize>) -> (BoxFut, std::fs::File) {
    let (r, w) = pipe();
    let buf = CountedBuf {
        inner: IoBufferMut::with_capacity(64),
        drops: drops.clone(),
    };
    let engine = engine.clone();
    let fut: BoxFut = Box::pin(async move {
        let _ = engine.read_at(&r, 0, Slice::new(buf, ..)).await;
    });
    (fut, w)
}

#[test]
fn a_panicking_tracing_subscriber_during_submit_frees_no_buffer_early() {
    let _serial = serial();
    let rt = runtime(false);
    let Some(engine) = launch_on(&rt, config()) else {
        return;
    };
    // The dropped read must stay in flight until its data comes (no cancel), to see when it is freed.
    engine.keep_dropped_ops_uncancelled();
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut fut, mut w) = counted_pipe_read(&engine, &drops);
    // The submit fails for now: the SQE stays in the submission queue (the kernel may consume it at
    // any later enter) and a warning is logged, which panics.
    engine.inject_ring_fault(RingFault::Transient {
        errno: libc::EAGAIN,
        times: 1,
    });
    let polled = tracing::subscriber::with_default(TestSubscriber::panicking(), || {
        catch_unwind(AssertUnwindSafe(|| {
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        }))
    });
    assert!(polled.is_err(), "the subscriber's panic reaches the op");
    drop(fut);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the buffer was freed while its SQE was queued"
    );
    // The parked read is submitted (by the reaper's retry) and completes once the pipe has data; only
    // then is the buffer freed.
    rt.block_on(async {
        w.write_all(b"hello").unwrap();
        common::eventually("the parked read completes", || {
            drops.load(Ordering::SeqCst) == 1
        })
        .await;
    });
    let stats = engine.stats();
    assert_eq!((stats.in_flight, stats.parked_slots), (0, 0), "{stats:?}");
}

fn panicking_clone(_: *const ()) -> RawWaker {
    panic!("test waker panics in clone")
}
fn no_op(_: *const ()) {}
static PANICKY_CLONE: RawWakerVTable = RawWakerVTable::new(panicking_clone, no_op, no_op, no_op);

#[test]
fn a_waker_whose_clone_panics_breaks_nothing() {
    let _serial = serial();
    let rt = runtime(false);
    let Some(engine) = launch_on(&rt, config()) else {
        return;
    };
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut fut, w) = counted_pipe_read(&engine, &drops);
    // SAFETY: the vtable's functions ignore the data pointer; `clone` panics, the rest do nothing.
    let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &PANICKY_CLONE)) };
    let polled = catch_unwind(AssertUnwindSafe(|| {
        fut.as_mut().poll(&mut Context::from_waker(&waker))
    }));
    assert!(polled.is_err(), "the clone's panic reaches the op");
    // The ring's lock is free and the engine works: the read is still in flight (or parked).
    rt.block_on(guarded("ops after a panicking waker", async {
        let (r2, mut w2) = pipe();
        w2.write_all(b"hi").unwrap();
        let (_, res) = engine.read_at(&r2, 0, Slice::new(vec![0u8; 4], ..)).await;
        assert_eq!(res.unwrap(), 2);
        // Dropped (if the panic did not already drop its guard): parked and cancelled.
        drop(fut);
        common::eventually("the first read is done", || engine.stats().in_flight == 0).await;
    }));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(w);
}

#[test]
fn with_the_eventfd_always_on_inline_completions_still_work() {
    let fx = fixture();
    let rt = runtime(false);
    rt.block_on(guarded("eventfd always on", async {
        let Some(engine) = launch(config()) else {
            return;
        };
        // This kernel (5.8+) has cq_off.flags, so the window is used by default.
        assert!(engine.stats().eventfd_window);
        engine.disable_eventfd_window();
        assert!(!engine.stats().eventfd_window);
        let create = libc::O_RDWR | libc::O_CREAT;
        let fd = Arc::new(engine.open(&fx.path("f"), create, 0o644).await.unwrap());
        for i in 0..64 {
            write_and_check(&engine, &fd, i).await;
        }
        assert_eq!(engine.stats().in_flight, 0);
    }));
}
