//! Directories under the root: created (durably) before an object is written into them, and removed
//! again when a delete or rename leaves them empty, so that listings show no empty prefixes.
//!
//! Creation and removal are metadata calls the IO engines do not have; they run on tokio's blocking
//! pool. A directory emptied by one task while another is about to write into it is handled by the
//! writer: it creates the directory again and retries ([`CREATE_ATTEMPTS`]).

use std::io;
use std::path::{Path as FsPath, PathBuf};

use virtual_file::IoContext;

use crate::error::StoreError;

/// Times a writer creates a missing directory and retries before it reports the error.
pub(crate) const CREATE_ATTEMPTS: usize = 4;

async fn blocking<T: Send + 'static>(
    op: &'static str,
    path: &FsPath,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| StoreError::fs(op, path, e)),
        Err(join) => Err(StoreError::fs(op, path, io::Error::other(join))),
    }
}

/// Creates `dir` and its missing parents up to `root`, and syncs the parent of each directory created,
/// so that the new entries survive a crash.
pub(crate) async fn create_dirs(
    ctx: &IoContext,
    root: &FsPath,
    dir: &FsPath,
) -> Result<(), StoreError> {
    let (root_owned, dir_owned) = (root.to_owned(), dir.to_owned());
    let created: Vec<PathBuf> = blocking("create directory", dir, move || {
        let mut missing = Vec::new();
        let mut at = dir_owned.as_path();
        while at != root_owned && !at.is_dir() {
            missing.push(at.to_owned());
            match at.parent() {
                Some(p) => at = p,
                None => break,
            }
        }
        let mut created = Vec::new();
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => created.push(d),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(created)
    })
    .await?;
    for d in &created {
        let parent = d.parent().unwrap_or(root);
        ctx.sync_dir(parent)
            .await
            .map_err(|e| StoreError::file("sync directory", &parent.display().to_string(), e))?;
    }
    Ok(())
}

/// Removes `dir` and its parents below `root` while they are empty (best effort: a directory that is
/// not empty, or gone, ends the walk).
pub(crate) async fn remove_empty_dirs(root: &FsPath, dir: &FsPath) {
    let (root, dir) = (root.to_owned(), dir.to_owned());
    let res = tokio::task::spawn_blocking(move || {
        let mut at = dir.as_path();
        while at != root && at.starts_with(&root) {
            if std::fs::remove_dir(at).is_err() {
                break;
            }
            match at.parent() {
                Some(p) => at = p,
                None => break,
            }
        }
    })
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "removing empty directories failed");
    }
}

/// Creates a hard link `to` of `from` (both under the root).
pub(crate) async fn hard_link(from: &FsPath, to: &FsPath) -> Result<(), StoreError> {
    let (f, t) = (from.to_owned(), to.to_owned());
    blocking("hard link", to, move || std::fs::hard_link(&f, &t)).await
}

/// `lstat` of `path` on the blocking pool.
pub(crate) async fn symlink_metadata(path: &FsPath) -> Result<std::fs::Metadata, StoreError> {
    let p = path.to_owned();
    blocking("stat", path, move || std::fs::symlink_metadata(&p)).await
}
