//! The lowest layer of `virtual_file`: aligned, ownership-passing IO buffers and the IO engines that
//! perform positional IO on them.
//!
//! Pick it when you want positional file IO whose buffers are owned values: a buffer goes into an
//! operation and comes back with the result, so the kernel can use it (io_uring) while the caller's
//! future is suspended or even dropped. `virtual_file` builds files, IO modes and metrics on top; use this
//! crate directly only to write an engine-level tool or test.
//!
//! # Buffers
//!
//! Every IO path in this project hands its buffer to the engine *by value* and gets it back with the
//! result, on success, on error and on cancellation. That is what lets the io_uring engine keep a buffer
//! alive until the kernel is done with it, even when the future that started the IO was dropped.
//!
//! - [`IoBufferMut`]: heap memory whose address is aligned to a type-level [`Alignment`]
//!   ([`ConstAlign<4096>`] by default: page-aligned, see [`DefaultAlign`]; [`ConstAlign<512>`] is allowed). The whole capacity is
//!   zero-initialized at allocation, so no uninitialized byte can ever reach safe code, and a read into any
//!   part of it is sound.
//! - [`IoBuffer`]: a frozen [`IoBufferMut`], shared through an `Arc`; cheap to clone and to slice, and
//!   turned back into an [`IoBufferMut`] with [`IoBuffer::into_mut`] when it is no longer shared.
//! - [`IoBuf`] / [`IoBufMut`]: the `unsafe` traits the engines take; their contract is the stable-pointer
//!   invariant. Implemented for `Vec<u8>`, [`bytes::Bytes`], [`bytes::BytesMut`] and the aligned buffers.
//!   [`forward_io_buf!`] implements them for a wrapper around one buffer (a buffer with a guard or a
//!   reservation attached).
//! - [`Slice`] (a window of a buffer to read into) and [`FullSlice`] (initialized bytes to write).
//!
//! # Engines
//!
//! [`IoEngine`] is the handle: [`StdFsEngine`] (positional syscalls on the calling thread) or
//! [`UringEngine`] (our io_uring engine), picked by [`IoEngineKind`] or the environment
//! ([`env`](mod@env), which also lists every environment variable of the workspace). Its docs hold the
//! contract every engine keeps. With the feature `testing`, `IoEngine::hooked` wraps an engine with an
//! `EngineHook`: the fault-injecting `FaultPlan`, the power-loss `power_loss::Recorder`, or a test's own
//! hook.
//!
//! # Modules
//!
//! Floors, lowest first (a module uses only its own floor and those below it): [`env`](mod@env) and
//! `test_support` (they use nothing of the crate) and `buf` (the buffers); then `engine` (the engines,
//! the hooks and the [`IoEngine`] handle on top). `buf` and `engine` write their own floors in their
//! docs; `lib.rs` only re-exports.
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

mod buf;
mod engine;
pub mod env;
#[cfg(feature = "testing")]
pub mod test_support;

pub use buf::{
    Alignment, ConstAlign, DefaultAlign, FullSlice, IoBuf, IoBufMut, IoBuffer, IoBufferMut, Slice,
};
#[cfg(feature = "testing")]
pub use engine::power_loss;
#[cfg(feature = "testing")]
pub use engine::{
    Completed, EngineHook, EngineOp, Fault, FaultOp, FaultPlan, FaultRule, HookedEngine, Proceed,
    RingFault,
};
pub use engine::{
    DioAlign, EngineSelectError, EngineStartError, FileStat, IoEngine, IoEngineKind, IoFd,
    RenameMode, StdFsEngine, UringConfig, UringEngine, UringStats, RWF_DONTCACHE,
};
pub use env::{EnvSettingError, IO_ENGINE as IO_ENGINE_ENV};
