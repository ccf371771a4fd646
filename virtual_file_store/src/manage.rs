//! Deletes, copies and renames.
//!
//! - `delete` unlinks the object's file (through the engine) and removes the directories it leaves empty.
//!   A missing object is `NotFound`.
//! - `copy` hard-links the source: every write to an object replaces its file by rename, so a linked
//!   copy keeps its bytes when the source is written again. Overwriting copies link to a temp name in
//!   the target's directory and rename it into place; `copy_if_not_exists` links to the target name
//!   itself, which fails with `AlreadyExists` if it exists. Both sync the target's directory.
//! - `rename` renames through the engine (`RENAME_NOREPLACE` for `rename_if_not_exists`), syncs both
//!   directories, and removes the source's directories if they are left empty.

use std::path::Path as FsPath;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use io_engine::RenameMode;
use object_store::path::Path;
use object_store::Result;

use crate::directories::{
    create_dirs, hard_link, remove_empty_dirs, symlink_metadata, CREATE_ATTEMPTS,
};
use crate::error::{not_found, StoreError};
use crate::location::{object_file, random_hex, INTERNAL_MARK};
use crate::store_inner::StoreInner;

/// Deletes going on at once in `delete_stream`.
const DELETES_IN_FLIGHT: usize = 8;

pub(crate) async fn delete(store: &StoreInner, location: &Path) -> Result<()> {
    let loc = location.as_ref();
    let path = object_file(&store.root, location).map_err(|e| e.into_object_store(loc))?;
    match store.ctx.engine().unlink(&path).await {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::EISDIR)
            ) =>
        {
            return Err(not_found(loc, "no such object"))
        }
        Err(e) => return Err(StoreError::fs("delete", &path, e).into_object_store(loc)),
    }
    if let Some(dir) = path.parent() {
        remove_empty_dirs(&store.root, dir).await;
    }
    Ok(())
}

pub(crate) fn delete_stream(
    store: Arc<StoreInner>,
    locations: BoxStream<'static, Result<Path>>,
) -> BoxStream<'static, Result<Path>> {
    locations
        .map(move |location| {
            let store = Arc::clone(&store);
            async move {
                let location = location?;
                delete(&store, &location).await?;
                Ok(location)
            }
        })
        .buffered(DELETES_IN_FLIGHT)
        .boxed()
}

async fn sync_parent(store: &StoreInner, path: &FsPath, loc: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(&store.root);
    store
        .ctx
        .sync_dir(dir)
        .await
        .map_err(|e| StoreError::file("sync directory", loc, e).into_object_store(loc))
}

/// Checks that `from` is an object (a regular file); `NotFound` otherwise.
async fn check_source(path: &FsPath, loc: &str) -> Result<()> {
    match symlink_metadata(path).await {
        Ok(md) if md.is_file() => Ok(()),
        Ok(_) => Err(not_found(loc, "not an object")),
        Err(e) => Err(e.into_object_store(loc)),
    }
}

pub(crate) async fn copy(store: &StoreInner, from: &Path, to: &Path, replace: bool) -> Result<()> {
    let (floc, tloc) = (from.as_ref(), to.as_ref());
    let src = object_file(&store.root, from).map_err(|e| e.into_object_store(floc))?;
    let dst = object_file(&store.root, to).map_err(|e| e.into_object_store(tloc))?;
    check_source(&src, floc).await?;
    let dir = dst.parent().unwrap_or(&store.root).to_owned();
    for attempt in 1..=CREATE_ATTEMPTS {
        create_dirs(&store.ctx, &store.root, &dir)
            .await
            .map_err(|e| e.into_object_store(tloc))?;
        let res = if replace {
            let name = dst
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let staged = dir.join(format!("{name}{INTERNAL_MARK}copy.{}", random_hex()));
            match hard_link(&src, &staged).await {
                Ok(()) => match store
                    .ctx
                    .engine()
                    .rename(&staged, &dst, RenameMode::Replace)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = store.ctx.engine().unlink(&staged).await;
                        Err(StoreError::fs("rename into place", &dst, e))
                    }
                },
                Err(e) => Err(e),
            }
        } else {
            hard_link(&src, &dst).await
        };
        match res {
            Ok(()) => return sync_parent(store, &dst, tloc).await,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && attempt < CREATE_ATTEMPTS => {
                // the source went away, or the target directory was emptied and removed meanwhile
                check_source(&src, floc).await?;
            }
            Err(e) => {
                let loc = if e.raw_os_error() == Some(libc::EEXIST) {
                    tloc
                } else {
                    floc
                };
                return Err(e.into_object_store(loc));
            }
        }
    }
    Err(not_found(floc, "copy kept failing with ENOENT"))
}

pub(crate) async fn rename(
    store: &StoreInner,
    from: &Path,
    to: &Path,
    replace: bool,
) -> Result<()> {
    let (floc, tloc) = (from.as_ref(), to.as_ref());
    let src = object_file(&store.root, from).map_err(|e| e.into_object_store(floc))?;
    let dst = object_file(&store.root, to).map_err(|e| e.into_object_store(tloc))?;
    check_source(&src, floc).await?;
    let dir = dst.parent().unwrap_or(&store.root).to_owned();
    let mode = if replace {
        RenameMode::Replace
    } else {
        RenameMode::NoReplace
    };
    for attempt in 1..=CREATE_ATTEMPTS {
        create_dirs(&store.ctx, &store.root, &dir)
            .await
            .map_err(|e| e.into_object_store(tloc))?;
        match store.ctx.engine().rename(&src, &dst, mode).await {
            Ok(()) => {
                sync_parent(store, &dst, tloc).await?;
                sync_parent(store, &src, floc).await?;
                if let Some(d) = src.parent() {
                    remove_empty_dirs(&store.root, d).await;
                }
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && attempt < CREATE_ATTEMPTS => {
                check_source(&src, floc).await?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                return Err(StoreError::fs("rename", &dst, e).into_object_store(tloc))
            }
            Err(e) => return Err(StoreError::fs("rename", &src, e).into_object_store(floc)),
        }
    }
    Err(not_found(floc, "rename kept failing with ENOENT"))
}
