//! Sequential write of `BENCH_MIB` (1024) MiB through `BufferedWriter` in 8 KiB appends, then `sync_all`,
//! against a plain loop of `pwrite`s of the writer's block size plus `fsync` on the same file system, in
//! the same run: `buffered` (page cache) and `direct-rw` (`O_DIRECT`, for both), both engines, capacities
//! 64 KiB and 1 MiB. Runs alternate ours / reference and the median of `BENCH_REPEAT` (3) pairs is shown.
//!
//! `cargo bench -p virtual_file --bench buffered_writer`. Environment: `BENCH_DIR` (system temp dir),
//! `BENCH_MIB`, `BENCH_REPEAT`, `BENCH_CAPS_KIB` (`64,1024`), `BENCH_APPEND` (8192), `BENCH_MODES`
//! (`buffered,direct-rw`), `BENCH_ENGINE` (both).

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{bench_dir, env_or};
use io_engine::{ConstAlign, DefaultAlign, IoBufferMut, IoEngine, IoEngineKind};
use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
use virtual_file::{IoContext, IoMode, VirtualFile};

fn cpu_time() -> Duration {
    // SAFETY: `rusage` is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Run {
    wall: Duration,
    cpu: Duration,
}

fn evict(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        // SAFETY: advisory syscall on a valid descriptor.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

async fn ours(ctx: &IoContext, path: &Path, bytes: usize, cap: usize, append: usize) -> Run {
    let chunk: Vec<u8> = (0..append).map(|i| (i % 251) as u8).collect();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let file = VirtualFile::create(ctx, path).await.unwrap();
    let opts = BufferedWriterOptions::default().with_capacity(cap);
    let mut w = BufferedWriter::<_, DefaultAlign>::new(file, opts).unwrap();
    let mut done = 0;
    while done < bytes {
        w.write_buffered(&chunk).await.unwrap();
        done += append;
    }
    let (_, file) = w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap();
    file.sync_all().await.unwrap();
    let run = Run {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu0,
    };
    drop(file);
    evict(path);
    std::fs::remove_file(path).unwrap();
    run
}

fn reference(path: &Path, bytes: usize, block: usize, direct: bool) -> Run {
    let mut buf = IoBufferMut::<ConstAlign<4096>>::with_capacity(block);
    buf.extend_from_slice(&(0..block).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let cpu0 = cpu_time();
    let start = Instant::now();
    let flags = libc::O_WRONLY
        | libc::O_CREAT
        | libc::O_TRUNC
        | libc::O_CLOEXEC
        | if direct { libc::O_DIRECT } else { 0 };
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(cpath.as_ptr(), flags, 0o644) };
    assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
    let mut off = 0usize;
    while off < bytes {
        // SAFETY: `buf` holds `block` initialized, aligned bytes for the call.
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), block, off as libc::off_t) };
        assert_eq!(
            n,
            block as isize,
            "pwrite: {}",
            std::io::Error::last_os_error()
        );
        off += block;
    }
    // SAFETY: valid descriptor, closed once.
    unsafe {
        assert_eq!(libc::fsync(fd), 0);
        libc::close(fd);
    }
    let run = Run {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu0,
    };
    evict(path);
    std::fs::remove_file(path).unwrap();
    run
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = bench_dir();
    let mib: usize = env_or("BENCH_MIB", 1024);
    let repeat: usize = env_or("BENCH_REPEAT", 3);
    let append: usize = env_or("BENCH_APPEND", 8192);
    let caps: Vec<usize> = std::env::var("BENCH_CAPS_KIB")
        .unwrap_or_else(|_| "64,1024".into())
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
        .map(|k| k * 1024)
        .collect();
    let tmp = tempfile::tempdir_in(&dir).unwrap();
    let path = tmp.path().join("seq.dat");
    let bytes = mib << 20;
    println!(
        "buffered_writer: {mib} MiB in {append} B appends + sync_all, in {}; reference: pwrite loop of the \
         capacity + fsync; median of {repeat} alternating pairs; 2 tokio worker threads",
        dir.display()
    );
    println!(
        "{:<10} {:<18} {:>7} {:>9} {:>10} {:>9} {:>10} {:>7}",
        "mode", "engine", "cap KiB", "MiB/s", "CPU s/GiB", "ref MiB/s", "ref s/GiB", "ratio"
    );
    let mut engines = vec![IoEngine::std_fs()];
    match IoEngine::launch(IoEngineKind::TokioEpollUring) {
        Ok(e) => engines.push(e),
        Err(e) => println!("tokio-epoll-uring skipped: {e}"),
    }
    // warm-up: the first write after boot faults memory in lazily
    reference(&path, bytes.min(256 << 20), 1 << 20, false);
    let modes: Vec<IoMode> = std::env::var("BENCH_MODES")
        .unwrap_or_else(|_| "buffered,direct-rw".into())
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect();
    let only_engine: Option<IoEngineKind> = std::env::var("BENCH_ENGINE")
        .ok()
        .and_then(|e| e.parse().ok());
    engines.retain(|e| only_engine.is_none_or(|k| e.kind() == k));
    for mode in modes {
        for engine in &engines {
            let ctx = IoContext::builder()
                .engine(engine.clone())
                .mode(mode)
                .build()
                .unwrap();
            for &cap in &caps {
                let (mut o, mut r, mut ocpu, mut rcpu) = (vec![], vec![], vec![], vec![]);
                for _ in 0..repeat {
                    let a = ours(&ctx, &path, bytes, cap, append).await;
                    let b = reference(&path, bytes, cap, mode == IoMode::DirectRw);
                    let gib = bytes as f64 / (1u64 << 30) as f64;
                    o.push(mib as f64 / a.wall.as_secs_f64());
                    r.push(mib as f64 / b.wall.as_secs_f64());
                    ocpu.push(a.cpu.as_secs_f64() / gib);
                    rcpu.push(b.cpu.as_secs_f64() / gib);
                }
                let (o, r) = (median(o), median(r));
                println!(
                    "{:<10} {:<18} {:>7} {:>9.0} {:>10.2} {:>9.0} {:>10.2} {:>6.2}x",
                    mode.to_string(),
                    engine.kind().to_string(),
                    cap / 1024,
                    o,
                    median(ocpu),
                    r,
                    median(rcpu),
                    o / r
                );
            }
        }
    }
}
