//! The lowest layer of `virtual_file`: aligned, ownership-passing IO buffers ([`buf`]) and the IO
//! engines that perform positional IO on them ([`engine`]).

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
