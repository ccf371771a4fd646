//! [`IoFd`]: an open descriptor together with how it was opened.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// An open file descriptor and whether it was opened with `O_DIRECT`. Engines use the flag to pick their
/// path (the ring engine tries a non-blocking page-cache read inline only for descriptors that are not
/// `O_DIRECT`). Shared as `Arc<IoFd>`: an op that must outlive its future keeps a clone.
#[derive(Debug)]
pub struct IoFd {
    fd: OwnedFd,
    direct: bool,
}

impl IoFd {
    /// Wraps `fd`; `direct` must say whether it was opened with `O_DIRECT`.
    pub fn new(fd: OwnedFd, direct: bool) -> Self {
        Self { fd, direct }
    }

    /// True if the descriptor was opened with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct
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
