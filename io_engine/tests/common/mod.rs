//! Helpers shared by the io_uring test files.

#![allow(dead_code)] // each test file uses a different subset

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use io_engine::{IoFd, UringConfig, UringEngine};

/// The tests of one file run one at a time, so that counting `/proc/self/fd` is not disturbed by the
/// other tests of the same binary.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

pub fn runtime(multi: bool) -> tokio::runtime::Runtime {
    if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

pub fn launch(config: UringConfig) -> Option<UringEngine> {
    match UringEngine::launch(config) {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("skipped: io_uring cannot start here: {e}");
            None
        }
    }
}

/// A pipe: (read end as an `IoFd`, write end).
pub fn pipe() -> (Arc<IoFd>, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: `pipe2` succeeded; both descriptors are new and owned only here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (Arc::new(IoFd::new(r, false)), std::fs::File::from(w))
}
