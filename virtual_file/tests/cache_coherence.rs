//! The page cache never serves a byte the file does not hold, never panics and never hangs, in every IO
//! mode x engine: one regression test per defect found in review.
//!
//! Each test caches pages with `read_cached_at`, changes the file in one way (a write through another
//! handle, `fallocate`, `set_len`, a write past the end, a mutation whose future is dropped after its
//! first poll, a truncating open) and then reads every page again, comparing with what `std::fs::read`
//! returns: the same bytes, or an `UnexpectedEof` error exactly for a range that ends past the end. Every
//! operation runs under a timeout with panics caught, so a panic or a hang fails the test with a message
//! instead of aborting the binary or stalling it.

mod coherence;
mod common;

use common::io_matrix;
use rstest::rstest;
use rstest_reuse::apply;

use std::path::{Path, PathBuf};

use coherence::{
    bytes, check_read, context, guarded, must_return, poll_once, quiesce, read_cached, real,
    write_at, Failure, OnDrop, PAGE,
};
use io_engine::IoEngineKind;
use virtual_file::{Error, IoContext, IoMode, OpenOptions, VirtualFile};

const PUNCH_HOLE: libc::c_int = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
const ZERO_RANGE: libc::c_int = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

fn ctx(mode: IoMode, kind: IoEngineKind) -> IoContext {
    context(mode, kind, None, None, OnDrop::Cancel)
}

async fn create(ctx: &IoContext, path: &Path) -> VirtualFile {
    must_return("create", VirtualFile::create(ctx, path))
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
}

/// Creates the file `f` in a new temporary folder through `ctx`: the folder (removed when it is
/// dropped), the file's path and the open.
async fn create_in_tempdir(ctx: &IoContext) -> (tempfile::TempDir, PathBuf, VirtualFile) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let w = create(ctx, &path).await;
    (dir, path, w)
}

async fn open_rw(ctx: &IoContext, path: &Path) -> VirtualFile {
    let opts = OpenOptions::new().read(true).write(true);
    must_return("open", VirtualFile::open_with_options(ctx, path, opts))
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

async fn open_ro(ctx: &IoContext, path: &Path) -> VirtualFile {
    must_return("open", VirtualFile::open(ctx, path))
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Writes `data` at `offset` through `f` (offset and length aligned by the caller where `f` is
/// `O_DIRECT`); fails the test on an error, a panic or a hang.
async fn write(f: &VirtualFile, offset: u64, data: &[u8]) {
    let what = format!("write_all_at({offset}, {} bytes)", data.len());
    must_return(&what, write_at(f, offset, data, 0))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

async fn set_len(f: &VirtualFile, len: u64) {
    let what = format!("set_len({len})");
    must_return(&what, f.set_len(len))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

async fn fallocate(f: &VirtualFile, mode: libc::c_int, offset: u64, len: u64) {
    let what = format!("fallocate({mode:#x}, {offset}, {len})");
    must_return(&what, f.fallocate(mode, offset, len))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// `read_cached_at(offset, len)` through `f`; fails the test on a panic or a hang.
async fn cached(f: &VirtualFile, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    must_return(
        format!("read_cached_at({offset}, {len})"),
        read_cached(f, offset, len),
    )
    .await
}

/// Reads every page of the file at `path` through each handle (clipped to the file and whole, so the
/// page after the last one too), the whole file and a range across its end, and lists every read that
/// disagrees with `std::fs::read`, panicked or hung.
async fn incoherent_reads(path: &Path, handles: &[(&str, &VirtualFile)]) -> Vec<String> {
    let real = real(path);
    let len = real.len();
    let mut ranges = Vec::new();
    for p in 0..=len / PAGE {
        let start = p * PAGE;
        if start < len && len - start < PAGE {
            ranges.push((start as u64, len - start));
        }
        ranges.push((start as u64, PAGE));
    }
    ranges.push((0, len.max(1)));
    if len > 0 {
        ranges.push((len as u64 - 1, 2));
    }
    let mut bad = Vec::new();
    for (name, h) in handles {
        for &(offset, n) in &ranges {
            match guarded(read_cached(h, offset, n)).await {
                Ok(res) => {
                    let c = check_read(&res, &real, offset, n);
                    if !c.is_good() {
                        bad.push(format!("{name}: read_cached_at({offset}, {n}): {c:?}"));
                    }
                }
                Err(f) => {
                    bad.push(format!("{name}: read_cached_at({offset}, {n}) {f}"));
                    if matches!(f, Failure::Hang) {
                        break;
                    }
                }
            }
        }
    }
    bad
}

async fn assert_coherent(what: &str, path: &Path, handles: &[(&str, &VirtualFile)]) {
    let bad = incoherent_reads(path, handles).await;
    assert!(
        bad.is_empty(),
        "{what}: the page cache disagrees with the file ({} bytes):\n  {}",
        real(path).len(),
        bad.join("\n  ")
    );
}

/// Defect 1: a read past the end of the file panicked inside the page cache (a slice index past the
/// page's bytes), and a panic during a page's first load left its slot `Loading` for ever, so every
/// later read of that page hung. Now: an `UnexpectedEof` error, and the page still reads.
#[apply(io_matrix)]
#[tokio::test]
async fn a_read_past_the_end_is_an_eof_error_and_the_page_still_reads(
    mode: IoMode,
    kind: IoEngineKind,
) {
    let ctx = ctx(mode, kind);
    let dir = tempfile::tempdir().unwrap();
    // (file length, offset, length) of a read that ends past the end of the file
    let cases: [(usize, u64, usize); 9] = [
        (4096, 6000, 10),
        (0, 8000, 400),
        (8192, 9000, 10),
        (4096, 20000, 10000),
        (0, 0, 1),
        (4096, 4096, 1),
        (4096, 4000, 200),
        (20000, 16000, 8192),
        (20000, 3 * PAGE as u64 + 5, 3 * PAGE),
    ];
    let mut bad = Vec::new();
    for (i, &(file_len, offset, len)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("f{i}"));
        std::fs::write(&path, bytes(file_len, i as u64)).unwrap();
        let f = open_ro(&ctx, &path).await;
        let case = format!("{file_len}-byte file, read_cached_at({offset}, {len})");
        // twice: a miss, then (if the page was kept) a hit
        for attempt in ["first", "second"] {
            match guarded(read_cached(&f, offset, len)).await {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Ok(Err(e)) => bad.push(format!("{case}, {attempt} read: not an EOF error: {e}")),
                Ok(Ok(_)) => bad.push(format!("{case}, {attempt} read: bytes, not an EOF error")),
                Err(fail) => bad.push(format!("{case}, {attempt} read {fail}")),
            }
        }
        let n = file_len.max(1);
        let res = guarded(read_cached(&f, 0, n)).await;
        match res {
            Ok(res) => {
                let c = check_read(&res, &real(&path), 0, n);
                if !c.is_good() {
                    bad.push(format!("{case}, then read_cached_at(0, {n}): {c:?}"));
                }
            }
            Err(fail) => bad.push(format!("{case}, then read_cached_at(0, {n}) {fail}")),
        }
    }
    assert!(bad.is_empty(), "{mode}/{kind}:\n  {}", bad.join("\n  "));
}

/// Offsets at the end of the `u64` range: errors, not an arithmetic overflow (a panic in debug builds),
/// and the cached pages still right afterwards. Not in the review's list.
#[apply(io_matrix)]
#[tokio::test]
async fn offsets_at_the_end_of_the_u64_range_are_errors_not_panics(
    mode: IoMode,
    kind: IoEngineKind,
) {
    let ctx = ctx(mode, kind);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    write(&w, 0, &bytes(2 * PAGE, 1)).await;
    assert_coherent("before", &path, &[("writer", &w)]).await;
    let top = u64::MAX - 511; // a multiple of 512: passes the O_DIRECT alignment check
    let mut bad = Vec::new();
    let ok_kinds = [
        std::io::ErrorKind::UnexpectedEof,
        std::io::ErrorKind::InvalidInput,
    ];
    match guarded(read_cached(&w, u64::MAX - 5, 10)).await {
        Ok(Err(e)) if ok_kinds.contains(&e.kind()) => {}
        other => bad.push(format!("read_cached_at(u64::MAX - 5, 10): {other:?}")),
    }
    match guarded(read_cached(&w, top, 512)).await {
        Ok(Err(e)) if ok_kinds.contains(&e.kind()) => {}
        other => bad.push(format!("read_cached_at(u64::MAX - 511, 512): {other:?}")),
    }
    match guarded(write_at(&w, top, &bytes(512, 2), 0)).await {
        Ok(Err(_)) => {}
        other => bad.push(format!(
            "write_all_at(u64::MAX - 511, 512 bytes): {other:?}"
        )),
    }
    match guarded(w.set_len(u64::MAX)).await {
        Ok(Err(_)) => {}
        other => bad.push(format!("set_len(u64::MAX): {other:?}")),
    }
    match guarded(w.fallocate(PUNCH_HOLE, top, 512)).await {
        Ok(Err(_)) => {}
        other => bad.push(format!(
            "fallocate(punch hole, u64::MAX - 511, 512): {other:?}"
        )),
    }
    bad.extend(incoherent_reads(&path, &[("writer", &w)]).await);
    assert!(bad.is_empty(), "{mode}/{kind}:\n  {}", bad.join("\n  "));
}

/// Defect 2: an `open_again_read_only` twin shares its writer's cache id, but the writer dropped pages
/// on a write only if it had cached pages itself: the twin kept serving the old bytes.
#[apply(io_matrix)]
#[tokio::test]
async fn a_write_is_seen_through_a_read_only_twin(mode: IoMode, kind: IoEngineKind) {
    let ctx = ctx(mode, kind);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    write(&w, 0, &[b'A'; 2 * PAGE]).await;
    let twin = must_return("open_again_read_only", w.open_again_read_only())
        .await
        .unwrap();
    assert_eq!(cached(&twin, 0, 4).await.unwrap(), b"AAAA");
    write(&w, 0, &[b'B'; 4096]).await;
    assert_eq!(
        cached(&twin, 0, 4).await.unwrap(),
        b"BBBB",
        "{mode}/{kind}: the twin serves the bytes from before the write"
    );
    assert_coherent(
        "after a write through the writer",
        &path,
        &[("twin", &twin)],
    )
    .await;
    if !w.is_direct() {
        write(&w, PAGE as u64 - 50, &[b'C'; 100]).await;
        assert_coherent("after a ragged write", &path, &[("twin", &twin)]).await;
    }
    set_len(&w, PAGE as u64 + 100).await;
    assert_coherent("after a shrink", &path, &[("twin", &twin)]).await;
}

#[derive(Debug, Clone, Copy)]
enum SecondOpen {
    /// `VirtualFile::open` of the same path, same context.
    ReadOnly,
    /// A read-write open of the same path, same context, that writes too.
    ReadWrite,
    /// A read-write open of the same path through a second context of the same mode and engine.
    OtherContext,
}

/// Defect 3: each open has its own cache id, and each context its own page cache: a write through one
/// open did not drop the pages that another open (or another context) had cached.
#[apply(io_matrix)]
#[tokio::test]
async fn a_write_is_seen_through_a_second_open(
    mode: IoMode,
    kind: IoEngineKind,
    #[values(SecondOpen::ReadOnly, SecondOpen::ReadWrite, SecondOpen::OtherContext)]
    second: SecondOpen,
) {
    let ctx = ctx(mode, kind);
    let ctx2 = self::ctx(mode, kind);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    write(&w, 0, &bytes(3 * PAGE, 1)).await;
    let other = match second {
        SecondOpen::ReadOnly => open_ro(&ctx, &path).await,
        SecondOpen::ReadWrite => open_rw(&ctx, &path).await,
        SecondOpen::OtherContext => open_rw(&ctx2, &path).await,
    };
    let both = [("first open", &w), ("second open", &other)];
    assert_coherent("before", &path, &both).await;
    write(&w, 0, &bytes(PAGE, 2)).await;
    assert_coherent("after a write through the first open", &path, &both).await;
    if !matches!(second, SecondOpen::ReadOnly) {
        write(&other, PAGE as u64, &bytes(PAGE, 3)).await;
        assert_coherent("after a write through the second open", &path, &both).await;
        set_len(&other, PAGE as u64 + 512).await;
        assert_coherent("after a shrink through the second open", &path, &both).await;
    }
    set_len(&w, 512).await;
    assert_coherent("after a shrink through the first open", &path, &both).await;
}

/// Not in the review's list: a truncating open (`VirtualFile::create` of an existing path) is a
/// mutation too; handles that cached the file's pages must see it empty.
#[apply(io_matrix)]
#[tokio::test]
async fn a_truncating_open_is_seen_through_cached_handles(mode: IoMode, kind: IoEngineKind) {
    let ctx = ctx(mode, kind);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    write(&w, 0, &bytes(2 * PAGE, 1)).await;
    let twin = w.open_again_read_only().await.unwrap();
    let ro = open_ro(&ctx, &path).await;
    let handles = [("writer", &w), ("twin", &twin), ("read-only open", &ro)];
    assert_coherent("before", &path, &handles).await;
    let again = create(&ctx, &path).await;
    assert_coherent("after create() truncated the file", &path, &handles).await;
    write(&again, 0, &bytes(512, 2)).await;
    assert_coherent("after a write through the new open", &path, &handles).await;
}

#[derive(Debug, Clone, Copy)]
enum Falloc {
    /// `PUNCH_HOLE | KEEP_SIZE` over page 0.
    PunchHole,
    /// `ZERO_RANGE | KEEP_SIZE` over page 1.
    ZeroRange,
    /// `COLLAPSE_RANGE` of page 1: later pages move down one page.
    CollapseRange,
    /// `INSERT_RANGE` of a page at page 1: later pages move up one page.
    InsertRange,
}

/// Defect 4: `fallocate` dropped no cached page, so punched or zeroed pages read their old bytes, and
/// after a collapse or an insert every later page was served from its old position.
#[apply(io_matrix)]
#[tokio::test]
async fn fallocate_drops_the_pages_it_changes(
    mode: IoMode,
    kind: IoEngineKind,
    #[values(
        Falloc::PunchHole,
        Falloc::ZeroRange,
        Falloc::CollapseRange,
        Falloc::InsertRange
    )]
    op: Falloc,
) {
    let ctx = ctx(mode, kind);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    // 6 pages: ext4 wants block multiples for collapse and insert, and a file longer than the range
    write(&w, 0, &bytes(6 * PAGE, 1)).await;
    assert_coherent("before", &path, &[("writer", &w)]).await;
    let page = PAGE as u64;
    let (flags, offset) = match op {
        Falloc::PunchHole => (PUNCH_HOLE, 0),
        Falloc::ZeroRange => (ZERO_RANGE, page),
        Falloc::CollapseRange => (libc::FALLOC_FL_COLLAPSE_RANGE, page),
        Falloc::InsertRange => (libc::FALLOC_FL_INSERT_RANGE, page),
    };
    fallocate(&w, flags, offset, page).await;
    let first = cached(&w, offset, PAGE).await;
    let c = check_read(&first, &real(&path), offset, PAGE);
    assert!(
        c.is_good(),
        "{mode}/{kind}: after {op:?} of page {}: {c:?}",
        offset / page
    );
    assert_coherent(&format!("after {op:?}"), &path, &[("writer", &w)]).await;
}

/// Defect 5: growing the file (`set_len`) kept a cached short last page, so reads of the new zeros were
/// a spurious end of file. Shrinking must make reads past the new end an EOF error.
#[apply(io_matrix)]
#[tokio::test]
async fn set_len_growth_reads_zeros_and_shrinking_reads_eof(mode: IoMode, kind: IoEngineKind) {
    let ctx = ctx(mode, kind);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    let data = bytes(4096, 1);
    write(&w, 0, &data).await;
    assert_eq!(cached(&w, 0, 64).await.unwrap(), data[..64]);
    set_len(&w, 24576).await;
    let mut want = data.clone();
    want.resize(PAGE, 0);
    match cached(&w, 0, PAGE).await {
        Ok(got) => assert!(got == want, "{mode}/{kind}: wrong bytes after growth"),
        Err(e) => panic!("{mode}/{kind}: read_cached_at(0, 8192) after set_len(24576): {e}"),
    }
    assert_coherent("after growing to 24576", &path, &[("writer", &w)]).await;
    set_len(&w, 10000).await;
    let past = cached(&w, 9000, 2000).await;
    assert_eq!(
        check_read(&past, &real(&path), 9000, 2000),
        coherence::ReadCheck::Good,
        "{mode}/{kind}: read past the end after a shrink to 10000"
    );
    assert_coherent("after shrinking to 10000", &path, &[("writer", &w)]).await;
    set_len(&w, 20000).await;
    assert_coherent("after growing to 20000 again", &path, &[("writer", &w)]).await;
    set_len(&w, 0).await;
    assert_coherent("after shrinking to 0", &path, &[("writer", &w)]).await;
}

/// Defect 7: a write past the end leaves a hole; the cached short last page was kept, so the hole's
/// zeros read as a spurious end of file.
#[apply(io_matrix)]
#[tokio::test]
async fn a_write_past_the_end_leaves_a_hole_of_zeros(mode: IoMode, kind: IoEngineKind) {
    let ctx = ctx(mode, kind);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    write(&w, 0, &bytes(4096, 1)).await;
    cached(&w, 0, 100).await.unwrap();
    // O_DIRECT writes need an aligned offset and length
    let (offset, len) = if w.is_direct() {
        (20480, 512)
    } else {
        (20000, 100)
    };
    write(&w, offset, &bytes(len, 2)).await;
    let res = cached(&w, 0, PAGE).await;
    assert_eq!(
        check_read(&res, &real(&path), 0, PAGE),
        coherence::ReadCheck::Good,
        "{mode}/{kind}: read_cached_at(0, 8192) after a write at {offset}"
    );
    assert_coherent("after a write past the end", &path, &[("writer", &w)]).await;
}

/// A misaligned write on an `O_DIRECT` handle is `Error::Misaligned` and changes neither the file nor
/// what cached reads return.
#[apply(io_matrix)]
#[tokio::test]
async fn a_misaligned_write_changes_nothing(mode: IoMode, kind: IoEngineKind) {
    let ctx = ctx(mode, kind);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    if !w.is_direct() {
        eprintln!("{mode}/{kind}: skipped: the writer is not O_DIRECT here, any write is allowed");
        return;
    }
    write(&w, 0, &bytes(2 * PAGE, 1)).await;
    assert_coherent("before", &path, &[("writer", &w)]).await;
    let before = real(&path);
    for (offset, len, skew) in [(100u64, 512usize, 0usize), (0, 100, 0), (0, 512, 1)] {
        let res = must_return(
            "misaligned write",
            write_at(&w, offset, &bytes(len, 9), skew),
        )
        .await;
        assert!(
            matches!(res, Err(Error::Misaligned { .. })),
            "{mode}/{kind}: write at {offset}, {len} bytes, skew {skew}: {res:?}"
        );
        assert!(real(&path) == before, "a misaligned write changed the file");
        assert_coherent("after a misaligned write", &path, &[("writer", &w)]).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Dropped {
    /// `write_all_at` of a page of new bytes at 0.
    Write,
    /// `set_len` to 5000 (from 3 pages).
    SetLenShrink,
    /// `set_len` to 40000 (from 3 pages).
    SetLenGrow,
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)` of page 0.
    PunchHole,
}

/// Defect 6: a mutation's future dropped after its first poll while the kernel still performs it (seen
/// with `direct-rw` x `tokio-epoll-uring`, where O_DIRECT writes cannot be cancelled) changed the file
/// but never dropped the cached pages. After the kernel finished ([`quiesce`]), cached reads must equal
/// the file, whatever the op did.
#[apply(io_matrix)]
#[tokio::test]
async fn a_dropped_mutation_leaves_no_stale_page(
    mode: IoMode,
    kind: IoEngineKind,
    #[values(
        Dropped::Write,
        Dropped::SetLenShrink,
        Dropped::SetLenGrow,
        Dropped::PunchHole
    )]
    op: Dropped,
    #[values(OnDrop::Cancel, OnDrop::Complete)] on_drop: OnDrop,
) {
    const ROUNDS: u64 = 12;
    let ctx = context(mode, kind, None, None, on_drop);
    let (_dir, path, w) = create_in_tempdir(&ctx).await;
    let mut pending = 0;
    let mut bad = Vec::new();
    for round in 0..ROUNDS {
        set_len(&w, 0).await;
        write(&w, 0, &bytes(3 * PAGE, round)).await;
        for b in incoherent_reads(&path, &[("writer", &w)]).await {
            bad.push(format!("round {round}, before the dropped op: {b}"));
        }
        let new = bytes(PAGE, 1000 + round);
        let done = must_return(format!("{op:?} polled once"), async {
            match op {
                Dropped::Write => poll_once(write_at(&w, 0, &new, 0)).await,
                Dropped::SetLenShrink => poll_once(w.set_len(5000)).await,
                Dropped::SetLenGrow => poll_once(w.set_len(40000)).await,
                Dropped::PunchHole => poll_once(w.fallocate(PUNCH_HOLE, 0, PAGE as u64)).await,
            }
        })
        .await;
        let first_poll = if done.is_some() { "ready" } else { "pending" };
        match done {
            Some(res) => res.unwrap_or_else(|e| panic!("{op:?}: {e}")),
            None => pending += 1,
        }
        quiesce(&w).await;
        for b in incoherent_reads(&path, &[("writer", &w)]).await {
            bad.push(format!("round {round} ({first_poll} on first poll): {b}"));
        }
    }
    eprintln!("{mode}/{kind} {op:?} {on_drop:?}: {pending} of {ROUNDS} first polls were pending");
    assert!(
        bad.is_empty(),
        "{mode}/{kind}, a dropped {op:?} ({on_drop:?}):\n  {}",
        bad.join("\n  ")
    );
}
