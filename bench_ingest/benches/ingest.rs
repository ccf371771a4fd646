//! Criterion regression bench over the `bench_ingest` workload: a small volume through the in-memory layer
//! and out as a delta layer, for every IO mode x engine. For the full matrix with references and ratios,
//! run the `bench_ingest` binary.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use io_engine::{IoEngine, IoEngineKind};
use virtual_file::IoMode;

use bench_ingest::args::KeyLayout;
use bench_ingest::read_phase::ReadPhaseSpec;
use bench_ingest::workload::{run_case, CaseSpec};

const VOLUME_MIB: u64 = 8;

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(VOLUME_MIB << 20));
    for kind in [IoEngineKind::StdFs, IoEngineKind::TokioEpollUring] {
        let Ok(engine) = rt.block_on(async { IoEngine::launch(kind) }) else {
            eprintln!("{kind} cannot start here: skipped");
            continue;
        };
        for mode in [IoMode::Buffered, IoMode::Direct, IoMode::DirectRw] {
            for key_size in [100usize, 8192] {
                let spec = CaseSpec {
                    mode,
                    key_size,
                    layout: KeyLayout::Sequential,
                    volume_mib: VOLUME_MIB,
                    write_delta: true,
                    memory_mib: None,
                    keep_written_pages: true,
                    spill: true,
                    read_phase: ReadPhaseSpec {
                        secs: 0.0,
                        readers: 0,
                    },
                    scan_phase: false,
                };
                group.bench_function(format!("{mode}/{kind}/{key_size}"), |b| {
                    b.to_async(&rt).iter(|| async {
                        run_case(&engine, &spec, dir.path()).await.expect("case")
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
