//! A recording in-memory file for the tests: implements both [`OwnedAsyncWriter`] and
//! [`OwnedAsyncReader`], records every write (offset, bytes, buffer address) and `set_len`, can fail the
//! Nth write or the `set_len` with a chosen errno, and can gate writes on a semaphore so that buffers stay in
//! flight as long as a test wants.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use io_engine::{FullSlice, IoBuf, IoBufMut, Slice};
use tokio::sync::Semaphore;

use super::io_traits::{OwnedAsyncReader, OwnedAsyncWriter};

/// One `write_all_at` call as the mock saw it.
#[derive(Debug, Clone)]
pub(super) struct WriteRecord {
    pub(super) offset: u64,
    pub(super) bytes: Vec<u8>,
    /// Address of the first byte written (to tell a zero-copy write from a copy).
    pub(super) ptr: usize,
    /// Whether the mock reported success.
    pub(super) ok: bool,
}

#[derive(Debug, Default)]
pub(super) struct MockState {
    /// The file: bytes of completed writes; holes are zeros.
    pub(super) contents: Vec<u8>,
    pub(super) writes: Vec<WriteRecord>,
    pub(super) set_lens: Vec<u64>,
    /// Fail the write with this 0-based index with this errno (writing half of it first, as a torn write).
    pub(super) fail_write: Option<(usize, i32)>,
    /// Fail `set_len` with this errno.
    pub(super) fail_set_len: Option<i32>,
}

/// A cheaply clonable handle to one mock file; the test keeps one, the writer owns another.
#[derive(Debug, Clone)]
pub(super) struct MockFile {
    state: Arc<Mutex<MockState>>,
    /// When set, each write takes (and consumes) one permit before it does anything.
    gate: Option<Arc<Semaphore>>,
    /// One permit is added by each write as it starts (before the gate): a test waits here to know a write
    /// is under way.
    entered: Arc<Semaphore>,
}

impl Default for MockFile {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            gate: None,
            entered: Arc::new(Semaphore::new(0)),
        }
    }
}

impl MockFile {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A mock whose writes each wait for a permit of the returned semaphore (which starts with none).
    pub(super) fn gated() -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let file = Self {
            gate: Some(Arc::clone(&gate)),
            ..Self::default()
        };
        (file, gate)
    }

    pub(super) fn state(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().expect("mock state lock")
    }

    /// Waits until `n` more writes have started (each is then under way or done).
    pub(super) async fn wait_writes_started(&self, n: u32) {
        self.entered
            .acquire_many(n)
            .await
            .expect("the semaphore is never closed")
            .forget();
    }

    /// Number of handles to this mock's state (the test's plus the flush task's while it runs).
    pub(super) fn handles(&self) -> usize {
        Arc::strong_count(&self.state)
    }
}

fn write_at(contents: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if contents.len() < end {
        contents.resize(end, 0);
    }
    contents[start..end].copy_from_slice(bytes);
}

impl OwnedAsyncWriter for MockFile {
    type Error = io::Error;

    async fn write_all_at<B: IoBuf>(
        &self,
        buf: FullSlice<B>,
        offset: u64,
    ) -> (FullSlice<B>, Result<(), io::Error>) {
        self.entered.add_permits(1);
        if let Some(gate) = &self.gate {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        }
        let mut state = self.state();
        let index = state.writes.len();
        let bytes = buf.as_slice();
        let fail = match state.fail_write {
            Some((n, errno)) if n == index => Some(errno),
            _ => None,
        };
        state.writes.push(WriteRecord {
            offset,
            bytes: bytes.to_vec(),
            ptr: bytes.as_ptr() as usize,
            ok: fail.is_none(),
        });
        let result = match fail {
            Some(errno) => {
                // A torn write: the first half reached the file, with its bytes inverted so that nothing
                // downstream can mistake it for good data.
                let torn: Vec<u8> = bytes[..bytes.len() / 2].iter().map(|b| !b).collect();
                write_at(&mut state.contents, offset, &torn);
                Err(io::Error::from_raw_os_error(errno))
            }
            None => {
                write_at(&mut state.contents, offset, bytes);
                Ok(())
            }
        };
        drop(state);
        (buf, result)
    }

    async fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut state = self.state();
        state.set_lens.push(len);
        if let Some(errno) = state.fail_set_len {
            return Err(io::Error::from_raw_os_error(errno));
        }
        state.contents.resize(len as usize, 0);
        Ok(())
    }
}

impl OwnedAsyncReader for MockFile {
    type Error = io::Error;

    async fn read_exact_at<B: IoBufMut>(
        &self,
        mut buf: Slice<B>,
        offset: u64,
    ) -> (Slice<B>, Result<(), io::Error>) {
        let state = self.state();
        let start = offset as usize;
        let len = buf.len();
        if start + len > state.contents.len() {
            let err = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "mock read {start}..{} past the end {}",
                    start + len,
                    state.contents.len()
                ),
            );
            return (buf, Err(err));
        }
        let src = &state.contents[start..start + len];
        // SAFETY: the window starts at `stable_mut_ptr()` and is valid for `len` bytes of writes (IoBufMut
        // contract), and `src` is a different allocation (the mock's `Vec`), so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), buf.stable_mut_ptr(), len) };
        // SAFETY: the whole window `[begin, begin + len)` was just written.
        unsafe { buf.assume_filled(len) };
        drop(state);
        (buf, Ok(()))
    }
}
