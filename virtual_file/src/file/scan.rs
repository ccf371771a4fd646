//! [`Scan`]: a file read front to back with reads in flight ahead of the consumer (our readahead, for
//! `O_DIRECT` files, which the kernel does not read ahead for; it serves buffered files as well).
//!
//! - The range is cut into reads of [`ScanOptions::read_size`] bytes (aligned to the context's alignment:
//!   the first read starts at the range's start rounded down, the last ends at the range's end rounded
//!   up, and each chunk handed out is sliced to the range, without a copy).
//! - Or the reads are given: [`VirtualFile::scan_extents`] reads a list of extents in order, one read
//!   each (aligned outward), each chunk exactly one extent: a planned front-to-back read, such as a
//!   layer's values in merged runs, gets the same readahead.
//! - The window starts at [`ScanOptions::initial_reads`] reads in flight and doubles each time the
//!   consumer takes a chunk, up to [`ScanOptions::max_reads`]: a consumer that takes one chunk pays for
//!   little readahead, one that reads on gets the device's queue kept full. It never reads past the
//!   range's end, nor past the file's end as it was when the scan began (a file that grows meanwhile is
//!   read to its old end; one that shrinks below it fails with `UnexpectedEof`).
//! - Memory: every read's buffer is reserved from the context's [`MemoryBudget`] (consumer
//!   [`Consumer::ScanBuffers`]) before it is allocated, until the chunk is handed out. Only the read that
//!   keeps the scan going (none in flight) waits for the budget; readahead beyond it is taken only when
//!   the budget has room at once ([`MemoryBudget::try_reserve`]), so a scan never holds reservations
//!   while it waits for another one, and a full budget shrinks the window instead of stalling others.
//! - Each read runs as its own task (on the blocking pool for an engine that does its syscalls on the
//!   calling thread, so that reads ahead are really in flight together), so reads progress while the
//!   consumer works on the previous chunk.
//! - Cancellation: [`Scan::next_chunk`] may be dropped at any `.await`; the reads in flight stay in
//!   flight and the next call goes on where the dropped one stopped. Dropping the [`Scan`] lets the
//!   reads in flight finish on their own tasks (not aborted: a read's reservation is freed together
//!   with its buffer, after the engine gave the buffer back).
//! - Errors: a read that fails fails its `next_chunk`, and every later call fails too (the scan is
//!   over: the chunks after the failed one would leave a gap).
//! - Buffer reuse: a consumer done with a chunk may hand it back with [`Scan::recycle`]; the scan keeps
//!   its buffer (at most `max_reads` of them, each still paid from the budget) and reads into it again
//!   instead of allocating a fresh one, which would cost a page fault per 4 KiB on first touch.
//! - Scans read the file directly, never through the page cache: they neither evict cached pages nor
//!   admit the pages they read.
//!
//! [`MemoryBudget`]: crate::MemoryBudget
//! [`MemoryBudget::try_reserve`]: crate::MemoryBudget::try_reserve
//! [`Consumer::ScanBuffers`]: crate::Consumer::ScanBuffers

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use io_engine::{DefaultAlign, IoBuffer, IoBufferMut, IoEngineKind, Slice};
use tokio::task::JoinHandle;

use super::VirtualFile;
use crate::error::Error;
use crate::memory_budget::{Consumer, Reservation};
use crate::metrics::OpKind;

/// Default size of one scan read: 1 MiB.
pub const DEFAULT_SCAN_READ: usize = 1 << 20;
/// Default largest number of scan reads in flight: 8.
pub const DEFAULT_SCAN_READS: usize = 8;

/// How a [`Scan`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOptions {
    /// Bytes per read (rounded up to the context's alignment). Default [`DEFAULT_SCAN_READ`].
    pub read_size: usize,
    /// Reads in flight when the scan begins. Default 2.
    pub initial_reads: usize,
    /// Most reads in flight (the window grows up to it). Default [`DEFAULT_SCAN_READS`].
    pub max_reads: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            read_size: DEFAULT_SCAN_READ,
            initial_reads: 2,
            max_reads: DEFAULT_SCAN_READS,
        }
    }
}

/// One chunk of a scan: the bytes at `offset`, sliced out of the aligned read buffer without a copy.
#[derive(Debug, Clone)]
pub struct ScanChunk {
    /// File offset of the first byte.
    pub offset: u64,
    /// The bytes.
    pub bytes: IoBuffer<DefaultAlign>,
}

type ReadTask = JoinHandle<Result<(IoBuffer<DefaultAlign>, Reservation), Error>>;

/// A read in flight: the task, and the part of its buffer the scan wants (`skip` bytes in, `len` long).
struct InFlight {
    task: ReadTask,
    offset: u64,
    skip: usize,
    len: usize,
}

/// What a [`Scan`] reads next.
enum Extents {
    /// Reads of `read_size` bytes from `next_read` up to the scan's end.
    Even { read_size: usize },
    /// These extents, one read each (aligned outward), in this order.
    Listed(VecDeque<Range<u64>>),
}

/// One read to start: the aligned offset and length, and the bytes of it the consumer gets.
struct NextRead {
    offset: u64,
    len: usize,
    skip: usize,
    want: usize,
}

/// A front-to-back read of a range of a file, reads in flight ahead of the consumer (module docs).
pub struct Scan {
    file: Arc<VirtualFile>,
    extents: Extents,
    max_reads: usize,
    align: u64,
    /// Aligned offset of the next read to start ([`Extents::Even`]).
    next_read: u64,
    /// The range's start (bytes before it in the first read are not handed out).
    start: u64,
    /// The range's end, at most the file's size when the scan began ([`Extents::Even`]).
    end: u64,
    window: usize,
    pending: VecDeque<InFlight>,
    /// A read failed (at this offset): every later call fails too, so no caller takes the chunks after
    /// a gap for the next bytes.
    failed_at: Option<u64>,
    /// Buffers handed back by [`Scan::recycle`], each with the reservation that pays for it.
    free: Vec<(IoBufferMut<DefaultAlign>, Reservation)>,
}

impl std::fmt::Debug for Scan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("path", &self.file.path)
            .field("next_read", &self.next_read)
            .field("end", &self.end)
            .field("listed", &matches!(self.extents, Extents::Listed(_)))
            .field("window", &self.window)
            .field("in_flight", &self.pending.len())
            .finish()
    }
}

impl VirtualFile {
    /// Reads `range` of the file front to back (the whole file with `..`), with reads in flight ahead of
    /// the consumer (see [`Scan`]). The range is clipped to the file's current size. Fails at once on a
    /// zero read size or window, or a read size larger than the memory budget.
    pub async fn scan(
        self: &Arc<Self>,
        range: impl std::ops::RangeBounds<u64>,
        options: ScanOptions,
    ) -> Result<Scan, Error> {
        use std::ops::Bound;
        self.check_scan_options(&options)?;
        let align = self.ctx.alignment().max(1);
        let read_size = options.read_size.div_ceil(align) * align;
        let size = self.metadata().await?.size;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        }
        .min(size);
        let start = start.min(end);
        let align = align as u64;
        // an empty range reads nothing (rounded down, an unaligned start would be a read before `end`)
        let next_read = if start == end {
            end
        } else {
            start - start % align
        };
        Ok(Scan {
            file: Arc::clone(self),
            extents: Extents::Even { read_size },
            max_reads: options.max_reads,
            align,
            next_read,
            start,
            end,
            window: options.initial_reads.min(options.max_reads),
            pending: VecDeque::new(),
            failed_at: None,
            free: Vec::new(),
        })
    }

    /// Reads `extents` in the order given, one read each (aligned outward to the context's alignment),
    /// with reads in flight ahead of the consumer as in [`scan`](Self::scan); each chunk is exactly one
    /// extent's bytes. For a planned front-to-back read (a layer's values in merged runs).
    /// `options.read_size` is not used. An extent past the end of the file fails its read with
    /// `UnexpectedEof`; an empty extent gives an empty chunk.
    pub fn scan_extents(
        self: &Arc<Self>,
        extents: Vec<Range<u64>>,
        options: ScanOptions,
    ) -> Result<Scan, Error> {
        self.check_scan_options(&options)?;
        Ok(Scan {
            file: Arc::clone(self),
            extents: Extents::Listed(extents.into()),
            max_reads: options.max_reads,
            align: self.ctx.alignment().max(1) as u64,
            next_read: 0,
            start: 0,
            end: 0,
            window: options.initial_reads.min(options.max_reads),
            pending: VecDeque::new(),
            failed_at: None,
            free: Vec::new(),
        })
    }

    fn check_scan_options(&self, options: &ScanOptions) -> Result<(), Error> {
        if options.read_size == 0 || options.initial_reads == 0 || options.max_reads == 0 {
            return Err(Error::Config(format!(
                "scan of {}: read size, initial and largest reads in flight must be positive \
                 (got {options:?})",
                self.path.display()
            )));
        }
        Ok(())
    }
}

impl Scan {
    /// Reads in flight now.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The next chunk in file order, or `None` after the range's end. Cancellation-safe (module docs).
    pub async fn next_chunk(&mut self) -> Result<Option<ScanChunk>, Error> {
        if let Some(at) = self.failed_at {
            return Err(self.file.io_error(
                OpKind::Read,
                Some(at),
                None,
                io::Error::other(format!("this scan failed earlier, reading at offset {at}")),
            ));
        }
        if self.pending.is_empty() {
            let Some(next) = self.peek() else {
                return Ok(None);
            };
            // nothing in flight: this read keeps the scan going, so it may wait for the budget
            let (buf, reservation) = match self.take_free(next.len) {
                Some((buf, reservation)) => (Some(buf), reservation),
                None => (
                    None,
                    self.file
                        .ctx
                        .memory_budget()
                        .reserve(Consumer::ScanBuffers, next.len)
                        .await?,
                ),
            };
            self.start_read(next, reservation, buf);
        }
        self.fill();
        let head = self
            .pending
            .front_mut()
            .expect("a read is in flight: started above if none was");
        let joined = (&mut head.task).await;
        let done = self.pending.pop_front().expect("the read just awaited");
        let (buf, reservation) = match joined {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                self.failed_at = Some(done.offset);
                return Err(e);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                self.failed_at = Some(done.offset);
                return Err(self.file.io_error(
                    OpKind::Read,
                    Some(done.offset),
                    Some(done.len),
                    io::Error::other(format!("scan read task ended: {e}")),
                ));
            }
        };
        let bytes = buf.slice(done.skip..done.skip + done.len);
        drop(reservation);
        self.window = (self.window * 2).min(self.max_reads);
        self.fill();
        Ok(Some(ScanChunk {
            offset: done.offset + done.skip as u64,
            bytes,
        }))
    }

    /// The next read to start, if any.
    fn peek(&self) -> Option<NextRead> {
        let align = self.align;
        match &self.extents {
            Extents::Even { read_size } => {
                if self.next_read >= self.end {
                    return None;
                }
                let offset = self.next_read;
                let rest = (self.end - offset).div_ceil(align) * align;
                let len = rest.min(*read_size as u64) as usize;
                let skip = self.start.saturating_sub(offset) as usize;
                let want = (self.end - offset).min(len as u64) as usize - skip;
                Some(NextRead {
                    offset,
                    len,
                    skip,
                    want,
                })
            }
            Extents::Listed(list) => {
                let extent = list.front()?;
                let offset = extent.start - extent.start % align;
                let end = extent.end.max(extent.start);
                let len = (end.div_ceil(align) * align - offset) as usize;
                Some(NextRead {
                    offset,
                    len,
                    skip: (extent.start - offset) as usize,
                    want: (end - extent.start) as usize,
                })
            }
        }
    }

    /// Starts reads while the window and the budget (without waiting) allow.
    fn fill(&mut self) {
        while self.pending.len() < self.window {
            let Some(next) = self.peek() else { break };
            let (buf, reservation) = match self.take_free(next.len) {
                Some((buf, reservation)) => (Some(buf), reservation),
                None => match self
                    .file
                    .ctx
                    .memory_budget()
                    .try_reserve(Consumer::ScanBuffers, next.len)
                {
                    Some(reservation) => (None, reservation),
                    None => break,
                },
            };
            self.start_read(next, reservation, buf);
        }
    }

    /// Hands a chunk's buffer back for the scan to read into again (module docs). Kept only if nothing
    /// else shares it (no other slice of it is alive), fewer than `max_reads` are kept already, and the
    /// budget has room for it at once; otherwise it is simply dropped. Returns whether it was kept.
    pub fn recycle(&mut self, bytes: IoBuffer<DefaultAlign>) -> bool {
        if self.free.len() >= self.max_reads || self.failed_at.is_some() {
            return false;
        }
        let Ok(mut buf) = bytes.into_mut() else {
            return false;
        };
        let Some(reservation) = self
            .file
            .ctx
            .memory_budget()
            .try_reserve(Consumer::ScanBuffers, buf.capacity())
        else {
            return false;
        };
        buf.clear();
        self.free.push((buf, reservation));
        true
    }

    /// A recycled buffer that holds `len` bytes, with its reservation.
    fn take_free(&mut self, len: usize) -> Option<(IoBufferMut<DefaultAlign>, Reservation)> {
        let at = self
            .free
            .iter()
            .position(|(buf, _)| buf.capacity() >= len)?;
        Some(self.free.swap_remove(at))
    }

    /// Starts `next`, paid by `reservation`, into `buf` (a recycled buffer of at least `next.len` bytes)
    /// or a new one.
    fn start_read(
        &mut self,
        next: NextRead,
        reservation: Reservation,
        buf: Option<IoBufferMut<DefaultAlign>>,
    ) {
        let NextRead {
            offset,
            len,
            skip,
            want,
        } = next;
        let file = Arc::clone(&self.file);
        let read = async move {
            let buf = buf.unwrap_or_else(|| IoBufferMut::<DefaultAlign>::with_capacity(len));
            let buf = read_at_least(&file, buf, len, offset, skip + want).await?;
            Ok((buf.freeze(), reservation))
        };
        let ctx = &self.file.ctx;
        let inline = ctx.engine_kind() == IoEngineKind::StdFs || ctx.engine().is_downgraded();
        let task = if inline {
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || handle.block_on(read))
        } else {
            tokio::spawn(read)
        };
        self.pending.push_back(InFlight {
            task,
            offset,
            skip,
            len: want,
        });
        match &mut self.extents {
            Extents::Even { .. } => self.next_read = offset + len as u64,
            Extents::Listed(list) => {
                list.pop_front();
            }
        }
    }
}

/// Reads into `buf` (capacity `len`, aligned) at `offset` until at least `needed` bytes are in, looping
/// over short reads; stops early only at end of file, which before `needed` is `UnexpectedEof`.
async fn read_at_least(
    file: &VirtualFile,
    mut buf: IoBufferMut<DefaultAlign>,
    len: usize,
    offset: u64,
    needed: usize,
) -> Result<IoBufferMut<DefaultAlign>, Error> {
    let mut done = 0;
    while done < needed {
        let (slice, res) = file
            .read_at(Slice::new(buf, done..len), offset + done as u64)
            .await;
        buf = slice.into_inner();
        match res? {
            0 => return Err(file.eof_error(offset, needed, done)),
            n => done += n,
        }
        if done < needed && file.direct && done as u64 % file.ctx.alignment() as u64 != 0 {
            // a short unaligned O_DIRECT read ends at the end of the file
            return Err(file.eof_error(offset, needed, done));
        }
    }
    Ok(buf)
}
