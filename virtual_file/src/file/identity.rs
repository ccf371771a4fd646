//! The identity checks of a [`VirtualFile`](super::VirtualFile) ([`FileId`]): a reopen by path tells the
//! file it opened before from another one that took its path since.
//!
//! The identity is `(device, inode)` from `statx` of the open descriptor, taken once at first open. A
//! reopen by the open-file cache compares the new descriptor's identity with it before the descriptor is
//! used; a mismatch is [`Error::FileReplaced`](crate::Error::FileReplaced) and the new descriptor is closed
//! unused. A rename of the file itself keeps its inode, so [`VirtualFile::rename`](super::VirtualFile::rename)
//! does not change the identity.
//!
//! An inode number can be reused once the old file is gone and its last descriptor closed: where the
//! file system reports a birth time (`statx` `btime`), a reopen also compares it, so a new file with
//! the old inode number is refused too. Weakness: where it does not, such a file passes the check.
//! Unique temp names (`temp.rs`, [`VirtualFile::create_temp`](super::VirtualFile::create_temp))
//! make a new file at an old file's path unlikely to begin with.

use std::sync::Arc;

use io_engine::IoFd;

use super::id::FileId;

use crate::error::Error;
use crate::metrics::OpKind;

impl super::VirtualFile {
    /// Checks that `fd`, just opened by path, is the file first opened: else [`Error::FileReplaced`].
    pub(super) async fn check_identity(&self, fd: &Arc<IoFd>) -> Result<(), Error> {
        let stat = Self::timed_statx(&self.ctx, fd)
            .await
            .map_err(|e| self.io_error(OpKind::Metadata, None, None, e))?;
        let found = FileId::of(&stat);
        // A new file can get the inode number of a deleted one: the birth time tells them apart where
        // the file system reports it.
        let born_same = match (stat.birth, self.shared.birth()) {
            (Some(now), Some(then)) => now == then,
            _ => true,
        };
        if found == self.id && born_same {
            return Ok(());
        }
        tracing::warn!(
            path = %self.path.display(),
            expected = %self.id,
            %found,
            born_same,
            "reopen found another file at the path; refusing to use it"
        );
        Err(Error::FileReplaced {
            path: self.path.clone(),
            expected: self.id,
            found,
            mode: self.mode(),
        })
    }

    /// Opens the same file again, read-only, as a second independent handle (for example a reader next
    /// to a writer): the path is opened anew and must still name this file, else
    /// [`Error::FileReplaced`] and no handle.
    pub async fn open_again_read_only(&self) -> Result<super::VirtualFile, Error> {
        let other = Self::open(&self.ctx, &self.path).await?;
        if other.id != self.id {
            return Err(Error::FileReplaced {
                path: self.path.clone(),
                expected: self.id,
                found: other.id,
                mode: self.mode(),
            });
        }
        // The same file (checked above): it shares this open's cached pages, like every handle of the file.
        Ok(other)
    }
}
