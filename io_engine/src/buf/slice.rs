//! [`Slice`] (a window of a buffer to read into) and [`FullSlice`] (initialized bytes to write).

use std::ops::RangeBounds;

use super::range::resolve;
use super::traits::{IoBuf, IoBufMut};

/// The accessors [`Slice`] and [`FullSlice`] share: both are a buffer with a window `[begin, end)` of it
/// (`what` names the window in the docs).
macro_rules! window_accessors {
    ($ty:ident, $what:literal) => {
        impl<B> $ty<B> {
            #[doc = concat!("Start of the ", $what, " within the buffer.")]
            pub fn begin(&self) -> usize {
                self.begin
            }
            #[doc = concat!("End of the ", $what, " within the buffer.")]
            pub fn end(&self) -> usize {
                self.end
            }
            #[doc = concat!("Length of the ", $what, ".")]
            pub fn len(&self) -> usize {
                self.end - self.begin
            }
            #[doc = concat!("True for an empty ", $what, ".")]
            pub fn is_empty(&self) -> bool {
                self.begin == self.end
            }
            /// The whole buffer.
            pub fn get_ref(&self) -> &B {
                &self.buf
            }
            /// Gives the buffer back.
            pub fn into_inner(self) -> B {
                self.buf
            }
        }
    };
}

/// The window `[begin, end)` of a buffer's capacity that a read fills. Owned: the engine takes it by value
/// and gives it back with the result.
#[derive(Debug)]
pub struct Slice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B: IoBufMut> Slice<B> {
    /// The window `[bytes_init(), bytes_total())`: the spare capacity after the initialized bytes.
    pub fn spare(buf: B) -> Self {
        let (begin, end) = (buf.bytes_init(), buf.bytes_total());
        Self { buf, begin, end }
    }

    /// The window `range` of the buffer's capacity (`..` means `0..bytes_total()`).
    ///
    /// # Panics
    /// If the window ends past `bytes_total()`, is decreasing, or starts after `bytes_init()` (which would
    /// leave uninitialized bytes between the contents and what the read fills).
    pub fn new(buf: B, range: impl RangeBounds<usize>) -> Self {
        let (begin, end) = resolve(range, buf.bytes_total());
        assert!(
            begin <= end && end <= buf.bytes_total(),
            "Slice: window {begin}..{end} out of bounds for capacity {}",
            buf.bytes_total()
        );
        assert!(
            begin <= buf.bytes_init(),
            "Slice: window starts at {begin}, after the {} initialized bytes",
            buf.bytes_init()
        );
        Self { buf, begin, end }
    }

    /// Pointer to the first byte of the window.
    pub fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: `begin <= bytes_total()` (constructor), so the result is in or one past the allocation.
        unsafe { self.buf.stable_mut_ptr().add(self.begin) }
    }

    /// Records that the first `n` bytes of the window were filled (for example by the kernel).
    ///
    /// # Safety
    /// `[begin, begin + n)` must have been initialized, and `n <= self.len()`.
    pub unsafe fn assume_filled(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        // SAFETY: `[0, begin)` is initialized (constructor: `begin <= bytes_init`), and the caller
        // guarantees `[begin, begin + n)`.
        unsafe { self.buf.set_init(self.begin + n) };
    }
}

window_accessors!(Slice, "window");

/// The initialized bytes `[begin, end)` of a buffer, to be written. Owned: the engine takes it by value and
/// gives it back with the result.
#[derive(Debug)]
pub struct FullSlice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B: IoBuf> FullSlice<B> {
    /// All initialized bytes of `buf`.
    pub fn new(buf: B) -> Self {
        let end = buf.bytes_init();
        Self { buf, begin: 0, end }
    }

    /// The initialized bytes `range` of `buf` (`..` means `0..bytes_init()`).
    ///
    /// # Panics
    /// If the range is decreasing or ends past `bytes_init()`.
    pub fn with_range(buf: B, range: impl RangeBounds<usize>) -> Self {
        let (begin, end) = resolve(range, buf.bytes_init());
        assert!(
            begin <= end && end <= buf.bytes_init(),
            "FullSlice: range {begin}..{end} out of bounds for {} initialized bytes",
            buf.bytes_init()
        );
        Self { buf, begin, end }
    }

    /// The bytes to write.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `[begin, end)` is within the initialized bytes (constructor), and the stable-pointer
        // invariant keeps them valid while `self.buf` is alive and borrowed.
        unsafe { std::slice::from_raw_parts(self.buf.stable_ptr().add(self.begin), self.len()) }
    }

    /// Pointer to the first byte to write.
    pub fn stable_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }
}

window_accessors!(FullSlice, "range");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::align::DefaultAlign;
    use crate::buf::aligned_mut::IoBufferMut;

    #[test]
    fn slice_windows() {
        let buf = IoBufferMut::<DefaultAlign>::with_capacity(1024);
        let s = Slice::new(buf, ..);
        assert_eq!((s.begin(), s.end(), s.len()), (0, 1024, 1024));
        let mut s = Slice::new(s.into_inner(), 0..10);
        // SAFETY: IoBufferMut memory is always initialized.
        unsafe { s.assume_filled(10) };
        let buf = s.into_inner();
        assert_eq!(buf.len(), 10);
        let s = Slice::spare(buf);
        assert_eq!((s.begin(), s.end()), (10, 1024));
    }

    #[test]
    #[should_panic(expected = "after the 0 initialized bytes")]
    fn slice_with_gap_panics() {
        let _ = Slice::new(Vec::<u8>::with_capacity(64), 8..16);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn slice_past_capacity_panics() {
        let _ = Slice::new(IoBufferMut::<DefaultAlign>::with_capacity(16), 0..17);
    }

    #[test]
    fn full_slice_ranges() {
        let f = FullSlice::with_range(b"hello world".to_vec(), 6..);
        assert_eq!(f.as_slice(), b"world");
        assert_eq!(f.len(), 5);
        assert_eq!(FullSlice::new(f.into_inner()).as_slice(), b"hello world");
    }

    #[test]
    #[should_panic(expected = "initialized bytes")]
    fn full_slice_past_init_panics() {
        let _ = FullSlice::with_range(Vec::<u8>::with_capacity(64), 0..1);
    }
}
