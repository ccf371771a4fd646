//! `VirtualFile`: positional async reads and writes through an IO engine, the [`IoMode`] that decides
//! where `O_DIRECT` is used, the [`IoContext`] files are opened through (engine, mode, alignment,
//! open-file cache, metrics), and the double-buffered [`BufferedWriter`].

#![warn(missing_docs)]

pub mod buffered_writer;
mod cache;
pub mod context;
pub mod error;
pub mod file;
pub mod io_mode;
pub mod memory_budget;
pub mod metrics;
#[cfg(feature = "prometheus")]
pub mod metrics_export;
pub mod page_cache;

pub use buffered_writer::{BufferedWriter, BufferedWriterOptions, ShutdownMode};
pub use cache::DEFAULT_OPEN_FILES;
pub use context::{IoContext, IoContextBuilder, DEFAULT_ALIGNMENT, OPEN_FILES_ENV};
pub use error::{Error, MisalignedPart};
pub use file::{FileId, OpenOptions, VirtualFile, TEMP_NAME_ATTEMPTS};
pub use io_mode::{IoMode, IO_MODE_ENV};
pub use memory_budget::{
    Consumer, MemoryBudget, MemoryBudgetError, MemoryBudgetSnapshot, Reservation,
    DEFAULT_MEMORY_BYTES, MEMORY_MIB_ENV,
};
pub use metrics::{MetricsSnapshot, OpKind, OpMetricsSnapshot};
pub use page_cache::{PageCacheSnapshot, CACHE_PAGE_SIZE};
