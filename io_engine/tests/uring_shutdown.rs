//! Shutdown of the io_uring engine with ops in flight: a dropped future's buffer lives until its
//! completion; dropping the last handle, or the runtime (and with it the reaper task), cancels what the
//! kernel can cancel and waits synchronously for the rest before anything is freed; no descriptor leaks.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Waker};

use io_engine::{FullSlice, IoBufferMut, RingFault, Slice, UringConfig, UringEngine};

mod common;
use common::{
    eventually, fixture, launch, launch_on, one_ring, pipe, runtime, serial, CountedBuf, HANG_GUARD,
};

/// Starts reads from `n` pipes (they stay in flight until something is written) and `O_DIRECT` writes
/// of 4 MiB each, all with counted buffers; returns the tasks, the pipes' write ends and the count of
/// buffers handed to the engine.
async fn start_slow_ops(
    engine: &UringEngine,
    dir: &Path,
    n: usize,
    drops: &Arc<AtomicUsize>,
) -> (Vec<tokio::task::JoinHandle<()>>, Vec<std::fs::File>, usize) {
    let mut tasks = Vec::new();
    let mut writers = Vec::new();
    let mut bufs = 0;
    let submitted_before = engine.stats().submitted;
    for _ in 0..n {
        let (r, w) = pipe();
        writers.push(w);
        let buf = CountedBuf {
            inner: IoBufferMut::with_capacity(64),
            drops: drops.clone(),
        };
        bufs += 1;
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let (buf, res) = engine.read_at(&r, 0, Slice::new(buf, ..)).await;
            // reached only if the pipe was written before the task was dropped
            assert_eq!(res.unwrap(), 5);
            assert_eq!(&buf.into_inner().inner[..], b"hello");
        }));
    }
    let path = dir.join("slow-direct");
    let create = libc::O_RDWR | libc::O_CREAT | libc::O_DIRECT;
    let opened = engine.open(&path, create, 0o644).await;
    let submitted_before = submitted_before + 1; // the open
    if let Ok(fd) = opened {
        let fd = Arc::new(fd);
        for i in 0..4u64 {
            let mut inner = IoBufferMut::with_capacity(4 << 20);
            inner.put_zeros(4 << 20);
            let buf = CountedBuf {
                inner,
                drops: drops.clone(),
            };
            bufs += 1;
            let (engine, fd) = (engine.clone(), fd.clone());
            tasks.push(tokio::spawn(async move {
                let (_, res) = engine.write_at(&fd, i << 22, FullSlice::new(buf)).await;
                res.unwrap();
            }));
        }
    } else {
        eprintln!("no O_DIRECT here: only pipe reads are in flight");
    }
    // Every op goes through the ring (`RWF_NOWAIT` on an empty pipe misses): wait until all are in.
    let want = submitted_before + bufs as u64;
    eventually("every op submitted", || engine.stats().submitted >= want).await;
    (tasks, writers, bufs)
}

#[test]
fn parked_buffers_live_until_completion_and_last_handle_drains() {
    let fx = fixture();
    let rt = runtime(true);
    rt.block_on(async {
        let Some(engine) = launch(UringConfig::default()) else {
            return;
        };
        // The pipe reads must stay parked (as ops the kernel cannot cancel would), for shutdown.
        engine.keep_dropped_ops_uncancelled();
        let drops = Arc::new(AtomicUsize::new(0));
        let (tasks, mut writers, bufs) = start_slow_ops(&engine, fx.dir.path(), 8, &drops).await;
        for t in &tasks {
            t.abort();
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let res = t.await;
            // the pipe reads (the first 8 tasks) cannot have finished; the writes may have
            if i < 8 {
                assert!(res.unwrap_err().is_cancelled());
            }
        }
        // The pipe reads are parked: their futures are gone, but the kernel still owns the buffers.
        let parked = bufs - drops.load(Ordering::SeqCst);
        assert!(
            parked >= 8,
            "pipe read buffers freed before their completion"
        );
        // Completing one read frees its buffer (through the reaper), not before.
        writers[0].write_all(b"hello").unwrap();
        eventually("the parked op completes", || {
            bufs - drops.load(Ordering::SeqCst) < parked
        })
        .await;
        // Dropping the last handle cancels and drains the rest synchronously.
        drop(engine);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            bufs,
            "parked buffers not freed at shutdown"
        );
        drop(writers);
    });
    drop(rt);
    fx.assert_no_leaked_fds();
}

#[test]
fn runtime_drop_with_ops_in_flight_drains_and_shuts_down() {
    let fx = fixture();
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = runtime(true);
    let started = rt.block_on(async {
        let engine = launch(UringConfig::default())?;
        engine.keep_dropped_ops_uncancelled();
        let (tasks, writers, bufs) = start_slow_ops(&engine, fx.dir.path(), 8, &drops).await;
        Some((engine, tasks, writers, bufs))
    });
    let Some((engine, tasks, writers, bufs)) = started else {
        return;
    };
    // A thread writes to half of the pipes while the runtime shuts down.
    let late = std::thread::spawn(move || {
        for mut w in writers.into_iter().step_by(2) {
            let _ = w.write_all(b"hello"); // EPIPE if its read end is already closed
        }
    });
    drop(tasks);
    drop(rt); // drops the reaper (synchronous drain) and the op futures (parked)
    late.join().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), bufs, "buffers not freed");
    // The handle outlived its runtime: it reports that it shut down, in any runtime.
    let rt2 = runtime(false);
    rt2.block_on(async {
        let (r, _w) = pipe();
        let (_, res) = engine.read_at(&r, 0, Slice::new(vec![0u8; 4], ..)).await;
        let err = res.unwrap_err();
        assert!(err.to_string().contains("shut down"), "{err}");
    });
    drop(engine);
    drop(rt2);
    fx.assert_no_leaked_fds();
}

#[test]
fn dropped_ops_that_never_complete_are_cancelled_and_give_their_slots_back() {
    let fx = fixture();
    let rt = runtime(false);
    rt.block_on(async {
        let Some(engine) = launch(one_ring(4)) else {
            return;
        };
        let drops = Arc::new(AtomicUsize::new(0));
        // Every slot taken by a read from an empty pipe, then every future dropped.
        let mut writers = Vec::new();
        for _ in 0..4 {
            let (r, w) = pipe();
            writers.push(w);
            let buf = CountedBuf {
                inner: IoBufferMut::with_capacity(64),
                drops: drops.clone(),
            };
            let mut fut = Box::pin(engine.read_at(&r, 0, Slice::new(buf, ..)));
            assert!(fut
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending());
            drop(fut);
        }
        let stats = engine.stats();
        assert_eq!(stats.cancels_submitted, 4, "{stats:?}");
        eventually("the cancelled ops complete", || {
            engine.stats().parked_slots == 0
        })
        .await;
        assert_eq!(
            drops.load(Ordering::SeqCst),
            4,
            "buffers freed after their CQE"
        );
        // New ops get slots: they do not wait forever.
        let reads = (0..8).map(|_| {
            let (r, mut w) = pipe();
            let engine = engine.clone();
            async move {
                let read = engine.read_at(&r, 0, Slice::new(vec![0u8; 8], ..));
                let mut read = std::pin::pin!(read);
                // in flight on the ring first, then the data comes
                let first =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx)));
                if let std::task::Poll::Ready((_, res)) = first.await {
                    panic!("read from an empty pipe completed: {res:?}");
                }
                w.write_all(b"hello").unwrap();
                let (_, res) = read.await;
                assert_eq!(res.unwrap(), 5);
            }
        });
        for read in reads {
            common::guarded("a read after the cancels", read).await;
        }
        assert_eq!(engine.stats().in_flight, 0);
        drop(writers);
    });
    drop(rt);
    fx.assert_no_leaked_fds();
}

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

#[test]
fn shutdown_waits_without_holding_the_ring_lock() {
    let _serial = serial();
    let rt = runtime(false);
    let Some(engine) = launch_on(&rt, one_ring(4)) else {
        return;
    };
    let (r, mut w) = pipe();
    let e = engine.clone();
    let mut fut: BoxFut = Box::pin(async move {
        let (buf, res) = e.read_at(&r, 0, Slice::new(vec![0u8; 8], ..)).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(&buf.into_inner()[..5], b"hello");
    });
    assert!(fut
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending());
    // A broken ring cannot send cancel requests: shutdown has to wait until the read completes (the
    // pipe is written). The next submitting call breaks it.
    engine.inject_ring_fault(RingFault::Broken { errno: libc::EBADF });
    // Dropping the runtime drops the reaper, which shuts the ring down and waits for the read.
    let shutdown = std::thread::spawn(move || drop(rt));
    let probe = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (fd_probe, _w_probe) = pipe();
    let started = std::time::Instant::now();
    loop {
        let res = probe.block_on(engine.fsync(&fd_probe));
        if res
            .as_ref()
            .is_err_and(|e| e.to_string().contains("shut down"))
        {
            break;
        }
        assert!(
            started.elapsed() < HANG_GUARD,
            "shutdown never started: {res:?}"
        );
        std::thread::yield_now();
    }
    // The shutdown thread is waiting for the read now. Polling the read takes the ring's lock: that
    // must not block.
    let (tx, rx) = mpsc::channel();
    let poller = std::thread::spawn(move || {
        let pending = fut
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending();
        tx.send(pending).unwrap();
        fut
    });
    let pending = rx
        .recv_timeout(HANG_GUARD)
        .expect("polling an op blocked while shutdown waits");
    assert!(pending, "the read cannot have completed: the pipe is empty");
    let mut fut = poller.join().unwrap();
    w.write_all(b"hello").unwrap();
    shutdown.join().unwrap();
    // Shutdown drained the read's completion: the future gets its data.
    assert!(fut
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready());
}
