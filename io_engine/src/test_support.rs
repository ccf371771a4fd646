//! Helpers for tests that must change process-wide state (feature `testing`).
//!
//! Such state is shared by every test of a test binary, so a test that changes it takes its binary's
//! serial lock *first*, before it builds anything, and restores the state through a guard's `Drop`, so
//! that a failing assertion (a panic) cannot leave the limit lowered for the tests that run after it.

use std::io;
use std::path::Path;

/// Lowers the soft `RLIMIT_NOFILE` while it lives; `Drop` restores the limit that was in force before,
/// also when the test panics.
#[derive(Debug)]
pub struct NofileLimit {
    previous: libc::rlimit,
}

impl NofileLimit {
    /// Sets the soft limit to `soft` (the hard limit is kept). Lowering the soft limit is always allowed;
    /// raising it above the hard limit is `EINVAL`.
    pub fn set(soft: u64) -> io::Result<Self> {
        let previous = current()?;
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: previous.rlim_max,
        };
        // SAFETY: `new` is a valid, initialized rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { previous })
    }

    /// The soft limit that `Drop` restores.
    pub fn previous_soft(&self) -> u64 {
        self.previous.rlim_cur
    }
}

impl Drop for NofileLimit {
    fn drop(&mut self) {
        // SAFETY: `previous` is a valid rlimit read by `getrlimit`; restoring it never exceeds the hard
        // limit, which this guard did not change.
        let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.previous) };
        if ret != 0 && !std::thread::panicking() {
            panic!(
                "restoring RLIMIT_NOFILE failed: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// The current `RLIMIT_NOFILE`.
fn current() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

/// Number of descriptors this process has open (entries of `/proc/self/fd`, less the one the listing
/// itself opens).
pub fn open_descriptor_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

/// Number of this process's descriptors whose target is under `dir`. Lists `/proc/self/fd` first, then
/// resolves the links without opening anything, so the count is not inflated by descriptors this
/// function opens itself (a descriptor closed between the two steps is not counted). Exact only while no
/// other thread opens or closes descriptors under `dir`: call it from one sampler at a time.
pub fn open_descriptors_under(dir: &Path) -> io::Result<usize> {
    let entries: Vec<_> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .map(|e| e.path())
        .collect();
    Ok(entries
        .iter()
        .filter_map(|p| std::fs::read_link(p).ok())
        .filter(|t| t.starts_with(dir))
        .count())
}

/// Pages of the first `len` bytes of the file behind `fd` that are in the kernel's page cache now
/// (`mincore(2)` of a shared read-only mapping, made and removed here).
pub fn resident_pages(fd: std::os::fd::BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // SAFETY: a new shared read-only mapping of a descriptor that `fd` keeps open for the call; nothing
    // else refers to it and it is unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `addr..addr + len` is the mapping made above; `vec` has one byte per page of it.
    let ret = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    // SAFETY: unmaps exactly the mapping made above, which no reference points into.
    unsafe { libc::munmap(addr, len) };
    if ret != 0 {
        return Err(err);
    }
    Ok(vec.iter().filter(|&&b| b & 1 != 0).count())
}
