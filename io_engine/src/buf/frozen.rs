//! [`IoBuffer`]: a frozen, shared, sliceable view of an [`IoBufferMut`].

use std::fmt;
use std::ops::{Deref, RangeBounds};
use std::sync::Arc;

use super::align::{Alignment, DefaultAlign};
use super::aligned_mut::IoBufferMut;
use super::range::resolve;

/// An immutable view `[start, end)` of a frozen [`IoBufferMut`], shared through an `Arc`.
///
/// Cloning and slicing are O(1) and never copy bytes. A slice that starts at a non-zero offset is in
/// general no longer aligned; `O_DIRECT` users check the address (the `virtual_file` layer does).
#[derive(Clone)]
pub struct IoBuffer<A: Alignment = DefaultAlign> {
    inner: Arc<IoBufferMut<A>>,
    start: usize,
    end: usize,
}

impl<A: Alignment> IoBuffer<A> {
    pub(super) fn from_mut(buf: IoBufferMut<A>) -> Self {
        let end = buf.len();
        Self {
            inner: Arc::new(buf),
            start: 0,
            end,
        }
    }

    /// Length of this view.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when the view is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The viewed bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.inner.as_slice()[self.start..self.end]
    }

    /// Pointer to the first viewed byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }

    /// A sub-view; `range` is relative to this view.
    ///
    /// # Panics
    /// If the range is out of bounds or decreasing, like slice indexing.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Self {
        let len = self.len();
        let (begin, end) = resolve(range, len);
        assert!(
            begin <= end && end <= len,
            "IoBuffer::slice: range {begin}..{end} out of bounds for length {len}"
        );
        Self {
            inner: Arc::clone(&self.inner),
            start: self.start + begin,
            end: self.start + end,
        }
    }

    /// Turns the buffer back into an [`IoBufferMut`] (same allocation, same contents, same length) if this is
    /// the only reference to it and the view covers the whole buffer; otherwise gives `self` back.
    pub fn into_mut(self) -> Result<IoBufferMut<A>, Self> {
        if self.start != 0 || self.end != self.inner.len() {
            return Err(self);
        }
        let Self { inner, start, end } = self;
        Arc::try_unwrap(inner).map_err(|inner| Self { inner, start, end })
    }

    /// True if other `IoBuffer`s share the allocation.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.inner) > 1
    }
}

impl<A: Alignment> Deref for IoBuffer<A> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<A: Alignment> AsRef<[u8]> for IoBuffer<A> {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<A: Alignment> fmt::Debug for IoBuffer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoBuffer")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("align", &A::ALIGN)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IoBuffer {
        let mut buf = IoBufferMut::<DefaultAlign>::with_capacity(4096);
        buf.extend_from_slice(&(0..=255).collect::<Vec<u8>>());
        buf.freeze()
    }

    #[test]
    fn freeze_clone_slice() {
        let frozen = sample();
        assert_eq!(frozen.len(), 256);
        assert_eq!(frozen.as_ptr() as usize % 512, 0);
        let clone = frozen.clone();
        assert!(frozen.is_shared());
        assert_eq!(clone.as_ptr(), frozen.as_ptr(), "clone does not copy");
        let s = frozen.slice(10..20);
        assert_eq!(&s[..], &(10..20).collect::<Vec<u8>>()[..]);
        let ss = s.slice(2..=3);
        assert_eq!(&ss[..], &[12, 13]);
        assert!(frozen.slice(256..).is_empty());
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn slice_out_of_bounds_panics() {
        let _ = sample().slice(0..257);
    }

    #[test]
    fn into_mut_round_trip_when_unshared() {
        let frozen = sample();
        let ptr = frozen.as_ptr();
        let back = frozen.into_mut().expect("unshared");
        assert_eq!(back.as_ptr(), ptr, "same allocation");
        assert_eq!(back.len(), 256);
        assert_eq!(back.capacity(), 4096);
        assert_eq!(back[255], 255);
    }

    #[test]
    fn into_mut_refused_while_shared_or_partial() {
        let frozen = sample();
        let other = frozen.clone();
        let frozen = frozen.into_mut().expect_err("shared");
        drop(other);
        let part = frozen.slice(1..);
        let part = part.into_mut().expect_err("shared with `frozen`");
        drop(frozen);
        let _ = part.into_mut().expect_err("partial view");
    }

    #[test]
    fn send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<IoBuffer>();
    }
}
