//! [`Error`]: what a [`VirtualFile`](crate::VirtualFile) operation can fail with, carrying what a person
//! needs to act on it: the path, offset, length, IO mode and engine.

use std::error::Error as _;
use std::io;
use std::path::PathBuf;

use io_engine::{EngineSelectError, EnvSettingError, IoEngineKind};

use crate::file::id::FileId;
use crate::io_mode::IoMode;
use crate::metrics::OpKind;

/// Which part of an `O_DIRECT` request broke the alignment rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum MisalignedPart {
    /// The file offset.
    Offset,
    /// The transfer length.
    Length,
    /// The buffer's memory address.
    Buffer,
}

/// Errors of [`VirtualFile`](crate::VirtualFile) and [`IoContext`](crate::IoContext) operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An `O_DIRECT` request whose offset, length or buffer address is not a multiple of the alignment.
    /// Detected before any syscall; the file is unchanged.
    #[error(
        "{op} {path}: {part} not aligned for O_DIRECT (offset {offset}, len {len}, buffer address {addr:#x}, \
         alignment {align}, io mode {mode})"
    )]
    Misaligned {
        /// The operation that was refused.
        op: OpKind,
        /// The file's path as opened.
        path: PathBuf,
        /// Which of offset, length and buffer address broke the rule (the first one checked).
        part: MisalignedPart,
        /// File offset of the request, bytes.
        offset: u64,
        /// Length of the request, bytes.
        len: usize,
        /// Memory address of the buffer.
        addr: usize,
        /// The alignment required, bytes (the context's alignment).
        align: usize,
        /// The context's IO mode.
        mode: IoMode,
    },
    /// The kernel (or the loop around it) failed the operation. `source.kind()` is `UnexpectedEof` for a
    /// read that hit end of file early and `WriteZero` for a write that made no progress, as in `std`.
    #[error(
        "{op} {path} (offset {offset:?}, len {len:?}, io mode {mode}, engine {engine}): {source}"
    )]
    Io {
        /// The operation that failed.
        op: OpKind,
        /// The file's path as opened.
        path: PathBuf,
        /// File offset of the request; `None` for operations without one (open, sync, metadata).
        offset: Option<u64>,
        /// Length of the request, bytes; `None` for operations without one.
        len: Option<usize>,
        /// The context's IO mode.
        mode: IoMode,
        /// The IO engine that ran it.
        engine: IoEngineKind,
        /// The system error (or `UnexpectedEof` / `WriteZero` from the transfer loop).
        #[source]
        source: io::Error,
    },
    /// The file system refused `O_DIRECT` and the IO mode was chosen explicitly.
    #[error(
        "open {path}: the file system rejects O_DIRECT ({source}), which io mode {mode} needs; choose \
         VIRTUAL_FILE_IO_MODE=buffered for this file system"
    )]
    DirectUnsupported {
        /// The file's path as opened.
        path: PathBuf,
        /// The IO mode that asked for `O_DIRECT`.
        mode: IoMode,
        /// The error of the `O_DIRECT` open (typically `EINVAL`).
        #[source]
        source: io::Error,
    },
    /// The file system needs a stricter `O_DIRECT` alignment than the context's buffers provide.
    #[error(
        "open {path}: the file system needs O_DIRECT buffers aligned to {mem_align} and offsets to \
         {offset_align}, but this context aligns to {align} (io mode {mode}); use a 4096-byte alignment"
    )]
    AlignmentUnsupported {
        /// The file's path as opened.
        path: PathBuf,
        /// Buffer address alignment the file system needs, bytes (`statx` `STATX_DIOALIGN`).
        mem_align: u32,
        /// File offset and length alignment the file system needs, bytes.
        offset_align: u32,
        /// The context's alignment, bytes.
        align: usize,
        /// The context's IO mode.
        mode: IoMode,
    },
    /// A reopen by path (after the open-file cache evicted the descriptor) found another file than the one
    /// first opened: the path was renamed over, or removed and created again. Nothing was read or written.
    #[error(
        "reopen {path}: the path now names another file ({found}) than the one opened ({expected}); it was \
         replaced (io mode {mode})"
    )]
    FileReplaced {
        /// The path that was reopened.
        path: PathBuf,
        /// Device and inode of the file first opened.
        expected: FileId,
        /// Device and inode the path names now.
        found: FileId,
        /// The context's IO mode.
        mode: IoMode,
    },
    /// A rename that must not replace anything found its target taken (`RENAME_NOREPLACE`, `EEXIST`).
    /// Neither file was changed.
    #[error("rename {from} to {to}: the target already exists and replacing it was not asked for")]
    AlreadyExists {
        /// The file being renamed.
        from: PathBuf,
        /// The target path, which exists.
        to: PathBuf,
        /// The `EEXIST` error.
        #[source]
        source: io::Error,
    },
    /// Exclusive creation of a uniquely named file met an existing file at every name tried.
    #[error(
        "create a unique file {dir}/{prefix}*{suffix}: every one of {attempts} random names already \
         existed"
    )]
    NameCollision {
        /// The directory the file was to be created in.
        dir: PathBuf,
        /// The name's fixed start, before the random part.
        prefix: String,
        /// The name's fixed end, after the random part.
        suffix: String,
        /// Names tried ([`TEMP_NAME_ATTEMPTS`](crate::TEMP_NAME_ATTEMPTS)).
        attempts: u32,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A single request for IO memory is larger than the whole memory budget.
    #[error(transparent)]
    Memory(#[from] crate::memory_budget::MemoryBudgetError),
    /// A setting read from the environment is invalid.
    #[error(transparent)]
    EnvSetting(#[from] EnvSettingError),
    /// The IO engine chosen (explicitly or from the environment) could not be selected or started.
    #[error("{}", engine_error_chain(.0))]
    Engine(#[from] EngineSelectError),
}

/// The engine error and its cause on one line (the cause says *why* io_uring could not start).
fn engine_error_chain(e: &EngineSelectError) -> String {
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl Error {
    /// The `io::ErrorKind` of an [`Error::Io`] (for example `UnexpectedEof`), `InvalidInput` for
    /// misalignment and configuration errors, `Unsupported` for a file system that cannot do what the mode
    /// asks.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Io { source, .. } => source.kind(),
            Error::AlreadyExists { .. } | Error::NameCollision { .. } => {
                io::ErrorKind::AlreadyExists
            }
            Error::FileReplaced { .. } => io::ErrorKind::NotFound,
            Error::Misaligned { .. } | Error::Config(_) | Error::EnvSetting(_) => {
                io::ErrorKind::InvalidInput
            }
            Error::Memory(_) => io::ErrorKind::OutOfMemory,
            Error::DirectUnsupported { .. }
            | Error::AlignmentUnsupported { .. }
            | Error::Engine(_) => io::ErrorKind::Unsupported,
        }
    }

    /// The raw OS error number of an [`Error::Io`] from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::AlreadyExists { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}
