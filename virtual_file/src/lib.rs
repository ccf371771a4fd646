//! `VirtualFile`: positional async reads and writes through an IO engine, the [`IoMode`] that decides
//! where `O_DIRECT` is used, the [`IoContext`] files are opened through (engine, mode, alignment,
//! open-file cache, metrics), and the double-buffered [`BufferedWriter`].
//!
//! Pick it for files that a storage engine writes once and reads with many small random reads: every
//! operation goes through one [`IoContext`], which decides per file whether `O_DIRECT` is used (and falls
//! back where the file system refuses it), checks alignment before the kernel sees a request, keeps the
//! number of open descriptors bounded, and counts ops, bytes and latencies.
//!
//! # Example
//!
//! Write an aligned page and read it back. `IoContext::from_env` takes the IO mode, engine and limits from
//! the `VIRTUAL_FILE_*` variables (defaults when unset) and needs a tokio runtime:
//!
//! ```
//! use io_engine::{FullSlice, IoBufferMut, Slice};
//! use virtual_file::{IoContext, OpKind, VirtualFile};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let ctx = IoContext::from_env()?;
//!     let dir = tempfile::tempdir()?;
//!     let file = VirtualFile::create(&ctx, dir.path().join("data")).await?;
//!
//!     // with O_DIRECT, offset, length and buffer address must be multiples of ctx.alignment()
//!     let mut page: IoBufferMut = IoBufferMut::zeroed(ctx.alignment());
//!     page.as_mut_slice()[..5].copy_from_slice(b"hello");
//!     let (_page, res) = file.write_all_at(FullSlice::new(page), 0).await;
//!     res?;
//!     file.sync_all().await?;
//!
//!     let buf: IoBufferMut = IoBufferMut::with_capacity(ctx.alignment());
//!     let (buf, res) = file.read_exact_at(Slice::new(buf, ..), 0).await;
//!     res?;
//!     assert_eq!(&buf.into_inner().as_slice()[..5], b"hello");
//!
//!     let metrics = ctx.metrics();
//!     assert_eq!(metrics.ops[OpKind::Write].count, 1);
//!     assert_eq!(metrics.ops[OpKind::Write].bytes, ctx.alignment() as u64);
//!     println!("mode {}, engine {}, direct {}", ctx.io_mode(), ctx.engine_kind(), file.is_direct());
//!     Ok(())
//! })
//! # }
//! ```

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
