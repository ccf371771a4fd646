//! [`FileId`]: which file a descriptor refers to, (device, inode) from `statx`. The lowest floor of
//! `file/`: [`Error`](crate::Error) names it, so it uses nothing of the crate. The checks made with it
//! are in `identity.rs`.

use io_engine::FileStat;

/// A file's identity: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The device (`makedev(major, minor)`).
    pub dev: u64,
    /// The inode number.
    pub ino: u64,
}

impl FileId {
    /// The identity `statx` reported.
    pub fn of(stat: &FileStat) -> Self {
        Self {
            dev: stat.dev,
            ino: stat.ino,
        }
    }
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device {}:{}, inode {}",
            libc::major(self.dev),
            libc::minor(self.dev),
            self.ino
        )
    }
}
