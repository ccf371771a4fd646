//! [`IoFd`]: an open descriptor together with how it was opened.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// `RWF_DONTCACHE` (Linux 6.14+, uncached buffered IO), as `libc` spells it: the read or write goes
/// through the page cache (no alignment rules, readahead and write-back kept) and its pages are dropped
/// once the IO is done. A kernel or file system without it fails the IO with `EOPNOTSUPP`.
pub const RWF_DONTCACHE: libc::c_int = libc::RWF_DONTCACHE;

/// An open file descriptor, whether it was opened with `O_DIRECT`, and whether its reads and writes
/// carry `RWF_DONTCACHE`. Engines use the flags to pick their path (the ring engine tries a
/// non-blocking page-cache read inline only for descriptors that are neither `O_DIRECT` nor
/// dontcache). Shared as `Arc<IoFd>`: an op that must outlive its future keeps a clone.
#[derive(Debug)]
pub struct IoFd {
    fd: OwnedFd,
    direct: bool,
    /// Every read and write of this descriptor passes `RWF_DONTCACHE` (preadv2/pwritev2, or the SQE's
    /// `rw_flags`). Cleared by the layer above when the kernel refuses the flag.
    dontcache: AtomicBool,
}

impl IoFd {
    /// Wraps `fd`; `direct` must say whether it was opened with `O_DIRECT`. Dontcache starts off.
    pub fn new(fd: OwnedFd, direct: bool) -> Self {
        Self {
            fd,
            direct,
            dontcache: AtomicBool::new(false),
        }
    }

    /// True if the descriptor was opened with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// True if reads and writes of this descriptor pass `RWF_DONTCACHE`.
    pub fn is_dontcache(&self) -> bool {
        self.dontcache.load(Ordering::Relaxed)
    }

    /// Turns `RWF_DONTCACHE` on or off for the reads and writes submitted from now on (ops already
    /// submitted keep the flags they had). Ignored (stays off) for an `O_DIRECT` descriptor, which
    /// bypasses the page cache anyway.
    pub fn set_dontcache(&self, on: bool) {
        self.dontcache.store(on && !self.direct, Ordering::Relaxed);
    }

    /// The `RWF_*` flags a read or write of this descriptor passes now: [`RWF_DONTCACHE`] or 0.
    pub fn rw_flags(&self) -> libc::c_int {
        if self.is_dontcache() {
            RWF_DONTCACHE
        } else {
            0
        }
    }

    /// The owned descriptor.
    pub fn owned(&self) -> &OwnedFd {
        &self.fd
    }

    /// Gives back the descriptor.
    pub fn into_owned(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for IoFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for IoFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
