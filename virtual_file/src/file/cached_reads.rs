//! The cached IO of a [`VirtualFile`]: reads through the context's page cache (one page, or a range
//! of pages in one device read), write-through of written pages into it, and the check of what is
//! resident. The uncached reads they are built on are in `mod.rs`.

use std::io;

use io_engine::{IoBufMut, IoBufferMut, Slice};

use super::short_io::{transfer_all, Short};
use super::VirtualFile;
use crate::error::Error;
use crate::metrics::OpKind;
use crate::page_cache::{PageBuf, PageKey, ReadIntent, CACHE_PAGE_SIZE};

const PAGE: u64 = CACHE_PAGE_SIZE as u64;

impl VirtualFile {
    /// Fills `dst` with the bytes at `offset` through the context's page cache: every
    /// [`CACHE_PAGE_SIZE`] page the range touches is served from the cache, or read once from the file
    /// (a whole aligned page, straight into the cache slot, also for `O_DIRECT`) and kept. End of file
    /// before `dst` is full (also a range that starts past the end) is an error of kind `UnexpectedEof`.
    /// `offset` and `dst` need no alignment.
    ///
    /// A range of several pages that are all resident is copied under one lock; otherwise all its pages
    /// are read from the file in one read (one device IO, not one per page) and put in the cache.
    ///
    /// Coherent with every mutation through any [`VirtualFile`] of the same file in this process (see
    /// `file/coherence.rs`): once a write, `set_len` or `fallocate` has completed, no read returns the bytes
    /// it replaced. Writes by other processes or raw descriptors are not seen while pages are cached.
    ///
    /// This is a point read ([`ReadIntent::Point`]); a pass over a file reads with
    /// [`read_cached_at_with`](Self::read_cached_at_with) and [`ReadIntent::Scan`].
    pub async fn read_cached_at(&self, offset: u64, dst: &mut [u8]) -> Result<(), Error> {
        self.read_cached_at_with(offset, dst, ReadIntent::Point)
            .await
    }

    /// [`read_cached_at`](Self::read_cached_at) with the read's intent. [`ReadIntent::Point`] is
    /// `read_cached_at`. [`ReadIntent::Scan`] (a pass over the file that will not soon come again:
    /// iteration, verification) copies from the pages that are resident without marking them as used,
    /// and reads the others from the file (one read for the whole range, as a point read of several
    /// pages does) without putting them in the cache: a scan of a file larger than the cache evicts
    /// nothing. Same errors and coherence as `read_cached_at`.
    pub async fn read_cached_at_with(
        &self,
        offset: u64,
        dst: &mut [u8],
        intent: ReadIntent,
    ) -> Result<(), Error> {
        self.mark_cached();
        let len = dst.len();
        if len == 0 {
            return Ok(());
        }
        let Some(end) = offset.checked_add(len as u64) else {
            return self.check_full(offset, len, 0);
        };
        let first = offset / PAGE;
        let last = (end - 1) / PAGE;
        if first == last {
            let copied = self.read_page_part(offset, dst, intent).await?;
            return self.check_full(offset, len, copied);
        }
        if self
            .ctx
            .inner
            .page_cache
            .copy_if_resident(self.cache_id(), offset, dst, intent)
        {
            return Ok(());
        }
        self.read_pages_once(offset, dst, first, last, intent).await
    }

    /// A range over pages `first..=last` not all resident: one read of all of them (one device IO
    /// where the kernel's cache is bypassed, as many as a value spanning two pages needs), the wanted
    /// bytes copied out, and, for a point read, the pages put in the cache unless a mutation of the
    /// file began or ended meanwhile (a scan's are dropped).
    /// Concurrent misses of these pages are not merged into one read, as single-page misses are.
    async fn read_pages_once(
        &self,
        offset: u64,
        dst: &mut [u8],
        first: u64,
        last: u64,
        intent: ReadIntent,
    ) -> Result<(), Error> {
        let cache = &self.ctx.inner.page_cache;
        let seen = self.shared.seq();
        let start = first * PAGE;
        let span = ((last - first + 1) * PAGE) as usize;
        let buf = IoBufferMut::<io_engine::DefaultAlign>::with_capacity(span);
        let (buf, res) = self.read_to_end_of(buf, span, start).await;
        res?;
        cache.count_read(last - first + 1, intent);
        let skip = (offset - start) as usize;
        let copied = buf.len().saturating_sub(skip).min(dst.len());
        if copied > 0 {
            dst[..copied].copy_from_slice(&buf[skip..skip + copied]);
        }
        if intent == ReadIntent::Point {
            cache.insert_pages(
                self.cache_id(),
                first,
                &buf,
                (self.shared.seq_counter(), seen),
                false,
            );
        }
        self.check_full(offset, dst.len(), copied)
    }

    /// Copies the bytes at `pos` into `out` (all within one page) from the cache, reading the page on a
    /// miss (kept for a point read, not for a scan); returns how many there were (fewer than `out.len()`
    /// at end of file).
    async fn read_page_part(
        &self,
        pos: u64,
        out: &mut [u8],
        intent: ReadIntent,
    ) -> Result<usize, Error> {
        let page_no = pos / PAGE;
        let in_page = (pos % PAGE) as usize;
        let want = out.len();
        self.ctx
            .inner
            .page_cache
            .with_page(
                self.page_key(page_no),
                intent,
                |bytes| {
                    let n = bytes.len().saturating_sub(in_page).min(want);
                    if n > 0 {
                        out[..n].copy_from_slice(&bytes[in_page..in_page + n]);
                    }
                    n
                },
                |buf| self.load_page(buf, page_no),
            )
            .await
    }

    /// `UnexpectedEof` unless all `len` bytes at `offset` were copied.
    fn check_full(&self, offset: u64, len: usize, copied: usize) -> Result<(), Error> {
        if copied == len {
            return Ok(());
        }
        let msg = format!("end of file after {copied} of {len} bytes");
        Err(Error::Io {
            op: OpKind::Read,
            path: self.path.clone(),
            offset: Some(offset),
            len: Some(len),
            mode: self.ctx.io_mode(),
            engine: self.ctx.engine_kind(),
            source: io::Error::new(io::ErrorKind::UnexpectedEof, msg),
        })
    }

    /// Puts `data`, just written at `offset` by this handle's last completed write (`write_all_at` of
    /// exactly these bytes, a multiple of [`CACHE_PAGE_SIZE`] from a page boundary), into the page cache
    /// as this file's pages, while the budget allows (write-through: later reads of them do not go to
    /// the device). A last partial page is not kept. Nothing is put in if any other mutation of the file
    /// began or ended since that write completed, or if the last write was not of `data.len()` bytes at
    /// `offset` (the caller passes the bytes it wrote).
    pub(crate) fn cache_written(&self, offset: u64, data: &[u8]) {
        if offset % PAGE != 0 {
            return;
        }
        let Some(seen) = self.last_write_seq(offset, data.len()) else {
            return;
        };
        self.mark_cached();
        self.ctx.inner.page_cache.insert_pages(
            self.cache_id(),
            offset / PAGE,
            data,
            (self.shared.seq_counter(), seen),
            true,
        );
    }

    /// Appends the `len` bytes at `offset` to `out` if every page they touch is in the cache now
    /// (counted as hits); else returns false without reading anything, `out` as it was.
    pub fn append_if_cached(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> bool {
        // No check of this open's own flag: the pages may have been put in by the open this one was made
        // from (`open_again_read_only` shares the cache id).
        self.ctx
            .inner
            .page_cache
            .append_if_resident(self.cache_id(), offset, len, out)
    }

    fn page_key(&self, page_no: u64) -> PageKey {
        (self.cache_id(), page_no)
    }

    /// Reads page `page_no` into `buf` (empty, capacity at least a page): a whole page, or less at end of
    /// file.
    async fn load_page(&self, buf: PageBuf, page_no: u64) -> (PageBuf, Result<(), Error>) {
        self.read_to_end_of(buf, CACHE_PAGE_SIZE, page_no * PAGE)
            .await
    }

    /// Reads `len` bytes at `offset` into `buf` (empty) with [`read_at`](Self::read_at), stopping early
    /// only at the end of the file (`buf` then holds fewer than `len` bytes).
    async fn read_to_end_of<B: IoBufMut>(
        &self,
        buf: B,
        len: usize,
        offset: u64,
    ) -> (B, Result<(), Error>) {
        let align = self.is_direct().then(|| self.ctx.alignment());
        let (buf, _, res) = transfer_all(buf, len, align, |buf, done| {
            let window = Slice::new(buf, done..len);
            async move {
                let (slice, res) = self.read_at(window, offset + done as u64).await;
                (slice.into_inner(), res)
            }
        })
        .await;
        match res {
            // A read of 0 bytes, or an O_DIRECT read that ends short of an aligned position, is the
            // end of the file.
            Ok(()) | Err(Short::Zero | Short::Unaligned) => (buf, Ok(())),
            Err(Short::Failed(e)) => (buf, Err(e)),
        }
    }
}
