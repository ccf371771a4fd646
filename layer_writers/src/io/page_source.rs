//! [`FilePageSource`]: the B-tree index of a layer file, read page by page from the file.
//!
//! Page `n` of the index is the 8 KiB at `index_start + n * 8192`. `index_start` is a multiple of 8 KiB,
//! so an index page is exactly one page of the context's page cache: every page is read through it
//! ([`VirtualFile::read_cached_at`]), in every IO mode, and copied out of it. An index page is therefore
//! read from the device once while it stays in the cache (for `buffered` files the cache saves the
//! syscall). The cache reads a missing page straight into its slot, which satisfies `O_DIRECT`.

use std::sync::Arc;

use io_engine::{DefaultAlign, IoBufferMut};
use virtual_file::{ReadIntent, VirtualFile};

use super::error::PageReadError;
use crate::format::btree::page::PAGE_SIZE;
use crate::format::btree::PageSource;

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
    type Page = IoBufferMut;
    type Error = PageReadError;

    async fn read_page(&self, page_no: u32) -> Result<IoBufferMut, PageReadError> {
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
        Ok(buf)
    }
}
