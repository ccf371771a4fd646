//! The slots of the page cache and their states: a slot is `Vacant` (no buffer), `Free` (a buffer, no
//! page), `Loading` (its buffer is with a read; pinned, never evicted) or `Ready` (a whole page, with
//! the clock's referenced bit).
//!
//! The moves (all under the cache's lock):
//! - a miss takes a slot with a buffer (a `Free` one, a new one from the budget, or the clock's victim
//!   among `Ready` ones) and makes it `Loading`; the read ends it `Ready` (whole page, not stale) or
//!   `Free` (failed, short or stale), or `Vacant` if the load was dropped or panicked (the buffer went
//!   with the read);
//! - write-through and reads of several pages put pages straight in: `Ready`;
//! - an invalidation makes a `Ready` slot `Free` (a `Loading` one stale);
//! - giving memory back to the budget makes `Free` slots, then `Ready` ones (no second chance), `Vacant` (`budget.rs`).
//!
//! A `Loading` slot marked `stale` (a mutation dropped its page meanwhile) is not kept when its read
//! completes.

use io_engine::{IoBuf, IoBufMut, IoBufferMut};

use crate::memory_budget::Reservation;

/// Bytes per cache page (the layer files' page size).
pub const CACHE_PAGE_SIZE: usize = 8192;

/// (file cache id, page number).
pub(crate) type PageKey = (u64, u64);

pub(super) enum Slot {
    Vacant,
    Free(PageBuf),
    Ready {
        key: PageKey,
        page: PageBuf,
        referenced: bool,
    },
    /// Being read; the buffer is with the read. Pinned.
    Loading {
        stale: bool,
    },
}

/// A slot's buffer and the budget bytes that pay for it. A page read takes both, so the bytes stay
/// reserved for as long as the engine (or the kernel) holds the buffer.
pub(crate) struct PageBuf {
    pub(crate) buf: IoBufferMut,
    _reservation: Reservation,
}

impl PageBuf {
    /// An empty page buffer whose bytes `reservation` pays for.
    pub(super) fn new(reservation: Reservation) -> PageBuf {
        PageBuf {
            buf: IoBufferMut::with_capacity(CACHE_PAGE_SIZE),
            _reservation: reservation,
        }
    }
}

// SAFETY: every pointer and length is `buf`'s (`IoBufferMut` keeps the stable-pointer invariant: its heap
// allocation does not move with the value and is not reallocated while an engine owns it); the
// reservation is plain bookkeeping that touches no part of the buffer.
unsafe impl IoBuf for PageBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.buf.bytes_total()
    }
}

// SAFETY: as for `IoBuf`: the writable memory is `buf`'s alone.
unsafe impl IoBufMut for PageBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller's guarantee (`[0, pos)` initialized, `pos <= bytes_total()`) is about `buf`.
        unsafe { self.buf.set_init(pos) }
    }
}
