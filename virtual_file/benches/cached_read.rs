//! The cost of a page-cache hit through `VirtualFile` (open-file cache, alignment checks, metrics, the
//! engine) against a bare `pread` of the same 8 KiB blocks, in the same run: one task, random blocks of a
//! warm file, `buffered` mode, both engines.
//!
//! `cargo bench -p virtual_file --bench cached_read`. Environment: `BENCH_DIR` (system temp dir),
//! `BENCH_FILE_MIB` (256), `BENCH_READS` (1,000,000 per case), `BENCH_ROUNDS` (3, alternating).

mod common;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{bench_dir, env_or};
use io_engine::{IoBufferMut, IoEngine, IoEngineKind, Slice};
use rand::{Rng, SeedableRng};
use virtual_file::{IoContext, IoMode, VirtualFile};

const BLOCK: usize = 8192;

fn offsets(n: usize, blocks: u64) -> Vec<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    (0..n)
        .map(|_| rng.random_range(0..blocks) * BLOCK as u64)
        .collect()
}

fn bare(path: &std::path::Path, offs: &[u64]) -> Duration {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; BLOCK];
    let start = Instant::now();
    for &off in offs {
        // SAFETY: `buf` holds BLOCK writable bytes for the call.
        let n = unsafe {
            libc::pread(
                f.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                BLOCK,
                off as libc::off_t,
            )
        };
        assert_eq!(n, BLOCK as isize);
    }
    start.elapsed()
}

async fn ours(file: &VirtualFile, offs: &[u64]) -> Duration {
    let mut buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(BLOCK);
    let start = Instant::now();
    for &off in offs {
        buf.clear();
        let (s, res) = file.read_exact_at(Slice::new(buf, ..), off).await;
        res.unwrap();
        buf = s.into_inner();
    }
    start.elapsed()
}

fn main() {
    let dir = bench_dir();
    let mib: usize = env_or("BENCH_FILE_MIB", 256);
    let reads: usize = env_or("BENCH_READS", 1_000_000);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let tmp = tempfile::tempdir_in(&dir).unwrap();
    let path = tmp.path().join("warm.dat");
    let mut data = vec![0u8; mib << 20];
    rand::rngs::StdRng::seed_from_u64(1).fill(&mut data[..]);
    std::fs::write(&path, &data).unwrap();
    drop(data);
    let _ = std::fs::read(&path).unwrap(); // warm the page cache
    let offs = offsets(reads, (mib * (1 << 20) / BLOCK) as u64);
    println!(
        "cached_read: {reads} random {BLOCK} B reads of a warm {mib} MiB file in {}, one task, {rounds} alternating rounds",
        dir.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for kind in [IoEngineKind::StdFs, IoEngineKind::TokioEpollUring] {
            let engine = match IoEngine::launch(kind) {
                Ok(e) => e,
                Err(e) => {
                    println!("{kind}: cannot start here ({e}); skipped");
                    continue;
                }
            };
            let ctx = IoContext::builder().engine(engine).mode(IoMode::Buffered).build().unwrap();
            let file = VirtualFile::open(&ctx, &path).await.unwrap();
            let mut ratios = Vec::new();
            for _ in 0..rounds {
                let b = bare(&path, &offs);
                let o = ours(&file, &offs).await;
                ratios.push(o.as_secs_f64() / b.as_secs_f64());
                println!(
                    "{kind:<18} VirtualFile {:>6.2} us/read   bare pread {:>6.2} us/read   ratio {:.2}x",
                    o.as_secs_f64() * 1e6 / reads as f64,
                    b.as_secs_f64() * 1e6 / reads as f64,
                    o.as_secs_f64() / b.as_secs_f64()
                );
            }
            ratios.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{kind}: page-cache hit through VirtualFile / bare pread, median {:.2}x (goal <= 1.5x)",
                ratios[ratios.len() / 2]
            );
        }
    });
}
