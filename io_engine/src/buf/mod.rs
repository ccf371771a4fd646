//! Aligned, ownership-passing IO buffers (described in the crate docs, "Buffers").
//!
//! Floors (each module uses only those before it): `align` and `range`; `aligned_mut` and `frozen` (one
//! floor: each converts into the other); `traits` (the `IoBuf` traits, implemented for every buffer
//! type); `slice` (windows of an `IoBuf`).

mod align;
mod aligned_mut;
mod frozen;
mod range;
mod slice;
mod traits;

pub use align::{Alignment, ConstAlign, DefaultAlign};
pub use aligned_mut::IoBufferMut;
pub use frozen::IoBuffer;
pub use slice::{FullSlice, Slice};
pub use traits::{IoBuf, IoBufMut};
