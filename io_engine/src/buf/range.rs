//! Resolving a `RangeBounds` against a buffer's length.

use std::ops::{Bound, RangeBounds};

/// `range` as `(begin, end)`, with `..` ends meaning `0` and `total`. Not bounds-checked.
pub(super) fn resolve(range: impl RangeBounds<usize>, total: usize) -> (usize, usize) {
    let begin = match range.start_bound() {
        Bound::Included(&b) => b,
        Bound::Excluded(&b) => b + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e + 1,
        Bound::Excluded(&e) => e,
        Bound::Unbounded => total,
    };
    (begin, end)
}
