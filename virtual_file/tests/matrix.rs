//! Every positional API of `VirtualFile` in every IO mode x engine.

mod common;

use common::{every_engine, io_matrix, write_matrix};
use rstest_reuse::apply;

use common::{context, fds_under, pattern};
use io_engine::{FullSlice, IoBufferMut, IoEngineKind, Slice};
use rstest::rstest;
use virtual_file::{Error, IoMode, MisalignedPart, OpenOptions, VirtualFile};

const ALIGN: usize = 512;

#[apply(io_matrix)]
#[tokio::test]
async fn positional_round_trips(mode: IoMode, kind: IoEngineKind) {
    let ctx = context(mode, kind);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let file = VirtualFile::create(&ctx, &path).await.unwrap();
    assert_eq!(file.is_direct(), mode == IoMode::DirectRw, "{mode}");
    let mut model: Vec<u8> = Vec::new();
    // sizes from 0 to several MiB, at aligned offsets (so every mode accepts them)
    for (i, (offset, len)) in [
        (0usize, 0usize),
        (0, 512),
        (4096, 8192),
        (512, 1 << 20),
        (3 << 20, 4 << 20),
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(len, i as u64);
        let mut buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(len);
        buf.extend_from_slice(&data);
        let (_, res) = file.write_all_at(FullSlice::new(buf), offset as u64).await;
        res.unwrap();
        if model.len() < offset + len {
            model.resize(offset + len, 0);
        }
        model[offset..offset + len].copy_from_slice(&data);
    }
    file.sync_all().await.unwrap();
    file.sync_data().await.unwrap();
    assert_eq!(file.metadata().await.unwrap().size, model.len() as u64);

    // read back through a read-only open (O_DIRECT in `direct` and `direct-rw`)
    let reader = VirtualFile::open(&ctx, &path).await.unwrap();
    assert_eq!(reader.is_direct(), mode.uses_direct(false));
    for (offset, len) in [
        (0usize, 512usize),
        (4096, 8192),
        (1 << 20, 2 << 20),
        (0, model.len()),
    ] {
        let buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(len);
        let (s, res) = reader
            .read_exact_at(Slice::new(buf, ..), offset as u64)
            .await;
        res.unwrap();
        assert_eq!(
            &s.into_inner()[..],
            &model[offset..offset + len],
            "{offset}+{len}"
        );
    }

    // reads that straddle end of file: read_at is short, read_exact_at is UnexpectedEof
    let eof = model.len();
    let buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(2 * ALIGN);
    let (s, res) = reader
        .read_at(Slice::new(buf, ..), (eof - ALIGN) as u64)
        .await;
    assert_eq!(res.unwrap(), ALIGN);
    assert_eq!(&s.into_inner()[..], &model[eof - ALIGN..]);
    let buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(2 * ALIGN);
    let (_, res) = reader
        .read_exact_at(Slice::new(buf, ..), (eof - ALIGN) as u64)
        .await;
    assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    let buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(ALIGN);
    let (_, res) = reader
        .read_at(Slice::new(buf, ..), (eof + 4096) as u64)
        .await;
    assert_eq!(res.unwrap(), 0, "read past end of file");

    // set_len to an unaligned length works in every mode
    file.set_len(eof as u64 - 100).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), eof as u64 - 100);
    file.fallocate(0, 0, 1 << 20).await.unwrap();
}

#[rstest]
#[tokio::test]
async fn unaligned_io_in_buffered_files(
    #[values(IoMode::Buffered, IoMode::Direct)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    // `buffered` and `direct` write through the page cache: any offset, length and buffer work
    let ctx = context(mode, kind);
    let dir = tempfile::tempdir().unwrap();
    let file = VirtualFile::create(&ctx, dir.path().join("f"))
        .await
        .unwrap();
    let data = pattern(1001, 7);
    let (_, res) = file.write_all_at(FullSlice::new(data.clone()), 3).await;
    res.unwrap();
    let (s, res) = file
        .read_exact_at(Slice::new(Vec::with_capacity(1001), ..), 3)
        .await;
    res.unwrap();
    assert_eq!(s.into_inner(), data);
}

#[apply(io_matrix)]
#[tokio::test]
async fn o_direct_flag_follows_the_table(mode: IoMode, kind: IoEngineKind) {
    let ctx = context(mode, kind);
    let dir = tempfile::tempdir().unwrap();
    let wpath = dir.path().join("written");
    let writer = VirtualFile::create(&ctx, &wpath).await.unwrap();
    let reader = VirtualFile::open(&ctx, &wpath).await.unwrap();
    let fds = fds_under(dir.path());
    assert_eq!(fds.len(), 2, "{fds:?}");
    let write_fd = fds
        .iter()
        .find(|(_, _, fl)| fl & libc::O_ACCMODE as u32 == libc::O_RDWR as u32)
        .unwrap();
    let read_fd = fds
        .iter()
        .find(|(_, _, fl)| fl & libc::O_ACCMODE as u32 == libc::O_RDONLY as u32)
        .unwrap();
    let direct = libc::O_DIRECT as u32;
    assert_eq!(
        write_fd.2 & direct != 0,
        mode.uses_direct(true),
        "write open in {mode}"
    );
    assert_eq!(
        read_fd.2 & direct != 0,
        mode.uses_direct(false),
        "read-only open in {mode}"
    );
    drop((writer, reader));
}

#[apply(every_engine)]
#[tokio::test]
async fn misaligned_direct_io_is_refused_before_any_syscall(kind: IoEngineKind) {
    let ctx = context(IoMode::DirectRw, kind);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let file = VirtualFile::create(&ctx, &path).await.unwrap();
    let original = pattern(4096, 1);
    let (_, res) = file
        .write_all_at(
            FullSlice::new(IoBufferMut::<io_engine::DefaultAlign>::from_slice(
                &original,
            )),
            0,
        )
        .await;
    res.unwrap();

    let aligned = || IoBufferMut::<io_engine::DefaultAlign>::from_slice(&[0xAB; 1024]);
    let expect = |res: Result<(), Error>, want: MisalignedPart| match res {
        Err(Error::Misaligned {
            part,
            align,
            ref path,
            ..
        }) => {
            assert_eq!(part, want);
            assert_eq!(align, 512);
            assert!(path.ends_with("f"));
        }
        other => panic!("expected Misaligned {want}, got {other:?}"),
    };
    // offset
    let (_, res) = file.write_all_at(FullSlice::new(aligned()), 100).await;
    expect(res, MisalignedPart::Offset);
    // length
    let (_, res) = file
        .write_all_at(FullSlice::with_range(aligned(), ..1000), 0)
        .await;
    expect(res, MisalignedPart::Length);
    // buffer address: a frozen buffer sliced at +1 is no longer aligned
    let frozen = IoBufferMut::<io_engine::DefaultAlign>::from_slice(&[0xCD; 1025]).freeze();
    let (_, res) = file
        .write_all_at(FullSlice::new(frozen.slice(1..)), 0)
        .await;
    expect(res, MisalignedPart::Buffer);
    // reads too
    let (_, res) = file
        .read_exact_at(
            Slice::new(
                IoBufferMut::<io_engine::DefaultAlign>::with_capacity(512),
                ..,
            ),
            1,
        )
        .await;
    expect(res, MisalignedPart::Offset);
    let (_, res) = file.read_exact_at(Slice::new(vec![0u8; 700], ..), 0).await;
    expect(res, MisalignedPart::Length);

    assert_eq!(std::fs::read(&path).unwrap(), original, "file unchanged");
    let m = ctx.metrics();
    assert_eq!(
        m.ops[virtual_file::OpKind::Write].count,
        1,
        "refused writes never reached the engine"
    );
}

#[apply(every_engine)]
#[tokio::test]
async fn open_errors_carry_context(kind: IoEngineKind) {
    let ctx = context(IoMode::Buffered, kind);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = VirtualFile::open(&ctx, &missing).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(
        msg.contains("missing") && msg.contains("buffered") && msg.contains(&kind.to_string()),
        "{msg}"
    );
    let err = VirtualFile::open_with_options(&ctx, &missing, OpenOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // a read-only file refuses writes with a typed error naming the op
    std::fs::write(&missing, b"x").unwrap();
    let ro = VirtualFile::open(&ctx, &missing).await.unwrap();
    let (_, res) = ro.write_all_at(FullSlice::new(b"y".to_vec()), 0).await;
    let err = res.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    assert!(err.to_string().contains("write"), "{err}");
}

#[apply(write_matrix)]
#[tokio::test]
async fn rename_then_reopen_and_remove(mode: IoMode, kind: IoEngineKind) {
    // one cache slot: every switch between the two files evicts the other, so IO on the renamed file
    // must reopen it under its new name
    let ctx = virtual_file::IoContext::builder()
        .engine(common::engine(kind))
        .mode(mode)
        .open_files(1)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let mut file = VirtualFile::create(&ctx, &a).await.unwrap();
    let data = IoBufferMut::<io_engine::DefaultAlign>::from_slice(&pattern(4096, 3));
    let (_, res) = file.write_all_at(FullSlice::new(data), 0).await;
    res.unwrap();
    file.rename(dir.path().join("renamed"), io_engine::RenameMode::NoReplace)
        .await
        .unwrap();
    assert!(!a.exists() && file.path().ends_with("renamed"));
    let other = VirtualFile::create(&ctx, &b).await.unwrap(); // evicts `file`
    let buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(4096);
    let (s, res) = file.read_exact_at(Slice::new(buf, ..), 0).await;
    res.unwrap();
    assert_eq!(&s.into_inner()[..], &pattern(4096, 3)[..]);
    assert!(ctx.metrics().cache_evictions >= 2);
    let renamed = file.path().to_owned();
    file.remove().await.unwrap();
    assert!(!renamed.exists());
    drop(other);
}
