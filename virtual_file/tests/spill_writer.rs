//! The buffered writer's spill mode on real files, every mode x engine: bytes stay in memory while the
//! budget has room, the oldest are written when it does not (the writer's own need, or another consumer
//! waiting), reads see the same bytes wherever they are, and the budget is never exceeded.

mod common;

use common::{io_matrix, write_matrix};
use rstest_reuse::apply;

use std::time::Duration;

use common::{engine, pattern};
use io_engine::{DefaultAlign, IoEngineKind};
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
use virtual_file::{Consumer, IoContext, IoMode, OpenOptions, VirtualFile};

const T: Duration = Duration::from_secs(120);
const CAP: usize = 64 * 1024;

fn context(mode: IoMode, kind: IoEngineKind, budget: usize) -> IoContext {
    IoContext::builder()
        .engine(engine(kind))
        .mode(mode)
        .memory_budget_bytes(budget)
        .build()
        .unwrap()
}

/// A spilling writer on a new file `dir/name`, and a reader of the same file.
async fn spill_writer(
    ctx: &IoContext,
    dir: &std::path::Path,
    name: &str,
) -> (BufferedWriter<VirtualFile>, VirtualFile) {
    let path = dir.join(name);
    let file = VirtualFile::create(ctx, &path).await.unwrap();
    let reader = VirtualFile::open_with_options(ctx, &path, OpenOptions::new().read(true))
        .await
        .unwrap();
    let opts = BufferedWriterOptions::default()
        .with_capacity(CAP)
        .with_spill(true);
    (BufferedWriter::new(file, opts).unwrap(), reader)
}

/// Reads `n` random ranges of the stream through read plans and compares them with `data`.
async fn check_reads(
    writer: &BufferedWriter<VirtualFile>,
    reader: &VirtualFile,
    data: &[u8],
    n: usize,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(data.len() as u64);
    for _ in 0..n {
        let offset = rng.random_range(0..data.len());
        let len = rng.random_range(0..=(data.len() - offset).min(3 * CAP));
        let plan = writer.read_plan(offset as u64, len).unwrap();
        let got = plan.execute(reader).await.unwrap();
        assert!(got == data[offset..offset + len], "range {offset}+{len}");
    }
}

/// Within the budget nothing reaches the file until shutdown; reads come from memory; shutdown writes it
/// all.
#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_budget_nothing_is_written_before_shutdown(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(T, async {
        let ctx = context(mode, kind, 8 << 20);
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, reader) = spill_writer(&ctx, dir.path(), "s").await;
        let data = pattern(20 * CAP + 777, 1);
        for chunk in data.chunks(10_000) {
            writer.write_buffered(chunk).await.unwrap();
        }
        assert_eq!(writer.retained_len(), 20 * CAP as u64);
        assert_eq!(writer.durable_end(), 0);
        assert_eq!(std::fs::metadata(dir.path().join("s")).unwrap().len(), 0);
        check_reads(&writer, &reader, &data, 200).await;
        let (end, file) = writer
            .shutdown(ShutdownMode::PadThenTruncate)
            .await
            .unwrap();
        assert_eq!(end, data.len() as u64);
        drop(file);
        assert!(std::fs::read(dir.path().join("s")).unwrap() == data);
        let s = ctx.memory_metrics();
        assert_eq!(s.current[Consumer::WriterBuffers], 0, "{s:?}");
    })
    .await
    .unwrap();
}

/// A budget smaller than the stream: the writer spills its oldest buffers, never holds more than the
/// budget, and every byte reads back right, from the file or from memory.
#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_budget_spills_the_oldest_buffers(mode: IoMode, kind: IoEngineKind) {
    tokio::time::timeout(T, async {
        let budget = 8 * CAP;
        let ctx = context(mode, kind, budget);
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, reader) = spill_writer(&ctx, dir.path(), "s").await;
        let data = pattern(64 * CAP + 4321, 2);
        for (i, chunk) in data.chunks(30_000).enumerate() {
            writer.write_buffered(chunk).await.unwrap();
            assert!(writer.retained_len() <= budget as u64);
            if i % 16 == 0 {
                check_reads(
                    &writer,
                    &reader,
                    &data[..writer.bytes_written() as usize],
                    10,
                )
                .await;
            }
        }
        assert!(
            writer.durable_end() >= (64 - 8) as u64 * CAP as u64,
            "the oldest buffers were written: {}",
            writer.durable_end()
        );
        assert!(writer.retained_len() > 0, "the newest stay in memory");
        check_reads(&writer, &reader, &data, 200).await;
        let (_, file) = writer
            .shutdown(ShutdownMode::PadThenTruncate)
            .await
            .unwrap();
        drop(file);
        assert!(std::fs::read(dir.path().join("s")).unwrap() == data);
        let s = ctx.memory_metrics();
        assert!(s.total_peak <= budget as u64, "{s:?}");
        assert_eq!(s.current[Consumer::WriterBuffers], 0, "{s:?}");
    })
    .await
    .unwrap();
}

/// A writer nobody appends to any more holds most of the budget: another consumer that waits for memory
/// makes it write its buffers and give the memory back (no deadlock), and its bytes still read back.
#[apply(write_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_spilling_writer_gives_memory_to_a_waiting_consumer(
    mode: IoMode,
    kind: IoEngineKind,
) {
    tokio::time::timeout(T, async {
        let budget = 16 * CAP;
        let ctx = context(mode, kind, budget);
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, reader) = spill_writer(&ctx, dir.path(), "s").await;
        let data = pattern(14 * CAP + 5, 3);
        writer.write_buffered(&data).await.unwrap();
        assert_eq!(writer.retained_len(), 14 * CAP as u64);
        // Another writer (not spilling) needs two buffers' worth, then a reader half the budget.
        let other = VirtualFile::create(&ctx, dir.path().join("o"))
            .await
            .unwrap();
        let mut other: BufferedWriter<VirtualFile> = BufferedWriter::new(
            other,
            BufferedWriterOptions::default().with_capacity(4 * CAP),
        )
        .unwrap();
        let other_data = pattern(12 * CAP, 4);
        other.write_buffered(&other_data).await.unwrap();
        let read = ctx
            .memory_budget()
            .reserve(Consumer::ReadBuffers, budget / 2)
            .await
            .unwrap();
        assert!(writer.durable_end() > 0, "the idle writer spilled");
        assert!(writer.retained_len() < 14 * CAP as u64);
        check_reads(&writer, &reader, &data, 100).await;
        drop(read);
        other.shutdown(ShutdownMode::PadThenTruncate).await.unwrap();
        assert!(std::fs::read(dir.path().join("o")).unwrap() == other_data);
        let s = ctx.memory_metrics();
        assert!(s.total_peak <= budget as u64, "{s:?}");
    })
    .await
    .unwrap();
}

/// `Discard` writes nothing more and gives the retained memory back at once; `DropTail` writes every
/// full buffer first.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_drops_the_retained_buffers(
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
    #[values(ShutdownMode::Discard, ShutdownMode::DropTail)] shutdown: ShutdownMode,
) {
    tokio::time::timeout(T, async {
        let ctx = context(IoMode::DirectRw, kind, 8 * CAP);
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, _reader) = spill_writer(&ctx, dir.path(), "s").await;
        let data = pattern(20 * CAP + 99, 5);
        writer.write_buffered(&data).await.unwrap();
        let durable = writer.durable_end();
        let (end, file) = writer.shutdown(shutdown).await.unwrap();
        drop(file);
        let on_disk = std::fs::read(dir.path().join("s")).unwrap();
        if shutdown == ShutdownMode::Discard {
            assert_eq!(end, durable, "nothing written after the call");
            assert_eq!(on_disk.len() as u64, durable);
        } else {
            assert_eq!(end, 20 * CAP as u64);
            assert!(on_disk == data[..20 * CAP]);
        }
        assert!(on_disk == data[..on_disk.len()]);
        assert_eq!(ctx.memory_metrics().current[Consumer::WriterBuffers], 0);
    })
    .await
    .unwrap();
}

/// Spill mode on a writer whose file names no budget is refused at construction.
#[tokio::test]
async fn spill_needs_a_budget() {
    struct NoBudget;
    impl virtual_file::buffered_writer::OwnedAsyncWriter for NoBudget {
        type Error = std::io::Error;
        async fn write_all_at<B: io_engine::IoBuf>(
            &self,
            buf: io_engine::FullSlice<B>,
            _offset: u64,
        ) -> (io_engine::FullSlice<B>, Result<(), std::io::Error>) {
            (buf, Ok(()))
        }
        async fn set_len(&self, _len: u64) -> Result<(), std::io::Error> {
            Ok(())
        }
    }
    let err = BufferedWriter::<_, DefaultAlign>::new(
        NoBudget,
        BufferedWriterOptions::default().with_spill(true),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("spill mode needs a file that names a memory budget"),
        "{err}"
    );
}
