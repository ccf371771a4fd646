//! Building `iovec` arrays from owned slices, and recording how far a vectored read filled them. Shared by
//! both engines.

use std::io;

use crate::buf::{FullSlice, IoBuf, IoBufMut, Slice};

/// `iovec`s for a vectored read into `slices`, in order. The pointers stay valid while the slices are
/// owned by the caller (stable-pointer invariant of [`IoBufMut`]).
pub(crate) fn read_iovecs<B: IoBufMut>(slices: &mut [Slice<B>]) -> Vec<libc::iovec> {
    slices
        .iter_mut()
        .map(|s| libc::iovec {
            iov_base: s.stable_mut_ptr().cast(),
            iov_len: s.len(),
        })
        .collect()
}

/// `iovec`s for a vectored write of `slices`, in order.
pub(crate) fn write_iovecs<B: IoBuf>(slices: &[FullSlice<B>]) -> Vec<libc::iovec> {
    slices
        .iter()
        .map(|s| libc::iovec {
            iov_base: s.stable_ptr().cast_mut().cast(),
            iov_len: s.len(),
        })
        .collect()
}

/// Marks the first `n` bytes, spread over `slices` in order, as filled.
///
/// # Safety
/// The kernel (or whoever) really wrote those `n` bytes into the slices' windows, in order.
pub(crate) unsafe fn mark_filled<B: IoBufMut>(slices: &mut [Slice<B>], mut n: usize) {
    for s in slices {
        let k = n.min(s.len());
        // SAFETY: the caller guarantees the first `n` bytes across the windows were written; `k` of them
        // are in this window.
        unsafe { s.assume_filled(k) };
        n -= k;
        if n == 0 {
            break;
        }
    }
}

/// Converts an offset to `off_t`, rejecting offsets the kernel cannot represent.
pub(crate) fn to_off_t(offset: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(offset).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("offset {offset} exceeds the largest file offset (i64::MAX)"),
        )
    })
}

/// `iovcnt` for `preadv`/`pwritev`: more than `IOV_MAX` buffers is an error, not a kernel `EINVAL`.
pub(crate) fn iov_count(n: usize) -> io::Result<libc::c_int> {
    if n > libc::UIO_MAXIOV as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{n} buffers in one vectored IO; at most {}",
                libc::UIO_MAXIOV
            ),
        ));
    }
    Ok(n as libc::c_int)
}
