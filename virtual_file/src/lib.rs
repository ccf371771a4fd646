//! `VirtualFile`: positional async reads and writes through an IO engine, the [`IoMode`] that decides
//! where `O_DIRECT` is used, the [`IoContext`] files are opened through (engine, mode, alignment,
//! open-file cache, metrics), and the double-buffered [`BufferedWriter`](buffered_writer::BufferedWriter).
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

//! # Layout
//!
//! The crate is a stack of floors, lowest first; a module uses only its own floor and those below it,
//! and this file only declares the modules and re-exports:
//!
//! 1. `metrics` (op counts and latencies), `io_mode` ([`IoMode`]), `cache` (the open-file cache of
//!    descriptors), `file::id` ([`FileId`]);
//! 2. `memory_budget` ([`MemoryBudget`], its consumers and reservations);
//! 3. `error` ([`Error`]);
//! 4. `page_cache`: `slot` (slot states, page buffers), then `map` (the map and clock eviction), then
//!    `budget` (pages paid from the memory budget), then the cache itself;
//! 5. [`buffered_writer`] (the double-buffered writer and its read plans, over the
//!    [`OwnedAsyncWriter`](buffered_writer::OwnedAsyncWriter) trait);
//! 6. `context` ([`IoContext`]: engine, mode, budget, caches, metrics);
//! 7. `file` ([`VirtualFile`]: all IO of one file, uncached and through the page cache, one short-IO
//!    loop for every positional read and write, and the coherence of the cached pages);
// (a link only where the module is built: without the feature it is not, and the link would be broken)
#![cfg_attr(
    feature = "prometheus",
    doc = " 8. [`metrics_export`] (the Prometheus text format, feature `prometheus`)."
)]
#![cfg_attr(
    not(feature = "prometheus"),
    doc = " 8. `metrics_export` (the Prometheus text format, feature `prometheus`)."
)]
//!
//! Every type has one public path: the two public modules keep their items, everything else is
//! re-exported here.

#![warn(missing_docs)]

/// Builder setters that store their argument in the field it is named after: each
/// `$(#[attr])* fn name(field: Type);` becomes `pub fn name(mut self, field: Type) -> Self` setting
/// `self.field`, with those attributes (its doc, a `cfg`). Defined before the modules, so that every
/// module of the crate sees it.
macro_rules! setters {
    ($($(#[$attr:meta])* fn $name:ident($field:ident: $ty:ty);)*) => {
        $(
            $(#[$attr])*
            pub fn $name(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}

pub mod buffered_writer;
mod cache;
mod context;
mod error;
mod file;
mod io_mode;
mod memory_budget;
mod metrics;
#[cfg(feature = "prometheus")]
pub mod metrics_export;
mod page_cache;

pub use cache::DEFAULT_OPEN_FILES;
pub use context::{
    parse_memory_mib, parse_open_files, IoContext, IoContextBuilder, DEFAULT_ALIGNMENT,
    OPEN_FILES_ENV,
};
pub use error::{Error, MisalignedPart};
pub use file::{
    FileId, OpenOptions, Scan, ScanChunk, ScanOptions, VirtualFile, DEFAULT_SCAN_READ,
    DEFAULT_SCAN_READS, TEMP_NAME_ATTEMPTS,
};
pub use io_mode::{IoMode, IO_MODE_ENV};
pub use memory_budget::{
    Consumer, MemoryBudget, MemoryBudgetError, MemoryBudgetSnapshot, Reclaim, Reservation,
    DEFAULT_MEMORY_BYTES, MAX_RESERVATION, MEMORY_MIB_ENV,
};
pub use metrics::{MetricsSnapshot, OpKind, OpMetricsSnapshot, LATENCY_BUCKETS};
pub use page_cache::{PageCacheSnapshot, ReadIntent, CACHE_PAGE_SIZE};
