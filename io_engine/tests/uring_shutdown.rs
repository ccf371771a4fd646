//! Shutdown of the io_uring engine with ops in flight: a dropped future's buffer lives until its
//! completion; dropping the last handle, or the runtime (and with it the reaper task), cancels what the
//! kernel can cancel and waits synchronously for the rest before anything is freed; no descriptor leaks.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use io_engine::{
    ConstAlign, FullSlice, IoBuf, IoBufMut, IoBufferMut, Slice, UringConfig, UringEngine,
};

mod common;
use common::{launch, open_fds, pipe, runtime, serial};

/// A buffer that counts its drops, to see when the engine frees a parked buffer.
struct CountedBuf {
    inner: IoBufferMut<ConstAlign<4096>>,
    drops: Arc<AtomicUsize>,
}

impl Drop for CountedBuf {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: delegates to `IoBufferMut`, which upholds the stable-pointer invariant; the wrapper neither
// moves nor reallocates the memory.
unsafe impl IoBuf for CountedBuf {
    fn stable_ptr(&self) -> *const u8 {
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
unsafe impl IoBufMut for CountedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.inner.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller's guarantee is passed on unchanged.
        unsafe { self.inner.set_init(pos) }
    }
}

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
    if let Ok(fd) = engine.open(&path, create, 0o644).await {
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
    // let every task submit
    tokio::time::sleep(Duration::from_millis(20)).await;
    (tasks, writers, bufs)
}

#[test]
fn parked_buffers_live_until_completion_and_last_handle_drains() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let fds_before = open_fds();
    let rt = runtime(true);
    rt.block_on(async {
        let Some(engine) = launch(UringConfig::default()) else {
            return;
        };
        let drops = Arc::new(AtomicUsize::new(0));
        let (tasks, mut writers, bufs) = start_slow_ops(&engine, dir.path(), 8, &drops).await;
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
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while bufs - drops.load(Ordering::SeqCst) >= parked {
            assert!(
                std::time::Instant::now() < deadline,
                "parked op never completed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
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
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
}

#[test]
fn runtime_drop_with_ops_in_flight_drains_and_shuts_down() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let fds_before = open_fds();
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = runtime(true);
    let started = rt.block_on(async {
        let engine = launch(UringConfig::default())?;
        let (tasks, writers, bufs) = start_slow_ops(&engine, dir.path(), 8, &drops).await;
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
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
}
