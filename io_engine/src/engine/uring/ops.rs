//! The ops: each struct owns what the kernel touches while it is in flight, builds its SQE (the opcode's
//! man page is named on each) and turns the CQE result into what the caller gets back.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use io_uring::{opcode, squeue, types};

use super::op::Op;
use crate::buf::{FullSlice, IoBuf, IoBufMut, Slice};
use crate::engine::fd::IoFd;
use crate::engine::iovec::mark_filled;
use crate::engine::std_fs::StdFsEngine;

/// The most bytes Linux transfers in one read or write (`MAX_RW_COUNT`); a longer request is a short
/// transfer, as with `pread(2)`.
const MAX_RW_COUNT: usize = 0x7fff_f000;

fn rw_len(len: usize) -> u32 {
    len.min(MAX_RW_COUNT) as u32
}

fn fd(fd: &IoFd) -> types::Fd {
    types::Fd(fd.as_raw_fd())
}

/// An `iovec` array; its heap storage does not move when the op is moved.
pub(super) struct IoVecs(pub(super) Vec<libc::iovec>);

// SAFETY: the raw pointers point into buffers owned by the same op, which are `Send` (`IoBuf: Send`);
// the array is only read by the kernel and never shared between threads by this code.
unsafe impl Send for IoVecs {}

/// The [`Op`] impl of a positional read or write (`$op` with its buffers in the field `$bufs`): the four
/// differ only in the SQE `prepare` builds (before `.offset(..)` and the descriptor's `RWF_*` flags,
/// `RWF_DONTCACHE` for a dontcache descriptor, as `rw_flags`), in what a completion of `n` bytes marks
/// as `filled` (reads only), and in the `std-fs` method `run_inline` calls. The buffers stay in the op,
/// so the op owns them until the kernel completes it.
///
/// The `unsafe impl` is the invocation's: a `// SAFETY:` comment above each invocation says what the
/// SQE points at and why `self` owns it (clippy sees only the comment inside the macro).
macro_rules! transfer_op {
    (
        $op:ident<B: $bound:ident>, $bufs:ident: $bufs_ty:ty,
        prepare: |$this:ident| $sqe:expr,
        $(filled: |$filled_bufs:ident, $n:ident| $filled:expr,)?
        inline: $inline:ident $(,)?
    ) => {
        // SAFETY: what the SQE of `$op` points at and why `self` owns it is the `// SAFETY:` comment
        // above the invocation; the buffers stay in `self` until `complete` or `run_inline` hands them back.
        unsafe impl<B: $bound> Op for $op<B> {
            type Output = ($bufs_ty, io::Result<usize>);

            fn prepare(&mut self) -> squeue::Entry {
                let $this = self;
                let rw_flags = $this.fd.rw_flags();
                $sqe.offset($this.offset).rw_flags(rw_flags).build()
            }

            fn inline_likely(&self) -> bool {
                !self.fd.is_direct()
            }

            fn complete(self, res: io::Result<u32>) -> Self::Output {
                let res = res.map(|n| n as usize);
                let bufs = self.$bufs;
                $(
                    let mut $filled_bufs = bufs;
                    if let Ok($n) = res {
                        $filled
                    }
                    let bufs = $filled_bufs;
                )?
                (bufs, res)
            }

            fn run_inline(self) -> Self::Output {
                StdFsEngine.$inline(&self.fd, self.offset, self.$bufs)
            }
        }
    };
}

/// `IORING_OP_READ`, as `pread(2)`.
pub(super) struct Read<B> {
    pub(super) fd: Arc<IoFd>,
    pub(super) offset: u64,
    pub(super) buf: Slice<B>,
}

// SAFETY: the SQE points at the window of `buf` (stable-pointer invariant of `IoBufMut`), owned by `self`.
transfer_op! {
    Read<B: IoBufMut>, buf: Slice<B>,
    prepare: |op| opcode::Read::new(fd(&op.fd), op.buf.stable_mut_ptr(), rw_len(op.buf.len())),
    filled: |buf, n| {
        // SAFETY: the kernel wrote `n` bytes (at most the window's length) at the window's start.
        unsafe { buf.assume_filled(n) }
    },
    inline: read_at,
}

/// `IORING_OP_WRITE`, as `pwrite(2)`.
pub(super) struct Write<B> {
    pub(super) fd: Arc<IoFd>,
    pub(super) offset: u64,
    pub(super) buf: FullSlice<B>,
}

// SAFETY: the SQE points at the initialized bytes of `buf` (stable-pointer invariant), owned by `self`.
transfer_op! {
    Write<B: IoBuf>, buf: FullSlice<B>,
    prepare: |op| opcode::Write::new(fd(&op.fd), op.buf.stable_ptr(), rw_len(op.buf.len())),
    inline: write_at,
}

/// `IORING_OP_READV`, as `preadv2(2)`.
pub(super) struct Readv<B> {
    pub(super) fd: Arc<IoFd>,
    pub(super) offset: u64,
    pub(super) bufs: Vec<Slice<B>>,
    /// Built from `bufs` (`iovec::read_iovecs`); at most `UIO_MAXIOV` entries.
    pub(super) iovecs: IoVecs,
}

// SAFETY: the SQE points at `iovecs` (heap, owned by `self`), whose entries point into the windows of
// `bufs` (owned by `self`, stable-pointer invariant).
transfer_op! {
    Readv<B: IoBufMut>, bufs: Vec<Slice<B>>,
    prepare: |op| opcode::Readv::new(fd(&op.fd), op.iovecs.0.as_ptr(), op.iovecs.0.len() as u32),
    filled: |bufs, n| {
        // SAFETY: the kernel filled the first `n` bytes across the iovecs, in order.
        unsafe { mark_filled(&mut bufs, n) }
    },
    inline: readv_at,
}

/// `IORING_OP_WRITEV`, as `pwritev2(2)`.
pub(super) struct Writev<B> {
    pub(super) fd: Arc<IoFd>,
    pub(super) offset: u64,
    pub(super) bufs: Vec<FullSlice<B>>,
    /// Built from `bufs` (`iovec::write_iovecs`); at most `UIO_MAXIOV` entries.
    pub(super) iovecs: IoVecs,
}

// SAFETY: as for `Readv`: `iovecs` and the slices they point into are owned by `self`.
transfer_op! {
    Writev<B: IoBuf>, bufs: Vec<FullSlice<B>>,
    prepare: |op| opcode::Writev::new(fd(&op.fd), op.iovecs.0.as_ptr(), op.iovecs.0.len() as u32),
    inline: writev_at,
}

/// `IORING_OP_FSYNC`, as `fsync(2)` or, with `datasync`, `fdatasync(2)`.
pub(super) struct Fsync {
    pub(super) fd: Arc<IoFd>,
    pub(super) datasync: bool,
}

// SAFETY: the SQE points to no memory; the descriptor is kept open by `self.fd`.
unsafe impl Op for Fsync {
    type Output = io::Result<()>;

    fn prepare(&mut self) -> squeue::Entry {
        let flags = if self.datasync {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(fd(&self.fd)).flags(flags).build()
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(drop)
    }

    fn run_inline(self) -> Self::Output {
        if self.datasync {
            StdFsEngine.fdatasync(&self.fd)
        } else {
            StdFsEngine.fsync(&self.fd)
        }
    }
}

/// `IORING_OP_OPENAT`, as `openat(2)` with `AT_FDCWD`.
pub(super) struct OpenAt {
    pub(super) path: CString,
    /// Includes `O_CLOEXEC`.
    pub(super) flags: libc::c_int,
    pub(super) mode: libc::mode_t,
}

// SAFETY: the SQE points at `path`'s heap bytes, owned by `self`.
unsafe impl Op for OpenAt {
    type Output = io::Result<IoFd>;

    fn prepare(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode)
            .build()
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        let raw = res? as libc::c_int;
        // SAFETY: a successful openat returned a new descriptor that nothing else owns. When the future
        // was dropped, this `IoFd` is dropped right away, closing it.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(IoFd::new(owned, self.flags & libc::O_DIRECT != 0))
    }

    fn run_inline(self) -> Self::Output {
        let path = Path::new(std::ffi::OsStr::from_bytes(self.path.as_bytes()));
        StdFsEngine.open(path, self.flags, self.mode)
    }
}

/// `IORING_OP_FTRUNCATE` (Linux 6.9), as `ftruncate(2)`.
pub(super) struct Ftruncate {
    pub(super) fd: Arc<IoFd>,
    pub(super) len: u64,
}

// SAFETY: the SQE points to no memory; the descriptor is kept open by `self.fd`.
unsafe impl Op for Ftruncate {
    type Output = io::Result<()>;

    fn prepare(&mut self) -> squeue::Entry {
        opcode::Ftruncate::new(fd(&self.fd), self.len).build()
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(drop)
    }

    fn run_inline(self) -> Self::Output {
        StdFsEngine.ftruncate(&self.fd, self.len)
    }
}

/// `IORING_OP_FALLOCATE`, as `fallocate(2)`.
pub(super) struct Fallocate {
    pub(super) fd: Arc<IoFd>,
    pub(super) mode: libc::c_int,
    pub(super) offset: u64,
    pub(super) len: u64,
}

// SAFETY: the SQE points to no memory; the descriptor is kept open by `self.fd`.
unsafe impl Op for Fallocate {
    type Output = io::Result<()>;

    fn prepare(&mut self) -> squeue::Entry {
        opcode::Fallocate::new(fd(&self.fd), self.len)
            .offset(self.offset)
            .mode(self.mode)
            .build()
    }

    fn complete(self, res: io::Result<u32>) -> Self::Output {
        res.map(drop)
    }

    fn run_inline(self) -> Self::Output {
        StdFsEngine.fallocate(&self.fd, self.mode, self.offset, self.len)
    }
}
