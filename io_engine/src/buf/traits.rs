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

// SAFETY: a `Vec`'s heap pointer does not change when the `Vec` is moved, and nothing reallocates it
// while the engine owns it.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as for `IoBuf`; the spare capacity is writable memory owned by the `Vec`.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if pos > self.len() {
            // SAFETY: the caller guarantees `[0, pos)` is initialized and `pos <= capacity`.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: `Bytes` points to heap or static memory that is immutable and does not move with the handle.
unsafe impl IoBuf for Bytes {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: `BytesMut` owns its heap region uniquely; moving the handle does not move the memory, and it
// does not reallocate while the engine owns it.
unsafe impl IoBuf for BytesMut {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as for `IoBuf`; the spare capacity is writable memory owned by the `BytesMut`.
unsafe impl IoBufMut for BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if pos > self.len() {
            // SAFETY: the caller guarantees `[0, pos)` is initialized and `pos <= capacity`.
            unsafe { self.set_len(pos) };
        }
    }
}

// SAFETY: the allocation is owned by the value, does not move with it, and is only reallocated through
// `&mut self` methods the engine does not call.
unsafe impl<A: Alignment> IoBuf for IoBufferMut<A> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: the whole capacity is owned, writable and always initialized (zeroed at allocation).
unsafe impl<A: Alignment> IoBufMut for IoBufferMut<A> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if pos > self.len() {
            self.set_len(pos);
        }
    }
}

// SAFETY: the view points into an `Arc`-owned allocation that is immutable while frozen and does not
// move; the `IoBuffer` value keeps it alive.
unsafe impl<A: Alignment> IoBuf for IoBuffer<A> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

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
