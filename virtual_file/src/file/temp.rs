//! Temp files and directory entries: unique names created exclusively, removal on drop, and renames that
//! never replace another file unless asked.
//!
//! Rules:
//! - A temp file is `dir/<prefix><16 hex digits><suffix>`, the digits random, opened with
//!   `O_CREAT | O_EXCL` through the context's engine (so its IO mode applies). An existing file at the name
//!   is never opened, truncated or written: the next random name is tried, and after
//!   [`TEMP_NAME_ATTEMPTS`] names that all existed the result is [`Error::NameCollision`].
//! - A temp file is removed from its directory when its [`VirtualFile`] is dropped, unless it was
//!   [`persist`](VirtualFile::persist)ed or [`keep`](VirtualFile::keep) was called. The removal is by path
//!   and only if the path still names this file (same device and inode), so a drop does not remove a
//!   file that took the path before the drop. (The check and the `unlink` are two syscalls: a file renamed
//!   onto the path between them is removed; Linux has no unlink-if-inode.) When the file is owned by a [`BufferedWriter`](crate::buffered_writer::BufferedWriter)'s flush task, the task
//!   drops it (and so removes it) only after its last write has finished.
//! - [`persist`](VirtualFile::persist) renames with `RENAME_NOREPLACE` unless told to replace: a target that
//!   exists is [`Error::AlreadyExists`] and both files stay as they were. Renames and removals go through the
//!   engine's `rename` / `unlink` ops; they are durable once the directory is synced
//!   ([`IoContext::sync_dir`]).
//!
//! Weakness: the removal on drop is a blocking `unlink` on the dropping thread (metadata only, no data
//! IO), since `Drop` cannot wait for the engine.

use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use io_engine::RenameMode;

use super::{FileId, OpenOptions, VirtualFile};
use crate::context::IoContext;
use crate::error::Error;
use crate::metrics::OpKind;

/// Random names tried by [`VirtualFile::create_temp`] before it gives up with [`Error::NameCollision`].
pub const TEMP_NAME_ATTEMPTS: u32 = 16;

/// A random 64-bit number: a per-process counter (never the same twice in one process) hashed with the
/// standard library's randomly keyed hasher (different keys in every process).
fn random_name_part() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

impl VirtualFile {
    /// Creates a new, empty temp file `dir/<prefix><16 hex digits><suffix>` for reading and writing, with a
    /// name no other file has (`O_CREAT | O_EXCL`; see the rules in `temp.rs`). The file is removed when
    /// dropped unless [`persist`](Self::persist)ed or [`keep`](Self::keep) is called.
    pub async fn create_temp(
        ctx: &IoContext,
        dir: &Path,
        prefix: &str,
        suffix: &str,
    ) -> Result<Self, Error> {
        Self::create_temp_with_names(ctx, dir, prefix, suffix, random_name_part).await
    }

    /// [`create_temp`](Self::create_temp) with the random part of the names from `next_name`.
    pub(crate) async fn create_temp_with_names(
        ctx: &IoContext,
        dir: &Path,
        prefix: &str,
        suffix: &str,
        mut next_name: impl FnMut() -> u64,
    ) -> Result<Self, Error> {
        let opts = OpenOptions::new().read(true).write(true).create_new(true);
        for _ in 0..TEMP_NAME_ATTEMPTS {
            let path = dir.join(format!("{prefix}{:016x}{suffix}", next_name()));
            match Self::open_with_options(ctx, &path, opts).await {
                Ok(mut file) => {
                    file.remove_on_drop = true;
                    return Ok(file);
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    tracing::debug!(path = %path.display(), "temp file name taken; trying another");
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::NameCollision {
            dir: dir.to_owned(),
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            attempts: TEMP_NAME_ATTEMPTS,
        })
    }

    /// True if the file is removed when dropped (a temp file not yet persisted).
    pub fn is_temp(&self) -> bool {
        self.remove_on_drop
    }

    /// Keeps the file when dropped (it stays under its current name).
    pub fn keep(&mut self) {
        self.remove_on_drop = false;
    }

    /// Renames the file to `to` (same file system) and keeps it from then on (no removal on drop). With
    /// [`RenameMode::NoReplace`] an existing `to` is [`Error::AlreadyExists`] and nothing changes. Durable
    /// once the directory is synced ([`IoContext::sync_dir`]).
    pub async fn persist(&mut self, to: impl AsRef<Path>, mode: RenameMode) -> Result<(), Error> {
        self.rename(to, mode).await?;
        self.remove_on_drop = false;
        Ok(())
    }

    /// Renames the file to `to` (same file system); later reopens use the new path, and a temp file stays
    /// a temp file. With [`RenameMode::NoReplace`] an existing `to` is [`Error::AlreadyExists`]. Not
    /// durable until the directory is synced ([`IoContext::sync_dir`]).
    pub async fn rename(&mut self, to: impl AsRef<Path>, mode: RenameMode) -> Result<(), Error> {
        let to = to.as_ref();
        match self.ctx.inner.engine.rename(&self.path, to, mode).await {
            Ok(()) => {
                self.path = to.to_owned();
                Ok(())
            }
            Err(source) if source.raw_os_error() == Some(libc::EEXIST) => {
                Err(Error::AlreadyExists {
                    from: self.path.clone(),
                    to: to.to_owned(),
                    source,
                })
            }
            Err(e) => Err(self.io_error(OpKind::Open, None, None, e)),
        }
    }

    /// Closes the file and removes its directory entry (through the engine's `unlink`).
    pub async fn remove(mut self) -> Result<(), Error> {
        self.remove_on_drop = false;
        let res = self.ctx.inner.engine.unlink(&self.path).await;
        res.map_err(|e| self.io_error(OpKind::Open, None, None, e))
    }

    /// For `Drop`: removes the path if it still names this file; logs what it cannot do.
    pub(super) fn remove_now_if_same_file(&self) {
        let path = &self.path;
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                let found = FileId {
                    dev: meta.dev(),
                    ino: meta.ino(),
                };
                if found != self.id {
                    tracing::warn!(
                        path = %path.display(),
                        expected = %self.id,
                        %found,
                        "temp file's path names another file; not removing it"
                    );
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot stat temp file to remove it");
                return;
            }
        }
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed temp file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove temp file")
            }
        }
    }
}
