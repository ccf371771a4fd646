//! [`FileStat`]: what `statx` tells about an open file.

/// The subset of `statx(2)` results this project uses (more fields may come: not constructible outside
/// this crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStat {
    /// File size in bytes.
    pub size: u64,
    /// Preferred IO block size.
    pub blksize: u32,
    /// `O_DIRECT` alignment requirements (`STATX_DIOALIGN`), if the file system reported them. `None` when
    /// the kernel or file system does not report it, or reports that it does not support `O_DIRECT` here.
    pub dio: Option<DioAlign>,
    /// The device the file lives on (`makedev(stx_dev_major, stx_dev_minor)`); with `ino`, the file's
    /// identity.
    pub dev: u64,
    /// The inode number.
    pub ino: u64,
    /// When the inode was created (`STATX_BTIME`: seconds and nanoseconds since the epoch), if the file
    /// system reports it: with `dev` and `ino`, it tells a file from a later one that reuses its inode.
    pub birth: Option<(i64, u32)>,
    /// When the data last changed (`stx_mtime`: seconds and nanoseconds since the epoch).
    pub modified: (i64, u32),
    /// File type and permission bits (`stx_mode`, as in `st_mode`).
    pub mode: u32,
}

/// `O_DIRECT` alignment requirements reported by `statx(STATX_DIOALIGN)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DioAlign {
    /// Required alignment of the user buffer's address.
    pub mem_align: u32,
    /// Required alignment of file offsets and IO lengths.
    pub offset_align: u32,
}

/// The `statx` mask this project asks for.
pub(crate) const STATX_MASK: u32 =
    libc::STATX_BASIC_STATS | libc::STATX_DIOALIGN | libc::STATX_BTIME;

impl FileStat {
    /// Extracts the fields from a `statx` result.
    pub(crate) fn from_statx(stx: &libc::statx) -> Self {
        let dio = (stx.stx_mask & libc::STATX_DIOALIGN != 0
            && stx.stx_dio_mem_align != 0
            && stx.stx_dio_offset_align != 0)
            .then_some(DioAlign {
                mem_align: stx.stx_dio_mem_align,
                offset_align: stx.stx_dio_offset_align,
            });
        Self {
            size: stx.stx_size,
            blksize: stx.stx_blksize,
            dio,
            dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
            ino: stx.stx_ino,
            birth: (stx.stx_mask & libc::STATX_BTIME != 0)
                .then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec)),
            modified: (stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec),
            mode: u32::from(stx.stx_mode),
        }
    }
}
