//! The lowest layer of `virtual_file`: aligned, ownership-passing IO buffers ([`buf`]) and the IO
//! engines that perform positional IO on them.

pub mod buf;

pub use buf::{
    Alignment, ConstAlign, DefaultAlign, FullSlice, IoBuf, IoBufMut, IoBuffer, IoBufferMut, Slice,
};
