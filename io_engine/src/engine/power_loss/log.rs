//! The op log of the power-loss engine: the ops that change durable state, in completion order.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

/// A file as the log knows it: one per created inode (an inode number reused after a file is gone gets a
/// new id). Renames move names, never ids.
pub type FileId = usize;

/// A directory entry: the directory's path and the name in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    /// The directory (a path under the recorder's root).
    pub dir: PathBuf,
    /// The name within it.
    pub name: OsString,
}

impl Entry {
    /// The full path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

/// One op that changes what a power cut can leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurableOp {
    /// `open` with `O_CREAT` made a new file under `entry`.
    Create {
        /// The directory and name it was created under.
        entry: Entry,
        /// The new file.
        file: FileId,
    },
    /// `write_at` / `writev_at` wrote `data` (the bytes the kernel reported written) at `offset`.
    Write {
        /// Which file.
        file: FileId,
        /// File offset.
        offset: u64,
        /// The bytes written.
        data: Arc<[u8]>,
    },
    /// `ftruncate`, or `O_TRUNC` at the open of an existing file.
    SetLen {
        /// Which file.
        file: FileId,
        /// The new length.
        len: u64,
    },
    /// `fallocate(mode, offset, len)`.
    Fallocate {
        /// Which file.
        file: FileId,
        /// `0` or `FALLOC_FL_*` flags.
        mode: i32,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// `fsync` or `fdatasync` of a regular file completed.
    SyncFile {
        /// Which file.
        file: FileId,
    },
    /// `fsync` of a directory completed.
    SyncDir {
        /// The directory's path.
        dir: PathBuf,
    },
    /// `rename(from, to)` moved `file`.
    Rename {
        /// The file moved.
        file: FileId,
        /// The old name.
        from: Entry,
        /// The new name.
        to: Entry,
        /// True for `RENAME_NOREPLACE`.
        no_replace: bool,
    },
    /// `unlink` removed `entry`, which named `file`.
    Unlink {
        /// The name removed.
        entry: Entry,
        /// The file it named.
        file: FileId,
    },
}

impl DurableOp {
    /// The file whose data the op changes, for data ops.
    pub fn data_file(&self) -> Option<FileId> {
        match self {
            Self::Write { file, .. } | Self::SetLen { file, .. } | Self::Fallocate { file, .. } => {
                Some(*file)
            }
            _ => None,
        }
    }

    /// True for ops that change directory entries (create, rename, unlink).
    pub fn is_dir_op(&self) -> bool {
        matches!(
            self,
            Self::Create { .. } | Self::Rename { .. } | Self::Unlink { .. }
        )
    }

    /// True for a completed file or directory sync.
    pub fn is_sync(&self) -> bool {
        matches!(self, Self::SyncFile { .. } | Self::SyncDir { .. })
    }

    /// The directories whose fsync makes this directory op durable (both, for a rename).
    pub fn dirs(&self) -> Vec<&PathBuf> {
        match self {
            Self::Create { entry, .. } | Self::Unlink { entry, .. } => vec![&entry.dir],
            Self::Rename { from, to, .. } => vec![&from.dir, &to.dir],
            _ => Vec::new(),
        }
    }
}

/// One logged op. The log is in completion order: op `i` completed before op `i + 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOp {
    /// What was done.
    pub op: DurableOp,
    /// The log's length when the op was issued: every op at an index below it had completed before this
    /// op started. An op issued before earlier-logged ops completed overlapped them.
    pub issued: usize,
}

/// A snapshot of an op log with the root its paths are under.
#[derive(Debug, Clone)]
pub struct OpLog {
    pub(crate) root: PathBuf,
    pub(crate) ops: Arc<[LoggedOp]>,
}

impl OpLog {
    /// A log made by hand (to test the crash model, or a checker, on a sequence no real code produces).
    /// Paths must be under `root`.
    pub fn from_ops(root: impl Into<PathBuf>, ops: Vec<LoggedOp>) -> Self {
        Self {
            root: root.into(),
            ops: ops.into(),
        }
    }

    /// The root directory the images reproduce.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// The ops, in completion order.
    pub fn ops(&self) -> &[LoggedOp] {
        &self.ops
    }

    /// Number of ops; the cut points are `0..=len()`.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The cut points right after each completed sync (file or directory).
    pub fn sync_points(&self) -> Vec<usize> {
        self.ops
            .iter()
            .enumerate()
            .filter(|(_, o)| o.op.is_sync())
            .map(|(i, _)| i + 1)
            .collect()
    }
}
