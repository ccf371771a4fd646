//! The ownership-passing buffer traits the engines take.

use bytes::{Bytes, BytesMut};

use super::align::Alignment;
use super::aligned_mut::IoBufferMut;
use super::frozen::IoBuffer;

/// A buffer whose initialized bytes an engine may read (the source of a write).
///
/// # Safety
/// Implementors promise the *stable-pointer invariant*: `stable_ptr()` points to at least `bytes_total()`
/// bytes of which the first `bytes_init()` are initialized, and that memory stays valid and at the same
/// address for as long as the value is alive, **even when the value itself is moved**, and is not changed
/// through any other path while the value is owned by an engine. The engines rely on this to hand the
/// pointer to the kernel, move the value into an in-flight slot, and let the kernel use the memory until
/// its completion arrives.
pub unsafe trait IoBuf: Unpin + Send + 'static {
    /// Pointer to the first byte.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes from the start are initialized.
    fn bytes_init(&self) -> usize;
    /// Total bytes the buffer spans (its capacity).
    fn bytes_total(&self) -> usize;
}

/// A buffer an engine may write into (the destination of a read).
///
/// # Safety
/// As [`IoBuf`], and `stable_mut_ptr()` is valid for writes of `bytes_total()` bytes with nothing else
/// reading or writing that memory while the value is owned by an engine.
pub unsafe trait IoBufMut: IoBuf {
    /// Mutable pointer to the first byte.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Marks `[0, pos)` as initialized if `pos` is larger than the current `bytes_init()`; never shrinks it.
    ///
    /// # Safety
    /// The caller guarantees that `[0, pos)` is initialized, and `pos <= bytes_total()`.
    unsafe fn set_init(&mut self, pos: usize);
}

/// Implements [`IoBuf`] for a type through its inherent `as_ptr()` and `len()`, with `bytes_total()`
/// from the method named by `total` (`capacity` for a growable buffer, `len` for a fixed view).
///
/// The `unsafe impl` is the invocation's: write a `// SAFETY:` comment above each invocation naming why
/// that type keeps the stable-pointer invariant (clippy's `undocumented_unsafe_blocks` sees only the
/// comment inside the macro, so it cannot check this for you).
macro_rules! io_buf_from_methods {
    ($ty:ty $(where $g:ident: $bound:ident)?, total = $total:ident) => {
        // SAFETY: why `$ty` keeps the stable-pointer invariant is the `// SAFETY:` comment above the
        // invocation; this impl only forwards to the type's own pointer and length methods.
        unsafe impl$(<$g: $bound>)? IoBuf for $ty {
            fn stable_ptr(&self) -> *const u8 {
                self.as_ptr()
            }
            fn bytes_init(&self) -> usize {
                self.len()
            }
            fn bytes_total(&self) -> usize {
                self.$total()
            }
        }
    };
}

/// Implements [`IoBufMut`] for a type through its inherent `as_mut_ptr()` and `len()`; `set_init` grows
/// the length with the `set_len` expression given (`|buf, pos| ...`, run only when `pos > buf.len()`).
///
/// As for [`io_buf_from_methods!`], a `// SAFETY:` comment above each invocation names the invariant.
macro_rules! io_buf_mut_from_methods {
    ($ty:ty $(where $g:ident: $bound:ident)?, set_len = |$buf:ident, $pos:ident| $set_len:expr) => {
        // SAFETY: as in `io_buf_from_methods!`: the invocation's `// SAFETY:` comment states why `$ty`'s
        // memory is writable and unshared while an engine owns it.
        unsafe impl$(<$g: $bound>)? IoBufMut for $ty {
            fn stable_mut_ptr(&mut self) -> *mut u8 {
                self.as_mut_ptr()
            }
            unsafe fn set_init(&mut self, pos: usize) {
                if pos > self.len() {
                    let ($buf, $pos) = (self, pos);
                    $set_len
                }
            }
        }
    };
}

/// Implements [`IoBuf`] (and, if asked, [`IoBufMut`]) for a wrapper around one buffer by forwarding
/// every method to that field: `forward_io_buf!(IoBuf, IoBufMut for PageBuf => buf)` for a wrapper
/// whose field `buf` is an [`IoBufMut`], `forward_io_buf!(IoBuf for Guarded<B: IoBuf> => buf)` for a
/// read-only one (one type parameter, one bound, may be given). For buffers that carry something along
/// with the memory they lend the engine: a reservation, a guard, a drop counter.
///
/// Nothing to write at the invocation: the safety of the generated `unsafe impl`s follows from the
/// field's own. The wrapper's memory is the inner buffer's alone, so the field's stable-pointer
/// invariant is the wrapper's: the field lives exactly as long as the wrapper, its memory does not move
/// when the wrapper (and so the field) is moved, and while an engine owns the wrapper it owns the field,
/// so no other path reaches that memory. The wrapper's other fields are no part of the buffer. There is
/// no form for [`IoBufMut`] alone: its promise is about the wrapper's `bytes_total()`, so a wrapper with
/// a hand-written [`IoBuf`] writes its [`IoBufMut`] by hand too.
///
/// ```
/// use io_engine::{IoBuf, IoBufMut};
///
/// /// A buffer that knows which request it belongs to.
/// struct Tagged {
///     buf: Vec<u8>,
///     request: u64,
/// }
/// io_engine::forward_io_buf!(IoBuf, IoBufMut for Tagged => buf);
///
/// let mut t = Tagged { buf: Vec::with_capacity(8), request: 7 };
/// assert_eq!((t.bytes_init(), t.bytes_total() >= 8), (0, true));
/// assert_eq!(t.stable_mut_ptr().cast_const(), t.buf.as_ptr());
/// # assert_eq!(t.request, 7);
/// ```
#[macro_export]
macro_rules! forward_io_buf {
    (IoBuf for $ty:ident $(<$g:ident: $bound:path>)? => $field:ident) => {
        // SAFETY: every pointer and length is the field's, whose type implements `IoBuf`: the wrapper's
        // memory is the field's alone, so the field's stable-pointer invariant is the wrapper's (see
        // `forward_io_buf!`).
        unsafe impl$(<$g: $bound>)? $crate::IoBuf for $ty$(<$g>)? {
            fn stable_ptr(&self) -> *const u8 {
                $crate::IoBuf::stable_ptr(&self.$field)
            }
            fn bytes_init(&self) -> usize {
                $crate::IoBuf::bytes_init(&self.$field)
            }
            fn bytes_total(&self) -> usize {
                $crate::IoBuf::bytes_total(&self.$field)
            }
        }
    };
    (IoBuf, IoBufMut for $ty:ident $(<$g:ident: $bound:path>)? => $field:ident) => {
        $crate::forward_io_buf!(IoBuf for $ty $(<$g: $bound>)? => $field);
        // SAFETY: as for `IoBuf`: the writable memory is the field's alone, and the field's type
        // implements `IoBufMut`.
        unsafe impl$(<$g: $bound>)? $crate::IoBufMut for $ty$(<$g>)? {
            fn stable_mut_ptr(&mut self) -> *mut u8 {
                $crate::IoBufMut::stable_mut_ptr(&mut self.$field)
            }
            unsafe fn set_init(&mut self, pos: usize) {
                // SAFETY: the caller's guarantee (`[0, pos)` initialized, `pos <= bytes_total()`) is
                // about the field, whose `bytes_total()` the wrapper's is.
                unsafe { $crate::IoBufMut::set_init(&mut self.$field, pos) }
            }
        }
    };
}

// SAFETY: a `Vec`'s heap pointer does not change when the `Vec` is moved, and nothing reallocates it
// while the engine owns it.
io_buf_from_methods!(Vec<u8>, total = capacity);
// SAFETY: as for `IoBuf`; the spare capacity is writable memory owned by the `Vec`.
io_buf_mut_from_methods!(
    Vec<u8>,
    set_len = |v, pos| {
        // SAFETY: the caller of `set_init` guarantees `[0, pos)` is initialized and `pos <= capacity`.
        unsafe { v.set_len(pos) }
    }
);

// SAFETY: `Bytes` points to heap or static memory that is immutable and does not move with the handle.
io_buf_from_methods!(Bytes, total = len);

// SAFETY: `BytesMut` owns its heap region uniquely; moving the handle does not move the memory, and it
// does not reallocate while the engine owns it.
io_buf_from_methods!(BytesMut, total = capacity);
// SAFETY: as for `IoBuf`; the spare capacity is writable memory owned by the `BytesMut`.
io_buf_mut_from_methods!(
    BytesMut,
    set_len = |b, pos| {
        // SAFETY: the caller of `set_init` guarantees `[0, pos)` is initialized and `pos <= capacity`.
        unsafe { b.set_len(pos) }
    }
);

// SAFETY: the allocation is owned by the value, does not move with it, and is only reallocated through
// `&mut self` methods the engine does not call.
io_buf_from_methods!(IoBufferMut<A> where A: Alignment, total = capacity);
// SAFETY: the whole capacity is owned, writable and always initialized (zeroed at allocation).
io_buf_mut_from_methods!(IoBufferMut<A> where A: Alignment, set_len = |b, pos| b.set_len(pos));

// SAFETY: the view points into an `Arc`-owned allocation that is immutable while frozen and does not
// move; the `IoBuffer` value keeps it alive.
io_buf_from_methods!(IoBuffer<A> where A: Alignment, total = len);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::align::DefaultAlign;

    #[test]
    fn set_init_never_shrinks() {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&[1, 2, 3, 4]);
        // SAFETY: `[0, 2)` is initialized.
        unsafe { v.set_init(2) };
        assert_eq!(v.len(), 4);
        let mut b = IoBufferMut::<DefaultAlign>::with_capacity(16);
        // SAFETY: all of an `IoBufferMut`'s capacity is initialized.
        unsafe { b.set_init(10) };
        assert_eq!(b.len(), 10);
        assert!(b.iter().all(|&x| x == 0));
    }

    #[test]
    fn totals() {
        let v = Vec::<u8>::with_capacity(100);
        assert_eq!((v.bytes_init(), v.bytes_total() >= 100), (0, true));
        let b = Bytes::from_static(b"abc");
        assert_eq!((b.bytes_init(), b.bytes_total()), (3, 3));
        let f = IoBufferMut::<DefaultAlign>::from_slice(b"abcd").freeze();
        assert_eq!((f.bytes_init(), f.bytes_total()), (4, 4));
    }
}
