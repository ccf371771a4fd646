//! [`BufferedWriterOptions`]: buffer capacity, write-behind depth and start offset, checked against the
//! buffer alignment before anything is allocated or spawned.

use io_engine::Alignment;

use super::error::ConfigError;

/// Default buffer capacity: 64 KiB.
pub const DEFAULT_CAPACITY: usize = 64 * 1024;

/// Default write-behind depth: two buffers, one filling while the other is written.
pub const DEFAULT_DEPTH: usize = 2;

/// Settings of a [`BufferedWriter`](super::BufferedWriter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferedWriterOptions {
    /// Bytes per buffer, and the length of every write before shutdown. A non-zero multiple of the
    /// buffer alignment. Default [`DEFAULT_CAPACITY`].
    pub capacity: usize,
    /// Total buffers: the one being filled plus those queued for or being written by the flush task. At
    /// least 2. Default [`DEFAULT_DEPTH`].
    pub depth: usize,
    /// File offset of the first byte written. A multiple of the buffer alignment (a layer file starts its
    /// values after its 8 KiB summary block). Default 0.
    pub start_offset: u64,
    /// Spill mode: full buffers stay in memory (readable through
    /// [`read_plan`](super::BufferedWriter::read_plan)) while the file's memory budget has room, and are
    /// written to the file only when memory runs short, oldest first: when this writer needs a buffer
    /// the budget cannot give at once, when another consumer of the budget waits, at
    /// [`flush`](super::BufferedWriter::flush) and at [`shutdown`](super::BufferedWriter::shutdown) (except
    /// [`ShutdownMode::Discard`](super::ShutdownMode::Discard)). For spill files whose bytes are read back
    /// soon and may never need to reach the device (an ephemeral file). Needs a file that names a
    /// [`MemoryBudget`](crate::MemoryBudget); `depth` then only bounds the queue of tail writes. Default
    /// false.
    pub spill: bool,
}

impl Default for BufferedWriterOptions {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            depth: DEFAULT_DEPTH,
            start_offset: 0,
            spill: false,
        }
    }
}

impl BufferedWriterOptions {
    setters! {
        /// Sets [`capacity`](Self::capacity).
        fn with_capacity(capacity: usize);
        /// Sets [`depth`](Self::depth).
        fn with_depth(depth: usize);
        /// Sets [`start_offset`](Self::start_offset).
        fn with_start_offset(start_offset: u64);
        /// Sets [`spill`](Self::spill).
        fn with_spill(spill: bool);
    }

    /// Checks the settings against alignment `A` (what [`BufferedWriter::new`](super::BufferedWriter::new)
    /// does first; call it yourself to keep the file when the settings are bad).
    pub fn validate<A: Alignment>(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 || self.capacity % A::ALIGN != 0 {
            return Err(ConfigError::Capacity {
                capacity: self.capacity,
                align: A::ALIGN,
            });
        }
        if self.start_offset % A::ALIGN as u64 != 0 {
            return Err(ConfigError::StartOffset {
                start_offset: self.start_offset,
                align: A::ALIGN,
            });
        }
        if self.depth < 2 {
            return Err(ConfigError::Depth { depth: self.depth });
        }
        Ok(())
    }
}
