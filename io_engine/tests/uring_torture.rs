//! Torture tests of the io_uring engine: futures dropped at random points while others run, more
//! concurrent ops than slots, several rings, the inline fast path. Afterwards data must be right, the
//! engine must still work and no descriptor may have leaked. Shutdown with ops in flight is tested in
//! `uring_shutdown.rs`.
//!
//! The tests in this file run one at a time (a shared lock), so that counting `/proc/self/fd` is not
//! disturbed by the other tests of this binary.

use std::collections::{BTreeSet, HashMap};
use std::future::{poll_fn, Future};
use std::io::Write;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use io_engine::{ConstAlign, FullSlice, IoBufferMut, IoFd, Slice, UringConfig, UringEngine};
use rand::{Rng, SeedableRng};

mod common;
use common::{eventually, fixture, guarded, launch, one_ring, pipe, runtime, serial, temp_file};

const BLOCK: usize = 4096;

/// The content of `block` at `version`: every byte derived from both.
fn block_data(block: usize, version: u64) -> IoBufferMut<ConstAlign<4096>> {
    let mut b = IoBufferMut::with_capacity(BLOCK);
    let seed = (block as u64) << 32 ^ version;
    b.extend_from_slice(
        &rand::rngs::StdRng::seed_from_u64(seed)
            .random::<[u8; 32]>()
            .repeat(BLOCK / 32),
    );
    b
}

async fn open(e: &UringEngine, path: &Path, flags: libc::c_int) -> Arc<IoFd> {
    Arc::new(e.open(path, flags, 0o644).await.expect("open"))
}

/// Runs `fut` to completion, or drops it at a random point: before its first poll, right after it,
/// after a zero or tiny timeout, or when a random sleep wins a `select!`.
async fn maybe_cancel<F: Future>(mode: u32, micros: u64, fut: F) -> Option<F::Output> {
    match mode {
        0 => Some(fut.await),
        1 => tokio::time::timeout(Duration::ZERO, fut).await.ok(),
        2 => {
            let mut fut = pin!(fut);
            match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            }
        }
        3 => tokio::select! {
            v = fut => Some(v),
            _ = tokio::time::sleep(Duration::from_micros(micros)) => None,
        },
        _ => tokio::time::timeout(Duration::from_micros(micros), fut)
            .await
            .ok(),
    }
}

/// What a block may hold: exactly one version while no write to it was ever cancelled; afterwards any
/// of the versions written to it (a cancelled write may still land at any later time).
#[derive(Clone, Debug)]
enum Model {
    Exact(u64),
    OneOf(BTreeSet<u64>),
}

impl Model {
    fn written(&mut self, version: u64, completed: bool) {
        *self = match std::mem::replace(self, Model::Exact(0)) {
            Model::Exact(_) if completed => Model::Exact(version),
            Model::Exact(old) => Model::OneOf([old, version].into()),
            Model::OneOf(mut set) => {
                set.insert(version);
                Model::OneOf(set)
            }
        };
    }

    /// Checks a read made while other ops may run: only a block with no cancelled write is checked,
    /// since a cancelled write may still be copying into the block (a torn read is then legitimate).
    fn check_live(&self, block: usize, got: &[u8]) {
        if let Model::Exact(_) = self {
            self.check(block, got);
        }
    }

    fn check(&self, block: usize, got: &[u8]) {
        let ok = match self {
            Model::Exact(v) => got == &block_data(block, *v)[..],
            Model::OneOf(set) => set.iter().any(|&v| got == &block_data(block, v)[..]),
        };
        assert!(ok, "block {block}: content matches none of {self:?}");
    }
}

/// Two files: one only ever accessed buffered, one only with `O_DIRECT` (mixing both on one file while
/// cancelled writes still run makes the kernel report page-cache collisions as `EIO` at the next fsync).
struct Shared {
    engine: UringEngine,
    files: Vec<(Arc<IoFd>, std::path::PathBuf)>,
}

/// One task: `iters` random ops on the blocks it owns (`block % tasks == task`, in each file), each
/// possibly dropped. Returns the model of its blocks (keyed by file and block) and how many ops were
/// dropped early.
async fn torture_task(
    s: Arc<Shared>,
    task: usize,
    tasks: usize,
    blocks: usize,
    iters: usize,
) -> (HashMap<(usize, usize), Model>, usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(task as u64);
    let mine: Vec<usize> = (task..blocks).step_by(tasks).collect();
    let mut model: HashMap<(usize, usize), Model> = (0..s.files.len())
        .flat_map(|f| mine.iter().map(move |&b| ((f, b), Model::Exact(0))))
        .collect();
    let mut cancelled = 0;
    for i in 0..iters {
        let block = mine[rng.random_range(0..mine.len())];
        let file = rng.random_range(0..s.files.len());
        let (fd, path) = &s.files[file];
        let key = (file, block);
        let off = (block * BLOCK) as u64;
        let mode = rng.random_range(0..5);
        let micros = rng.random_range(0..300);
        match rng.random_range(0..10) {
            0..=3 => {
                let version = ((task as u64) << 32) | (i as u64 + 1);
                let data = FullSlice::new(block_data(block, version));
                match maybe_cancel(mode, micros, s.engine.write_at(fd, off, data)).await {
                    Some((buf, res)) => {
                        assert_eq!(
                            res.expect("write"),
                            BLOCK,
                            "a block write is never short here"
                        );
                        assert_eq!(&buf.into_inner()[..], &block_data(block, version)[..]);
                        model.get_mut(&key).unwrap().written(version, true);
                    }
                    None => {
                        cancelled += 1;
                        model.get_mut(&key).unwrap().written(version, false);
                    }
                }
            }
            4..=6 => {
                let buf = IoBufferMut::<ConstAlign<4096>>::with_capacity(BLOCK);
                let read = s.engine.read_at(fd, off, Slice::new(buf, ..));
                if let Some((slice, res)) = maybe_cancel(mode, micros, read).await {
                    assert_eq!(res.expect("read"), BLOCK);
                    model[&key].check_live(block, &slice.into_inner());
                } else {
                    cancelled += 1;
                }
            }
            7 => {
                // vectored, split at a random 512-byte boundary (O_DIRECT-compatible)
                let cut = 512 * rng.random_range(1..BLOCK / 512);
                let bufs = vec![
                    Slice::new(IoBufferMut::<ConstAlign<4096>>::with_capacity(cut), ..),
                    Slice::new(
                        IoBufferMut::<ConstAlign<4096>>::with_capacity(BLOCK - cut),
                        ..,
                    ),
                ];
                let read = s.engine.readv_at(fd, off, bufs);
                if let Some((bufs, res)) = maybe_cancel(mode, micros, read).await {
                    assert_eq!(res.expect("readv"), BLOCK);
                    let got: Vec<u8> = bufs
                        .into_iter()
                        .flat_map(|b| b.into_inner().to_vec())
                        .collect();
                    model[&key].check_live(block, &got);
                } else {
                    cancelled += 1;
                }
            }
            8 => {
                // an open whose future may be dropped: the descriptor must still be closed
                match maybe_cancel(mode, micros, s.engine.open(path, libc::O_RDONLY, 0)).await {
                    Some(fd) => {
                        let fd = Arc::new(fd.expect("open"));
                        let st = s.engine.statx(&fd).await.expect("statx");
                        assert_eq!(st.size, (blocks * BLOCK) as u64);
                    }
                    None => cancelled += 1,
                }
            }
            _ => {
                let sync = async {
                    if i % 2 == 0 {
                        s.engine.fdatasync(fd).await
                    } else {
                        s.engine.fsync(fd).await
                    }
                };
                match maybe_cancel(mode, micros, sync).await {
                    Some(res) => res.expect("fsync"),
                    None => cancelled += 1,
                }
            }
        }
    }
    (model, cancelled)
}

/// `config` is built after the serial lock is taken: building one reads cgroup files (a descriptor that
/// another test's count would see).
fn cancellation_torture(
    config: impl FnOnce() -> UringConfig,
    multi: bool,
    tasks: usize,
    iters: usize,
) {
    let fx = fixture();
    let config = config();
    let paths = [fx.path("buffered"), fx.path("direct")];
    let blocks = 256;
    let mut initial = Vec::with_capacity(blocks * BLOCK);
    for b in 0..blocks {
        initial.extend_from_slice(&block_data(b, 0));
    }
    for p in &paths {
        std::fs::write(p, &initial).unwrap();
    }
    let rt = runtime(multi);
    let models = rt.block_on(guarded("the torture", async {
        let engine = launch(config.clone())?;
        let mut files = vec![(
            open(&engine, &paths[0], libc::O_RDWR).await,
            paths[0].clone(),
        )];
        match engine
            .open(&paths[1], libc::O_RDWR | libc::O_DIRECT, 0)
            .await
        {
            Ok(fd) => files.push((Arc::new(fd), paths[1].clone())),
            Err(e) => eprintln!("no O_DIRECT on this file system ({e}); buffered IO only"),
        }
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            files,
        });
        // First, with every slot free (so each is submitted), reads from an empty pipe dropped after one
        // poll: such a read cannot complete in that poll, so these drops (parked op, cancel request)
        // happen however fast the device completes the torture's own IO.
        let (pipe_r, _pipe_w) = pipe();
        let pipe_drops = iters;
        for _ in 0..pipe_drops {
            let read = engine.read_at(&pipe_r, 0, Slice::new(vec![0u8; 64], 0..64));
            let polled = maybe_cancel(2, 0, read).await;
            assert!(polled.is_none(), "a read from an empty pipe completed");
            tokio::task::yield_now().await;
        }
        let handles: Vec<_> = (0..tasks)
            .map(|t| tokio::spawn(torture_task(shared.clone(), t, tasks, blocks, iters)))
            .collect();
        let mut models = HashMap::new();
        let mut cancelled = 0;
        for h in handles {
            let (m, c) = h.await.expect("task");
            models.extend(m);
            cancelled += c;
        }
        // Every slot comes back: the parked ops complete (cancelled, or by themselves).
        eventually("every slot is free again", || engine.stats().in_flight == 0).await;
        let stats = engine.stats();
        eprintln!(
            "{tasks} tasks x {iters} ops, {cancelled} dropped early, {pipe_drops} pipe reads dropped, \
             {stats:?}"
        );
        assert_eq!(stats.parked_slots, 0, "{stats:?}");
        // How many of the torture's own ops are dropped in flight depends on the device: on tmpfs
        // O_DIRECT IO and fsync mostly complete inside the submit (a handful of drops), on a disk hundreds.
        // So the bound is on the pipe reads, each dropped while in flight: each got its cancel request.
        assert!(
            stats.cancels_submitted >= pipe_drops as u64,
            "every pipe read dropped in flight gets a cancel request: {stats:?}"
        );
        // the engine still works after all that
        let fd = &shared.files[0].0;
        let end = (blocks * BLOCK) as u64;
        let (_, res) = engine
            .write_at(fd, end, FullSlice::new(b"tail".to_vec()))
            .await;
        assert_eq!(res.unwrap(), 4);
        engine.ftruncate(fd, end).await.unwrap();
        Some(models)
    }));
    drop(rt);
    let Some(models) = models else { return };
    let contents: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for (&(file, b), m) in &models {
        assert_eq!(contents[file].len(), blocks * BLOCK);
        m.check(b, &contents[file][b * BLOCK..(b + 1) * BLOCK]);
    }
    fx.assert_no_leaked_fds();
}

#[test]
fn cancellation_torture_shared_ring_multi_thread() {
    let config = || UringConfig {
        entries: 16,
        nowait_fast_path: false,
        // buffered writes through the ring too, so they can be cancelled mid-flight
        inline_buffered_writes: false,
        ..Default::default()
    };
    cancellation_torture(config, true, 16, 120);
}

#[test]
fn cancellation_torture_current_thread_with_nowait() {
    cancellation_torture(
        || UringConfig {
            entries: 8,
            ..Default::default()
        },
        false,
        8,
        150,
    );
}

#[test]
fn cancellation_torture_three_rings() {
    let config = || UringConfig {
        entries: 8,
        rings: 3,
        nowait_fast_path: false,
        inline_buffered_writes: false,
    };
    cancellation_torture(config, true, 12, 100);
}

#[test]
fn back_pressure_ten_times_more_ops_than_slots() {
    let fx = fixture();
    let path = fx.path("bp");
    let rt = runtime(true);
    rt.block_on(guarded("back-pressure", async {
        // one ring: the slot counts below are per ring
        let Some(engine) = launch(one_ring(8)) else {
            return;
        };
        let create = libc::O_RDWR | libc::O_CREAT;
        let fd = match engine.open(&path, create | libc::O_DIRECT, 0o644).await {
            Ok(fd) => Arc::new(fd),
            Err(_) => open(&engine, &path, create).await,
        };
        let tasks = 96;
        let rounds = 4;
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (engine, fd) = (engine.clone(), fd.clone());
                tokio::spawn(async move {
                    for r in 0..rounds {
                        let block = t * rounds + r;
                        let off = (block * BLOCK) as u64;
                        let data = block_data(block, 7);
                        let (_, res) = engine.write_at(&fd, off, FullSlice::new(data)).await;
                        assert_eq!(res.unwrap(), BLOCK);
                        let buf = IoBufferMut::<ConstAlign<4096>>::with_capacity(BLOCK);
                        let (buf, res) = engine.read_at(&fd, off, Slice::new(buf, ..)).await;
                        assert_eq!(res.unwrap(), BLOCK);
                        assert_eq!(&buf.into_inner()[..], &block_data(block, 7)[..]);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let stats = engine.stats();
        eprintln!("{tasks} tasks on {} slots: {stats:?}", stats.slots_per_ring);
        assert_eq!(stats.slots_per_ring, 8);
        assert!(stats.submitted > (tasks * rounds * 2) as u64, "{stats:?}");

        // Deterministic back-pressure: reads from empty pipes never complete by themselves, so with
        // every task polled, exactly the 8 slots are in flight and the other tasks wait unsubmitted.
        let readers = 80;
        let before = engine.stats().submitted;
        let polled = Arc::new(AtomicUsize::new(0));
        let mut writers = Vec::new();
        let handles: Vec<_> = (0..readers)
            .map(|_| {
                let (r, w) = pipe();
                writers.push(w);
                let (engine, polled) = (engine.clone(), polled.clone());
                tokio::spawn(async move {
                    polled.fetch_add(1, Ordering::SeqCst);
                    let (buf, res) = engine.read_at(&r, 0, Slice::new(vec![0u8; 8], ..)).await;
                    assert_eq!(res.unwrap(), 2, "pipe read {:?}", engine.stats());
                    assert_eq!(&buf.into_inner()[..2], b"ok");
                })
            })
            .collect();
        eventually("every reader started", || {
            polled.load(Ordering::SeqCst) == readers
        })
        .await;
        eventually("all slots in flight", || engine.stats().in_flight == 8).await;
        // Let the waiting tasks run again: none may get a slot.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let stats = engine.stats();
        assert_eq!(stats.submitted - before, 8, "{stats:?}");
        assert_eq!(stats.max_in_flight, 8, "{stats:?}");
        for w in &mut writers {
            w.write_all(b"ok").unwrap();
        }
        for h in handles {
            guarded("a reader", h).await.unwrap();
        }
        assert_eq!(engine.stats().submitted - before, readers as u64);
        assert_eq!(engine.stats().in_flight, 0);
    }));
    drop(rt);
    fx.assert_no_leaked_fds();
}

#[test]
fn nowait_fast_path_skips_the_ring_only_for_cached_buffered_reads() {
    let _serial = serial();
    let (_dir, path) = temp_file("cached", &vec![42u8; 64 * 1024]);
    runtime(false).block_on(async {
        let Some(fast) = launch(UringConfig::default()) else {
            return;
        };
        let fd = open(&fast, &path, libc::O_RDONLY).await;
        let before = fast.stats().submitted;
        let (buf, res) = fast.read_at(&fd, 0, Slice::new(vec![0u8; 4096], ..)).await;
        assert_eq!((res.unwrap(), buf.into_inner()), (4096, vec![42u8; 4096]));
        let bufs = vec![Slice::new(Vec::with_capacity(10), ..10)];
        let (_, res) = fast.readv_at(&fd, 100, bufs).await;
        assert_eq!(res.unwrap(), 10);
        assert_eq!(
            fast.stats().submitted,
            before,
            "a page-cache hit went through the ring"
        );
        if let Ok(direct) = fast.open(&path, libc::O_RDONLY | libc::O_DIRECT, 0).await {
            let buf = IoBufferMut::<ConstAlign<4096>>::with_capacity(4096);
            let (_, res) = fast
                .read_at(&Arc::new(direct), 0, Slice::new(buf, ..))
                .await;
            assert_eq!(res.unwrap(), 4096);
            assert_eq!(
                fast.stats().submitted,
                before + 2,
                "open + O_DIRECT read use the ring"
            );
        }
        let Some(slow) = launch(UringConfig {
            nowait_fast_path: false,
            ..Default::default()
        }) else {
            return;
        };
        let (_, res) = slow.read_at(&fd, 0, Slice::new(vec![0u8; 4096], ..)).await;
        assert_eq!(res.unwrap(), 4096);
        assert_eq!(slow.stats().submitted, 1);
    });
}

#[test]
fn op_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let _serial = serial();
    runtime(false).block_on(async {
        let Some(e) = launch(UringConfig::default()) else {
            return;
        };
        let (fd, _w) = pipe();
        let engine = io_engine::IoEngine::TokioEpollUring(e);
        assert_send(&engine.read_at(&fd, 0, Slice::new(vec![0u8; 1], ..)));
        assert_send(&engine.readv_at(&fd, 0, vec![Slice::new(vec![0u8; 1], ..)]));
        assert_send(&engine.writev_at(&fd, 0, vec![FullSlice::new(vec![1u8])]));
        assert_send(&engine.statx(&fd));
        assert_send(&engine.open(Path::new("/"), libc::O_RDONLY, 0));
    });
}
