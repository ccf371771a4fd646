//! `VirtualFile` as the file behind a [`BufferedWriter`](crate::buffered_writer::BufferedWriter): the
//! owned-buffer writer and reader traits, by delegation to the positional methods.

use std::future::Future;

use io_engine::{FullSlice, IoBuf, IoBufMut, Slice};

use super::VirtualFile;
use crate::buffered_writer::{OwnedAsyncReader, OwnedAsyncWriter};
use crate::error::Error;
use crate::memory_budget::MemoryBudget;

impl OwnedAsyncWriter for VirtualFile {
    type Error = Error;

    fn write_all_at<B: IoBuf>(
        &self,
        buf: FullSlice<B>,
        offset: u64,
    ) -> impl Future<Output = (FullSlice<B>, Result<(), Error>)> + Send {
        VirtualFile::write_all_at(self, buf, offset)
    }

    fn set_len(&self, len: u64) -> impl Future<Output = Result<(), Error>> + Send {
        VirtualFile::set_len(self, len)
    }

    fn memory_budget(&self) -> Option<MemoryBudget> {
        Some(self.ctx.memory_budget().clone())
    }

    fn written(&self, offset: u64, bytes: &[u8]) {
        // Only where reads bypass the kernel's page cache (O_DIRECT or RWF_DONTCACHE): in `buffered`
        // mode it holds these pages already.
        if self.keeps_written_pages()
            && self.ctx.inner.keep_written_pages
            && self.ctx.io_mode().reads_bypass_page_cache()
        {
            self.cache_written(offset, bytes);
        }
    }
}

impl OwnedAsyncReader for VirtualFile {
    type Error = Error;

    fn read_exact_at<B: IoBufMut>(
        &self,
        buf: Slice<B>,
        offset: u64,
    ) -> impl Future<Output = (Slice<B>, Result<(), Error>)> + Send {
        VirtualFile::read_exact_at(self, buf, offset)
    }

    fn read_from_memory(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> bool {
        self.append_if_cached(offset, len, out)
    }
}
