//! The `std-fs` engine: positional syscalls on the calling thread.
//!
//! Every op is one blocking syscall made inline from the async fn, with no thread hop: the cheapest path
//! for page-cache hits, and a stall of the calling executor thread for IO that must wait for the device.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::fd::IoFd;
use super::iovec::{iov_count, mark_filled, read_iovecs, to_off_t, write_iovecs};
use super::rename::RenameMode;
use super::stat::{FileStat, STATX_MASK};
use crate::buf::{FullSlice, IoBuf, IoBufMut, Slice};

/// The `std-fs` engine. Stateless; cloning is free.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFsEngine;

/// Turns a syscall's `ssize_t`/`int` result into `io::Result`, reading `errno` on -1.
fn cvt<T: Copy + PartialOrd + Default + TryInto<usize>>(ret: T) -> io::Result<usize> {
    if ret < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret.try_into().unwrap_or(usize::MAX))
    }
}

impl StdFsEngine {
    /// `pread(2)` into the slice's window (`preadv2(2)` with `RWF_DONTCACHE` for a dontcache
    /// descriptor, see [`IoFd::is_dontcache`]). Short reads are returned as they come; 0 means end of
    /// file.
    pub fn read_at<B: IoBufMut>(
        &self,
        fd: &IoFd,
        offset: u64,
        mut buf: Slice<B>,
    ) -> (Slice<B>, io::Result<usize>) {
        let flags = fd.rw_flags();
        let res = to_off_t(offset).and_then(|off| {
            let (ptr, len) = (buf.stable_mut_ptr(), buf.len());
            if flags == 0 {
                // SAFETY: the window `[ptr, ptr + len)` is writable memory owned by `buf` (IoBufMut
                // contract), and `buf` outlives the call.
                cvt(unsafe { libc::pread(fd.as_raw_fd(), ptr.cast(), len, off) })
            } else {
                let iov = [libc::iovec {
                    iov_base: ptr.cast(),
                    iov_len: len,
                }];
                // SAFETY: the iovec is the window of `buf`, writable memory owned by `buf` for the call.
                cvt(unsafe { libc::preadv2(fd.as_raw_fd(), iov.as_ptr(), 1, off, flags) })
            }
        });
        if let Ok(n) = res {
            // SAFETY: the kernel wrote `n` bytes at the start of the window.
            unsafe { buf.assume_filled(n) };
        }
        (buf, res)
    }

    /// `pwrite(2)` of the slice (`pwritev2(2)` with `RWF_DONTCACHE` for a dontcache descriptor). Short
    /// writes are returned as they come.
    pub fn write_at<B: IoBuf>(
        &self,
        fd: &IoFd,
        offset: u64,
        buf: FullSlice<B>,
    ) -> (FullSlice<B>, io::Result<usize>) {
        let flags = fd.rw_flags();
        let res = to_off_t(offset).and_then(|off| {
            let (ptr, len) = (buf.stable_ptr(), buf.len());
            if flags == 0 {
                // SAFETY: `[ptr, ptr + len)` is initialized memory owned by `buf`, alive for the call.
                cvt(unsafe { libc::pwrite(fd.as_raw_fd(), ptr.cast(), len, off) })
            } else {
                let iov = [libc::iovec {
                    iov_base: ptr.cast_mut().cast(),
                    iov_len: len,
                }];
                // SAFETY: the iovec is the initialized bytes of `buf`, alive for the call; the kernel
                // only reads them.
                cvt(unsafe { libc::pwritev2(fd.as_raw_fd(), iov.as_ptr(), 1, off, flags) })
            }
        });
        (buf, res)
    }

    /// `preadv2(2)` into the windows in order, with the descriptor's `RWF_*` flags. Returns the total
    /// read; the windows are filled in order.
    pub fn readv_at<B: IoBufMut>(
        &self,
        fd: &IoFd,
        offset: u64,
        mut bufs: Vec<Slice<B>>,
    ) -> (Vec<Slice<B>>, io::Result<usize>) {
        let iovecs = read_iovecs(&mut bufs);
        let res = to_off_t(offset).and_then(|off| {
            let cnt = iov_count(iovecs.len())?;
            // SAFETY: every iovec points into a window owned by `bufs`, which outlives the call.
            cvt(unsafe { libc::preadv2(fd.as_raw_fd(), iovecs.as_ptr(), cnt, off, fd.rw_flags()) })
        });
        if let Ok(n) = res {
            // SAFETY: the kernel filled the first `n` bytes across the iovecs, in order.
            unsafe { mark_filled(&mut bufs, n) };
        }
        (bufs, res)
    }

    /// `pwritev2(2)` of the slices in order, with the descriptor's `RWF_*` flags. Returns the total
    /// written.
    pub fn writev_at<B: IoBuf>(
        &self,
        fd: &IoFd,
        offset: u64,
        bufs: Vec<FullSlice<B>>,
    ) -> (Vec<FullSlice<B>>, io::Result<usize>) {
        let iovecs = write_iovecs(&bufs);
        let res = to_off_t(offset).and_then(|off| {
            let cnt = iov_count(iovecs.len())?;
            // SAFETY: every iovec points into initialized memory owned by `bufs`, alive for the call.
            cvt(unsafe { libc::pwritev2(fd.as_raw_fd(), iovecs.as_ptr(), cnt, off, fd.rw_flags()) })
        });
        (bufs, res)
    }

    /// `posix_fadvise(2)` of `len` bytes at `offset` (`len` 0: to the end of the file) with `advice`
    /// (`POSIX_FADV_*`). Advisory: the kernel may ignore it.
    pub fn fadvise(&self, fd: &IoFd, offset: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
        let (off, len) = (to_off_t(offset)?, to_off_t(len)?);
        // SAFETY: plain syscall on a valid descriptor.
        let ret = unsafe { libc::posix_fadvise(fd.as_raw_fd(), off, len, advice) };
        // posix_fadvise returns the error number instead of setting errno.
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(ret))
        }
    }

    /// `fsync(2)`.
    pub fn fsync(&self, fd: &IoFd) -> io::Result<()> {
        // SAFETY: plain syscall on a valid descriptor.
        cvt(unsafe { libc::fsync(fd.as_raw_fd()) }).map(drop)
    }

    /// `fdatasync(2)`.
    pub fn fdatasync(&self, fd: &IoFd) -> io::Result<()> {
        // SAFETY: plain syscall on a valid descriptor.
        cvt(unsafe { libc::fdatasync(fd.as_raw_fd()) }).map(drop)
    }

    /// `open(2)` with `flags | O_CLOEXEC` and `mode` (used with `O_CREAT`).
    pub fn open(&self, path: &Path, flags: libc::c_int, mode: libc::mode_t) -> io::Result<IoFd> {
        let cpath = path_to_cstring(path)?;
        // SAFETY: `cpath` is a valid NUL-terminated string alive for the call.
        let fd = unsafe {
            libc::open(
                cpath.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        cvt(fd)?;
        // SAFETY: `open` succeeded, so `fd` is a new descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(IoFd::new(owned, flags & libc::O_DIRECT != 0))
    }

    /// `renameat2(2)` of `from` to `to`. With [`RenameMode::NoReplace`] an existing `to` is `EEXIST`
    /// (atomically: `RENAME_NOREPLACE`), never replaced.
    pub fn rename(&self, from: &Path, to: &Path, mode: RenameMode) -> io::Result<()> {
        let cfrom = path_to_cstring(from)?;
        let cto = path_to_cstring(to)?;
        let flags = match mode {
            RenameMode::Replace => 0,
            RenameMode::NoReplace => libc::RENAME_NOREPLACE,
        };
        // SAFETY: both paths are valid NUL-terminated strings alive for the call.
        cvt(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                cfrom.as_ptr(),
                libc::AT_FDCWD,
                cto.as_ptr(),
                flags,
            )
        })?;
        Ok(())
    }

    /// `unlink(2)` of `path`.
    pub fn unlink(&self, path: &Path) -> io::Result<()> {
        let cpath = path_to_cstring(path)?;
        // SAFETY: `cpath` is a valid NUL-terminated string alive for the call.
        cvt(unsafe { libc::unlink(cpath.as_ptr()) })?;
        Ok(())
    }

    /// `statx(2)` of the open file: size, block size and `O_DIRECT` alignment.
    pub fn statx(&self, fd: &IoFd) -> io::Result<FileStat> {
        // SAFETY: `statx` is plain old data; all-zero is a valid value.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: the empty path with AT_EMPTY_PATH names `fd` itself; `stx` is a valid out-pointer.
        cvt(unsafe {
            libc::statx(
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                STATX_MASK,
                &mut stx,
            )
        })?;
        Ok(FileStat::from_statx(&stx))
    }

    /// `ftruncate(2)`.
    pub fn ftruncate(&self, fd: &IoFd, len: u64) -> io::Result<()> {
        let len = to_off_t(len)?;
        // SAFETY: plain syscall on a valid descriptor.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
    }

    /// `fallocate(2)` with `mode` (0, or `FALLOC_FL_*` flags).
    pub fn fallocate(&self, fd: &IoFd, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let (off, len) = (to_off_t(offset)?, to_off_t(len)?);
        // SAFETY: plain syscall on a valid descriptor.
        cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, len) }).map(drop)
    }
}

/// A path as a NUL-terminated C string; a path with an interior NUL is an `InvalidInput` error.
pub(crate) fn path_to_cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", path.display()),
        )
    })
}
