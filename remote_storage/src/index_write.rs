//! Updates of the index object that lose nothing when several writers update one prefix at once.
//!
//! Every update is a read-modify-write made safe by the store:
//!
//! 1. Read `index.json` with its version (ETag, and the object version where the store keeps them).
//! 2. Apply the change to what was read.
//! 3. Write it back conditionally: `PutMode::Update` with the version read (`If-Match: <etag>` on S3),
//!    or `PutMode::Create` (`If-None-Match: *`) when there was no index.
//! 4. If another writer got there first (`412 Precondition Failed`, or the index created meanwhile), go
//!    back to 1: the change is applied again to the new index, so both writers' changes survive. After
//!    [`RetryPolicy::conflict_attempts`](crate::RetryPolicy::conflict_attempts) lost races (with
//!    backoff between them) the update fails with [`RemoteError::IndexConflict`] and nothing of it was
//!    written.
//!
//! Within one [`RemoteStorage`] updates also take an in-process lock, so its own uploads do not race
//! each other; the conditional write is what keeps other instances and other processes apart.
//!
//! **Local backend.** `object_store`'s `LocalFileSystem` has no conditional update (`PutMode::Update`
//! is `NotImplemented`). There every update holds an exclusive `flock(2)` on
//! `<root>/<prefix>/index.json.lock` from the read to the write, then writes with a plain put (an
//! atomic rename). That serializes every instance and process on this machine, which is what the local
//! backend is for; it does not hold across machines sharing the directory over NFS or similar, where
//! `flock` may not be coherent.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{store_error_is_transient, RemoteError};
use crate::index::{validate_layer_name, RemoteIndex};
use crate::remote::RemoteStorage;

/// An exclusive `flock` on a file, released when dropped (the descriptor is closed).
struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    /// Waits (on the blocking pool) for the exclusive lock of `path`, creating the file if needed. If
    /// the caller is dropped while waiting, the lock is released as soon as it is taken.
    async fn acquire(path: &Path) -> Result<FileLock, RemoteError> {
        let owned = path.to_owned();
        let locked = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&owned)?;
            loop {
                // SAFETY: `file` is open for the whole call, so its descriptor is valid; flock does not
                // touch memory.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
                if rc == 0 {
                    return Ok(file);
                }
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        locked.map(FileLock).map_err(|source| RemoteError::LocalFs {
            layer: String::new(),
            op: "flock (exclusive) the index lock",
            path: path.to_owned(),
            source,
        })
    }
}

/// A conditional write lost to another writer.
fn is_conflict(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }
    )
}

impl RemoteStorage {
    /// The read-modify-write of the index described in the module docs. `change` gets the index as
    /// read and the generation this write will have, and returns false for no change (nothing is
    /// written then); it is called again after each lost race, on the new index. Returns the index as
    /// stored afterwards.
    pub(crate) async fn update_index(
        &self,
        mut change: impl FnMut(&mut RemoteIndex, u64) -> bool,
    ) -> Result<RemoteIndex, RemoteError> {
        let _in_process = self.index_lock.lock().await;
        let _file_lock = match &self.index_file_lock {
            Some(path) => Some(FileLock::acquire(path).await?),
            None => None,
        };
        let policy = &self.options.retry;
        let key = self.index_key();
        let (mut conflicts, mut failures) = (0u32, 0u32);
        loop {
            let (mut index, version) = self.load_index_versioned().await?;
            let generation = index.generation + 1;
            if !change(&mut index, generation) {
                return Ok(index);
            }
            index.generation = generation;
            let mode = match (&self.index_file_lock, version) {
                // under the file lock: nothing else writes the index
                (Some(_), _) => PutMode::Overwrite,
                (None, None) => PutMode::Create,
                (None, Some(version)) if version.e_tag.is_none() => {
                    return Err(RemoteError::Config(format!(
                        "{}: the store returned no ETag for {key}, so the index cannot be updated \
                         conditionally",
                        self.description
                    )))
                }
                (None, Some(version)) => PutMode::Update(version),
            };
            let put = PutOptions {
                mode,
                ..PutOptions::default()
            };
            let payload = PutPayload::from(bytes::Bytes::from(index.encode()));
            let wait = match self.store.put_opts(&key, payload, put).await {
                Ok(_) => return Ok(index),
                Err(e) if is_conflict(&e) => {
                    conflicts += 1;
                    if conflicts >= policy.conflict_attempts {
                        return Err(RemoteError::IndexConflict {
                            store: self.description.clone(),
                            key: key.to_string(),
                            attempts: conflicts,
                        });
                    }
                    tracing::debug!(%key, conflicts, "index changed by another writer; applying the change again");
                    policy.backoff(conflicts)
                }
                // A transient failure may have written the index anyway: the next attempt reads it
                // again, and a conditional write of an already applied change just applies it again.
                Err(e) if store_error_is_transient(&e) && failures + 1 < policy.max_attempts => {
                    failures += 1;
                    tracing::warn!(%key, attempt = failures, error = %e, "index write failed, retrying");
                    policy.backoff(failures)
                }
                Err(e) => {
                    let mut err = self.store_error("put", key.as_ref(), e);
                    if let RemoteError::Store { attempts, .. } = &mut err {
                        *attempts = failures + 1;
                    }
                    return Err(err);
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Removes layer `name` from the index, then deletes its object.
    pub async fn delete_layer(&self, name: &str) -> Result<(), RemoteError> {
        validate_layer_name(name)?;
        self.update_index(|index, _| index.layers.remove(name).is_some())
            .await?;
        let key = self.layer_key(name);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error("delete", key.as_ref(), e)),
        }
    }
}
