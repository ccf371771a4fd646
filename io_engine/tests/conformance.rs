//! One conformance suite for every engine: positional reads and writes at many offsets and sizes, reads
//! past end of file, `O_DIRECT` from aligned buffers, vectored IO, errors, and the metadata ops compared
//! with what `std` says about the same file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use io_engine::{ConstAlign, FullSlice, IoBufferMut, IoEngine, IoEngineKind, IoFd, Slice};
use rand::{Rng, SeedableRng};
use rstest_reuse::apply;

mod common;
use common::{every_engine, vec_windows};

/// The engine `kind`, explicitly (an io_uring engine that cannot start fails the test). Called inside
/// the test's tokio runtime, where the io_uring engine spawns its reaper.
fn engine(kind: IoEngineKind) -> IoEngine {
    IoEngine::launch(kind).unwrap_or_else(|e| panic!("engine {kind} cannot start: {e}"))
}

/// The engine `kind` (see [`engine`]), a temporary directory (kept by the caller) and the path `name`
/// in it.
fn setup(kind: IoEngineKind, name: &str) -> (IoEngine, tempfile::TempDir, PathBuf) {
    let e = engine(kind);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (e, dir, path)
}

async fn open(e: &IoEngine, path: &Path, flags: libc::c_int) -> Arc<IoFd> {
    Arc::new(e.open(path, flags, 0o644).await.expect("open"))
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

/// Reads exactly `len` bytes at `offset` (looping over short reads) into a fresh `Vec`.
async fn read_all(e: &IoEngine, fd: &Arc<IoFd>, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let pos = buf.len();
        let (slice, res) = e
            .read_at(fd, offset + pos as u64, Slice::new(buf, pos..len))
            .await;
        buf = slice.into_inner();
        assert!(
            res.expect("read") > 0,
            "unexpected EOF at {}",
            offset + pos as u64
        );
    }
    buf
}

#[apply(every_engine)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_then_read_many_offsets_and_sizes(kind: IoEngineKind) {
    let (e, _dir, path) = setup(kind, "f");
    let fd = open(&e, &path, libc::O_RDWR | libc::O_CREAT).await;
    let mut model = Vec::new();
    let cases: [(u64, usize); 8] = [
        (0, 0),
        (0, 1),
        (1, 511),
        (4096, 4096),
        (10_000, 65_536 + 3),
        (3, 17),
        (1 << 20, 1 << 20),
        (5 << 20, 1),
    ];
    for (i, (offset, len)) in cases.into_iter().enumerate() {
        let data = pattern(len, i as u64);
        let (slice, res) = e.write_at(&fd, offset, FullSlice::new(data.clone())).await;
        let mut done = res.expect("write");
        let mut data_back = slice.into_inner();
        while done < len {
            let (s, r) = e
                .write_at(
                    &fd,
                    offset + done as u64,
                    FullSlice::with_range(data_back, done..),
                )
                .await;
            done += r.expect("write rest");
            data_back = s.into_inner();
        }
        assert_eq!(data_back, data, "buffer handed back unchanged");
        let end = offset as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(&data);
    }
    assert_eq!(std::fs::read(&path).unwrap(), model);
    for (offset, len) in [
        (0u64, model.len()),
        (1, 4095),
        (10_000, 70_000),
        (model.len() as u64 - 1, 1),
    ] {
        let got = read_all(&e, &fd, offset, len).await;
        assert_eq!(
            got,
            &model[offset as usize..offset as usize + len],
            "read {offset}+{len}"
        );
    }
}

#[apply(every_engine)]
#[tokio::test]
async fn reads_past_and_across_eof(kind: IoEngineKind) {
    let (e, _dir, path) = setup(kind, "f");
    std::fs::write(&path, b"0123456789").unwrap();
    let fd = open(&e, &path, libc::O_RDONLY).await;
    let (s, res) = e.read_at(&fd, 100, Slice::new(vec![7u8; 8], ..)).await;
    assert_eq!(res.unwrap(), 0, "read past EOF returns 0");
    assert_eq!(s.into_inner(), vec![7u8; 8], "buffer untouched past EOF");
    let (s, res) = e
        .read_at(&fd, 6, Slice::new(Vec::with_capacity(8), ..))
        .await;
    assert_eq!(res.unwrap(), 4, "read straddling EOF is short");
    assert_eq!(s.into_inner(), b"6789");
}

#[apply(every_engine)]
#[tokio::test]
async fn o_direct_aligned_round_trip(kind: IoEngineKind) {
    let (e, _dir, path) = setup(kind, "direct");
    let fd = open(&e, &path, libc::O_RDWR | libc::O_CREAT | libc::O_DIRECT).await;
    let stat = e.statx(&fd).await.unwrap();
    let Some(dio) = stat.dio else {
        eprintln!(
            "skipped: this file system reports no O_DIRECT support for {}",
            path.display()
        );
        return;
    };
    assert!(dio.mem_align <= 4096 && dio.offset_align <= 4096, "{dio:?}");
    let data = pattern(64 * 1024, 9);
    let mut wbuf = IoBufferMut::<ConstAlign<4096>>::with_capacity(data.len());
    wbuf.extend_from_slice(&data);
    let (_, res) = e.write_at(&fd, 4096, FullSlice::new(wbuf)).await;
    assert_eq!(res.unwrap(), data.len());
    let rbuf = IoBufferMut::<ConstAlign<4096>>::with_capacity(data.len());
    let (s, res) = e.read_at(&fd, 4096, Slice::new(rbuf, ..)).await;
    assert_eq!(res.unwrap(), data.len());
    assert_eq!(&s.into_inner()[..], &data[..]);
    // a misaligned O_DIRECT read is refused by the kernel (the layer above checks before this happens)
    let rbuf = IoBufferMut::<ConstAlign<4096>>::with_capacity(4096);
    let (_, res) = e.read_at(&fd, 1, Slice::new(rbuf, ..)).await;
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
}

#[apply(every_engine)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectored_round_trip(kind: IoEngineKind) {
    let (e, _dir, path) = setup(kind, "v");
    let fd = open(&e, &path, libc::O_RDWR | libc::O_CREAT).await;
    let parts = [
        pattern(10, 1),
        pattern(0, 2),
        pattern(5000, 3),
        pattern(1, 4),
    ];
    let all: Vec<u8> = parts.concat();
    let slices = parts.iter().cloned().map(FullSlice::new).collect();
    let (back, res) = e.writev_at(&fd, 7, slices).await;
    assert_eq!(res.unwrap(), all.len());
    assert_eq!(back.len(), 4);
    let (windows, res) = e.readv_at(&fd, 7, vec_windows(&[3, 4000, 2000])).await;
    let n = res.unwrap();
    assert_eq!(n, all.len(), "short only at EOF");
    let got: Vec<u8> = windows.into_iter().flat_map(|w| w.into_inner()).collect();
    assert_eq!(got, all);
}

#[apply(every_engine)]
#[tokio::test]
async fn errors_are_the_kernels(kind: IoEngineKind) {
    let e = engine(kind);
    let dir = tempfile::tempdir().unwrap();
    let missing = e.open(&dir.path().join("missing"), libc::O_RDONLY, 0).await;
    assert_eq!(missing.unwrap_err().kind(), std::io::ErrorKind::NotFound);
    let path = dir.path().join("ro");
    std::fs::write(&path, b"abc").unwrap();
    let ro = open(&e, &path, libc::O_RDONLY).await;
    let (s, res) = e.write_at(&ro, 0, FullSlice::new(b"xyz".to_vec())).await;
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
    assert_eq!(s.into_inner(), b"xyz", "buffer handed back on error");
    let wo = open(&e, &path, libc::O_WRONLY).await;
    let (_, res) = e.read_at(&wo, 0, Slice::new(vec![0u8; 3], ..)).await;
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
    let (_, res) = e.read_at(&ro, u64::MAX, Slice::new(vec![0u8; 3], ..)).await;
    assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        e.ftruncate(&ro, 1).await.unwrap_err().raw_os_error(),
        Some(libc::EINVAL),
        "ftruncate of a read-only descriptor"
    );
}

#[apply(every_engine)]
#[tokio::test]
async fn metadata_ops_match_std(kind: IoEngineKind) {
    let (e, _dir, path) = setup(kind, "m");
    let fd = open(&e, &path, libc::O_RDWR | libc::O_CREAT).await;
    e.ftruncate(&fd, 12_345).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 12_345);
    assert_eq!(e.statx(&fd).await.unwrap().size, 12_345);
    e.fallocate(&fd, 0, 0, 1 << 20).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 1 << 20);
    let st = e.statx(&fd).await.unwrap();
    assert_eq!(st.size, meta.len());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(st.blksize as u64, meta.blksize());
    e.fallocate(&fd, libc::FALLOC_FL_KEEP_SIZE, 0, 4 << 20)
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    e.ftruncate(&fd, 0).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    e.fsync(&fd).await.unwrap();
    e.fdatasync(&fd).await.unwrap();
}

#[apply(every_engine)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_unlink(kind: IoEngineKind) {
    use io_engine::RenameMode;
    let e = engine(kind);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    std::fs::write(&a, b"first").unwrap();
    std::fs::write(&b, b"second").unwrap();

    let err = e.rename(&a, &b, RenameMode::NoReplace).await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
    assert_eq!(std::fs::read(&b).unwrap(), b"second", "target untouched");
    assert_eq!(std::fs::read(&a).unwrap(), b"first", "source untouched");

    e.rename(&a, &c, RenameMode::NoReplace).await.unwrap();
    assert!(!a.exists());
    e.rename(&c, &b, RenameMode::Replace).await.unwrap();
    assert_eq!(std::fs::read(&b).unwrap(), b"first");

    e.unlink(&b).await.unwrap();
    assert!(!b.exists());
    let err = e.unlink(&b).await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
}
