//! [`TransferBuffers`]: the aligned buffers of puts and gets, each paid from the context's memory budget
//! (consumer `store-transfers`) before it is allocated, so the bytes a store holds in flight never exceed
//! the budget: a transfer that finds the budget full waits (backpressure) instead of queueing more.
//!
//! A read's buffer stays paid while the read is in flight; handed to the consumer as `Bytes` it is the
//! consumer's memory (see [`TransferBuf::into_bytes`]).
//!
//! Buffers of [`TRANSFER_CHUNK`] bytes are kept for reuse when released (a fresh buffer is zeroed when
//! allocated, which costs as much as the copy into it); the idle ones keep their reservation and are
//! given back when another consumer of the budget asks ([`Reclaim`]).

use std::sync::{Arc, Mutex, Weak};

use io_engine::IoBufferMut;
use virtual_file::{Consumer, MemoryBudget, MemoryBudgetError, Reclaim, Reservation};

/// The largest single read or write of a transfer, and the size of the reused buffers.
pub const TRANSFER_CHUNK: usize = 8 << 20;

/// Idle full-size buffers kept for reuse at most.
const MAX_IDLE: usize = 16;

/// The store's buffer pool over one memory budget.
pub(crate) struct TransferBuffers {
    budget: MemoryBudget,
    idle: Mutex<Vec<(IoBufferMut, Reservation)>>,
}

/// An aligned buffer and its reservation; returns to its pool when dropped.
pub(crate) struct TransferBuf {
    buf: Option<IoBufferMut>,
    reservation: Option<Reservation>,
    pool: Weak<TransferBuffers>,
}

impl TransferBuffers {
    pub fn new(budget: MemoryBudget) -> Arc<Self> {
        let pool = Arc::new(TransferBuffers {
            budget: budget.clone(),
            idle: Mutex::new(Vec::new()),
        });
        let weak: Weak<dyn Reclaim> = Arc::downgrade(&pool) as Weak<dyn Reclaim>;
        budget.register_reclaimer(weak);
        pool
    }

    /// An empty buffer with room for `len` bytes (`len <= TRANSFER_CHUNK`), waiting for the budget.
    pub async fn get(self: &Arc<Self>, len: usize) -> Result<TransferBuf, MemoryBudgetError> {
        debug_assert!(len <= TRANSFER_CHUNK);
        let full = len > TRANSFER_CHUNK / 2;
        if full {
            let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            if let Some((mut buf, reservation)) = reused {
                buf.clear();
                return Ok(self.wrap(buf, reservation));
            }
        }
        let cap = if full {
            TRANSFER_CHUNK
        } else {
            len.next_multiple_of(IoBufferMut::<io_engine::DefaultAlign>::ALIGN)
                .max(IoBufferMut::<io_engine::DefaultAlign>::ALIGN)
        };
        let reservation = self.budget.reserve(Consumer::StoreTransfers, cap).await?;
        Ok(self.wrap(IoBufferMut::with_capacity(cap), reservation))
    }

    fn wrap(self: &Arc<Self>, buf: IoBufferMut, reservation: Reservation) -> TransferBuf {
        TransferBuf {
            buf: Some(buf),
            reservation: Some(reservation),
            pool: Arc::downgrade(self),
        }
    }

    fn give_back(&self, buf: IoBufferMut, reservation: Option<Reservation>) {
        if buf.capacity() != TRANSFER_CHUNK {
            return;
        }
        // a buffer handed to a consumer came back without its reservation: pay for it again, or drop it
        let Some(reservation) = reservation.or_else(|| {
            self.budget
                .try_reserve(Consumer::StoreTransfers, TRANSFER_CHUNK)
        }) else {
            return;
        };
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((buf, reservation));
            drop(idle);
            self.budget.notify_reclaimable();
        }
    }
}

impl Reclaim for TransferBuffers {
    fn reclaim(&self, bytes: usize) -> usize {
        let mut freed = 0;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while freed < bytes {
            let Some((buf, reservation)) = idle.pop() else {
                break;
            };
            freed += reservation.bytes();
            drop((buf, reservation));
        }
        freed
    }
}

impl TransferBuf {
    /// The buffer (for an IO that takes it by value); put it back with [`restore`](Self::restore).
    pub fn take(&mut self) -> IoBufferMut {
        self.buf.take().expect("buffer taken twice")
    }

    /// Puts back the buffer an IO returned.
    pub fn restore(&mut self, buf: IoBufferMut) {
        self.buf = Some(buf);
    }

    /// Hands `range` of the buffer to a consumer as `Bytes` (no copy). The reservation ends here: what a
    /// consumer keeps is its own memory (a consumer that collects a whole body must not stop the reads
    /// it waits for); the buffer returns to the pool when the last `Bytes` over it is dropped.
    pub fn into_bytes(mut self, range: std::ops::Range<usize>) -> bytes::Bytes {
        self.reservation = None;
        bytes::Bytes::from_owner(self).slice(range)
    }

    pub fn buf_mut(&mut self) -> &mut IoBufferMut {
        self.buf.as_mut().expect("buffer taken")
    }
}

impl AsRef<[u8]> for TransferBuf {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.as_slice())
    }
}

impl Drop for TransferBuf {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buf.take(), self.pool.upgrade()) {
            pool.give_back(buf, self.reservation.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reuses_and_reclaims() {
        let budget = MemoryBudget::new(3 * TRANSFER_CHUNK);
        let pool = TransferBuffers::new(budget.clone());
        let a = pool.get(TRANSFER_CHUNK).await.unwrap();
        let ptr = a.buf.as_ref().unwrap().as_ptr();
        drop(a);
        // still reserved while idle, and the same memory comes back
        assert_eq!(
            budget.snapshot().current[Consumer::StoreTransfers],
            TRANSFER_CHUNK as u64
        );
        let b = pool.get(TRANSFER_CHUNK).await.unwrap();
        assert_eq!(b.buf.as_ref().unwrap().as_ptr(), ptr);
        drop(b);
        assert_eq!(pool.reclaim(1), TRANSFER_CHUNK);
        assert_eq!(budget.snapshot().current[Consumer::StoreTransfers], 0);
        let small = pool.get(100).await.unwrap();
        assert_eq!(budget.snapshot().current[Consumer::StoreTransfers], 4096);
        drop(small);
        assert_eq!(budget.snapshot().current[Consumer::StoreTransfers], 0);
    }
}
