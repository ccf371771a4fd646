//! Aligned, ownership-passing IO buffers.
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
//! - [`Slice`] (a window of a buffer to read into) and [`FullSlice`] (initialized bytes to write).

mod align;
mod aligned_mut;
mod frozen;
mod slice;
mod traits;

pub use align::{Alignment, ConstAlign, DefaultAlign};
pub use aligned_mut::IoBufferMut;
pub use frozen::IoBuffer;
pub use slice::{FullSlice, Slice};
pub use traits::{IoBuf, IoBufMut};
