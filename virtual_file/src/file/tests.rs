//! Open-time behaviour that needs the context's test hooks: a file system without `O_DIRECT`, and the
//! `STATX_DIOALIGN` check.

use io_engine::{FullSlice, Slice};

use super::*;
use crate::context::IoContext;

fn ctx_without_o_direct(mode: Option<IoMode>) -> IoContext {
    IoContext::builder()
        .mode_opt(mode)
        .simulate_fs_without_o_direct(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn default_mode_falls_back_to_buffered() {
    let ctx = ctx_without_o_direct(None);
    assert_eq!(ctx.io_mode(), IoMode::DirectRw);
    let dir = tempfile::tempdir().unwrap();
    let file = VirtualFile::create(&ctx, dir.path().join("f"))
        .await
        .unwrap();
    assert!(!file.is_direct());
    assert_eq!(ctx.io_mode(), IoMode::Buffered, "the context fell back");
    assert_eq!(ctx.configured_mode(), IoMode::DirectRw);
    // unaligned IO now works, as in buffered mode
    let (_, res) = file
        .write_all_at(FullSlice::new(b"hello".to_vec()), 3)
        .await;
    res.unwrap();
    let (s, res) = file
        .read_exact_at(Slice::new(Vec::with_capacity(5), ..5), 3)
        .await;
    res.unwrap();
    assert_eq!(s.into_inner(), b"hello");
    // later opens do not try O_DIRECT again
    let again = VirtualFile::open(&ctx, dir.path().join("f")).await.unwrap();
    assert!(!again.is_direct());
}

#[tokio::test]
async fn explicit_direct_mode_is_an_error() {
    for mode in [IoMode::Direct, IoMode::DirectRw] {
        let ctx = ctx_without_o_direct(Some(mode));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let err = VirtualFile::open(&ctx, &path).await.unwrap_err();
        assert!(matches!(err, Error::DirectUnsupported { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("O_DIRECT") && msg.contains(&mode.to_string()),
            "{msg}"
        );
        assert_eq!(ctx.io_mode(), mode, "an explicit mode never changes");
    }
    // buffered never asks for O_DIRECT
    let ctx = ctx_without_o_direct(Some(IoMode::Buffered));
    let dir = tempfile::tempdir().unwrap();
    VirtualFile::create(&ctx, dir.path().join("f"))
        .await
        .unwrap();
}

#[tokio::test]
async fn reopen_after_eviction_keeps_o_direct() {
    let ctx = IoContext::builder()
        .mode(IoMode::DirectRw)
        .open_files(1)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = VirtualFile::create(&ctx, dir.path().join("a"))
        .await
        .unwrap();
    let b = VirtualFile::create(&ctx, dir.path().join("b"))
        .await
        .unwrap();
    assert!(a.is_direct() && b.is_direct());
    // `a` was evicted by `b`; its reopen must still be O_DIRECT and must not repeat O_TRUNC (the data
    // written before survives)
    let buf = io_engine::IoBufferMut::<io_engine::DefaultAlign>::from_slice(&[1u8; 512]);
    let (_, res) = a.write_all_at(FullSlice::new(buf), 0).await;
    res.unwrap();
    let buf = io_engine::IoBufferMut::<io_engine::DefaultAlign>::from_slice(&[2u8; 512]);
    let (_, res) = b.write_all_at(FullSlice::new(buf), 0).await;
    res.unwrap();
    let rbuf = io_engine::IoBufferMut::<io_engine::DefaultAlign>::with_capacity(512);
    let (s, res) = a.read_exact_at(Slice::new(rbuf, ..), 0).await;
    res.unwrap();
    assert!(
        s.into_inner().iter().all(|&x| x == 1),
        "reopen did not truncate"
    );
    let m = ctx.metrics();
    assert!(m.cache_evictions >= 2, "{m:?}");
    let fds: Vec<(std::path::PathBuf, u32)> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            target.starts_with(dir.path()).then_some(())?;
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", e.file_name().to_str()?))
                    .ok()?;
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
            Some((target, u32::from_str_radix(flags.trim(), 8).ok()?))
        })
        .collect();
    assert_eq!(fds.len(), 1, "one slot, one descriptor: {fds:?}");
    assert!(fds[0].0.ends_with("a"), "{fds:?}");
    assert_ne!(
        fds[0].1 & libc::O_DIRECT as u32,
        0,
        "reopened with O_DIRECT"
    );
}

#[tokio::test]
async fn exclusive_creation_that_keeps_colliding_is_a_typed_error() {
    let ctx = IoContext::builder().mode(IoMode::Buffered).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join(format!("x.{:016x}.tmp", 42));
    std::fs::write(&taken, b"someone else's").unwrap();
    // every name tried is the taken one
    let mut tries = 0;
    let err = VirtualFile::create_temp_with_names(&ctx, dir.path(), "x.", ".tmp", || {
        tries += 1;
        42
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::NameCollision { attempts, .. } if *attempts == temp::TEMP_NAME_ATTEMPTS),
        "{err:?}"
    );
    assert_eq!(tries, temp::TEMP_NAME_ATTEMPTS);
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(
        std::fs::read(&taken).unwrap(),
        b"someone else's",
        "an existing file is never opened for writing"
    );
    // a collision followed by a free name: the free one is used
    let mut names = [42u64, 43].into_iter();
    let file = VirtualFile::create_temp_with_names(&ctx, dir.path(), "x.", ".tmp", || {
        names.next().unwrap()
    })
    .await
    .unwrap();
    assert!(file.path().ends_with(format!("x.{:016x}.tmp", 43)));
    assert!(file.is_temp());
}
