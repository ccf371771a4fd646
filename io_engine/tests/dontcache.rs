//! `RWF_DONTCACHE` (uncached buffered IO, Linux 6.14+) on every engine: a descriptor marked dontcache
//! reads and writes the right bytes and leaves (almost) none of them in the page cache, while the same
//! IO without the flag leaves them all there; a file system that refuses the flag fails the IO with the
//! kernel's `EOPNOTSUPP`, unchanged, and the same IO without the flag then works.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use io_engine::{FullSlice, IoEngine, IoEngineKind, IoFd, Slice, UringConfig};
use rstest_reuse::apply;

mod common;
use common::every_engine;

const FILE_LEN: usize = 4 << 20;
const CHUNK: usize = 256 << 10;

fn engine(kind: IoEngineKind) -> IoEngine {
    IoEngine::launch(kind).unwrap_or_else(|e| panic!("engine {kind} cannot start: {e}"))
}

async fn open(e: &IoEngine, path: &Path, dontcache: bool) -> Arc<IoFd> {
    let fd = e
        .open(path, libc::O_CREAT | libc::O_RDWR, 0o644)
        .await
        .expect("open");
    fd.set_dontcache(dontcache);
    assert_eq!(fd.is_dontcache(), dontcache);
    Arc::new(fd)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

/// Pages of the file's first `len` bytes that are in the page cache now.
fn resident_pages(fd: &IoFd, len: usize) -> usize {
    use std::os::fd::AsFd as _;
    io_engine::test_support::resident_pages(fd.as_fd(), len).expect("mmap + mincore")
}

/// Writes `data` in chunks (alternating `write_at` and a two-slice `writev_at`), then fsyncs.
async fn write_file(e: &IoEngine, fd: &Arc<IoFd>, data: &[u8]) {
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let offset = (i * CHUNK) as u64;
        let mut done = 0;
        while done < chunk.len() {
            let rest = chunk[done..].to_vec();
            let n = if i % 2 == 0 {
                e.write_at(fd, offset + done as u64, FullSlice::new(rest))
                    .await
                    .1
            } else {
                let (a, b) = rest.split_at(rest.len() / 2);
                let bufs = vec![FullSlice::new(a.to_vec()), FullSlice::new(b.to_vec())];
                e.writev_at(fd, offset + done as u64, bufs).await.1
            };
            let n = n.expect("write");
            assert!(n > 0, "write made no progress");
            done += n;
        }
    }
    e.fsync(fd).await.expect("fsync");
}

/// Reads the whole file back in chunks (alternating `read_at` and a two-window `readv_at`).
async fn read_file(e: &IoEngine, fd: &Arc<IoFd>, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let want = CHUNK.min(len - out.len());
        let offset = out.len() as u64;
        let got = if (out.len() / CHUNK) % 2 == 0 {
            let (s, n) = e
                .read_at(fd, offset, Slice::new(Vec::with_capacity(want), ..))
                .await;
            let n = n.expect("read");
            s.into_inner()[..n].to_vec()
        } else {
            let windows = vec![
                Slice::new(Vec::with_capacity(want / 2), ..),
                Slice::new(Vec::with_capacity(want - want / 2), ..),
            ];
            let (ws, n) = e.readv_at(fd, offset, windows).await;
            let n = n.expect("readv");
            let mut all: Vec<u8> = ws.into_iter().flat_map(|w| w.into_inner()).collect();
            all.truncate(n);
            all
        };
        assert!(!got.is_empty(), "unexpected EOF at {}", out.len());
        out.extend_from_slice(&got);
    }
    out
}

fn drop_pages(fd: &IoFd) {
    // SAFETY: plain syscall on a valid descriptor.
    let ret = unsafe { libc::posix_fadvise(fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(ret, 0);
}

/// Dontcache IO leaves at most this share of the file's pages cached (a few folios may be in flight).
const MAX_RESIDENT_SHARE: f64 = 0.05;

#[apply(every_engine)]
fn dontcache_io_is_right_and_leaves_no_pages(kind: IoEngineKind) {
    common::runtime(true).block_on(async { check_io_and_pages(&engine(kind), kind.into()).await });
}

/// As above, with the ring engine's buffered writes submitted to the ring (`rw_flags` on the write
/// SQEs) instead of made inline.
#[test]
fn ring_submitted_writes_carry_the_flag() {
    common::runtime(true).block_on(async {
        let config = UringConfig {
            inline_buffered_writes: false,
            ..UringConfig::default()
        };
        let Some(ring) = common::launch(config) else {
            return;
        };
        check_io_and_pages(&IoEngine::TokioEpollUring(ring), "ring writes").await
    });
}

async fn check_io_and_pages(e: &IoEngine, kind: &str) {
    {
        let e = e.clone();
        let dir = tempfile::tempdir().unwrap();
        let pages = FILE_LEN / 4096;
        let data = pattern(FILE_LEN);

        // the control: plain buffered IO leaves the pages cached (so the measurement can see them)
        let plain = open(&e, &dir.path().join("plain"), false).await;
        write_file(&e, &plain, &data).await;
        let after_plain_write = resident_pages(&plain, FILE_LEN);
        assert!(
            after_plain_write > pages * 9 / 10,
            "plain buffered write left only {after_plain_write} of {pages} pages cached"
        );

        let path = dir.path().join("dontcache");
        let fd = open(&e, &path, true).await;
        write_file(&e, &fd, &data).await;
        let after_write = resident_pages(&fd, FILE_LEN);
        drop_pages(&fd);
        assert_eq!(read_file(&e, &fd, FILE_LEN).await, data, "dontcache read");
        let after_read = resident_pages(&fd, FILE_LEN);
        let limit = (pages as f64 * MAX_RESIDENT_SHARE) as usize;
        eprintln!(
            "{kind}: {pages} pages; cached after plain write {after_plain_write}, after dontcache \
             write + fsync {after_write}, after dontcache read {after_read}"
        );
        assert!(
            after_write <= limit,
            "{kind}: dontcache write + fsync left {after_write} of {pages} pages cached"
        );
        assert!(
            after_read <= limit,
            "{kind}: dontcache read left {after_read} of {pages} pages cached"
        );
        // the bytes on disk are the bytes written, read by std
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}

/// tmpfs has no uncached buffered IO (it is the page cache): the kernel refuses `RWF_DONTCACHE` with
/// `EOPNOTSUPP`, which the engines return unchanged with the buffer; without the flag the IO works.
/// Skips (printing why) where `/dev/shm` is missing or the kernel accepts the flag there.
#[apply(every_engine)]
fn refusal_is_returned_unchanged(kind: IoEngineKind) {
    let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    common::runtime(true).block_on(async {
        let e = engine(kind);
        let fd = open(&e, &dir.path().join("f"), true).await;
        let (buf, res) = e.write_at(&fd, 0, FullSlice::new(vec![7u8; 4096])).await;
        assert_eq!(buf.into_inner(), vec![7u8; 4096], "the buffer comes back");
        let err = match res {
            Ok(_) => {
                eprintln!("skipped: this kernel accepts RWF_DONTCACHE on tmpfs");
                return;
            }
            Err(err) => err,
        };
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "{kind}: {err}");
        let (_, res) = e
            .read_at(&fd, 0, Slice::new(Vec::with_capacity(16), ..))
            .await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EOPNOTSUPP));
        fd.set_dontcache(false);
        let (_, res) = e.write_at(&fd, 0, FullSlice::new(vec![7u8; 4096])).await;
        assert_eq!(res.expect("plain write"), 4096);
        let (s, res) = e
            .read_at(&fd, 0, Slice::new(Vec::with_capacity(4096), ..))
            .await;
        assert_eq!(res.expect("plain read"), 4096);
        assert_eq!(s.into_inner(), vec![7u8; 4096]);
    });
}

#[test]
fn o_direct_descriptors_never_carry_the_flag() {
    common::runtime(false).block_on(async {
        let e = IoEngine::std_fs();
        let dir = tempfile::tempdir().unwrap();
        let fd = e
            .open(
                &dir.path().join("d"),
                libc::O_CREAT | libc::O_RDWR | libc::O_DIRECT,
                0o644,
            )
            .await
            .unwrap();
        fd.set_dontcache(true);
        assert!(!fd.is_dontcache());
        assert_eq!(fd.rw_flags(), 0);
        assert_eq!(io_engine::RWF_DONTCACHE, 0x80);
    });
}
