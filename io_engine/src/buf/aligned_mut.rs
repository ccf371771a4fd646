//! [`IoBufferMut`]: an owned, growable, zero-initialized heap buffer with an aligned address.

use std::alloc::{self, Layout};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::align::{Alignment, DefaultAlign};
use super::frozen::IoBuffer;

/// An owned heap buffer whose address is aligned to `A::ALIGN`.
///
/// Invariants (what the `unsafe` code in this module relies on):
/// - `ptr` is aligned to `A::ALIGN` and, when `capacity > 0`, owns an allocation made with
///   `Layout::from_size_align(capacity, A::ALIGN)`; when `capacity == 0` it is a dangling, aligned pointer
///   that is never dereferenced for more than zero bytes and never freed.
/// - all `capacity` bytes are initialized (zeroed at allocation, then only ever written), so any
///   `len <= capacity` exposes initialized memory.
/// - `len <= capacity`.
///
/// Growth past the capacity ([`extend_from_slice`](Self::extend_from_slice), [`resize`](Self::resize),
/// [`reserve`](Self::reserve)) reallocates with the same alignment; IO paths that must not reallocate
/// check [`remaining_capacity`](Self::remaining_capacity) first.
pub struct IoBufferMut<A: Alignment = DefaultAlign> {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
    _align: PhantomData<A>,
}

// SAFETY: `IoBufferMut` owns its allocation exclusively (like `Vec<u8>`); moving it to another thread moves
// that ownership, and `&IoBufferMut` only permits reads.
unsafe impl<A: Alignment> Send for IoBufferMut<A> {}
// SAFETY: shared references only give `&[u8]` access; mutation needs `&mut`.
unsafe impl<A: Alignment> Sync for IoBufferMut<A> {}

impl<A: Alignment> IoBufferMut<A> {
    /// The alignment of this buffer type's address, in bytes.
    pub const ALIGN: usize = A::ALIGN;

    /// A new, empty buffer with room for `capacity` bytes, all zeroed. Allocation failure aborts, as for
    /// `Vec`.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            ptr: Self::alloc_zeroed(capacity),
            len: 0,
            capacity,
            _align: PhantomData,
        }
    }

    /// A buffer of `len` zero bytes (`len == capacity`).
    pub fn zeroed(len: usize) -> Self {
        let mut buf = Self::with_capacity(len);
        buf.len = len;
        buf
    }

    /// A buffer holding a copy of `data`, with capacity `data.len()` rounded up to the alignment.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut buf = Self::with_capacity(data.len().next_multiple_of(A::ALIGN));
        buf.extend_from_slice(data);
        buf
    }

    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity, A::ALIGN)
            .expect("IoBufferMut capacity overflows isize when rounded up to the alignment")
    }

    fn alloc_zeroed(capacity: usize) -> NonNull<u8> {
        if capacity == 0 {
            // An aligned, non-null, dangling pointer: valid for zero-sized accesses only.
            return NonNull::new(std::ptr::without_provenance_mut::<u8>(A::ALIGN))
                .expect("alignment is non-zero");
        }
        let layout = Self::layout(capacity);
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout))
    }

    /// Number of initialized bytes that are part of the buffer's contents.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when `len() == 0`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total bytes the buffer can hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// `capacity() - len()`.
    pub fn remaining_capacity(&self) -> usize {
        self.capacity - self.len
    }

    /// The contents, `[0, len)`.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `capacity >= len` initialized bytes (type invariant), or dangling and
        // aligned with `len == 0`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The contents, `[0, len)`, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Raw pointer to the start of the allocation (aligned to `A::ALIGN`).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Mutable raw pointer to the start of the allocation (aligned to `A::ALIGN`).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Sets the length to 0. The capacity and the allocation are kept.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Shortens the contents to `len` bytes; does nothing if `len >= self.len()`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Sets the length to `len`, exposing whatever bytes the buffer holds in `[old len, len)` (zeros, or
    /// bytes from earlier use: always initialized).
    ///
    /// # Panics
    /// If `len > capacity()`.
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity,
            "IoBufferMut::set_len({len}) beyond capacity {}",
            self.capacity
        );
        self.len = len;
    }

    /// Makes sure at least `additional` more bytes fit without reallocating. A reallocation keeps the
    /// alignment, copies the contents and zeroes the rest.
    pub fn reserve(&mut self, additional: usize) {
        let needed = self
            .len
            .checked_add(additional)
            .expect("IoBufferMut::reserve: length overflows usize");
        if needed <= self.capacity {
            return;
        }
        let new_capacity = needed
            .max(self.capacity.saturating_mul(2))
            .next_multiple_of(A::ALIGN);
        let new_ptr = Self::alloc_zeroed(new_capacity);
        // SAFETY: both regions are valid for `len` bytes, and distinct allocations never overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), new_ptr.as_ptr(), self.len) };
        self.dealloc();
        self.ptr = new_ptr;
        self.capacity = new_capacity;
    }

    /// Appends `data`, reallocating (keeping the alignment) if it does not fit.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        // SAFETY: after `reserve`, `[len, len + data.len())` lies within the allocation; `data` cannot alias
        // it because we hold `&mut self`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            )
        };
        self.len += data.len();
    }

    /// Appends `count` zero bytes, reallocating (keeping the alignment) if they do not fit.
    pub fn put_zeros(&mut self, count: usize) {
        self.reserve(count);
        // SAFETY: after `reserve`, `[len, len + count)` lies within the allocation.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, count) };
        self.len += count;
    }

    /// Resizes to `new_len`: truncates, or appends zeros.
    pub fn resize(&mut self, new_len: usize) {
        if new_len <= self.len {
            self.truncate(new_len);
        } else {
            self.put_zeros(new_len - self.len);
        }
    }

    /// Freezes the buffer into an immutable, cheaply clonable [`IoBuffer`].
    pub fn freeze(self) -> IoBuffer<A> {
        IoBuffer::from_mut(self)
    }

    fn dealloc(&mut self) {
        if self.capacity > 0 {
            // SAFETY: `ptr` was allocated by `alloc_zeroed` with exactly this layout (type invariant).
            unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) };
        }
    }
}

impl<A: Alignment> Drop for IoBufferMut<A> {
    fn drop(&mut self) {
        self.dealloc();
    }
}

impl<A: Alignment> Deref for IoBufferMut<A> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<A: Alignment> DerefMut for IoBufferMut<A> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl<A: Alignment> AsRef<[u8]> for IoBufferMut<A> {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<A: Alignment> fmt::Debug for IoBufferMut<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoBufferMut")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("align", &A::ALIGN)
            .finish()
    }
}

impl<A: Alignment> PartialEq for IoBufferMut<A> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<A: Alignment> Eq for IoBufferMut<A> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::align::ConstAlign;

    const CAPACITIES: [usize; 8] = [0, 1, 511, 512, 4095, 4096, 1 << 20, (1 << 20) + 1];

    fn check_alignment<A: Alignment>() {
        for cap in CAPACITIES {
            let buf = IoBufferMut::<A>::with_capacity(cap);
            assert_eq!(buf.as_ptr() as usize % A::ALIGN, 0, "capacity {cap}");
            assert_eq!(buf.capacity(), cap);
            assert_eq!(buf.len(), 0);
        }
    }

    #[test]
    fn address_is_aligned_for_many_capacities() {
        check_alignment::<ConstAlign<512>>();
        check_alignment::<ConstAlign<4096>>();
    }

    #[test]
    fn memory_is_zeroed() {
        for cap in CAPACITIES {
            let mut buf = IoBufferMut::<ConstAlign<512>>::with_capacity(cap);
            buf.set_len(cap);
            assert!(buf.iter().all(|&b| b == 0), "capacity {cap}");
        }
        assert!(IoBufferMut::<DefaultAlign>::zeroed(4096)
            .iter()
            .all(|&b| b == 0));
    }

    #[test]
    fn growth_reallocates_and_keeps_alignment_and_contents() {
        let mut buf = IoBufferMut::<ConstAlign<4096>>::with_capacity(10);
        buf.extend_from_slice(b"0123456789");
        assert_eq!(buf.remaining_capacity(), 0);
        buf.extend_from_slice(b"abc");
        assert_eq!(&buf[..], b"0123456789abc");
        assert_eq!(buf.as_ptr() as usize % 4096, 0);
        assert!(buf.capacity() >= 13);
        // bytes past len after growth are zero
        let len = buf.len();
        buf.set_len(buf.capacity());
        assert!(buf[len..].iter().all(|&b| b == 0));
    }

    #[test]
    fn put_zeros_resize_truncate_clear() {
        let mut buf = IoBufferMut::<DefaultAlign>::with_capacity(8);
        buf.extend_from_slice(&[7; 8]);
        buf.put_zeros(3);
        assert_eq!(&buf[..], &[7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0]);
        buf.resize(2);
        assert_eq!(&buf[..], &[7, 7]);
        buf.resize(4);
        assert_eq!(&buf[..], &[7, 7, 0, 0]);
        buf.truncate(10);
        assert_eq!(buf.len(), 4);
        buf.clear();
        assert!(buf.is_empty());
        assert!(buf.capacity() >= 11);
    }

    #[test]
    #[should_panic(expected = "beyond capacity")]
    fn set_len_past_capacity_panics() {
        IoBufferMut::<DefaultAlign>::with_capacity(512).set_len(513);
    }

    #[test]
    fn from_slice_rounds_capacity_up() {
        let buf = IoBufferMut::<ConstAlign<512>>::from_slice(b"hello");
        assert_eq!(&buf[..], b"hello");
        assert_eq!(buf.capacity(), 512);
    }

    #[test]
    fn send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<IoBufferMut>();
        assert_send_sync::<IoBufferMut<ConstAlign<4096>>>();
    }
}
