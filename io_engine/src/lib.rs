//! The lowest layer of `virtual_file`: aligned, ownership-passing IO buffers ([`buf`]) and the IO
//! engines that perform positional IO on them ([`engine`]).
//!
//! Pick it when you want positional file IO whose buffers are owned values: a buffer goes into an
//! operation and comes back with the result, so the kernel can use it (io_uring) while the caller's
//! future is suspended or even dropped. `virtual_file` builds files, IO modes and metrics on top; use this
//! crate directly only to write an engine-level tool or test.
//!
//! # Example
//!
//! Write a block and read it back through the default engine (io_uring where it starts, else `std-fs`).
//! The io_uring engine needs a tokio runtime:
//!
//! ```
//! use std::sync::Arc;
//!
//! use io_engine::{FullSlice, IoBufferMut, IoEngine, Slice};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let engine = IoEngine::launch_default();
//!     let dir = tempfile::tempdir()?;
//!     let path = dir.path().join("block");
//!     let fd = Arc::new(engine.open(&path, libc::O_CREAT | libc::O_RDWR, 0o644).await?);
//!
//!     // the buffer moves into the op and comes back with the result, on success and on error
//!     let data: IoBufferMut = IoBufferMut::from_slice(b"hello, engine"); // 4096-byte aligned
//!     let (_data, written) = engine.write_at(&fd, 0, FullSlice::new(data)).await;
//!     assert_eq!(written?, 13); // a short write would be returned as it came
//!
//!     let (read, n) = engine.read_at(&fd, 0, Slice::new(Vec::with_capacity(64), ..)).await;
//!     assert_eq!(&read.into_inner()[..n?], b"hello, engine");
//!     println!("engine {}", engine.kind());
//!     Ok(())
//! })
//! # }
//! ```

#![warn(missing_docs)]

pub mod buf;
pub mod engine;
pub mod env;
#[cfg(feature = "testing")]
pub mod test_support;

pub use buf::{
    Alignment, ConstAlign, DefaultAlign, FullSlice, IoBuf, IoBufMut, IoBuffer, IoBufferMut, Slice,
};
#[cfg(feature = "testing")]
pub use engine::power_loss;
pub use engine::{
    DioAlign, EngineSelectError, EngineStartError, FileStat, IoEngine, IoEngineKind, IoFd,
    RenameMode, StdFsEngine, UringConfig, UringEngine, UringStats, IO_ENGINE_ENV,
};
#[cfg(feature = "testing")]
pub use engine::{Fault, FaultOp, FaultPlan, FaultRule, FaultyEngine, PowerLossEngine, RingFault};
pub use env::EnvSettingError;
