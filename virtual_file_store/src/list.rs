//! Listings: `list` walks the directory of the prefix on tokio's blocking pool and streams the objects
//! in batches (a bounded channel, so a slow consumer stops the walk); `list_with_delimiter` reads one
//! directory. The store's temp files are never listed; the order is not specified (as for
//! `LocalFileSystem`), except that `list_with_delimiter` sorts both of its lists.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta, Result};

use crate::error::StoreError;
use crate::location::{location_of, prefix_dir};
use crate::object_meta::FileFacts;
use crate::store_inner::StoreInner;

/// Objects sent per batch by the walk.
const BATCH: usize = 1000;

type Batch = Vec<Result<ObjectMeta>>;

fn walk(root: &FsPath, dir: &FsPath, tx: &tokio::sync::mpsc::Sender<Batch>) -> bool {
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    let mut batch = Vec::with_capacity(BATCH);
    let send = |batch: &mut Batch| tx.blocking_send(std::mem::take(batch)).is_ok();
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // the prefix does not exist or is a file, or a directory vanished during the walk
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => continue,
            Err(e) => {
                batch.push(Err(StoreError::fs("list", &d, e).into_object_store("")));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    batch.push(Err(StoreError::fs("list", &d, e).into_object_store("")));
                    continue;
                }
            };
            let path = entry.path();
            let md = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => {
                    batch.push(Err(StoreError::fs("stat", &path, e).into_object_store("")));
                    continue;
                }
            };
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() {
                if let Some(location) = location_of(root, &path) {
                    batch.push(Ok(FileFacts::from_std(&md).meta(location)));
                }
            }
            if batch.len() >= BATCH && !send(&mut batch) {
                return false;
            }
        }
    }
    batch.is_empty() || send(&mut batch)
}

pub(crate) fn list(
    store: &Arc<StoreInner>,
    prefix: Option<&Path>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let root = store.root.clone();
    let dir = prefix_dir(&root, prefix);
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(2);
    tokio::task::spawn_blocking(move || walk(&root, &dir, &tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
        .flat_map(futures::stream::iter)
        .boxed()
}

pub(crate) async fn list_with_delimiter(
    store: &Arc<StoreInner>,
    prefix: Option<&Path>,
) -> Result<ListResult> {
    let root = store.root.clone();
    let dir = prefix_dir(&root, prefix);
    let res = tokio::task::spawn_blocking(move || -> Result<ListResult, StoreError> {
        let mut out = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(out)
            }
            Err(e) => return Err(StoreError::fs("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::fs("list", &dir, e))?;
            let path = entry.path();
            let md = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(StoreError::fs("stat", &path, e)),
            };
            let Some(location) = location_of(&root, &path) else {
                continue;
            };
            if md.is_dir() {
                out.common_prefixes.push(location);
            } else if md.is_file() {
                out.objects.push(FileFacts::from_std(&md).meta(location));
            }
        }
        out.common_prefixes.sort();
        out.objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    })
    .await;
    match res {
        Ok(r) => r.map_err(|e| e.into_object_store("")),
        Err(join) => Err(object_store::Error::JoinError { source: join }),
    }
}
