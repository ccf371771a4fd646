//! The slots of the page cache and their states: a slot is `Vacant` (no buffer), `Free` (a buffer, no
//! page), `Loading` (its buffer is with a read; pinned, never evicted) or `Ready` (a whole page, with
//! the clock's referenced bit).
//!
//! The moves (all under the cache's lock):
//! - a point read's miss takes a slot with a buffer (a `Free` one, a new one from the budget, or the clock's victim
//!   among `Ready` ones) and makes it `Loading`; the read ends it `Ready` (whole page, not stale) or
//!   `Free` (failed, short or stale), or `Vacant` if the load was dropped or panicked (the buffer went
//!   with the read);
//! - write-through and point reads of several pages put pages straight in: `Ready`;
//! - a scan's miss moves no slot (it reads into a buffer of its own and drops it);
//! - an invalidation makes a `Ready` slot `Free` (a `Loading` one stale);
//! - giving memory back to the budget makes `Free` slots, then `Ready` ones (no second chance), `Vacant` (`budget.rs`).
//!
//! A `Loading` slot marked `stale` (a mutation dropped its page meanwhile) is not kept when its read
//! completes.

use io_engine::IoBufferMut;

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
/// reserved for as long as the engine (or the kernel) holds the buffer. A scan's miss reads into a
/// buffer that belongs to no slot and no reservation ([`PageBuf::transient`]).
pub(crate) struct PageBuf {
    pub(crate) buf: IoBufferMut,
    _reservation: Option<Reservation>,
}

impl PageBuf {
    /// An empty page buffer whose bytes `reservation` pays for.
    pub(super) fn new(reservation: Reservation) -> PageBuf {
        PageBuf {
            buf: IoBufferMut::with_capacity(CACHE_PAGE_SIZE),
            _reservation: Some(reservation),
        }
    }

    /// An empty page buffer paid from no budget, for a page read that is not kept (a scan's miss). It
    /// is never put in a slot: reserving it would make the cache give back a page to pay for a page it
    /// does not keep, which is the eviction a scan must not cause.
    pub(super) fn transient() -> PageBuf {
        PageBuf {
            buf: IoBufferMut::with_capacity(CACHE_PAGE_SIZE),
            _reservation: None,
        }
    }
}

// The engine gets `buf`'s memory only; the reservation is plain bookkeeping that touches no part of it.
io_engine::forward_io_buf!(IoBuf, IoBufMut for PageBuf => buf);
