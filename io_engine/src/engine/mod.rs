//! The IO engines and the one API that `virtual_file` calls ([`IoEngine`], whose docs hold the contract
//! every engine keeps).
//!
//! ## Floors (each module uses only the ones above it in this list)
//! 1. `fd`, `stat`, `rename`, `iovec`, `kind`, `error`: the values ops take and return, and the errors
//!    of choosing and starting an engine.
//! 2. `std_fs`: positional syscalls on the calling thread.
//! 3. `uring`: the io_uring engine (it falls back to `std_fs` inline).
//! 4. `hook` (feature `testing`): `EngineHook`, what a test engine does around an op; `faulty` and
//!    `power_loss` are two hooks.
//! 5. `dispatch` and `hooked`: [`IoEngine`], the handle that dispatches each op, and `HookedEngine`
//!    (feature `testing`), the wrapper that runs a hook around the ops of another [`IoEngine`]. They
//!    hold each other, so they share the top floor.

mod dispatch;
mod error;
#[cfg(feature = "testing")]
mod faulty;
mod fd;
#[cfg(feature = "testing")]
mod hook;
#[cfg(feature = "testing")]
mod hooked;
mod iovec;
mod kind;
#[cfg(feature = "testing")]
pub mod power_loss;
mod rename;
mod stat;
mod std_fs;
mod uring;

pub use dispatch::IoEngine;
pub use error::{EngineSelectError, EngineStartError};
#[cfg(feature = "testing")]
pub use faulty::{Fault, FaultOp, FaultPlan, FaultRule};
pub use fd::{IoFd, RWF_DONTCACHE};
#[cfg(feature = "testing")]
pub use hook::{Completed, EngineHook, EngineOp, Proceed};
#[cfg(feature = "testing")]
pub use hooked::HookedEngine;
pub use kind::IoEngineKind;
pub use rename::RenameMode;
pub use stat::{DioAlign, FileStat};
pub use std_fs::StdFsEngine;
#[cfg(feature = "testing")]
pub use uring::RingFault;
pub use uring::{UringConfig, UringEngine, UringStats};
