//! `BufferedWriter` over real `VirtualFile`s: shutdown mode x IO mode x engine, the file's content and
//! length exactly as each mode promises; and read-while-writing through a real reader.

mod common;

use common::write_matrix;
use rstest_reuse::apply;

use common::{context, pattern};
use io_engine::{DefaultAlign, IoBufferMut, IoEngineKind, Slice};
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
use virtual_file::{IoMode, OpenOptions, VirtualFile};

const CAP: usize = 64 * 1024;

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_modes_on_real_files(
    #[values(
        ShutdownMode::DropTail,
        ShutdownMode::ZeroPadToNextMultiple(8192),
        ShutdownMode::PadThenTruncate,
        ShutdownMode::Discard
    )]
    shutdown: ShutdownMode,
    #[values(false, true)] spill: bool,
    #[values(IoMode::Buffered, IoMode::Direct, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
    #[values(0, 8192)] start: u64,
) {
    let ctx = context(mode, kind);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w");
    let file = VirtualFile::create(&ctx, &path).await.unwrap();
    let opts = BufferedWriterOptions::default()
        .with_capacity(CAP)
        .with_start_offset(start)
        .with_spill(spill);
    let mut writer = BufferedWriter::<_, DefaultAlign>::new(file, opts).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(start + 1);
    let mut written = Vec::new();
    while written.len() < 5 * CAP + 1234 {
        let n = rng
            .random_range(1..20_000)
            .min(5 * CAP + 1234 - written.len());
        let data = pattern(n, written.len() as u64);
        let off = writer.write_buffered(&data).await.unwrap();
        assert_eq!(off, start + written.len() as u64);
        written.extend_from_slice(&data);
    }
    let logical_end = start + written.len() as u64;
    let (end, file) = writer.shutdown(shutdown).await.unwrap();
    file.sync_all().await.unwrap();
    drop(file);
    let on_disk = std::fs::read(&path).unwrap();
    let full_buffers_end = start + (written.len() / CAP * CAP) as u64;
    match shutdown {
        // spill mode with room in the budget: nothing was written before `Discard`, and nothing is
        ShutdownMode::Discard if spill => {
            assert_eq!(end, start);
            assert_eq!(on_disk.len(), 0);
            return;
        }
        // otherwise every full buffer was handed to a write before `Discard`: the same bytes
        ShutdownMode::DropTail | ShutdownMode::Discard => {
            assert_eq!(end, full_buffers_end);
            assert_eq!(on_disk.len() as u64, full_buffers_end);
        }
        ShutdownMode::ZeroPadToNextMultiple(n) => {
            let padded = logical_end.next_multiple_of(n);
            assert_eq!(end, padded);
            assert_eq!(on_disk.len() as u64, padded);
            assert!(
                on_disk[logical_end as usize..].iter().all(|&b| b == 0),
                "zero padding"
            );
        }
        ShutdownMode::PadThenTruncate => {
            assert_eq!(end, logical_end);
            assert_eq!(
                on_disk.len() as u64,
                logical_end,
                "exactly the bytes written"
            );
        }
    }
    let kept = (end.min(logical_end) - start) as usize;
    assert_eq!(
        &on_disk[start as usize..start as usize + kept],
        &written[..kept]
    );
    assert!(on_disk[..start as usize].iter().all(|&b| b == 0));
}

#[apply(write_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_while_writing_through_a_real_reader(mode: IoMode, kind: IoEngineKind) {
    let ctx = context(mode, kind);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eph");
    let opts = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true);
    let file = VirtualFile::open_with_options(&ctx, &path, opts)
        .await
        .unwrap();
    let reader = VirtualFile::open(&ctx, &path).await.unwrap();
    let mut writer = BufferedWriter::<_, DefaultAlign>::new(
        file,
        BufferedWriterOptions::default().with_capacity(8192),
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut model = Vec::new();
    for step in 0..400u64 {
        let data = pattern(rng.random_range(1..3000), step);
        writer.write_buffered(&data).await.unwrap();
        model.extend_from_slice(&data);
        let a = rng.random_range(0..model.len());
        let b = rng.random_range(a..=model.len().min(a + 20_000));
        let plan = writer.read_plan(a as u64, b - a).unwrap();
        let got = plan.execute(&reader).await.unwrap();
        assert_eq!(got, &model[a..b], "step {step}: {a}..{b}");
    }
    let (_, file) = writer
        .shutdown(ShutdownMode::PadThenTruncate)
        .await
        .unwrap();
    let buf = IoBufferMut::<DefaultAlign>::with_capacity(model.len().next_multiple_of(512));
    let (s, res) = reader.read_at(Slice::new(buf, ..), 0).await;
    assert_eq!(res.unwrap(), model.len());
    assert_eq!(&s.into_inner()[..], &model[..]);
    drop(file);
}
