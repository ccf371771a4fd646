//! The two loops every positional IO of a [`VirtualFile`](super::VirtualFile) goes through:
//! [`retry_interrupted`] repeats one op while it fails with `EINTR`, and [`transfer_all`] repeats a
//! positional read or write until its whole window is done, stopping at a transfer of 0 bytes or at an
//! `O_DIRECT` transfer that ended at an unaligned position. The callers turn a stop into their error
//! (`UnexpectedEof` for `read_exact_at`, `WriteZero` for `write_all_at`) or into the end of the file (the
//! page-cache reads).

use std::future::Future;
use std::io;

/// Runs `op` on `buf` until it does not fail with `EINTR`; the buffer goes into every try and comes
/// back with the last one (use `()` for an op without a buffer).
pub(super) async fn retry_interrupted<B, T, F, Fut>(mut buf: B, mut op: F) -> (B, io::Result<T>)
where
    F: FnMut(B) -> Fut,
    Fut: Future<Output = (B, io::Result<T>)>,
{
    loop {
        let (b, res) = op(buf).await;
        match res {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf = b,
            res => return (b, res),
        }
    }
}

/// Why [`transfer_all`] stopped before its window was done.
pub(super) enum Short<E> {
    /// A transfer moved 0 bytes (a read at end of file, a write that made no progress).
    Zero,
    /// An `O_DIRECT` transfer ended short at a position that is not a multiple of the alignment: for a
    /// read the end of the file, and the rest could not be transferred at an unaligned offset anyway.
    Unaligned,
    /// A transfer failed.
    Failed(E),
}

/// Transfers `len` bytes with `once(buf, done)`, which moves what it can of the bytes from `done` on
/// (one read or write of the rest of the window, at the window's offset plus `done`) and returns how
/// many it moved. `align` is the alignment an `O_DIRECT` file's transfers keep (`None` for other
/// files). Returns the buffer, the bytes done and whether all `len` were.
pub(super) async fn transfer_all<B, E, F, Fut>(
    mut buf: B,
    len: usize,
    align: Option<usize>,
    mut once: F,
) -> (B, usize, Result<(), Short<E>>)
where
    F: FnMut(B, usize) -> Fut,
    Fut: Future<Output = (B, Result<usize, E>)>,
{
    let mut done = 0;
    let result = loop {
        if done == len {
            break Ok(());
        }
        let (b, res) = once(buf, done).await;
        buf = b;
        match res {
            Err(e) => break Err(Short::Failed(e)),
            Ok(0) => break Err(Short::Zero),
            Ok(n) => {
                done += n;
                if done != len && align.is_some_and(|a| done % a != 0) {
                    break Err(Short::Unaligned);
                }
            }
        }
    };
    (buf, done, result)
}
