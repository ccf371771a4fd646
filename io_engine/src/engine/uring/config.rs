//! [`UringConfig`]: ring size, how many rings, and the inline paths (page-cache reads, buffered writes).

/// Settings of the io_uring engine. `Default` is one ring of 128 entries per core (at most 8) with the
/// `RWF_NOWAIT` read fast path on and buffered writes done inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringConfig {
    /// Slots per ring, i.e. the most ops a ring has in flight (rounded up to a power of two by the
    /// kernel). The ring's submission queue has twice as many entries (an op and a cancel request per
    /// slot) and its completion queue four times as many, so neither can overflow.
    pub entries: u32,
    /// Number of rings. `1`: one ring shared by all threads behind a mutex. `N > 1`: `N` rings, each
    /// calling thread is assigned one (round robin, fixed for the thread's life).
    pub rings: usize,
    /// Before using the ring, try `preadv2(RWF_NOWAIT)` inline for reads from descriptors that are not
    /// `O_DIRECT`: a page-cache hit then costs one syscall and no ring round trip.
    pub nowait_fast_path: bool,
    /// Write to descriptors that are not `O_DIRECT` with a plain `pwrite` on the calling thread instead
    /// of through the ring. A buffered write is a copy into the page cache; ext4 has no non-blocking
    /// buffered write (`RWF_NOWAIT` gives `EOPNOTSUPP`), so io_uring punts every one to an io-wq worker
    /// thread, which serializes them per inode anyway: the hop costs CPU and latency and buys nothing.
    /// Measured on this project's reference VM (`virtual_file`'s `buffered_writer` bench): through the
    /// ring, 64 KiB buffered appends cost about twice the CPU of `std-fs`. `O_DIRECT` writes always go
    /// through the ring.
    pub inline_buffered_writes: bool,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            entries: 128,
            rings: default_rings(),
            nowait_fast_path: true,
            inline_buffered_writes: true,
        }
    }
}

/// One ring per core (at most 8): with one shared ring, its mutex was contended under concurrent
/// `O_DIRECT` reads (4.5% of the CPU profile at 32 tasks on 2 cores), and two rings measured 1.03x-1.10x
/// the IOPS of one at 1-32 tasks and 1.37x at 128 (`io_engine`'s `random_read` bench).
fn default_rings() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

impl UringConfig {
    /// Checks the values; the message names the offending field.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.entries == 0 || self.entries > 4096 {
            return Err(format!("entries = {} (must be 1..=4096)", self.entries));
        }
        if self.rings == 0 || self.rings > 256 {
            return Err(format!("rings = {} (must be 1..=256)", self.rings));
        }
        Ok(())
    }
}
