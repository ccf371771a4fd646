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

use crate::engine::fd::IoFd;

/// What an `RWF_NOWAIT` attempt gave.
pub(super) enum Nowait {
    /// `n` bytes were read into the iovecs, in order (0: end of file).
    Read(usize),
    /// Not (all) in the page cache, or another error: go through the ring.
    Miss,
    /// `EOPNOTSUPP`: the file system does not support `RWF_NOWAIT`; go through the ring, and the
    /// engine stops trying.
    Unsupported,
}

/// Tries a non-blocking read of `iovecs` at `offset`.
///
/// # Safety
/// Every iovec must describe memory valid for writes for the duration of the call.
pub(super) unsafe fn preadv_nowait(
    fd: &IoFd,
    offset: libc::off_t,
    iovecs: &[libc::iovec],
) -> Nowait {
    debug_assert!(
        !fd.is_direct(),
        "RWF_NOWAIT would block on an O_DIRECT descriptor"
    );
    let Ok(cnt) = libc::c_int::try_from(iovecs.len()) else {
        return Nowait::Miss;
    };
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
    match usize::try_from(n) {
        Ok(n) => Nowait::Read(n),
        Err(_) if std::io::Error::last_os_error().raw_os_error() == Some(libc::EOPNOTSUPP) => {
            Nowait::Unsupported
        }
        Err(_) => Nowait::Miss,
    }
}
