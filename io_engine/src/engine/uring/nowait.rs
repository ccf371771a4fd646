//! The inline page-cache fast path: `preadv2(..., RWF_NOWAIT)` on the calling thread.
//!
//! `RWF_NOWAIT` makes a buffered read return what is in the page cache without waiting for the device:
//! data (possibly short), 0 at end of file, or `EAGAIN` if it would have to wait. A hit costs one syscall
//! and no trip through the ring, the reaper or a waker. Anything but data (including `EAGAIN` and an
//! `EOPNOTSUPP` from a file system without `RWF_NOWAIT` support) sends the read to the ring, which gives
//! the authoritative answer.
//!
//! Only for descriptors *without* `O_DIRECT`: a direct read bypasses the page cache, and several file
//! systems ignore `RWF_NOWAIT` for it and block, which would stall the executor thread.

use std::os::fd::AsRawFd;

use crate::engine::IoFd;

/// Tries a non-blocking read of `iovecs` at `offset`. `Some(n)`: `n` bytes were read into the iovecs,
/// in order (0: end of file). `None`: go through the ring.
///
/// # Safety
/// Every iovec must describe memory valid for writes for the duration of the call.
pub(super) unsafe fn preadv_nowait(
    fd: &IoFd,
    offset: libc::off_t,
    iovecs: &[libc::iovec],
) -> Option<usize> {
    debug_assert!(
        !fd.is_direct(),
        "RWF_NOWAIT would block on an O_DIRECT descriptor"
    );
    let cnt = libc::c_int::try_from(iovecs.len()).ok()?;
    // SAFETY: the caller guarantees the iovecs point to writable memory that outlives the call.
    let n = unsafe {
        libc::preadv2(
            fd.as_raw_fd(),
            iovecs.as_ptr(),
            cnt,
            offset,
            libc::RWF_NOWAIT,
        )
    };
    usize::try_from(n).ok()
}
