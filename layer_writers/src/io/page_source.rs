//! [`FilePageSource`]: the B-tree index of a layer file, read page by page from the file.
//!
//! Page `n` of the index is the 8 KiB at `index_start + n * 8192`. `index_start` is a multiple of 8 KiB,
//! so an index page is exactly one page of the context's page cache: every page is read through it
//! ([`VirtualFile::read_cached_at`]), in every IO mode, and copied out of it. An index page is therefore
//! read from the device once while it stays in the cache (for `buffered` files the cache saves the
//! syscall). The cache reads a missing page straight into its slot, which satisfies `O_DIRECT`.
//!
//! A run of pages for a walk of the whole index ([`PageSource::read_run`]) is read with a
//! [`VirtualFile::scan`] of the run instead (reads of [`RUN_READ`] bytes or a quarter of the memory budget, [`RUN_READS_IN_FLIGHT`] in
//! flight, paid from the memory budget while in flight, never through the page cache): one device
//! round trip per page would hold an `O_DIRECT` walk at a fraction of the device's speed. The pages are
//! slices of the scan's buffers, not copies.

use std::sync::Arc;

use io_engine::{DefaultAlign, IoBuffer, IoBufferMut};
use virtual_file::{ReadIntent, ScanOptions, VirtualFile};

use super::error::PageReadError;
use crate::format::btree::page::PAGE_SIZE;
use crate::format::btree::PageSource;

/// Bytes per read of a run of pages: 1 MiB.
pub const RUN_READ: usize = 1 << 20;
/// Reads in flight for a run of pages.
pub const RUN_READS_IN_FLIGHT: usize = 4;

/// Reads index pages of a layer file.
#[derive(Debug, Clone)]
pub struct FilePageSource {
    file: Arc<VirtualFile>,
    index_start: u64,
    num_pages: u32,
    /// How its page reads are admitted to the page cache ([`ReadIntent::Point`] unless
    /// [`for_scans`](Self::for_scans)).
    intent: ReadIntent,
}

impl FilePageSource {
    /// The index of `num_pages` pages starting at byte `index_start` (a multiple of [`PAGE_SIZE`]) of
    /// `file`.
    pub fn new(file: Arc<VirtualFile>, index_start: u64, num_pages: u32) -> FilePageSource {
        debug_assert_eq!(index_start % PAGE_SIZE as u64, 0);
        FilePageSource {
            file,
            index_start,
            num_pages,
            intent: ReadIntent::Point,
        }
    }

    /// The same index, read with [`ReadIntent::Scan`]: pages that are cached are used, pages it loads
    /// are not kept, so a walk of the whole index does not evict what point lookups keep hot.
    pub fn for_scans(&self) -> FilePageSource {
        FilePageSource {
            intent: ReadIntent::Scan,
            ..self.clone()
        }
    }

    /// Byte offset of page `page_no`.
    pub fn page_offset(&self, page_no: u32) -> u64 {
        self.index_start + u64::from(page_no) * PAGE_SIZE as u64
    }
}

impl PageSource for FilePageSource {
    type Page = IoBuffer;
    type Error = PageReadError;

    async fn read_page(&self, page_no: u32) -> Result<IoBuffer, PageReadError> {
        if page_no >= self.num_pages {
            return Err(PageReadError::OutOfRange {
                page: page_no,
                num_pages: self.num_pages,
            });
        }
        let mut buf = IoBufferMut::<DefaultAlign>::zeroed(PAGE_SIZE);
        self.file
            .read_cached_at_with(self.page_offset(page_no), buf.as_mut_slice(), self.intent)
            .await?;
        Ok(buf.freeze())
    }

    async fn read_run(&self, first: u32, count: u32) -> Result<Vec<IoBuffer>, PageReadError> {
        let end_page = first.saturating_add(count);
        if end_page > self.num_pages {
            return Err(PageReadError::OutOfRange {
                page: end_page - 1,
                num_pages: self.num_pages,
            });
        }
        let range = self.page_offset(first)..self.page_offset(end_page);
        // reads of at most a quarter of the memory budget, so that several fit in flight
        let quarter = self.file.context().memory_budget().total() / 4;
        let options = ScanOptions {
            read_size: RUN_READ.min(quarter - quarter % PAGE_SIZE).max(PAGE_SIZE),
            initial_reads: RUN_READS_IN_FLIGHT,
            max_reads: RUN_READS_IN_FLIGHT,
        };
        let mut scan = self.file.scan(range.clone(), options).await?;
        let mut pages = Vec::with_capacity(count as usize);
        while let Some(chunk) = scan.next_chunk().await? {
            // reads are multiples of the page size from a page boundary, except at the end of the file
            for at in (0..chunk.bytes.len()).step_by(PAGE_SIZE) {
                pages.push(
                    chunk
                        .bytes
                        .slice(at..(at + PAGE_SIZE).min(chunk.bytes.len())),
                );
            }
        }
        // a file shorter than the index (truncated) leaves the run short, or its last page short
        match pages.last() {
            Some(last) if pages.len() == count as usize && last.len() == PAGE_SIZE => Ok(pages),
            _ if count == 0 => Ok(pages),
            _ => Err(PageReadError::ShortRun {
                first,
                count,
                bytes: pages.iter().map(|p| p.len() as u64).sum(),
            }),
        }
    }
}
